"""Gaps of ``introscope analyze`` closed: exact duplicate sets ranked above near ones, readable and
unambiguous Parquet column names, the IUA JSON's mostly-dead threshold named as a threshold, and
undecodable images found before the model loads."""

import json
import os
import re
import shutil

import numpy as np
import pytest

from introscope.cli import main
from introscope.cli._columns import (
    METADATA_KEY,
    escape_response,
    readable_columns,
    unescape_response,
)
from introscope.exceptions import IntroscopeValueError

pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
pytest.importorskip("PIL")


# ---------------------------------------------------------------- column names (unit)
@pytest.mark.parametrize(
    "name",
    ["/relu3/Relu_output_0", "layer1.0.conv1", "a b", "50%", "x,y;(z)={w}", "tab\there", "é/ü"],
)
def test_escaped_response_names_read_back(name):
    escaped = escape_response(name)
    assert unescape_response(escaped) == name
    assert not re.search(r"[\s,;{}()=]", escaped)


def test_names_dnikit_squeezes_together_stay_apart():
    from introscope.introspectors.report._columns import clean_name

    a, b = "/a/bc", "/ab/c"
    assert clean_name(a) == clean_name(b)  # DNIKit's column names cannot tell them apart
    assert escape_response(a) != escape_response(b)
    assert escape_response("/relu3/Relu_output_0") == "/relu3/Relu_output_0"
    assert escape_response("a%20b") != escape_response("a b")  # a literal % is escaped too


def test_a_readable_column_that_is_already_taken_is_refused():
    renames, _ = readable_columns(
        ["id", "duplicates_ex"], "e/x", {"duplicates_{}": "duplicates_ex"}
    )
    assert renames == {"duplicates_ex": "duplicates_e/x"}
    with pytest.raises(IntroscopeValueError, match="already has"):
        readable_columns(["id", "duplicates_ex", "duplicates_e/x"], "e/x",
                         {"duplicates_{}": "duplicates_ex"})  # fmt: skip


# ---------------------------------------------------------------- an ONNX run on PNGs
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from viz.report_inputs import export_digits_onnx, write_png_folder

    cache = tmp_path_factory.getbasetemp() / "introscope-digits-cache"
    cache.mkdir(exist_ok=True)
    old = os.environ.get("INTROSCOPE_CACHE_DIR")
    os.environ["INTROSCOPE_CACHE_DIR"] = str(cache)
    root = tmp_path_factory.mktemp("gaps")
    export_digits_onnx(root / "cnn.onnx")
    pngs = write_png_folder(root / "pngs")
    out = root / "out"
    code = main(["analyze", "--model", str(root / "cnn.onnx"), "--data", str(root / "pngs"),
                 "--out", str(out), "--projection", "pca", "-q"])  # fmt: skip
    assert code == 0
    yield {"root": root, "out": out, "pngs": pngs}
    if old is None:
        os.environ.pop("INTROSCOPE_CACHE_DIR", None)
    else:
        os.environ["INTROSCOPE_CACHE_DIR"] = old


def test_parquet_columns_keep_the_onnx_response_name(run):
    import pandas as pd
    import pyarrow.parquet as pq

    path = run["out"] / "dataset_report.parquet"
    frame = pd.read_parquet(path)
    response = "/relu3/Relu_output_0"
    expected = {
        f"duplicates_{response}": "duplicates_relu3Relu_output_0",
        f"projection_{response}_x": "projection_relu3Relu_output_0_x",
        f"projection_{response}_y": "projection_relu3Relu_output_0_y",
        f"familiarity_{response}": "familiarity_relu3Relu_output_0",
    }
    assert set(expected) <= set(frame.columns)
    assert not any(c in frame.columns for c in expected.values())
    meta = json.loads(pq.read_schema(path).metadata[METADATA_KEY])
    assert {c: d["dnikit_column"] for c, d in meta["columns"].items()} == expected
    assert {d["response"] for d in meta["columns"].values()} == {response}
    assert {d["component"] for d in meta["columns"].values()} == {
        "duplicates", "projection", "familiarity"
    }  # fmt: skip
    np.testing.assert_array_equal(frame["projection_x"], frame[f"projection_{response}_x"])
    html = (run["out"] / "report.html").read_text(encoding="utf-8")
    assert f"duplicates_{response}" in html  # the files table says what the columns are


