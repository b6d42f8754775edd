"""The report in real headless Chromium: loads offline with no console error, every section is
there, the scatter has one point per sample, hovering shows the sample, labels that look like
HTML render as text and run nothing."""

import io
import os
import pathlib

import pytest
from chromium_cdp import Chromium, chromium_available, hover_point, load_report, shot

pytestmark = pytest.mark.skipif(
    not chromium_available(), reason="headless Chromium (/usr/bin/chromium) is not installed"
)
pytest.importorskip("torch")
pytest.importorskip("plotly")
pytest.importorskip("pyarrow")
pytest.importorskip("PIL")

from report_inputs import (  # noqa: E402
    PER_LABEL,
    XSS_LABEL,
    export_digits_onnx,
    write_embeddings_parquet,
    write_png_folder,
)

SECTIONS = ("summary", "model-health", "data-map", "familiarity", "duplicates", "files")


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "introscope-digits-cache"
    cache.mkdir(exist_ok=True)
    old = os.environ.get("INTROSCOPE_CACHE_DIR")
    os.environ["INTROSCOPE_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("INTROSCOPE_CACHE_DIR", None)
    else:
        os.environ["INTROSCOPE_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory, digits_cache):
    from introscope.cli import run_demo

    out = tmp_path_factory.mktemp("demo")
    run_demo(out, stream=io.StringIO(), quiet=True)  # as `make demo` runs it (UMAP map)
    return out / "report.html"


@pytest.fixture(scope="module")
def analyze_report(tmp_path_factory, digits_cache):
    from introscope.cli import main

    root = tmp_path_factory.mktemp("analyze-browser")
    export_digits_onnx(root / "cnn.onnx")
    write_png_folder(root / "pngs")
    code = main(["analyze", "--model", str(root / "cnn.onnx"), "--data", str(root / "pngs"),
                 "--out", str(root / "out"), "--projection", "pca", "-q"])  # fmt: skip
    assert code == 0
    return root / "out" / "report.html"


@pytest.fixture(scope="module")
def embeddings_report(tmp_path_factory):
    from introscope.cli import main

    root = tmp_path_factory.mktemp("emb-browser")
    write_embeddings_parquet(root / "emb.parquet")
    code = main(["analyze", "--data", str(root / "emb.parquet"), "--out", str(root / "out"),
                 "--projection", "pca", "-q"])  # fmt: skip
    assert code == 0
    return root / "out" / "report.html"


@pytest.fixture(scope="module")
def browser():
    with Chromium(width=1400, height=1000) as c:
        yield c


def _assert_clean(c, path):
    assert c.problems() == []
    assert c.requests() == [pathlib.Path(path).resolve().as_uri()]  # nothing else, offline


def _points(c):
    return c.evaluate("document.getElementById('scatter').data.reduce((s, t) => s + t.x.length, 0)")


def _hover(c, trace, point):
    """Move the mouse onto a point; return (index hovered, its distance from the mouse in px)."""
    x, y = hover_point(c, trace, point)
    idx = c.evaluate("window.introscopeHovered")
    dist = c.evaluate(
        f"""(function () {{
          var gd = document.getElementById('scatter'), r = gd.getBoundingClientRect();
          var fl = gd._fullLayout, D = JSON.parse(
              document.getElementById('introscope-data').textContent);
          var m = window.introscopeMembers, i = {idx}, t, p;
          for (t = 0; t < m.length; t++) {{ p = m[t].indexOf(i); if (p >= 0) break; }}
          var px = r.left + fl._size.l + fl.xaxis.l2p(gd.data[t].x[p]);
          var py = r.top + fl._size.t + fl.yaxis.l2p(gd.data[t].y[p]);
          return Math.hypot(px - {x}, py - {y});
        }})()"""
    )
    return idx, dist


def _card(c):
    return c.evaluate(
        """(function () {
          var D = JSON.parse(document.getElementById('introscope-data').textContent);
          var img = document.getElementById('hover-img');
          return {label: document.getElementById('hover-label').textContent,
                  id: document.getElementById('hover-id').textContent,
                  fam: document.getElementById('hover-fam').textContent,
                  src: img.getAttribute('src'), shown: img.style.display,
                  ids: D.ids, thumbs: D.thumbs};
        })()"""
    )


def test_demo_report_loads_with_every_section(browser, demo_report):
    c = load_report(browser, demo_report)
    _assert_clean(c, demo_report)
    for anchor in (*SECTIONS, "comparison"):
        assert c.evaluate(f"!!document.getElementById('{anchor}')"), anchor
    models = c.evaluate("[...document.querySelectorAll('article.model')].map(a => a.dataset.model)")
    assert models == ["healthy CNN", "dying ReLU CNN"]
    assert _points(c) == 450
    assert c.evaluate("document.getElementById('scatter').data.every(t => t.type === 'scattergl')")
    assert c.evaluate("!!document.querySelector('#scatter canvas')")  # WebGL drew
    legend = c.evaluate("[...document.querySelectorAll('.legend-label')].map(e => e.textContent)")
    assert len(legend) == 10 and sum(int(t.split("(")[1][:-1]) for t in legend) == 450
    # the comparison table: the dying twin has more dead units in every ReLU layer
    rows = c.evaluate(
        "[...document.querySelectorAll('#comparison table.compare tbody tr')]"
        ".map(r => [...r.cells].map(td => td.textContent))"
    )
    assert [r[0] for r in rows] == ["relu1", "relu2", "relu3"]
    for row in rows:  # layer, then dead units / dead channels / mean inactive per model
        healthy, dying = (int(cell.split()[0]) for cell in (row[1], row[4]))
        assert dying > healthy
        if row[0] != "relu3":  # conv ReLUs have a channel view
            assert int(row[5].split(" / ")[0]) > int(row[2].split(" / ")[0])
    facts = c.evaluate("document.querySelector('#comparison p.facts').textContent")
    assert "healthy CNN: test accuracy" in facts and "dying ReLU CNN: test accuracy" in facts
    assert c.evaluate("document.querySelectorAll('#least-familiar .card img').length") == 12
    assert c.evaluate("document.querySelectorAll('img.heatmap').length") == 2
    shot(c, "demo_top.png")


def test_demo_hover_shows_thumbnail_label_and_familiarity(browser, demo_report):
    c = load_report(browser, demo_report)
    idx, dist = _hover(c, 3, 5)
    assert dist <= 6.0
    card = _card(c)
    assert card["id"] == card["ids"][idx]
    assert card["label"] in {str(d) for d in range(10)}
    assert card["shown"] == "block" and card["src"] == card["thumbs"][str(idx)]
    assert card["src"].startswith("data:image/png;base64,")
    float(card["fam"])
    shot(c, "demo_map.png")
    _assert_clean(c, demo_report)


def test_analyze_report_renders_html_like_labels_as_text(browser, analyze_report):
    c = load_report(browser, analyze_report)
    _assert_clean(c, analyze_report)
    for anchor in SECTIONS:
        assert c.evaluate(f"!!document.getElementById('{anchor}')"), anchor
    assert _points(c) == 10 * PER_LABEL + 3
    assert c.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert c.evaluate(f"document.body.innerText.includes({XSS_LABEL!r})")
    legend = c.evaluate("[...document.querySelectorAll('.legend-label')].map(e => e.textContent)")
    assert f"{XSS_LABEL} (3)" in legend
    # the three copies share their duplicate group with the originals, labels shown as text
    texts = c.evaluate("[...document.querySelectorAll('#duplicates .group')].map(g => g.innerText)")
    assert any(XSS_LABEL in t and "7/img000.png" in t for t in texts)
    # hover a point of that label: the card shows the label as text
    trace = legend.index(f"{XSS_LABEL} (3)")
    idx, _ = _hover(c, trace, 0)
    card = _card(c)
    assert card["id"] == card["ids"][idx]
    if card["id"].startswith(XSS_LABEL):  # the copy, not the original under it
        assert card["label"] == XSS_LABEL
    _assert_clean(c, analyze_report)  # no alert() dialog, no error


def test_embeddings_report_has_data_sections_without_thumbnails(browser, embeddings_report):
    c = load_report(browser, embeddings_report)
    _assert_clean(c, embeddings_report)
    assert _points(c) == 180
    assert "No model was given" in c.evaluate("document.getElementById('model-health').innerText")
    _hover(c, 0, 0)
    card = _card(c)
    assert card["shown"] == "none" and card["src"] is None
    assert c.evaluate("document.getElementById('hover-noimg').style.display") == "block"
