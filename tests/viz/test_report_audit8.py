"""The report page after the report audit (aud-report): long labels keep the map's layout (3),
contrast of the ``exact`` tag and the ``(no label)`` colour, the keyboard's way to a sample (4),
layers PFA could not analyse (2) and bidi control characters (7); in headless Chromium where it
is installed."""

import re

import numpy as np
import pytest
from chromium_cdp import Chromium, chromium_available, hover_point, load_report, shot

pytest.importorskip("plotly")

from introscope.viz._colors import NO_LABEL, NO_LABEL_COLOR, colors_for_labels  # noqa: E402
from introscope.viz._html import _CSS, esc, visible_bidi  # noqa: E402
from introscope.viz._report_page import (  # noqa: E402
    DataSection,
    ModelSection,
    PFARow,
    Report,
    _pfa_table,
    render_report,
)

browser_only = pytest.mark.skipif(
    not chromium_available(), reason="headless Chromium (/usr/bin/chromium) is not installed"
)

MAP_BACKGROUND = "#fbfcfd"  # plot_bgcolor of the map (_report_js.py)


def _luminance(color: str) -> float:
    rgb = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4 for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    dark, light = sorted((_luminance(a), _luminance(b)))
    return (light + 0.05) / (dark + 0.05)


def test_exact_tag_and_no_label_colour_have_enough_contrast():
    rule = re.search(r"\.kind\.exact\{background:(#[0-9a-f]{6});color:(#[0-9a-f]{6})\}", _CSS)
    assert rule is not None
    assert _contrast(rule.group(1), rule.group(2)) >= 4.5  # WCAG AA, small text
    assert _contrast(NO_LABEL_COLOR, MAP_BACKGROUND) >= 3.0  # WCAG 1.4.11, graphics
    assert _contrast(NO_LABEL_COLOR, "#ffffff") >= 3.0  # the legend's swatch on the card
    assert colors_for_labels([NO_LABEL, "a"])[0] == NO_LABEL_COLOR


def test_bidi_controls_are_shown_as_visible_escapes():
    label, sample = "猫 \u202eRTL", "x\u202eRTL/img3.png"
    assert visible_bidi(sample) == "x[U+202E]RTL/img3.png"
    assert esc("\u2066a\u2069\u202a") == "[U+2066]a[U+2069][U+202A]"
    html = render_report(_report([label, "b", "b"], ids=[sample, "s1", "s2"]))
    controls = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
    assert not any(c in html for c in controls)
    assert "猫 [U+202E]RTL" in html and "x[U+202E]RTL/img3.png" in html


def test_pfa_table_lists_the_layers_pfa_could_not_analyse():
    rows = [PFARow("conv", 8, 7, [0, 1, 2, 4, 5, 6, 7]),
            PFARow("fc", None, None, note="not analysed: fewer samples (12) than units (16)")]  # fmt: skip
    html = _pfa_table(rows)
    assert ">note<" in html and "not analysed: fewer samples (12) than units (16)" in html
    model = ModelSection(name="net.pt", source="net.pt", pfa=rows)
    page = render_report(Report(title="t", subtitle="s", models=[model]))
    assert "Not analysed by PFA, so not in its results: fc" in page
    assert "<td" in _pfa_table(rows[:1]) and ">note<" not in _pfa_table(rows[:1])


def _report(labels, ids=None, fam=True):
    n = len(labels)
    rng = np.random.default_rng(0)
    data = DataSection(
        response="emb",
        ids=ids or [f"sample_{i:03d}.png" for i in range(n)],
        labels=labels,
        x=rng.normal(size=n).astype(np.float32),
        y=rng.normal(size=n).astype(np.float32),
        familiarity=rng.normal(size=n) if fam else None,
        duplicate_groups=[],
    )
    return Report(title="t", subtitle="s", data=data)


@pytest.fixture(scope="module", params=[80, 250])
def long_label_report(request, tmp_path_factory):
    long = "x" * request.param  # no break opportunity at all
    labels = ["cat"] * 6 + [long] * 6 + ["bird"] * 6
    path = tmp_path_factory.mktemp(f"long{request.param}") / "report.html"
    path.write_text(render_report(_report(labels)))
    return request.param, path


