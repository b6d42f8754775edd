"""``introscope analyze`` after the fifth audit: headerless labels CSVs, the output folder inside
the data, broken links, mixed image sizes, normalisation flags, interrupted writes, tiny data,
thumbnail notes, float and 16-bit thumbnails, symlinked folders and ``--color``."""

import os
import pathlib

import numpy as np
import pytest

from introscope.cli import main
from introscope.cli._data import load_data

PIL = pytest.importorskip("PIL.Image")

CNN = """
import torch.nn as nn


class Net(nn.Module):  # RGB, one input size: 8x8
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).flatten(1))
"""


def _images(folder: pathlib.Path, n: int = 6, size=(8, 8), grey: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0]) if grey else (size[1], size[0], 3)
    for i in range(n):
        PIL.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.fixture
def rgb_cnn(tmp_path, monkeypatch):
    """``cnn5:Net`` importable from the current folder (the tmp folder) and its state dict."""
    torch = pytest.importorskip("torch")
    import sys

    (tmp_path / "cnn5.py").write_text(CNN)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cnn5", raising=False)
    import cnn5

    torch.manual_seed(0)
    torch.save(cnn5.Net().eval().state_dict(), tmp_path / "net.pt")
    return tmp_path


def _err(capsys) -> str:
    return capsys.readouterr().err


def _analyze(data, out, *extra):
    return main(["analyze", "--data", str(data), "--out", str(out), "-q", *extra])


# A1 -------------------------------------------------------------------------------------------


def test_headerless_path_label_csv_is_matched_by_path_or_refused(tmp_path):
    from introscope.cli._tables import labels_csv
    from introscope.exceptions import IntroscopeValueError

    ids = [f"img{i:02d}.png" for i in range(6)]
    truth = {i: "cat" if k < 3 else "dog" for k, i in enumerate(ids)}
    (tmp_path / "l.csv").write_text("".join(f"{i},{truth[i]}\n" for i in reversed(ids)))
    assert labels_csv(tmp_path / "l.csv", ids, "hint") == [truth[i] for i in ids]
    (tmp_path / "swapped.csv").write_text("".join(f"{truth[i]},{i}\n" for i in reversed(ids)))
    assert labels_csv(tmp_path / "swapped.csv", ids, "hint") == [truth[i] for i in ids]
    (tmp_path / "other.csv").write_text("".join(f"x{k},{truth[i]}\n" for k, i in enumerate(ids)))
    with pytest.raises(IntroscopeValueError, match="other.csv.*no column holds the sample ids"):
        labels_csv(tmp_path / "other.csv", ids, "hint")
    (tmp_path / "one.csv").write_text("".join(f"{truth[i]}\n" for i in ids))  # documented
    assert labels_csv(tmp_path / "one.csv", ids, "hint") == [truth[i] for i in ids]


# A2 -------------------------------------------------------------------------------------------


def test_the_output_folder_inside_the_data_is_not_read_as_data(tmp_path):
    _images(tmp_path / "cat")
    _images(tmp_path / "report", n=2)  # an earlier run's images
    PIL.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "iua_model.png")
    src = load_data(tmp_path, spec=None, with_model=False, out=tmp_path / "report")
    assert len(src) == 7 and "report" not in src.labels
    assert any("output folder report/ left out" in n for n in src.notes)
    same = load_data(tmp_path, spec=None, with_model=False, out=tmp_path)
    assert "iua_model.png" not in same.ids and len(same) == 8
    assert any("iua_model.png left out" in n for n in same.notes)


# B2 -------------------------------------------------------------------------------------------


def test_a_broken_symbolic_link_is_named_and_stops_the_run(tmp_path, capsys):
    _images(tmp_path / "d" / "cat", n=12)
    os.symlink(tmp_path / "gone.png", tmp_path / "d" / "cat" / "link.png")
    rc = _analyze(tmp_path / "d", tmp_path / "r", "--introspectors", "projection",
                  "--projection", "pca")  # fmt: skip
    err = _err(capsys)
    assert rc == 3 and "'cat/link.png' (a broken symbolic link" in err


# B1 -------------------------------------------------------------------------------------------


