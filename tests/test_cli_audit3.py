"""``introscope analyze`` on the data of the third audit: 16-bit images, Parquet labels with gaps,
hidden files in image folders, and the small messages that misled."""

import numpy as np
import pytest

from introscope.cli._data import Preprocess, load_data

PIL = pytest.importorskip("PIL.Image")


def _batch(src, n=100):
    return next(iter(next(iter(src.producer(n))).fields.values()))


def _gradient16(i: int) -> np.ndarray:
    return (np.linspace(0, 65535, 256).reshape(16, 16) * (i + 1) / 3).astype(np.uint16)


def test_16bit_grey_images_reach_the_model_scaled_by_65535_not_clipped(tmp_path):
    for c in "ab":
        (tmp_path / c).mkdir()
        for i in range(3):
            PIL.fromarray(_gradient16(i)).save(tmp_path / c / f"g{i}.png")
    assert PIL.open(tmp_path / "a" / "g2.png").mode.startswith("I")  # really 16-bit on disk
    src = load_data(tmp_path, spec=None, with_model=False)
    x = _batch(src)
    assert src.channels == 1 and x.shape == (6, 16, 16, 1)
    want = np.stack([_gradient16(i) for i in range(3)] * 2)[..., None] / 65535.0
    np.testing.assert_allclose(x, want, atol=1e-6)
    assert (x == 1.0).mean() < 0.01  # was 99% saturated (clipped to 255, then / 255)
    # --scale multiplies the raw 16-bit values
    raw = _batch(load_data(tmp_path, spec=None, with_model=False, preprocess=Preprocess(1.0)))
    np.testing.assert_array_equal(raw, want * 65535.0)
    # resized and made RGB for a colour model: still 16 bits, the grey in every channel
    rgb = load_data(tmp_path, spec=None, with_model=False, image_size=(8, 8))
    rgb.channels = 3
    x3 = _batch(rgb)
    assert x3.shape == (6, 8, 8, 3) and 0.3 < x3.mean() < 0.4
    np.testing.assert_array_equal(x3[..., 0], x3[..., 2])


def test_8bit_and_16bit_images_in_one_folder_both_land_in_0_1(tmp_path):
    (tmp_path / "a").mkdir()
    PIL.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "a" / "deep.png")
    PIL.fromarray(np.full((4, 4), 128, np.uint8)).save(tmp_path / "a" / "flat.png")
    x = _batch(load_data(tmp_path, spec=None, with_model=False))
    np.testing.assert_allclose(x[:, 0, 0, 0], [32768 / 65535, 128 / 255], rtol=1e-6)


def test_16bit_colour_png_keeps_its_low_bytes(tmp_path):
    cv2 = pytest.importorskip("cv2")
    (tmp_path / "a").mkdir()
    rgb = np.zeros((6, 6, 3), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 65535, 1000, 30000
    cv2.imwrite(str(tmp_path / "a" / "c16.png"), rgb[..., ::-1])  # OpenCV writes BGR
    src = load_data(tmp_path, spec=None, with_model=False)
    x = _batch(src)
    np.testing.assert_allclose(x[0, 0, 0], [1.0, 1000 / 65535, 30000 / 65535], rtol=1e-6)
    assert list(src.raw_image(0)[0, 0]) == [255, 4, 117]


def test_16bit_thumbnail_is_the_image_not_white(tmp_path):
    (tmp_path / "a").mkdir()
    PIL.fromarray(_gradient16(2)).save(tmp_path / "a" / "g.png")
    thumb = load_data(tmp_path, spec=None, with_model=False).raw_image(0)
    assert thumb.dtype == np.uint8 and thumb.shape == (16, 16)
    assert thumb.min() == 0 and thumb.max() == 255 and 100 < thumb.mean() < 155


def test_parquet_labels_with_nulls_are_no_label_and_int_gaps_stay_ints(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    cases = {
        "int": ([0, 1, None, 2, 0, 1], ["0", "1", "(no label)", "2", "0", "1"]),
        "str": (["c0", None, "c1", "c1", "c0", "c2"], ["c0", "(no label)", "c1", "c1", "c0", "c2"]),
        "float": (
            [0.5, 1.0, None, 2.0, 0.5, 1.0],
            ["0.5", "1.0", "(no label)", "2.0", "0.5", "1.0"],
        ),
        "whole": ([3, 1, 2, 3, 1, 2], ["3", "1", "2", "3", "1", "2"]),
    }
    for name, (labels, want) in cases.items():
        path = tmp_path / f"{name}.parquet"
        table = {"label": labels, "embedding": pa.array(list(x), type=pa.list_(pa.float32()))}
        pq.write_table(pa.table(table), path)
        assert load_data(path, spec=None, with_model=False).labels == want, name


def test_npz_float_labels_read_as_integers(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((3, 2), np.float32), labels=np.array([0.0, 1.0, np.nan]))
    assert load_data(tmp_path / "d.npz", spec=None, with_model=False).labels == [
        "0", "1", "(no label)"
    ]  # fmt: skip


def test_hidden_files_and_folders_in_an_image_folder_are_skipped(tmp_path):
    img = PIL.fromarray(np.zeros((4, 4, 3), np.uint8))
    for c in "ab":
        (tmp_path / c).mkdir()
        img.save(tmp_path / c / "0.png")
    (tmp_path / "a" / ".ipynb_checkpoints").mkdir()
    img.save(tmp_path / "a" / ".ipynb_checkpoints" / "0-checkpoint.png")
    (tmp_path / "a" / "._0.png").write_bytes(b"\0\5\26\7Mac OS X")  # AppleDouble
    (tmp_path / "__MACOSX" / "a").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "a" / "._0.png").write_bytes(b"\0\5\26\7Mac OS X")
    (tmp_path / "b" / "deep" / "__MACOSX").mkdir(parents=True)
    (tmp_path / "b" / "deep" / "__MACOSX" / "1.png").write_bytes(b"\0\5\26\7Mac OS X")
    (tmp_path / "._loose.png").write_bytes(b"\0\5\26\7Mac OS X")
    img.save(tmp_path / "loose.png")
    src = load_data(tmp_path, spec=None, with_model=False)
    assert src.ids == ["a/0.png", "b/0.png", "loose.png"]
    assert src.labels == ["a", "b", "(no label)"]
    assert _batch(src).shape == (3, 4, 4, 3)  # nothing unreadable was read


def _summary_value(report_html: str, key: str) -> str:
    import html
    import re

    m = re.search(rf"<dt>{key}</dt><dd>(.*?)</dd>", report_html, re.S)
    assert m, key
    return html.unescape(m.group(1))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_summary_lists_only_the_introspectors_that_ran(tmp_path):
    torch = pytest.importorskip("torch")
    from introscope.cli import main

    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    torch.jit.script(net).save(str(tmp_path / "ts.pt"))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((60, 6)).astype(np.float32))
    out = tmp_path / "r"
    argv = ["analyze", "--model", str(tmp_path / "ts.pt"), "--data", str(tmp_path / "x.npy"),
            "--out", str(out), "-q", "--projection", "pca"]  # fmt: skip
    assert main(argv) == 0
    ran = _summary_value((out / "report.html").read_text(encoding="utf-8"), "introspectors")
    assert ran == "familiarity, duplicates, projection (iua, pfa skipped: see Model health)"


