"""The HTML report at 1,000 to 100,000 points: file size, time to write it, Chromium load time.

The reference in the same run is Plotly's own offline page for the same points
(``plotly.graph_objects.Figure(Scattergl).write_html(include_plotlyjs=True)``, one trace per
label, hover text = label), which has no thumbnails, galleries or model sections. Thumbnails:
at most ``--max-thumbnails`` (5,000) of 32x32 px colour JPEGs, the worst case of the bound.
Chromium time = navigation until the page's script reports it drew the map (introscope) or the
load event plus Plotly's first draw (reference), in the same browser, alternating pages.

    .venv/bin/python benchmarks/run.py report_html [--quick]
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "viz"))  # the CDP client of the browser tests


def _images(n: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour images (like photos, not noise) of 32x32: gradients plus a blob."""
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    base = rng.random((n, 1, 1, 3))
    tilt = rng.normal(size=(n, 1, 1, 3))
    cx, cy = rng.random((2, n, 1, 1, 1))
    blob = np.exp(-((xx[None, ..., None] - cx) ** 2 + (yy[None, ..., None] - cy) ** 2) * 20)
    img = base + 0.3 * tilt * xx[None, ..., None] + 0.5 * blob
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def _report(n: int, n_labels: int, n_thumbs: int, rng: np.random.Generator) -> Any:
    from introscope.viz._report_page import DataSection, Report
    from introscope.viz._thumbs import thumbnail_uri

    labels = [f"class {i % n_labels:03d}" for i in rng.permutation(n)]
    centers = rng.normal(scale=10.0, size=(n_labels, 2))
    codes = np.array([int(s.split()[1]) for s in labels])
    xy = centers[codes] + rng.normal(size=(n, 2))
    thumbs_at = rng.choice(n, size=min(n, n_thumbs), replace=False)
    images = _images(len(thumbs_at), rng)
    data = DataSection(
        response="embedding",
        ids=[f"images/{labels[i]}/{i:06d}.jpg" for i in range(n)],
        labels=labels,
        x=xy[:, 0].astype(np.float32),
        y=xy[:, 1].astype(np.float32),
        familiarity=rng.normal(size=n).astype(np.float32),
        duplicate_groups=[[int(a), int(a) + 1] for a in range(0, min(n, 400), 20)],
        thumbnails={int(i): thumbnail_uri(img) for i, img in zip(thumbs_at, images)},
    )
    return Report(title="bench", subtitle="bench", data=data), xy, labels


def _plotly_reference(path: pathlib.Path, xy: np.ndarray, labels: list[str]) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    lab = np.asarray(labels)
    for name in sorted(set(labels)):
        m = lab == name
        fig.add_trace(
            go.Scattergl(x=xy[m, 0], y=xy[m, 1], mode="markers", name=name, hovertext=lab[m])
        )
    fig.write_html(path, include_plotlyjs=True, full_html=True, post_script="window.benchDrawn=1")


def _load_seconds(c: Any, path: pathlib.Path, flag: str) -> float:
    c.events.clear()
    start = time.perf_counter()
    c.page("Page.navigate", url=path.resolve().as_uri())
    deadline = start + 120
    while True:
        try:
            if c.evaluate(f"window.{flag} === true || window.{flag} === 1"):
                break
        except Exception:  # noqa: BLE001 - page still navigating
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{path.name} did not finish drawing within 120 s")
        time.sleep(0.02)
    took = time.perf_counter() - start
    problems = c.problems()
    if problems:
        raise RuntimeError(f"{path.name}: {problems[:3]}")
    return took


def _hover_seconds(c: Any, tries: int = 5) -> float:
    """Median seconds from a mouse move onto a point until the hover card shows a sample."""
    c.evaluate("document.getElementById('scatter').scrollIntoView()")
    times = []
    for k in range(tries):
        x, y = c.evaluate(
            f"""(function () {{
              var gd = document.getElementById('scatter'), r = gd.getBoundingClientRect();
              var fl = gd._fullLayout, t = gd.data[{k}];
              window.introscopeHovered = undefined;
              return [r.left + fl._size.l + fl.xaxis.l2p(t.x[0]),
                      r.top + fl._size.t + fl.yaxis.l2p(t.y[0])];
            }})()"""
        )
        start = time.perf_counter()
        c.mouse_move(x, y)
        while c.evaluate("window.introscopeHovered === undefined"):
            if time.perf_counter() - start > 30:
                raise RuntimeError("no hover within 30 s")
            time.sleep(0.01)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(quick: bool = False) -> dict:
    """Size and load time of the report vs Plotly's own page, at several numbers of points."""
    from chromium_cdp import Chromium, chromium_available

    from introscope.viz._report_page import render_report

    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    repeats = 2 if quick else 3
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        pages = []
        for n in sizes:
            report, xy, labels = _report(n, 100, 5000, rng)
            t0 = time.perf_counter()
            html = render_report(report)
            render_s = time.perf_counter() - t0
            ours = folder / f"report_{n}.html"
            ours.write_text(html, encoding="utf-8")
            ref = folder / f"plotly_{n}.html"
            _plotly_reference(ref, xy, labels)
            pages.append((n, ours, ref, render_s, len(report.data.thumbnails)))
        browser = chromium_available()
        c = Chromium(width=1400, height=1000, timeout=180) if browser else None
        try:
            for n, ours, ref, render_s, n_thumbs in pages:
                row: dict[str, Any] = {
                    "points": n,
                    "thumbnails": n_thumbs,
                    "report_mib": round(ours.stat().st_size / 2**20, 2),
                    "plotly_page_mib": round(ref.stat().st_size / 2**20, 2),
                    "render_s": round(render_s, 3),
                }
                if c is not None:
                    a, b = [], []
                    for _ in range(repeats):  # alternate, so load on the machine hits both
                        a.append(_load_seconds(c, ours, "introscopeReady"))
                        b.append(_load_seconds(c, ref, "benchDrawn"))
                    row["chromium_load_s"] = round(statistics.median(a), 2)
                    row["plotly_page_load_s"] = round(statistics.median(b), 2)
                    row["load_ratio"] = round(statistics.median(a) / statistics.median(b), 2)
                    _load_seconds(c, ours, "introscopeReady")
                    row["hover_s"] = round(_hover_seconds(c), 3)
                rows.append(row)
        finally:
            if c is not None:
                c.close()
    lines = [
        f"{r['points']:>7} points, {r['thumbnails']} thumbnails: {r['report_mib']} MiB "
        f"(Plotly page {r['plotly_page_mib']} MiB), written in {r['render_s']} s"
        + (
            f", Chromium {r['chromium_load_s']} s vs {r['plotly_page_load_s']} s "
            f"({r['load_ratio']}x), hover {r['hover_s']} s"
            if "chromium_load_s" in r
            else ", Chromium not installed"
        )
        for r in rows
    ]
    return {"rows": rows, "summary": lines}


if __name__ == "__main__":
    for line in run(quick="--quick" in sys.argv)["summary"]:
        print(line)
