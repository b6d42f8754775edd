"""``introscope analyze`` after the report audit (aud-report): ``$`` in model and layer names
(1), layers PFA could not analyse (2), SIGTERM and stale temporary files (5), permissions under a
stricter umask (6), checks made before the model pass (7)."""

import json
import os
import pathlib
import signal
import stat
import sys

import numpy as np
import pytest

from introscope.cli import EXIT_TERMINATED, Terminated, _sigterm_as_interrupt, main
from introscope.cli import _analysis as A

NETS = """
import torch


class Net(torch.nn.Module):  # conv: 8 units, fc: 16 units, a layer named with dollars
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.add_module("relu_$x$", torch.nn.ReLU())
        self.pool = torch.nn.AdaptiveAvgPool2d(2)
        self.fc = torch.nn.Linear(32, 16)
        self.relu2 = torch.nn.ReLU()
        self.out = torch.nn.Linear(16, 6)

    def forward(self, x):
        x = self.pool(getattr(self, "relu_$x$")(self.conv(x))).flatten(1)
        return self.out(self.relu2(self.fc(x)))
"""


def _images(root: pathlib.Path, labels=("cat", "dog"), per: int = 6) -> pathlib.Path:
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    for label in labels:
        (root / label).mkdir(parents=True, exist_ok=True)
        for k in range(per):
            pixels = rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)
            image.fromarray(pixels).save(root / label / f"img{k}.png")
    return root


@pytest.fixture
def net(tmp_path, monkeypatch):
    """``audit8net:Net`` importable from the tmp folder; its state dict under a file name that
    matplotlib would read as mathtext."""
    torch = pytest.importorskip("torch")
    (tmp_path / "audit8net.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "audit8net", raising=False)
    import audit8net

    torch.manual_seed(0)
    path = tmp_path / "price_$5_and_$10^2.pt"
    torch.save(audit8net.Net().state_dict(), path)
    return path


def _embeddings(path: pathlib.Path, n: int = 24) -> pathlib.Path:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": [f"s{i}" for i in range(n)], "label": ["a", "b"] * (n // 2)})
    frame["embedding"] = list(rng.normal(size=(n, 6)).astype(np.float32))
    frame.to_parquet(path)
    return path


def _analyze(*args: str) -> int:
    return main(["analyze", "-q", *args])


def _text(html: str) -> str:
    import re

    html = re.sub(r"<(script|style).*?</\1>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub("<[^>]+>", " ", html))


# --- 1: "$...$" in a model file name and a layer name -------------------------------------------


def test_dollars_in_model_and_layer_names_are_drawn_as_they_are(net, tmp_path):
    data = _images(tmp_path / "imgs", per=6)
    out = tmp_path / "out"
    assert _analyze("--model", str(net), "--constructor", "audit8net:Net", "--data", str(data),
                    "--out", str(out), "--introspectors", "iua,pfa") == 0  # fmt: skip
    assert (out / "report.html").is_file() and (out / "iua_model.png").stat().st_size > 0
    rows = json.loads((out / "iua_model.json").read_text())
    assert "relu_$x$" in [r["response"] for r in rows]


def test_charts_keep_user_strings_literal():
    pytest.importorskip("matplotlib")
    import io

    import matplotlib.pyplot as plt

    from introscope.viz._iua import iua_chart
    from introscope.viz._pfa import pfa_chart

    row = {"response": "relu_$x$", "shape": (4,), "units": 4, "dead units": 1,
           "mostly dead units": 1, "dead fraction": 0.99, "mean inactive": 1.0,
           "std inactive": 0.5, "channels": None}  # fmt: skip
    ax = iua_chart([(row, np.array([0.0, 1.0, 0.5, 0.2]), None)])
    assert ax.get_title(loc="left").startswith("relu_$x$")
    ax.figure.savefig(io.BytesIO(), format="png")  # a bad "$5 ... $10^2" would raise here
    plt.close(ax.figure)
    rows = [{"layer name": "a_$5_and_$10^2", "original count": 8, "recommended count": 4},
            {"layer name": "b$", "note": "not analysed: fewer samples (1) than units (8)"}]  # fmt: skip
    ax = pfa_chart(rows)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a_$5_and_$10^2"]
    assert "b$" in ax.get_title()
    ax.figure.savefig(io.BytesIO(), format="png")
    plt.close(ax.figure)


# --- 2: layers PFA could not analyse -------------------------------------------------------------


def test_layers_pfa_could_not_analyse_are_in_the_report_and_the_plan(net, tmp_path):
    from introscope.introspectors.pfa import PFAPruningPlan

    data = _images(tmp_path / "ten", per=6)  # 12 samples: conv (8 units) yes, fc (16) no
    out = tmp_path / "out"
    assert _analyze("--model", str(net), "--constructor", "audit8net:Net", "--data", str(data),
                    "--out", str(out), "--introspectors", "iua,pfa") == 0  # fmt: skip
    plan = json.loads((out / "pfa_model.json").read_text())
    assert list(plan["layers"]) == ["conv"]
    assert plan["not_analysed"] == {"fc": "not analysed: fewer samples (12) than units (16)"}
    assert list(PFAPruningPlan.load(out / "pfa_model.json").layers) == ["conv"]
    text = _text((out / "report.html").read_text())
    assert "fc – – – KL – not analysed: fewer samples (12) than units (16)" in text
    assert "PFA layers conv, fc (not analysed: fc; see Model health)" in text


def test_no_plan_file_when_pfa_analyses_no_layer(net, tmp_path):
    data = _images(tmp_path / "one", labels=("cat",), per=1)
    out = tmp_path / "out"
    assert _analyze("--model", str(net), "--constructor", "audit8net:Net", "--data", str(data),
                    "--out", str(out), "--introspectors", "iua,pfa") == 0  # fmt: skip
    assert not (out / "pfa_model.json").exists()
    text = _text((out / "report.html").read_text())
    assert "conv – – – KL – not analysed: fewer samples (1) than units (8)" in text
    assert "so no pfa_model.json was written" in text
    assert "introspectors iua (pfa skipped: see Model health)" in text
    files = text[text.index("Files beside this report") :]
    assert "pfa_model.json" not in files


# --- 5: SIGTERM, and temporary files a killed run left ------------------------------------------


def test_sigterm_raises_like_ctrl_c_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), _sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between two bytecodes
            pass
    assert signal.getsignal(signal.SIGTERM) is before
    assert issubclass(Terminated, KeyboardInterrupt)


def test_sigterm_while_writing_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    data = _embeddings(tmp_path / "emb.parquet")
    out = tmp_path / "out"

    def killed(table, where, **kwargs):  # SIGTERM half way through the Parquet file
        where.write(b"PAR1 partial")
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
        raise AssertionError("SIGTERM did not stop the write")

    monkeypatch.setattr(pq, "write_table", killed)
    code = _analyze("--data", str(data), "--out", str(out), "--projection", "pca")
    assert code == EXIT_TERMINATED == 143
    assert "introscope: terminated" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == []  # no report, no .tmp file


def test_stale_temporary_files_of_our_own_are_removed(tmp_path):
    data = _embeddings(tmp_path / "emb.parquet")
    out = tmp_path / "out"
    out.mkdir()
    ours = [".report.html.1eabb11905d2.tmp", ".dataset_report.parquet.0123456789ab.tmp"]
    others = [".notes.txt.1eabb11905d2.tmp", ".report.html.xyz.tmp", "report.html.1eabb11905d2.tmp"]
    for name in ours + others:
        (out / name).write_bytes(b"left over")
    assert _analyze("--data", str(data), "--out", str(out), "--projection", "pca") == 0
    names = {p.name for p in out.iterdir()}
    assert not names & set(ours)
    assert set(others) <= names


# --- 6: a stricter umask on a second run ---------------------------------------------------------


def test_every_file_gets_the_current_umask_on_a_rerun(tmp_path):
    data = _embeddings(tmp_path / "emb.parquet")
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        assert _analyze("--data", str(data), "--out", str(out), "--projection", "pca") == 0
        assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}
        os.umask(0o077)
        assert _analyze("--data", str(data), "--out", str(out), "--projection", "pca") == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert set(modes) == {"report.html", "dataset_report.parquet"}
    assert set(modes.values()) == {0o600}