def test_iua_json_names_the_threshold_and_gives_shares(run):
    rows = json.loads((run["out"] / "iua_model.json").read_text())
    assert rows
    for row in rows:
        assert "dead fraction" not in row
        assert row["mostly dead threshold (fraction of samples)"] == 0.99
        assert row["dead unit share"] == pytest.approx(row["dead units"] / row["units"])
        assert row["mostly dead unit share"] == pytest.approx(
            row["mostly dead units"] / row["units"]
        )
        assert 0.0 <= row["dead unit share"] <= row["mostly dead unit share"] <= 1.0
        if row["channels"] is not None:
            assert row["dead channel share"] == pytest.approx(
                row["dead channels"] / row["channels"]
            )


def _groups(html):
    """(kind label, member ids) of each duplicate set shown, in page order."""
    section = html[html.index('<section id="duplicates">') :]
    section = section[: section.index("<h3>All sets</h3>")]
    chunks = section.split('<div class="group" data-kind="')[1:]
    return [
        (
            re.search(r'<span class="kind \w+">(.*?)</span>', chunk).group(1),
            re.findall(r'<div class="id">(.*?)</div>', chunk),
        )
        for chunk in chunks
    ]


def _rank(label):
    return 0 if label == "exact" else (1 if "exact copies" in label else 2)


def test_exact_copies_of_images_are_labelled_and_come_first(run):
    import html as H

    from viz.report_inputs import XSS_LABEL

    page = (run["out"] / "report.html").read_text(encoding="utf-8")
    groups = _groups(page)
    assert groups
    ranks = [_rank(label) for label, _ in groups]
    assert ranks == sorted(ranks)  # exact sets, then near ones holding copies, then the rest
    assert ranks[0] == 0 and ranks[-1] == 2  # this data has all three
    copies = {f"7/img{k:03d}.png": f"{XSS_LABEL}/copy{k}.png" for k in range(3)}
    with_copies = [(label, set(map(H.unescape, ids))) for label, ids in groups if _rank(label) < 2]
    for a, b in copies.items():  # each copy of a '7' is in a set with its source, marked so
        label, members = next((lab, g) for lab, g in with_copies if {a, b} <= g)
        assert label == "exact" if len(members) == 2 else label.startswith("near, ")
    for label, ids in groups:
        if label.startswith("near, "):
            assert 2 <= int(label.split()[1]) < len(ids)


