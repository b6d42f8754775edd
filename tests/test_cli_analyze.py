"""``introscope analyze`` on an ONNX export of the digits CNN with a PNG folder, on embeddings
with no model, and on bad input; ``layers``; ``python -m introscope``; exit codes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from introscope.cli import main

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
pytest.importorskip("PIL")

from viz.report_inputs import (  # noqa: E402  (tests/viz/report_inputs.py)
    PER_LABEL,
    XSS_LABEL,
    export_digits_onnx,
    write_embeddings_parquet,
    write_png_folder,
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "introscope-digits-cache"
    cache.mkdir(exist_ok=True)
    old = os.environ.get("INTROSCOPE_CACHE_DIR")
    os.environ["INTROSCOPE_CACHE_DIR"] = str(cache)
    root = tmp_path_factory.mktemp("analyze")
    onnx_path = export_digits_onnx(root / "digits_cnn.onnx")
    for junk in ("junk.onnx", "junk.pt"):
        (root / junk).write_text("not a model\n")
    pngs = write_png_folder(root / "pngs")
    emb = write_embeddings_parquet(root / "emb.parquet")
    yield {"root": root, "onnx": onnx_path, "pngs": pngs, "emb": emb}
    if old is None:
        os.environ.pop("INTROSCOPE_CACHE_DIR", None)
    else:
        os.environ["INTROSCOPE_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def onnx_report(inputs):
    out = inputs["root"] / "onnx-report"
    old = os.umask(0o022)
    try:
        code = main(
            ["analyze", "--model", str(inputs["onnx"]), "--data", str(inputs["root"] / "pngs"),
             "--out", str(out), "--projection", "pca", "-q"]
        )  # fmt: skip
    finally:
        os.umask(old)
    assert code == 0
    return out


def test_onnx_and_png_folder_write_every_result(onnx_report, inputs):
    names = sorted(p.name for p in onnx_report.iterdir())
    assert names == [
        "dataset_report.parquet",
        "iua_model.json",
        "iua_model.png",
        "pfa_model.json",
        "report.html",
    ]
    for p in onnx_report.iterdir():  # the user's umask (022), not mkstemp's owner-only 0600
        assert p.stat().st_mode & 0o777 == 0o644, p
    assert (onnx_report / "iua_model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parquet_has_dnikit_and_embedding_atlas_columns(onnx_report, inputs):
    import pandas as pd

    frame = pd.read_parquet(onnx_report / "dataset_report.parquet")
    n = 10 * PER_LABEL + 3
    assert len(frame) == n
    for prefix in ("duplicates_", "familiarity_", "projection_"):
        assert any(c.startswith(prefix) for c in frame.columns), prefix
    assert {"id", "label", "projection_x", "projection_y"} <= set(frame.columns)
    # ids are the paths inside the folder, labels the sub-folder names
    expected = {rel: label for label, rels in inputs["pngs"]["labels"].items() for rel in rels}
    assert dict(zip(frame["id"], frame["label"])) == expected
    px = next(c for c in frame.columns if c.startswith("projection_") and c.endswith("_x")
              and c != "projection_x")  # fmt: skip
    np.testing.assert_array_equal(frame["projection_x"], frame[px].astype("float32"))
    # the three copies of 7/img00k.png are exact duplicates of them
    dup = next(c for c in frame.columns if c.startswith("duplicates_"))
    groups = frame.set_index("id")[dup]
    for k in range(3):
        a, b = groups[f"7/img{k:03d}.png"], groups[f"{XSS_LABEL}/copy{k}.png"]
        assert a >= 0 and a == b


def test_iua_json_matches_a_direct_torch_run_on_the_same_pixels(onnx_report, inputs):
    from introscope.base import pipeline
    from introscope.introspectors import IUA
    from introscope.samples import load_digits_cnn

    summary = json.loads((onnx_report / "iua_model.json").read_text())
    assert [r["response"] for r in summary] == [
        "/relu1/Relu_output_0",
        "/relu2/Relu_output_0",
        "/relu3/Relu_output_0",
    ]
    assert all(r["kind"] == "RELU" and r["samples"] == 10 * PER_LABEL + 3 for r in summary)
    images = inputs["pngs"]["images"]
    order = sorted(images, key=lambda rel: (rel.split("/")[0], rel))  # folder order, then files
    x = np.stack([images[rel] for rel in order]).astype(np.float32) / 255.0

    def produce(batch_size):
        from introscope.base import Batch

        for s in range(0, len(x), batch_size):
            yield Batch({"samples": x[s : s + batch_size]})

    model = load_digits_cnn()
    ref = IUA.introspect(
        pipeline(produce, model(["relu1", "relu2", "relu3"])), batch_size=64, channel_axis=1
    )
    for row, name in zip(summary, ["relu1", "relu2", "relu3"]):
        res = ref.results[name]
        assert row["units"] == res.num_units
        assert row["dead units"] == res.dead_units(1.0)
        assert row["mean inactive"] == pytest.approx(res.mean_inactive, abs=0.05)


def test_pfa_json_lists_recommended_sizes_and_units_to_keep(onnx_report):
    saved = json.loads((onnx_report / "pfa_model.json").read_text())
    assert saved["strategy"] == "KL"
    names = ["/conv1/Conv_output_0", "/conv2/Conv_output_0", "/fc1/Gemm_output_0"]
    assert list(saved["layers"]) == names  # model order; not the logits layer
    from introscope.introspectors.pfa import PFAPruningPlan

    plan = PFAPruningPlan.load(onnx_report / "pfa_model.json")  # the file is the plan
    assert list(plan.layers) == names
    for name in names:
        sizes = saved["layers"][name]
        assert 0 < sizes["recommended_count"] <= sizes["original_count"]
        assert len(plan.layers[name].keep) == sizes["recommended_count"]
    assert saved["layers"]["/conv1/Conv_output_0"]["original_count"] == 16
    assert saved["layers"]["/fc1/Gemm_output_0"]["original_count"] == 64


def test_report_html_is_self_contained_and_escaped(onnx_report):
    html = (onnx_report / "report.html").read_text(encoding="utf-8")
    assert html.count("Plotly") > 0 and html.count("<script>") == 2  # plotly.js once + app
    assert 'http-equiv="Content-Security-Policy"' in html
    assert "connect-src &#x27;none&#x27;" in html  # attribute-escaped quotes
    import re

    for needle in ("src=x", "onerror=alert"):  # only in escaped or JSON-escaped form
        hits = [m.start() for m in re.finditer(re.escape(needle), html)]
        assert hits
        for i in hits:
            before = html[max(0, i - 20) : i]
            assert "&lt;img " in before or "\\u003cimg " in before, html[i - 40 : i + 40]
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_embeddings_table_without_a_model(inputs, capsys):
    import pandas as pd

    out = inputs["root"] / "emb-report"
    code = main(["analyze", "--data", str(inputs["root"] / "emb.parquet"), "--out", str(out),
                 "--projection", "pca"])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert f"Report: {out / 'report.html'}" in captured.out
    assert "[1/4] opening the data" in captured.err and "done in" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["dataset_report.parquet", "report.html"]
    frame = pd.read_parquet(out / "dataset_report.parquet")
    assert frame["id"].tolist() == inputs["emb"]["ids"]
    assert frame["label"].tolist() == inputs["emb"]["labels"]
    dup = frame[next(c for c in frame.columns if c.startswith("duplicates_"))]
    assert dup[4] >= 0 and dup[4] == dup[5]
    # PCA to 2-D of the embeddings, as numpy computes it (up to sign)
    v = inputs["emb"]["vectors"]
    centered = v - v.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    ref = centered @ vt[0]
    got = frame["projection_x"].to_numpy(np.float64)
    assert abs(np.corrcoef(ref, got)[0, 1]) > 0.999
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "No model was given" in html


def test_npy_embeddings_and_labels_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    np.save(tmp_path / "emb.npy", x)
    (tmp_path / "labels.csv").write_text("label\n" + "\n".join("ab"[i % 2] for i in range(40)))
    out = tmp_path / "r"
    code = main(["analyze", "--data", str(tmp_path / "emb.npy"), "--labels",
                 str(tmp_path / "labels.csv"), "--out", str(out), "--projection", "pca", "-q",
                 "--introspectors", "projection,familiarity"])  # fmt: skip
    assert code == 0
    import pandas as pd

    frame = pd.read_parquet(out / "dataset_report.parquet")
    assert frame["label"].tolist() == ["ab"[i % 2] for i in range(40)]
    assert not any(c.startswith("duplicates_") for c in frame.columns)


def test_state_dict_with_constructor_from_the_current_folder(tmp_path, inputs, monkeypatch):
    import torch
    from introscope.samples import load_digits_split, train_digits_cnn

    (tmp_path / "mynets.py").write_text(
        "from introscope.samples import build_digits_cnn\n"
        "class Digits:\n"
        "    def __new__(cls):\n"
        "        return build_digits_cnn()\n"
    )
    torch.save(train_digits_cnn().state_dict(), tmp_path / "weights.pt")
    _, (x, y) = load_digits_split()
    np.savez(tmp_path / "digits.npz", x=x[:64], y=y[:64])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    code = main(["analyze", "--model", "weights.pt", "--constructor", "mynets:Digits",
                 "--data", "digits.npz", "--out", "out", "-q", "--introspectors", "iua,pfa"])  # fmt: skip
    assert code == 0
    summary = json.loads((tmp_path / "out" / "iua_model.json").read_text())
    assert [r["response"] for r in summary] == ["relu1", "relu2", "relu3"]
    assert summary[0]["samples"] == 64
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Not requested" in html
    assert len(html) < 500_000  # no map, so no plotly.js inlined


def test_layers_lists_kinds_shapes_and_channel_axes(inputs, capsys):
    assert main(["layers", "--model", str(inputs["onnx"]), "-v", "--debug"]) == 0
    lines = capsys.readouterr().out.splitlines()
    conv = next(line.split() for line in lines if line.startswith("/conv1/Conv_output_0"))
    assert conv == ["/conv1/Conv_output_0", "CONV_2D", "Conv", "(N,", "16,", "8,", "8)", "1"]
    relu3 = next(line.split() for line in lines if line.startswith("/relu3/"))
    assert relu3[1] == "RELU" and relu3[-1] == "-"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["analyze", "--data", "{root}/missing"], 3, "does not exist"),
        (
            ["analyze", "--data", "{root}/emb.parquet", "--model", "{root}/m.bin"],
            3,
            "does not exist",
        ),
        (["analyze", "--data", "{root}/digits_cnn.onnx"], 3, "expected a folder of images"),
        (["analyze", "--data", "{root}/emb.parquet", "--introspectors", "iua"], 2, "need a model"),
        (["analyze", "--data", "{root}/emb.parquet", "--introspectors", "x"], 2, "choose from"),
        (
            [
                "analyze",
                "--model",
                "{root}/digits_cnn.onnx",
                "--data",
                "{root}/pngs",
                "--layers",
                "nope",
            ],
            2,
            "no response named",
        ),  # fmt: skip
        (
            [
                "analyze",
                "--model",
                "{root}/digits_cnn.onnx",
                "--data",
                "{root}/pngs",
                "--layer-kind",
                "lstm",
            ],
            2,
            "no such layers",
        ),  # fmt: skip
        (
            [
                "analyze",
                "--model",
                "{root}/digits_cnn.onnx",
                "--data",
                "{root}/pngs",
                "--layer-kind",
                "wobbly",
            ],
            2,
            "is not a layer kind",
        ),  # fmt: skip
        (
            [
                "analyze",
                "--model",
                "{root}/digits_cnn.onnx",
                "--data",
                "{root}/pngs",
                "--mean",
                "0.1",
                "0.2",
            ],
            2,
            "--mean/--std",
        ),  # fmt: skip
        (
            ["analyze", "--model", "{root}/emb.parquet", "--data", "{root}/pngs"],
            3,
            "unknown model type",
        ),
        (["analyze"], 2, "--data"),
        (["analyze", "--data", "x", "--batch-size", "-3"], 2, "positive integer"),
        # --out is checked before any work: a file, or a folder inside a file
        (
            ["analyze", "--data", "{root}/emb.parquet", "--out", "{root}/emb.parquet"],
            2,
            "is a file, not a folder",
        ),
        (
            ["analyze", "--data", "{root}/emb.parquet", "--out", "{root}/emb.parquet/sub"],
            2,
            "which is a file, not a folder",
        ),
        # files that are not models: input errors (3) that name --model
        (
            ["analyze", "--model", "{root}/junk.onnx", "--data", "{root}/pngs"],
            3,
            "not a readable ONNX model",
        ),
        (
            ["analyze", "--model", "{root}/junk.pt", "--data", "{root}/pngs"],
            3,
            "also pass --constructor module:Class",
        ),
        (
            [
                "analyze",
                "--model",
                "{root}/digits_cnn.onnx",
                "--data",
                "{root}/pngs",
                "--device",
                "banana",
            ],
            2,
            "not a device for an ONNX model",
        ),
    ],
)
def test_bad_input_gives_one_line_and_a_documented_code(inputs, capsys, argv, code, message):
    argv = [a.format(root=inputs["root"]) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert message in err
    if code != 2 or "analyze:" in err:  # argparse prints usage first; ours is one line
        assert len([line for line in err.splitlines() if "error" in line]) == 1
        assert "Traceback" not in err


def test_debug_prints_the_traceback(inputs, capsys):
    assert main(["analyze", "--data", str(inputs["root"] / "missing"), "--debug"]) == 3
    assert "Traceback" in capsys.readouterr().err


def test_every_subcommand_takes_verbose_debug_and_shows_an_example():
    for command in ("analyze", "demo", "layers", "responses", "info"):
        proc = subprocess.run(
            [sys.executable, "-m", "introscope", command, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        text = proc.stdout
        assert "--verbose" in text and "--debug" in text and "example" in text, command
        assert "exit status: 0 success" in " ".join(text.split())
    assert main(["info", "-v", "--debug"]) == 0


def test_keras_model_reads_images_channels_last(inputs, tmp_path):
    keras = pytest.importorskip("keras")

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu", name="fc"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    model.save(tmp_path / "small.keras")
    out = tmp_path / "out"
    code = main(["analyze", "--model", str(tmp_path / "small.keras"), "--data",
                 str(inputs["root"] / "pngs"), "--out", str(out), "-q",
                 "--introspectors", "iua,pfa"])  # fmt: skip
    assert code == 0
    # activations are fused into conv/dense in Keras: IUA looks at those, conv per channel (NHWC)
    summary = json.loads((out / "iua_model.json").read_text())
    assert [(r["response"], r["units"], r["channels"]) for r in summary] == [
        ("conv", 6 * 6 * 8, 8),
        ("fc", 16, None),
    ]
    pfa = json.loads((out / "pfa_model.json").read_text())["layers"]
    assert {k: v["original_count"] for k, v in pfa.items()} == {"conv": 8, "fc": 16}


def test_mixed_image_sizes_without_a_model(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for label, sizes in {"wide": [(40, 20), (33, 17)], "tall": [(12, 30), (16, 16)]}.items():
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for k, (w, h) in enumerate(sizes * 6):
            mode = "RGB" if k % 2 else "L"
            shape = (h, w, 3) if mode == "RGB" else (h, w)
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(
                tmp_path / "imgs" / label / f"{k}.png"
            )
    out = tmp_path / "out"
    code = main(["analyze", "--data", str(tmp_path / "imgs"), "--image-size", "16", "12",
                 "--out", str(out), "--projection", "pca", "-q"])  # fmt: skip
    assert code == 0
    import pandas as pd

    frame = pd.read_parquet(out / "dataset_report.parquet")
    assert len(frame) == 24 and sorted(set(frame["label"])) == ["tall", "wide"]
    html = (out / "report.html").read_text()
    assert "24 images in 2 label folders, resized to 16x12" in html
    assert html.count("data:image/") >= 24  # every sample has a thumbnail


def test_a_broken_image_stops_the_run_and_writes_no_report(tmp_path):
    from PIL import Image

    (tmp_path / "imgs" / "a").mkdir(parents=True)
    for k in range(4):
        Image.fromarray(np.full((8, 8), 40 * k, np.uint8)).save(
            tmp_path / "imgs" / "a" / f"{k}.png"
        )
    (tmp_path / "imgs" / "a" / "9.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    code = main(["analyze", "--data", str(tmp_path / "imgs"), "--out", str(out), "-q"])
    assert code == 3
    assert not (out / "report.html").exists()
    assert not out.exists() or not any(out.iterdir())


def test_max_thumbnails_is_a_hard_cap(inputs, tmp_path):
    out = tmp_path / "out"
    code = main(["analyze", "--model", str(inputs["onnx"]), "--data", str(inputs["root"] / "pngs"),
                 "--out", str(out), "--projection", "pca", "-q", "--max-thumbnails", "5",
                 "--introspectors", "familiarity,projection"])  # fmt: skip
    assert code == 0
    html = (out / "report.html").read_text()
    import re

    payload = json.loads(re.search(r'id="introscope-data">(.*?)</script>', html, re.S).group(1))
    assert len(payload["thumbs"]) == 5
    assert "5 of 123 samples embedded" in html
    assert main(["analyze", "--data", "x", "--max-thumbnails", "-1"]) == 2


def test_one_model_pass_feeds_iua_and_pfa_as_their_own_pass_would(onnx_report, inputs, capsys):
    """With data sections, the model runs once: the data pass feeds IUA and PFA, and their
    results equal those of a separate pass (``--introspectors iua,pfa``)."""
    assert 10 * PER_LABEL + 3 >= 40  # the shared pass needs 40 samples or more
    out = inputs["root"] / "model-only"
    code = main(
        ["analyze", "--model", str(inputs["onnx"]), "--data", str(inputs["root"] / "pngs"),
         "--out", str(out), "--introspectors", "iua,pfa"]
    )  # fmt: skip
    assert code == 0
    assert "one pass over" in capsys.readouterr().err
    for name in ("iua_model.json", "pfa_model.json"):
        alone = json.loads((out / name).read_text())
        shared = json.loads((onnx_report / name).read_text())
        assert shared == alone, name
    # the shared run says where IUA and PFA came from
    again = inputs["root"] / "shared-again"
    assert main(["analyze", "--model", str(inputs["onnx"]), "--data",
                 str(inputs["root"] / "pngs"), "--out", str(again), "--projection", "pca",
                 "--introspectors", "iua,pfa,duplicates"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "fed by the data pass" in err and "one pass over" not in err
    for name in ("iua_model.json", "pfa_model.json"):
        assert json.loads((again / name).read_text()) == json.loads((out / name).read_text())


def test_labels_csv_with_a_byte_order_mark_and_without_an_id_column(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "emb.npy", rng.normal(size=(12, 4)).astype(np.float32))
    # Excel's "CSV UTF-8" starts with a BOM; rows in reverse order, matched by id.
    rows = "".join(f"{i},L{i}\n" for i in reversed(range(12)))
    (tmp_path / "bom.csv").write_text("id,label\n" + rows, encoding="utf-8-sig")
    argv = ["analyze", "--data", str(tmp_path / "emb.npy"), "--out", str(tmp_path / "r"),
            "--projection", "pca", "-q", "--introspectors", "projection"]  # fmt: skip
    assert main([*argv, "--labels", str(tmp_path / "bom.csv")]) == 0
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "r" / "dataset_report.parquet")
    assert frame["label"].tolist() == [f"L{i}" for i in range(12)]
    (tmp_path / "key.csv").write_text("key,label\n" + rows)
    assert main([*argv, "--labels", str(tmp_path / "key.csv")]) == 2


def test_a_state_dict_that_does_not_fit_says_why_on_one_line(tmp_path, inputs, capsys, monkeypatch):
    import torch

    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "sd.pt")
    (tmp_path / "othernet.py").write_text(
        "import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.fc = torch.nn.Linear(64, 10)\n"
        "    def forward(self, x):\n        return self.fc(x.flatten(1))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code = main(["analyze", "--model", "sd.pt", "--constructor", "othernet:Net", "--data",
                 str(inputs["root"] / "pngs"), "--out", str(tmp_path / "r"), "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3, err
    (line,) = err.strip().splitlines()  # one line, with the key facts of torch's long message
    assert "does not fit Net" in line and "2 of Net's 2 keys missing (fc.bias, fc.weight)" in line
    assert "2 unexpected keys (bias, weight)" in line


def test_one_greyscale_image_does_not_decide_a_colour_folders_channels(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / label / f"{i}.png")
    (tmp_path / "imgs" / "aaa").mkdir()  # sorts first
    Image.fromarray(rng.integers(0, 255, (10, 10), dtype=np.uint8)).save(
        tmp_path / "imgs" / "aaa" / "grey.png"
    )
    from introscope.cli._data import load_data

    source = load_data(tmp_path / "imgs", spec=None, with_model=False)
    assert source.channels == 3


def test_too_few_samples_for_a_part_is_found_before_the_work(tmp_path, capsys):
    np.save(tmp_path / "e5.npy", np.random.default_rng(0).random((5, 4)).astype(np.float32))
    np.save(tmp_path / "e25.npy", np.random.default_rng(0).random((25, 4)).astype(np.float32))
    out = str(tmp_path / "r")
    assert main(["analyze", "--data", str(tmp_path / "e5.npy"), "--out", out, "-q"]) == 2
    assert "--introspectors familiarity,projection" in capsys.readouterr().err
    argv = ["analyze", "--data", str(tmp_path / "e25.npy"), "--out", out, "-q"]
    assert main([*argv, "--projection", "tsne"]) == 2
    assert "use --projection pca" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing was written


def test_summary_lists_only_what_ran_and_stale_files_are_reported(tmp_path, inputs, caplog):
    out = tmp_path / "r"
    out.mkdir()
    (out / "iua_old.json").write_text("{}")
    code = main(["analyze", "--model", str(inputs["onnx"]), "--data", str(inputs["root"] / "pngs"),
                 "--out", str(out), "--introspectors", "duplicates", "-q"])  # fmt: skip
    assert code == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "IUA layers" not in html and "PFA layers" not in html
    assert "IUA and PFA: not requested" in html
    assert "iua_old.json" in caplog.text and "earlier run" in caplog.text


def test_report_data_fact_counts_labels_in_words() -> None:
    from introscope.cli._analyze import _label_count
    from introscope.cli._tables import NO_LABEL

    assert _label_count([NO_LABEL] * 5) == "unlabelled"
    assert _label_count(["a", "a"]) == "1 label"
    assert _label_count(["a", "b", NO_LABEL]) == "2 labels, 1 without a label"