def test_mixed_sizes_use_the_most_common_and_say_so(tmp_path):
    _images(tmp_path / "a", n=5, size=(12, 10))
    PIL.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "a" / "000.png")  # sorts first
    src = load_data(tmp_path, spec=None, with_model=False)
    assert src.image_size == (12, 10)
    note = next(n for n in src.notes if "differ in size" in n)
    assert "12x10 (5), 1x1 (1)" in note and "resized to 12x10" in note and "--image-size" in note
    sized = load_data(tmp_path, spec=None, with_model=False, image_size=(4, 4))
    assert not any("differ in size" in n for n in sized.notes)


def test_a_huge_default_size_is_refused_and_a_fixed_size_model_hints_image_size(
    rgb_cnn, capsys, monkeypatch
):
    import introscope.cli._analyze as AN

    _images(rgb_cnn / "imgs" / "a", n=12, size=(16, 16))
    argv = ["--model", "net.pt", "--constructor", "cnn5:Net", "--introspectors", "iua"]
    with monkeypatch.context() as m:
        m.setattr(AN, "BATCH_BYTES", 1000)  # 12 x 16 x 16 x 3 x 4 bytes is more
        assert _analyze("imgs", "r", *argv) == 2
    err = _err(capsys)
    assert "make batches of" in err and "--image-size W H" in err
    assert _analyze("imgs", "r", *argv) == 2
    err = _err(capsys)
    assert "cannot be multiplied" in err and "resized to 16x16" in err and "--image-size" in err
    assert _analyze("imgs", "r", *argv, "--image-size", "8", "8") == 0


# B4 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag", [["--std", "0"], ["--std", "-1"], ["--scale", "nan"], ["--scale", "inf"],
             ["--scale", "0"], ["--mean", "nan"]]
)  # fmt: skip
def test_normalisation_flags_must_be_finite_and_non_zero(tmp_path, capsys, flag):
    assert _analyze(tmp_path, tmp_path / "r", *flag) == 2
    assert f"argument {flag[0]}:" in _err(capsys)


# B6 -------------------------------------------------------------------------------------------


def test_an_earlier_report_is_removed_before_any_result_is_replaced(tmp_path, monkeypatch):
    import introscope.cli._report_files as RF

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("old run")
    (out / "notes.txt").write_text("the user's")

    def interrupted(path, content):
        assert not (out / "report.html").exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(RF, "write_json", interrupted)
    output = RF.RunOutput()
    output.add("iua_model.json", {"a": 1}, "x")
    with pytest.raises(KeyboardInterrupt):
        RF.write_report(out, object(), output)
    assert not (out / "report.html").exists() and (out / "notes.txt").read_text() == "the user's"


# B5 -------------------------------------------------------------------------------------------


def test_a_map_of_one_sample_names_the_sample_count(tmp_path, capsys):
    np.save(tmp_path / "one.npy", np.ones((1, 4), np.float32))
    assert _analyze(tmp_path / "one.npy", tmp_path / "r", "--introspectors", "projection",
                    "--projection", "pca") == 2  # fmt: skip
    assert "--data has 1 sample;" in _err(capsys)
    np.save(tmp_path / "three.npy", np.random.default_rng(0).normal(size=(3, 4)))
    assert _analyze(tmp_path / "three.npy", tmp_path / "r", "--introspectors", "projection") == 2
    assert "3 samples; UMAP needs at least 4" in _err(capsys)


# C1 -------------------------------------------------------------------------------------------


def test_thumbnail_note_says_why_there_are_none(tmp_path):
    from introscope.cli._data_report import data_section

    pd = pytest.importorskip("pandas")
    _images(tmp_path / "a", n=3)
    src = load_data(tmp_path, spec=None, with_model=False)
    frame = pd.DataFrame({"id": src.ids, "label": src.labels})
    off = data_section(frame, src, "samples", max_thumbnails=0, seed=0)
    assert "--max-thumbnails 0" in off.thumbnail_note
    src.raw_image = lambda i: None  # none can be read
    none = data_section(frame, src, "samples", max_thumbnails=5, seed=0)
    assert "none of the 3 samples" in none.thumbnail_note and "vectors" not in none.thumbnail_note


# C2, D1 ---------------------------------------------------------------------------------------