CNN = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))
"""


@pytest.fixture
def cnn(tmp_path, monkeypatch):
    """``cnn3:Net`` importable from the current folder, its state dict and an ONNX export."""
    torch = pytest.importorskip("torch")
    import sys
    import warnings

    (tmp_path / "cnn3.py").write_text(CNN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cnn3", raising=False)
    import cnn3

    torch.manual_seed(0)
    net = cnn3.Net().eval()
    torch.save(net.state_dict(), tmp_path / "net_sd.pt")
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError:
        pass
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.zeros(2, 1, 8, 8),), str(tmp_path / "net.onnx"),
                              input_names=["x"], dynamic_axes={"x": {0: "N"}}, dynamo=False)  # fmt: skip
    rng = np.random.default_rng(0)
    for c in "ab":
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(6):
            PIL.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(
                tmp_path / "imgs" / c / f"{i}.png"
            )
    return tmp_path


def test_image_size_the_models_fixed_input_cannot_take_exits_2_naming_the_option(cnn, capsys):
    pytest.importorskip("onnxruntime")
    from introscope.cli import main

    argv = ["analyze", "--model", "net.onnx", "--data", "imgs", "--out", "r", "-q",
            "--image-size", "10", "10", "--introspectors", "iua"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--image-size 10 10" in err and "takes 8x8 images" in err and "batch field" not in err
    argv[argv.index("10") : argv.index("10") + 2] = ["8", "8"]
    assert main(argv) == 0


def test_layers_lists_an_onnx_input_once(cnn, capsys):
    pytest.importorskip("onnxruntime")
    from introscope.cli import main

    assert main(["layers", "--model", "net.onnx"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [r[:2] for r in rows if r[0] == "x"] == [["x", "INPUT"]]
    assert "PLACEHOLDER" not in {r[1] for r in rows}


def test_channels_last_arrays_for_a_pytorch_cnn_say_to_transpose(cnn, capsys):
    from introscope.cli import main

    x = np.random.default_rng(0).integers(0, 255, (12, 8, 8, 1), dtype=np.uint8)
    np.save("x_nhwc.npy", x)
    argv = ["analyze", "--model", "net_sd.pt", "--constructor", "cnn3:Net", "--data",
            "x_nhwc.npy", "--out", "r", "-q", "--introspectors", "iua"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "(N, 8, 8, 1) look channels-last" in err and "(N, C, H, W)" in err
    assert "transpose(0, 3, 1, 2)" in err
    np.save("x_nchw.npy", x.transpose(0, 3, 1, 2))
    argv[argv.index("x_nhwc.npy")] = "x_nchw.npy"
    assert main(argv) == 0
    with open("broken.pt", "wb") as f:  # a file problem is not blamed on the data's layout
        f.write(b"x")
    assert main(["analyze", "--model", "broken.pt", "--data", "x_nhwc.npy", "--out", "r2"]) == 3
    err = capsys.readouterr().err
    assert "not a TorchScript file" in err and "channels-last" not in err


def test_semicolon_separated_labels_csv(tmp_path):
    from introscope.cli._tables import labels_csv

    ids = ["a/0.png", "a/1.png", "b/0.png"]
    (tmp_path / "semi.csv").write_text("path;label\nb/0.png;B\na/0.png;A0\na/1.png;A1\n")
    assert labels_csv(tmp_path / "semi.csv", ids, "hint") == ["A0", "A1", "B"]
    (tmp_path / "tab.csv").write_text("id\tclass\na/0.png\tx\na/1.png\ty\nb/0.png\tz\n")
    assert labels_csv(tmp_path / "tab.csv", ids, "hint") == ["x", "y", "z"]
    # no header: the error names the separator
    (tmp_path / "bare.csv").write_text("x/0.png;A0\nx/1.png;A1\n")
    from introscope.exceptions import IntroscopeValueError

    with pytest.raises(IntroscopeValueError, match="first row holds ';'"):
        labels_csv(tmp_path / "bare.csv", ids, "hint")
