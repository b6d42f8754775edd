"""The data map with many labels (every label its own colour) and in a narrow window (the hover
card stays on screen), in headless Chromium where it is installed."""

import numpy as np
import pytest
from chromium_cdp import Chromium, chromium_available, hover_point, load_report, shot

from introscope.viz._colors import (
    NO_LABEL,
    NO_LABEL_COLOR,
    PALETTE,
    _hex_lab,
    colors_for_labels,
    label_colors,
)

browser_only = pytest.mark.skipif(
    not chromium_available(), reason="headless Chromium (/usr/bin/chromium) is not installed"
)


def _delta_e(a: str, b: str) -> float:
    return float(np.linalg.norm(np.subtract(_hex_lab(a), _hex_lab(b))))


def test_label_colors_are_distinct_and_keep_the_palette_first():
    assert label_colors(3) == PALETTE[:3]
    for n in (30, 31, 51, 120, 400):
        colors = label_colors(n)
        assert len(colors) == n and len({c.lower() for c in colors}) == n
        assert colors[:30] == PALETTE[: min(n, 30)]
    colors = label_colors(51)  # the generated ones are far from every other colour
    worst = min(_delta_e(colors[i], c) for i in range(30, 51) for c in colors[:i])
    assert worst > 20.0


def test_missing_labels_are_light_grey_and_the_others_keep_the_palette():
    from introscope.cli._tables import NO_LABEL as CLI_NO_LABEL

    assert NO_LABEL == CLI_NO_LABEL
    assert colors_for_labels([NO_LABEL, "a", "b"]) == [NO_LABEL_COLOR, PALETTE[0], PALETTE[1]]
    names = [NO_LABEL, *(f"c{k:02d}" for k in range(60))]
    colors = colors_for_labels(names)
    assert len(set(colors)) == 61 and colors[1:] == label_colors(60)
    assert min(_delta_e(NO_LABEL_COLOR, c) for c in colors[1:]) > 15.0


@pytest.fixture(scope="module")
def many_labels_report(tmp_path_factory):
    pytest.importorskip("pyarrow")
    pd = pytest.importorskip("pandas")
    from introscope.cli import main

    root = tmp_path_factory.mktemp("labels51")
    rng = np.random.default_rng(0)
    n_cls = 50
    centers = rng.normal(scale=8.0, size=(n_cls, 8))
    x = np.concatenate([c + rng.normal(size=(8, 8)) for c in centers]).astype(np.float32)
    labels = [f"class_{k:02d}" for k in range(n_cls) for _ in range(8)]
    labels[::37] = [None] * len(labels[::37])  # some missing: a 51st label, "(no label)"
    frame = pd.DataFrame({"id": [f"s{i}" for i in range(len(x))], "label": labels})
    frame["embedding"] = list(x)
    frame.to_parquet(root / "emb.parquet")
    out = root / "out"
    code = main(["analyze", "--data", str(root / "emb.parquet"), "--out", str(out),
                 "--projection", "pca", "-q"])  # fmt: skip
    assert code == 0
    return out / "report.html"


def _hover_first_point(c):
    hover_point(c, 0, 0)


def _rect(c, element_id):
    return c.evaluate(
        f"(function () {{ var r = document.getElementById('{element_id}')"
        ".getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })()"
    )


@browser_only
def test_51_labels_get_51_colours_on_the_map(many_labels_report):
    with Chromium(width=1400, height=900) as c:
        load_report(c, many_labels_report)
        assert c.problems() == []
        drawn = c.evaluate("document.getElementById('scatter').data.map(t => t.marker.color)")
        swatches = c.evaluate(
            "[...document.querySelectorAll('#legend .sw')].map(e => e.style.background)"
        )
        names = c.evaluate(
            "[...document.querySelectorAll('.legend-label')].map(e => e.textContent)"
        )
        assert len(drawn) == 51 and len(set(drawn)) == 51
        assert len(set(swatches)) == 51
        grey = drawn[[n.split(" (")[0] for n in names].index(NO_LABEL)]
        assert grey == NO_LABEL_COLOR
        shot(c, "labels51_map.png")


@browser_only
def test_legend_shows_all_none_or_one_label(many_labels_report):
    visible = "document.getElementById('scatter').data.map(t => t.visible !== false)"
    boxes = "[...document.querySelectorAll('#legend input')].map(b => b.checked)"
    with Chromium(width=1400, height=900) as c:
        load_report(c, many_labels_report)
        c.evaluate("document.querySelector('#legend .legend-none').click()")
        assert c.evaluate(visible) == [False] * 51 and c.evaluate(boxes) == [False] * 51
        c.evaluate(
            "document.querySelectorAll('#legend label')[7]"
            ".dispatchEvent(new MouseEvent('dblclick', {bubbles: true}))"
        )
        assert c.evaluate(visible) == [k == 7 for k in range(51)]  # that label alone
        assert c.evaluate(boxes) == [k == 7 for k in range(51)]
        shot(c, "legend_one_label.png")
        c.evaluate("document.querySelector('#legend .legend-all').click()")
        assert c.evaluate(visible) == [True] * 51 and c.evaluate(boxes) == [True] * 51
        assert c.problems() == []


@browser_only
@pytest.mark.parametrize("size", [(800, 600), (1400, 900)])
def test_hover_card_is_on_screen_and_wide_layout_is_side_by_side(many_labels_report, size):
    width, height = size
    with Chromium(width=width, height=height) as c:
        load_report(c, many_labels_report)
        _hover_first_point(c)
        left, top, right, bottom = _rect(c, "hover-card")
        assert c.evaluate("document.getElementById('hover-label').textContent") != ""
        assert 0 <= left < right <= width and 0 <= top < bottom <= height, (
            left,
            top,
            right,
            bottom,
        )
        s_left, s_top, s_right, s_bottom = _rect(c, "scatter")
        assert left >= s_right  # the card beside the map, not below it
        if width >= 1400:  # the wide layout as it was: a 620 px map and a 270 px side panel
            assert s_bottom - s_top == pytest.approx(620, abs=1)
            assert _rect(c, "legend")[2] - _rect(c, "legend")[0] == pytest.approx(270, abs=1)
        shot(c, f"hover_{width}x{height}.png")


@pytest.mark.parametrize(
    ("name", "source", "heading"),
    [
        ("net_sd.pt", "net_sd.pt", "<h3>net_sd.pt</h3>"),
        ("net_sd.pt", "./net_sd.pt", "<h3>net_sd.pt</h3>"),
        ("net.pt", "models/net.pt", '<h3>net.pt<span class="tag">models/net.pt</span></h3>'),
    ],
)
def test_model_heading_names_the_model_once(name, source, heading):
    from introscope.viz._report_page import ModelSection, Report, render_report

    report = Report(title="t", subtitle="s", facts=[], models=[ModelSection(name, source)])
    html = render_report(report)
    assert heading in html
