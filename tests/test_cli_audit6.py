"""``introscope analyze`` after the sixth audit: the ``--color grey`` hint for a 1-channel
PyTorch model given colour images (C2), no split familiarity on unlabelled data (D1), argparse
errors as one line naming the sub-command and the loose images of a folder in the progress line
(D4)."""

import pathlib
import sys
import types

import numpy as np
import pytest

from introscope.cli import main
from introscope.cli._analyze import _raise_if_colour
from introscope.cli._data import load_data
from introscope.cli._folder import folder_summary
from introscope.exceptions import IntroscopeError, IntroscopeValueError

GREY_NETS = """
import torch.nn as nn


class Conv(nn.Module):  # MNIST-style: one input channel, any size
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


class Flat(nn.Module):  # a Linear layer on flattened 8x8 greyscale images
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 8)
        self.relu = nn.ReLU()
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        return self.out(self.relu(self.fc(x.flatten(1))))
"""


def _images(folder: pathlib.Path, n: int = 6, grey: bool = False, seed: int = 0) -> None:
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shape = (8, 8) if grey else (8, 8, 3)
        image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.fixture
def grey_nets(tmp_path, monkeypatch):
    """``grey6:Conv`` and ``grey6:Flat`` importable from the tmp folder, their state dicts."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("PIL")
    (tmp_path / "grey6.py").write_text(GREY_NETS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "grey6", raising=False)
    import grey6

    torch.manual_seed(0)
    torch.save(grey6.Conv().eval().state_dict(), tmp_path / "conv.pt")
    torch.save(grey6.Flat().eval().state_dict(), tmp_path / "flat.pt")
    return tmp_path


def _analyze(data, out, *extra):
    return main(["analyze", "--data", str(data), "--out", str(out), "-q", *extra])


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


# C2 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net", ["conv", "flat"])
def test_colour_images_into_a_one_channel_model_hint_color_grey(grey_nets, capsys, net):
    _images(grey_nets / "imgs" / "a", n=12)
    argv = ["--model", f"{net}.pt", "--constructor", f"grey6:{net.title()}"]
    argv += ["--introspectors", "iua"]
    assert _analyze("imgs", "r", *argv) == 2
    err = capsys.readouterr().err
    lines = _error_lines(err)
    assert len(lines) == 1 and lines[0].startswith("introscope analyze: error:"), err
    assert "read as RGB (3 channels): pass --color grey" in err
    assert "--debug" not in err  # a usage error, not a failed analysis
    assert _analyze("imgs", "r", *argv, "--color", "grey") == 0


def test_colour_hint_matches_torch_messages_only_for_colour_images():
    colour = types.SimpleNamespace(kind="images", channels=3)
    conv = IntroscopeError(
        "the torch module Net failed on inputs (x: (2, 3, 40, 50) float32): RuntimeError: "
        "Given groups=1, weight of size [8, 1, 3, 3], expected input[2, 3, 40, 50] to have 1 "
        "channels, but got 3 channels instead"
    )
    with pytest.raises(IntroscopeValueError, match="pass --color grey") as info:
        _raise_if_colour(colour, conv, "auto")
    assert "--image-size" not in str(info.value)
    with pytest.raises(IntroscopeValueError) as info:  # --color rgb given: no hint to undo it
        _raise_if_colour(colour, conv, "rgb")
    assert "read as RGB (3 channels)" in str(info.value) and "--color grey" not in str(info.value)
    flat = IntroscopeError(
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x192 and 64x8)"
    )
    with pytest.raises(IntroscopeValueError, match="--color grey.*--image-size"):
        _raise_if_colour(colour, flat, "auto")
    _raise_if_colour(colour, flat, "rgb")  # left to the --image-size hint
    other = IntroscopeError(
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x100 and 64x8)"
    )
    _raise_if_colour(colour, other, "auto")  # not 3 times the features: not a colour problem
    rgb_model = IntroscopeError("expected input[2, 1, 8, 8] to have 3 channels, but got 1 channels")
    _raise_if_colour(types.SimpleNamespace(kind="images", channels=1), rgb_model, "auto")
    _raise_if_colour(types.SimpleNamespace(kind="arrays", channels=3), conv, "auto")


# D1 -------------------------------------------------------------------------------------------


def _columns(path: pathlib.Path) -> list[str]:
    pq = pytest.importorskip("pyarrow.parquet")
    return list(pq.read_schema(path).names)


def test_unlabelled_data_gets_no_split_familiarity(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    x = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    argv = ["--introspectors", "familiarity"]
    assert _analyze(tmp_path / "e.npy", tmp_path / "r", *argv) == 0
    columns = _columns(tmp_path / "r" / "dataset_report.parquet")
    assert "label" in columns and "familiarity_embeddings" in columns
    assert not [c for c in columns if c.startswith("splitFamiliarity")], columns
    # labelled data (60 per label): one familiarity per label, as before
    labels = np.repeat(["a", "b"], 60)
    np.savez(tmp_path / "l.npz", x=x, labels=labels)
    assert _analyze(tmp_path / "l.npz", tmp_path / "rl", *argv) == 0
    columns = _columns(tmp_path / "rl" / "dataset_report.parquet")
    assert "splitFamiliarity_embeddings_byAttr_label" in columns
    capsys.readouterr()


def test_unlabelled_report_renders_cleanly_in_a_browser(tmp_path):
    pytest.importorskip("plotly")
    pytest.importorskip("pyarrow")
    sys.path.insert(0, str(pathlib.Path(__file__).parent / "viz"))
    try:
        from chromium_cdp import Chromium, chromium_available, load_report
    finally:
        sys.path.remove(str(pathlib.Path(__file__).parent / "viz"))
    if not chromium_available():
        pytest.skip("no Chromium")
    x = np.random.default_rng(1).normal(size=(80, 5)).astype(np.float32)
    np.save(tmp_path / "e.npy", x)
    assert _analyze(tmp_path / "e.npy", tmp_path / "r", "--projection", "pca") == 0
    report = tmp_path / "r" / "report.html"
    with Chromium() as c:
        load_report(c, report)
        assert c.problems() == []
        assert c.requests() == [report.resolve().as_uri()]
        for anchor in ("data-map", "familiarity", "duplicates"):
            assert c.evaluate(f"!!document.getElementById('{anchor}')"), anchor
        n = "document.getElementById('scatter').data.reduce((s, t) => s + t.x.length, 0)"
        assert c.evaluate(n) == 80


# D4 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze", "--data", "x", "--bogus"],
        ["analyze", "--data", "x", "--scale", "0"],
        ["analyze", "--data", "x", "--std", "0"],
        ["analyze"],
        ["demo", "--bogus"],
        ["layers", "--model", "m.onnx", "--bogus"],
        ["responses", "net.pt", "--bogus"],
        ["info", "--bogus"],
    ],
)
def test_argparse_errors_are_one_line_naming_the_subcommand(capsys, argv):
    assert main(argv) == 2
    out = capsys.readouterr()
    lines = _error_lines(out.err)
    assert len(lines) == 1, out.err
    assert lines[0].startswith(f"introscope {argv[0]}: error: ")
    assert lines[0].endswith(f"(see introscope {argv[0]} --help)")
    assert "usage:" not in out.err and out.out == ""
    if "--bogus" in argv:
        assert "unrecognized arguments: --bogus" in lines[0]


def test_help_and_version_still_exit_0(capsys):
    assert main(["analyze", "--help"]) == 0
    assert "usage: introscope analyze" in capsys.readouterr().out
    assert main(["--version"]) == 0


def test_loose_images_are_not_counted_as_a_label_folder(tmp_path):
    for split in ("train", "test"):
        _images(tmp_path / "d" / split, n=3)
    _images(tmp_path / "loose", n=1)
    (tmp_path / "loose" / "0.png").rename(tmp_path / "d" / "loose.png")
    src = load_data(tmp_path / "d", spec=None, with_model=False)
    assert src.notes[0].startswith("7 images in 2 label folders and 1 loose image, resized")
    assert folder_summary(["a/1.png", "b/2.png"], ["a", "b"]) == "2 images in 2 label folders"
    assert folder_summary(["a/1.png", "x.png", "y.png"], ["a", "(no label)", "(no label)"]) == (
        "3 images in 1 label folder and 2 loose images"
    )
    assert folder_summary(["x.png"], ["(no label)"]) == "1 image, all loose (no label folders)"
