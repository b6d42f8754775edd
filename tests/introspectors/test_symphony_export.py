"""Apple's Symphony UI reads a DatasetReport's table: export its static app and open it in a
headless browser.

Symphony 1.0.1 needs jupyterlab 3 and pandas<3, so it lives in its own venv (``make
symphony-venv`` builds ``.venv-symphony``); the test skips, saying why, without it or without
Chromium. The report is built here, saved with ``to_disk`` and loaded in that venv with
``from_disk``, so the table Symphony gets is exactly ``report.data``.
"""

from __future__ import annotations

import functools
import http.server
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import threading

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from introscope.base import Batch  # noqa: E402
from introscope.introspectors import (  # noqa: E402
    DatasetReport,
    DimensionReduction,
    Familiarity,
    ReportConfig,
)
from introscope.samples import StubProducer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
SYMPHONY_PYTHON = ROOT / ".venv-symphony" / "bin" / "python"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

_EXPORT = """
import sys
from introscope.introspectors import DatasetReport
from symphony_ui import Symphony
from symphony_summary import SymphonySummary
from symphony_list import SymphonyList
report = DatasetReport.from_disk(sys.argv[1])
symphony = Symphony(report.data, id_column="id")
symphony.widget(SymphonySummary)
symphony.widget(SymphonyList)
symphony.export(sys.argv[2])
import pandas
print("pandas", pandas.__version__, "rows", len(report.data))
"""


def _symphony_python() -> pathlib.Path:
    if not SYMPHONY_PYTHON.exists():
        pytest.skip(f"{SYMPHONY_PYTHON} not found (make symphony-venv builds it)")
    probe = subprocess.run(
        [str(SYMPHONY_PYTHON), "-c", "import symphony_ui, symphony_summary, introscope"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f".venv-symphony cannot import Symphony: {probe.stderr.strip()[-300:]}")
    return SYMPHONY_PYTHON


def _report(n: int) -> DatasetReport:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(n, 8))
    emb[n - 5 :] = emb[0] + rng.normal(scale=1e-6, size=(5, 8))
    meta = {
        Batch.StdKeys.IDENTIFIER: [f"sample-{i:03d}" for i in range(n)],
        Batch.StdKeys.LABELS: {"color": [["red", "blue", ""][i % 3] for i in range(n)]},
    }
    config = ReportConfig(
        projection=DimensionReduction.Strategy.StandardPCA(2),
        familiarity=Familiarity.Strategy.GMM(_random_state=0, gaussian_count=2),
        split_familiarity_min=20,
    )
    return DatasetReport.introspect(StubProducer({"emb": emb}, meta), config=config)


def _serve(directory: pathlib.Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(
        type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
        directory=str(directory),
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/index.html"


def _page_text(url: str, profile: pathlib.Path) -> tuple[str, str]:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=20000",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    html = re.sub(r"<(style|script)\b.*?</\1>", " ", done.stdout, flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    console = "\n".join(line for line in done.stderr.splitlines() if "CONSOLE" in line)
    return text, console


def test_symphony_exports_the_report_and_shows_its_instances(tmp_path: pathlib.Path) -> None:
    python = _symphony_python()
    if not os.path.exists(CHROMIUM):
        pytest.skip("headless Chromium not found (make browser installs it)")
    n = 60
    report = _report(n)
    assert any(c.startswith("splitFamiliarity_") for c in report.data.columns)
    saved, app = tmp_path / "report", tmp_path / "app"
    report.to_disk(saved)
    done = subprocess.run(
        [str(python), "-c", _EXPORT, str(saved), str(app)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"rows {n}" in done.stdout and "pandas 2." in done.stdout
    for name in ("index.html", "script.js", "data/table.arrow", "data/widget_info.json"):
        assert (app / name).is_file(), name

    server, url = _serve(app)
    try:
        with tempfile.TemporaryDirectory() as profile:
            text, console = _page_text(url, pathlib.Path(profile))
    finally:
        server.shutdown()
    assert "Unrecognized type" not in console, console
    # Symphony's summary widget counts the rows it could read from the exported Arrow table
    assert f"# of Instances: {n}" in text, (text[:2000], console)
    clustered = int((report.data["duplicates_emb"] >= 0).sum())
    assert clustered >= 6
    assert f"duplicates_emb: {clustered}" in text, text[:2000]