# --- 7: checked before the model pass ------------------------------------------------------------


def _no_model_pass(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model pass ran")

    monkeypatch.setattr(A, "run_model_pass", refuse)
    monkeypatch.setattr(A.ModelFeed, "feed", refuse)


def test_too_few_samples_for_familiarity_is_found_up_front(net, tmp_path, monkeypatch, capsys):
    data = _images(tmp_path / "one", labels=("cat",), per=3)
    out = tmp_path / "out"
    _no_model_pass(monkeypatch)
    args = ["--model", str(net), "--constructor", "audit8net:Net", "--data", str(data),
            "--out", str(out), "--projection", "pca"]  # fmt: skip
    assert _analyze(*args, "--introspectors", "iua,pfa,familiarity") == 2
    err = capsys.readouterr().err
    assert "--data has 3 samples; familiarity fits a mixture of 5 Gaussians" in err
    assert "leave it out with --introspectors iua,pfa" in err
    assert _analyze(*args) == 2  # every part that cannot run, at once
    err = capsys.readouterr().err
    assert "familiarity" in err and "duplicates" in err
    suggested = err.split("--introspectors ")[-1].split()[0]
    assert suggested == "iua,pfa,projection"
    assert set(suggested.split(",")) <= set(A.COMPONENTS)
    assert not out.exists()


def test_suggested_introspectors_run(tmp_path, capsys):
    data = _embeddings(tmp_path / "emb.parquet", n=4)
    out = tmp_path / "out"
    assert _analyze("--data", str(data), "--out", str(out), "--projection", "pca") == 2
    suggested = capsys.readouterr().err.split("--introspectors ")[-1].split()[0]
    assert suggested == "projection"
    assert _analyze("--data", str(data), "--out", str(out), "--projection", "pca",
                    "--introspectors", suggested) == 0  # fmt: skip


def test_a_folder_named_report_html_is_found_up_front(tmp_path, monkeypatch, capsys):
    import introscope.cli._analyze as an

    data = _embeddings(tmp_path / "emb.parquet")
    out = tmp_path / "out"
    (out / "report.html").mkdir(parents=True)

    def refuse(*args, **kwargs):
        raise AssertionError("the data were read")

    monkeypatch.setattr(an, "load_data", refuse)
    assert _analyze("--data", str(data), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "holds a folder named 'report.html', where the report writes a file" in err


def test_the_demo_finds_a_folder_named_like_its_output_up_front(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "iua_healthy.png").mkdir(parents=True)
    assert main(["demo", "--out", str(out), "--no-data"]) == 2
    err = capsys.readouterr().err
    assert "holds a folder named 'iua_healthy.png', where the report writes a file" in err
    assert sorted(p.name for p in out.iterdir()) == ["iua_healthy.png"]  # nothing trained/written