_LAYOUT = """(function () {
  var a = document.getElementById('scatter').getBoundingClientRect();
  var b = document.querySelector('.side').getBoundingClientRect();
  var l = document.querySelectorAll('#legend .legend-label')[2].getBoundingClientRect();
  return [a.width, b.width, document.documentElement.scrollWidth, window.innerWidth,
          l.right, b.right];
})()"""


@browser_only
def test_a_long_label_keeps_the_map_and_the_side_column(long_label_report):
    chars, path = long_label_report
    with Chromium(width=1280, height=900) as c:
        load_report(c, path)
        scatter, side, scroll, inner, label_right, side_right = c.evaluate(_LAYOUT)
        assert side == 270 and scatter > 800, (scatter, side)  # as with short labels
        assert scroll <= inner  # no sideways scrolling
        assert label_right <= side_right + 0.5  # the label wraps inside the column
        hover_point(c, 2, 0)  # a point of the long label (labels sorted: bird, cat, x...)
        hovered = c.evaluate("window.introscopeHovered")
        label = c.evaluate("document.getElementById('hover-label').textContent")
        assert label == ["cat", "x" * chars, "bird"][hovered // 6]  # the hovered sample's
        c.evaluate(  # the long label's first sample in the card
            "var f = document.getElementById('sample-find'); f.value = 'sample_006.png';"
            "f.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}))"
        )
        assert c.evaluate("document.getElementById('hover-label').textContent") == "x" * chars
        card = c.evaluate("document.getElementById('hover-card').getBoundingClientRect().width")
        assert card <= 270
        c.evaluate("document.getElementById('data-map').scrollIntoView()")
        shot(c, f"long_label_{chars}.png")
        assert c.problems() == []


@browser_only
def test_the_keyboard_reaches_a_sample_and_one_label_alone(tmp_path):
    labels = ["cat"] * 5 + ["dog"] * 5
    path = tmp_path / "report.html"
    path.write_text(render_report(_report(labels)))
    enter = "new KeyboardEvent('keydown', {key: 'Enter', bubbles: true, cancelable: true})"
    with Chromium(width=1280, height=900) as c:
        load_report(c, path)
        assert c.evaluate("document.getElementById('hover-card').getAttribute('aria-live')")
        assert c.evaluate("document.getElementById('legend').getAttribute('role')") == "group"
        c.evaluate(
            "var f = document.getElementById('sample-find'); f.value = 'sample_007';"
            f"f.dispatchEvent({enter})"
        )
        assert c.evaluate("window.introscopeHovered") == 7
        assert c.evaluate("document.getElementById('hover-id').textContent") == "sample_007.png"
        c.evaluate(
            "var f = document.getElementById('sample-find'); f.value = 'nothing';"
            f"f.dispatchEvent({enter})"
        )
        hint = c.evaluate("document.getElementById('hover-hint').textContent")
        assert hint == 'No sample id contains "nothing".'
        c.evaluate(f"document.querySelectorAll('#legend input')[1].dispatchEvent({enter})")
        visible = "document.getElementById('scatter').data.map(t => t.visible !== false)"
        assert c.evaluate(visible) == [False, True]
        assert c.problems() == []


@browser_only
def test_an_rtl_label_keeps_its_count_apart(tmp_path):
    labels = ["\u05d7\u05ea\u05d5\u05dc"] * 3 + ["b"] * 3  # Hebrew "cat"
    path = tmp_path / "report.html"
    path.write_text(render_report(_report(labels)))
    with Chromium(width=1280, height=900) as c:
        load_report(c, path)
        texts = c.evaluate(
            "[...document.querySelectorAll('#legend .legend-label')].map(e => "
            "[e.textContent, e.querySelector('bdi').textContent])"
        )
        assert ["b (3)", "b"] in texts and [
            "\u05d7\u05ea\u05d5\u05dc (3)",
            "\u05d7\u05ea\u05d5\u05dc",
        ] in texts
        assert c.problems() == []