def test_exact_sets_rank_above_larger_near_sets(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(7)
    centers = rng.normal(scale=8.0, size=(3, 16))
    x = np.concatenate([c + rng.normal(size=(50, 16)) for c in centers]).astype(np.float32)
    x[1] = x[0]  # an exact pair
    x[61:65] = x[60] + rng.normal(scale=1e-4, size=(4, 16)).astype(np.float32)  # a near set of 5
    ids = [f"s{i:03d}" for i in range(len(x))]
    pd.DataFrame({"id": ids, "embedding": list(x)}).to_parquet(tmp_path / "emb.parquet")
    out = tmp_path / "out"
    code = main(["analyze", "--data", str(tmp_path / "emb.parquet"), "--out", str(out),
                 "--introspectors", "duplicates", "-q"])  # fmt: skip
    assert code == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    groups = _groups(page)
    assert groups[0] == ("exact", ["s000", "s001"])
    near = next(ids for k, ids in groups if set(ids) & {"s060", "s061"})
    assert set(near) == {f"s{i:03d}" for i in range(60, 65)}
    assert ("near", near) in groups
    assert "1 set of exact copies" in page
    # the table of all sets: the same order, the kind in its own column
    table = page[page.index('class="dup-sets') :]
    first = re.search(r"<tbody><tr[^>]*>(.*?)</tr>", table).group(1)
    assert '<span class="kind exact">exact</span>' in first and "s000, s001" in first


def test_ranking_without_exactness_known_is_by_size():
    from introscope.viz._report_page import DataSection, ranked_groups

    groups = [[0, 1], [2, 3, 4], [5, 6, 7, 8], [9, 10]]
    data = DataSection(response="e", ids=[str(i) for i in range(11)], labels=["x"] * 11,
                       duplicate_groups=groups, duplicate_copies=[2, 2, 0, 0])  # fmt: skip
    ranked = ranked_groups(data)
    assert [list(d.members) for d in ranked] == [[0, 1], [2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert [d.label for d in ranked] == ["exact", "near, 2 exact copies", "near", "near"]
    data.duplicate_copies = None
    assert [list(d.members) for d in ranked_groups(data)] == [[5, 6, 7, 8], [2, 3, 4], [0, 1],
                                                               [9, 10]]  # fmt: skip
    assert {d.kind for d in ranked_groups(data)} == {"unknown"}


# ---------------------------------------------------------------- undecodable images
def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_truncated_png_stops_the_run_before_the_model_loads(run, tmp_path, capsys):
    folder = tmp_path / "pngs"
    shutil.copytree(run["root"] / "pngs", folder)
    _truncate(folder / "3" / "img002.png")
    (tmp_path / "junk.onnx").write_text("not a model\n")
    out = tmp_path / "out"
    # a model file that cannot load: the image is what is reported, so it was checked first
    code = main(["analyze", "--model", str(tmp_path / "junk.onnx"), "--data", str(folder),
                 "--out", str(out), "-q"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 3, err
    assert len(err.splitlines()) == 1
    assert "'3/img002.png'" in err and "1 of 123 images cannot be decoded" in err
    assert "Remove or replace" in err
    assert not out.exists()


def test_every_undecodable_image_is_named(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for k in range(12):
            pixels = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{k}.jpg", quality=90)
    _truncate(folder / "a" / "4.jpg", 0.6)
    (folder / "b" / "7.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "b" / "ok.png")
    code = main(["analyze", "--data", str(folder), "--model", str(tmp_path / "none.onnx"),
                 "--out", str(tmp_path / "out"), "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3, err
    assert "2 of 25 images cannot be decoded" in err
    assert "'a/4.jpg'" in err and "'b/7.jpg'" in err and "ok.png" not in err


# ---------------------------------------------------------------- review fixes
def _digests(field, rows):
    from introscope.base import Batch
    from introscope.cli._data_report import RowDigests

    d = RowDigests(field)
    for _ in d.wrap(lambda bs: iter([Batch({field: np.asarray(rows, np.float32)})]))(len(rows)):
        pass
    return d


def test_two_separate_pairs_of_copies_are_a_near_set():
    from introscope.viz._report_samples import DuplicateSet

    # 0 = 1 and 2 = 3, but 0 != 2: every member has a twin, yet the set is two samples
    resp = _digests("r", [[1, 0], [1, 0], [5, 5], [5, 5]])
    assert resp.copies([[0, 1, 2, 3]], 4) == [4]
    assert resp.exact([[0, 1, 2, 3]], 4) == [False]
    s = DuplicateSet([0, 1, 2, 3], 4, False)
    assert (s.kind, s.label) == ("near", "near, 4 exact copies")
    assert DuplicateSet([0, 1, 2, 3], 4).kind == "near"  # exactness unknown: not claimed
    assert DuplicateSet([0, 1], 2).kind == "exact"  # two members, each the other's copy
    # one pair with identical responses, the other with identical inputs
    resp = _digests("r", [[1], [1], [2], [3]])
    inputs = _digests("x", [[9], [8], [7], [7]])
    assert resp.copies([[0, 1, 2, 3]], 4, inputs) == [4]
    assert resp.exact([[0, 1, 2, 3]], 4, inputs) == [False]
    # one sample copied: one input digest across all members (responses may differ in a bit)
    inputs = _digests("x", [[7], [7], [7], [7]])
    assert resp.exact([[0, 1, 2, 3], [0, 1]], 4, inputs) == [True, True]
    assert resp.exact([[0, 1]], 3) is None  # digests do not cover the samples


def test_data_section_labels_two_pairs_near_and_one_copied_sample_exact():
    import pandas as pd

    from introscope.cli._data_report import data_section
    from introscope.viz._report_page import ranked_groups

    frame = pd.DataFrame({"id": [f"s{i}" for i in range(7)],
                          "duplicates_r": [0, 0, 0, 0, 1, 1, 1]})  # fmt: skip
    resp = _digests("r", [[1], [1], [2], [2], [3], [3], [3]])
    section = data_section(frame, None, "r", max_thumbnails=0, digests=resp)
    assert section.duplicate_exact == [False, True]
    ranked = ranked_groups(section)
    assert [(list(d.members), d.label) for d in ranked] == [
        ([4, 5, 6], "exact"), ([0, 1, 2, 3], "near, 4 exact copies")
    ]  # fmt: skip


def test_split_familiarity_columns_escape_the_label_dimension():
    import pandas as pd

    from introscope.cli._data_report import report_table
    from introscope.introspectors.report import _columns as dn

    response = "/relu3/Relu_output_0"
    dims = ["a{}b", "my label (coarse)"]
    old = [dn.split_familiarity_column(response, d) for d in dims]
    frame = pd.DataFrame({"id": ["0", "1"], dn.duplicates_column(response): [-1, -1],
                          old[0]: [0.0, 1.0], old[1]: [2.0, 3.0]})  # fmt: skip
    out = report_table(frame, response)
    want = [
        "splitFamiliarity_/relu3/Relu_output_0_byAttr_a%7B%7Db",
        "splitFamiliarity_/relu3/Relu_output_0_byAttr_my%20label%20%28coarse%29",
    ]
    assert want[0] in out.columns and want[1] in out.columns
    np.testing.assert_array_equal(out[want[1]], [2.0, 3.0])
    for name in want:  # Spark-safe, and the label dimension reads back
        assert not re.search(r"[\s,;{}()=]", name)
    assert unescape_response(want[1].partition("_byAttr_")[2]) == dims[1]
    meta = out.attrs["introscope"]["columns"]
    assert meta[want[0]] == {"component": "splitFamiliarity", "response": response,
                             "dnikit_column": old[0]}  # fmt: skip
    # a template's later "{}" is not the response placeholder
    renames, _ = readable_columns(["c"], "r", {"x_{}_y{}": "c"})
    assert renames == {"c": "x_r_y{}"}


def _png_bytes():
    import io

    from PIL import Image

    pixels = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def test_a_png_missing_only_its_iend_chunk_passes_the_check(tmp_path):
    from PIL import Image

    from introscope.cli._image_check import image_problem

    data = _png_bytes()
    assert data[-12:-4] == b"\x00\x00\x00\x00IEND"
    path = tmp_path / "noiend.png"
    path.write_bytes(data[:-12])
    with Image.open(path) as img:  # verify() refuses it, yet the reader decodes it
        with pytest.raises(Exception):  # noqa: B017, PT011 - Pillow's own error type
            img.verify()
    with Image.open(path) as img:
        assert img.convert("RGB").load() is not None
    assert image_problem(path) is None
    # cut inside the IDAT chunk: still named
    idat = data.index(b"IDAT")
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: idat + (len(data) - idat) // 2])
    assert image_problem(cut) is not None