def test_float_and_16bit_grey_thumbnails_are_scaled_not_black(tmp_path):
    (tmp_path / "a").mkdir()
    ramp = np.linspace(0, 1, 128 * 128, dtype=np.float32).reshape(128, 128)
    PIL.fromarray(ramp).save(tmp_path / "a" / "f.tif")
    PIL.fromarray(ramp * 4000).save(tmp_path / "a" / "g.tif")  # outside [0, 1]: stretched
    PIL.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "a" / "h.png")
    src = load_data(tmp_path, spec=None, with_model=False)
    for i in range(3):
        thumb = src.raw_image(i)
        assert thumb.dtype == np.uint8 and max(thumb.shape) == 64, src.ids[i]
        assert thumb.min() < 10 and thumb.max() > 245 and 100 < thumb.mean() < 155, src.ids[i]


# C3 -------------------------------------------------------------------------------------------


def test_a_symlink_to_a_folder_inside_the_data_is_skipped_with_a_note(tmp_path):
    _images(tmp_path / "d" / "cat", n=3)
    os.symlink(tmp_path / "d", tmp_path / "d" / "all")
    os.symlink(tmp_path / "d" / "cat", tmp_path / "d" / "cat2")
    _images(tmp_path / "elsewhere", n=2)
    os.symlink(tmp_path / "elsewhere", tmp_path / "d" / "dog")  # outside: followed
    src = load_data(tmp_path / "d", spec=None, with_model=False)
    assert sorted(src.labels) == ["cat"] * 3 + ["dog"] * 2
    assert sum("skipped: a symbolic link" in n for n in src.notes) == 2


# B3 -------------------------------------------------------------------------------------------


def test_grey_images_and_an_rgb_pytorch_model_hint_and_take_color_rgb(rgb_cnn, capsys):
    _images(rgb_cnn / "imgs" / "a", n=12, grey=True)
    argv = ["--model", "net.pt", "--constructor", "cnn5:Net", "--introspectors", "iua"]
    assert _analyze("imgs", "r", *argv) == 2
    err = _err(capsys)
    assert "--color rgb" in err and "ImageProducer" not in err
    assert _analyze("imgs", "r", *argv, "--color", "rgb") == 0


def test_nested_label_folders_are_named_in_a_note(tmp_path):
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            _images(tmp_path / split / c, n=2)
    src = load_data(tmp_path, spec=None, with_model=False)
    assert sorted(set(src.labels)) == ["train", "val"]
    assert any("train/ (cat, dog), val/ (cat, dog)" in n for n in src.notes)


def test_a_headerless_label_column_of_row_numbers_is_not_taken_for_ids(tmp_path):
    from introscope.cli._tables import labels_csv
    from introscope.exceptions import IntroscopeValueError

    ids = [str(i) for i in range(6)]  # an .npy without ids: row numbers
    (tmp_path / "l.csv").write_text("".join(f"x{i}.png,{i % 2}\n" for i in range(6)))
    with pytest.raises(IntroscopeValueError, match="no column holds the sample ids"):
        labels_csv(tmp_path / "l.csv", ids, "hint")


def test_an_output_folder_holding_the_data_leaves_every_label_folder_in(tmp_path):
    from introscope.cli._folder import image_folder

    data = tmp_path / "images"
    for label in ("cat", "dog"):
        _images(data / label, n=3)
    _images(data, n=1)  # a loose image too
    files, labels, _, notes = image_folder(data, tmp_path)  # --data images --out .
    assert len(files) == 7 and labels.count("cat") == 3 and labels.count("dog") == 3
    assert not any("output folder" in n for n in notes)


def test_a_headerless_labels_csv_with_a_repeated_row_is_still_matched_by_id(tmp_path):
    from introscope.cli._tables import labels_csv

    ids = [f"cat/{i}.png" for i in range(4)] + ["dog/0.png"]
    path = tmp_path / "labels.csv"
    rows = [f"{i},{i.split('/')[0]}\n" for i in reversed(ids)] + ["cat/0.png,cat\n"]
    path.write_text("".join(rows))
    assert labels_csv(path, ids, "ids are paths") == ["cat"] * 4 + ["dog"]


def test_a_broken_symbolic_link_to_a_folder_is_named_in_the_notes(tmp_path):
    _images(tmp_path / "d" / "cat", n=3)
    os.symlink(tmp_path / "unmounted" / "dogs", tmp_path / "d" / "dog")
    src = load_data(tmp_path / "d", spec=None, with_model=False)
    assert src.labels == ["cat"] * 3
    [note] = [n for n in src.notes if "broken symbolic link" in n]
    assert note.startswith("dog skipped") and "unmounted" in note
