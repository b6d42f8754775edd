"""The ``introscope`` command: demo, responses, info and bad arguments."""

import pytest

from introscope.cli import main

pytest.importorskip("torch")


@pytest.fixture
def shared_cache(tmp_path_factory, monkeypatch):
    # Same folder as tests/samples/test_digits.py: the CNNs train once per session.
    path = tmp_path_factory.getbasetemp() / "introscope-digits-cache"
    path.mkdir(exist_ok=True)
    monkeypatch.setenv("INTROSCOPE_CACHE_DIR", str(path))
    return path


def test_demo_prints_tables_and_saves_heatmaps(tmp_path, shared_cache, capsys):
    pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    out = tmp_path / "figures"
    assert main(["demo", "--out", str(out), "--no-data", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "healthy" in text and "dying ReLU" in text
    for response in ("relu1", "relu2", "relu3", "conv1", "conv2"):
        assert response in text
    assert f"Report: {out / 'report.html'}" in text
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "iua_dying_relu.json",
        "iua_dying_relu.png",
        "iua_healthy.json",
        "iua_healthy.png",
        "pfa_dying_relu.json",
        "pfa_healthy.json",
        "report.html",
    ]
    pngs = [name for name in files if name.endswith(".png")]
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(out / name) in text
    assert sorted(p.name for p in shared_cache.iterdir() if p.suffix == ".npz") == [
        "digits_cnn-dying_relu-seed0-v1.npz",
        "digits_cnn-healthy-seed0-v1.npz",
    ]


def test_demo_data_pass_feeds_the_healthy_cnns_iua_and_pfa(tmp_path, shared_cache, capsys):
    """With the data sections on, the healthy CNN runs once: the results equal a pass of its own."""
    import io

    from introscope.cli import run_demo

    pytest.importorskip("sklearn")
    run_demo(tmp_path / "data", projection="pca", stream=io.StringIO())
    stages = capsys.readouterr().err  # the progress of the stages
    run_demo(tmp_path / "alone", data=False, stream=io.StringIO(), quiet=True)
    assert "IUA and PFA of healthy CNN: 5 layers, fed by the data pass" in stages
    assert "IUA and PFA of dying ReLU CNN: one pass over" in stages
    for name in ("iua_healthy.json", "pfa_healthy.json", "iua_dying_relu.json"):
        fed = (tmp_path / "data" / name).read_text()
        assert fed == (tmp_path / "alone" / name).read_text(), name


def test_demo_iua_table_shows_dead_units(tmp_path, shared_cache):
    import io

    from introscope.cli import run_demo

    stream = io.StringIO()
    run_demo(tmp_path, pfa=False, data=False, stream=stream, quiet=True)
    text = stream.getvalue()
    assert "Principal Filter Analysis" not in text
    row = next(line for line in text.splitlines() if line.startswith("relu2"))
    # units, mean inactive, dead %, channels, dead channels for healthy then dying:
    # the dying variant has far more dead units and dead channels
    values = [float(v) for v in row.split()[1:]]
    assert len(values) == 10
    assert values[0] == values[5] == 2048 and values[3] == values[8] == 32
    assert values[2] < 30.0 and values[7] > 60.0
    assert values[4] < values[9]


def test_responses_of_a_state_dict(tmp_path, shared_cache, capsys):
    import torch
    from introscope.samples import train_digits_cnn

    path = tmp_path / "cnn.pt"
    torch.save(train_digits_cnn().state_dict(), path)
    code = main(
        [
            "responses",
            str(path),
            "--constructor",
            "introscope.samples.digits:build_digits_cnn",
            "--input-shape",
            "8,8",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "kind", "type", "shape", "channel", "axis"]
    assert lines[1].split()[:2] == ["x", "INPUT"]
    conv1 = next(line for line in lines if line.startswith("conv1 "))
    assert conv1.split()[1:5] == ["CONV_2D", "Conv2d", "(N,", "16,"]
    assert conv1.split()[-1] == "1"  # channel axis


def test_errors_exit_nonzero(tmp_path, capsys):
    assert main(["responses", str(tmp_path / "missing.pt")]) == 3
    assert "does not exist" in capsys.readouterr().err
    assert main(["demo", "--batch-size", "0"]) == 2
    assert "positive integer" in capsys.readouterr().err
    assert main(["responses", str(tmp_path), "--constructor", "nonsense"]) == 2
    assert "package.module:Class" in capsys.readouterr().err
    assert main(["responses", "x.pt", "--input-shape", "8,a"]) == 2


def test_info(capsys):
    import introscope

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("introscope ")
    for module in ("torch", "onnx", "ray", "pacmap", "PIL", "cv2", "torch_pruning", "tensorflow"):
        assert f"  {module} " in out  # every optional package, with its version or its extra
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"introscope {introscope.__version__}\n"


def test_a_closed_pipe_is_not_an_error(tmp_path):
    import subprocess
    import sys

    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    # `introscope layers --model big.onnx | head -1`: 4,000 responses, more than a pipe holds.
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(4000)]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("t4000", TensorProto.FLOAT, [None, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "big.onnx"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "introscope", "layers", "--model", str(tmp_path / "big.onnx")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.read(1)
    proc.stdout.close()  # the reader goes away
    assert proc.wait(timeout=120) == 0
    assert b"Broken pipe" not in proc.stderr.read()


def test_demo_seed_is_the_training_seed_and_images_stay_held_out(
    tmp_path, shared_cache, monkeypatch
):
    """``--seed`` retrains the CNNs; the demo still reads the split they were trained on."""
    import io

    import numpy as np

    import introscope.samples as samples
    from introscope.cli import run_demo

    seen = []
    real = samples.load_digits_dataset

    def recording(**kwargs):
        producer = real(**kwargs)
        seen.append(producer)
        return producer

    monkeypatch.setattr(samples, "load_digits_dataset", recording)
    # Seed-1 weights from the cache (a copy of the seed-0 ones, so nothing trains again).
    import shutil

    for variant in ("healthy", "dying_relu"):
        samples.train_digits_cnn(dying_relu=variant != "healthy", seed=0)
        name = f"digits_cnn-{variant}-seed{{}}-v1.npz"
        shutil.copy(shared_cache / name.format(0), shared_cache / name.format(1))
    run_demo(tmp_path, seed=1, pfa=False, data=False, stream=io.StringIO(), quiet=True)
    (x_train, _), _ = samples.load_digits_split()  # what train_digits_cnn trains on
    images = np.concatenate(
        [b.fields["samples"] for b in seen[0].subset(datasets="test")(512)]
    ).reshape(-1, 64)
    train = {row.tobytes() for row in x_train.reshape(-1, 64)}
    test = {row.tobytes() for row in images}
    assert len(images) == 450
    # Digits has a few exact duplicate images; beyond those no test image was trained on.
    assert len(test & train) <= 5


def test_every_missing_extra_is_named_at_once(tmp_path, monkeypatch, capsys):
    import importlib.util

    import numpy as np

    real = importlib.util.find_spec
    absent = {"torch", "umap", "pyarrow"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name, *a)
    )
    assert main(["demo", "--out", str(tmp_path / "out")]) == 4
    err = capsys.readouterr().err
    assert "'torch' (the demo's CNNs), 'pyarrow' (the report's Parquet table), 'umap'" in err
    assert "pip install 'introscope[torch,report,dimreduction]'" in err
    data = tmp_path / "emb.npy"
    np.save(data, np.zeros((20, 3), np.float32))
    assert main(["analyze", "--data", str(data), "--out", str(tmp_path / "r")]) == 4
    assert "pip install 'introscope[report,dimreduction]'" in capsys.readouterr().err
