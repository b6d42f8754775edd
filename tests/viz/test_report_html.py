"""The report page without a browser: escaping, script-safe JSON, thumbnails, sections."""

import base64
import io
import json
import re

import numpy as np
import pytest

pytest.importorskip("plotly")
PIL = pytest.importorskip("PIL.Image")

from introscope.viz._html import b64_array, esc, json_for_script  # noqa: E402
from introscope.viz._report_page import (  # noqa: E402
    DataSection,
    IUARow,
    ModelSection,
    PFARow,
    Report,
    compress_ranges,
    render_report,
)
from introscope.viz._thumbs import THUMBNAIL_MAX_PX, as_display_image, thumbnail_uri  # noqa: E402

EVIL = "<img src=x onerror=alert(1)>"


def _decode(uri):
    head, payload = uri.split(",", 1)
    return head, PIL.open(io.BytesIO(base64.b64decode(payload)))


def test_json_for_script_cannot_close_the_script_tag():
    text = json_for_script({"label": "</script><script>alert(1)</script>", "x": "a\u2028b&"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"label": "</script><script>alert(1)</script>", "x": "a\u2028b&"}


def test_esc_escapes_quotes_too():
    assert esc('"><b>') == "&quot;&gt;&lt;b&gt;"


def test_b64_array_round_trips_little_endian():
    values = np.array([1.5, -2.25, 3e5], dtype=np.float64)
    raw = base64.b64decode(b64_array(values, "f4"))
    np.testing.assert_array_equal(np.frombuffer(raw, dtype="<f4"), values.astype(np.float32))


def test_compress_ranges():
    assert compress_ranges([5, 0, 1, 2, 7, 8, 10]) == "0–2, 5, 7–8, 10"
    assert compress_ranges([]) == ""


def test_thumbnails_are_bounded_and_typed():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, size=(200, 100, 3), dtype=np.uint8)
    head, img = _decode(thumbnail_uri(big))
    assert head == "data:image/jpeg;base64" and img.size == (16, THUMBNAIL_MAX_PX)
    head, img = _decode(thumbnail_uri(rng.random((8, 8))))
    assert head == "data:image/png;base64" and img.size == (8, 8) and img.mode == "L"
    chw = rng.random((3, 40, 40)).astype(np.float32)
    assert as_display_image(chw).shape == (40, 40, 3)
    assert thumbnail_uri(rng.random(64)) is None  # a vector is not an image
    # floats outside [0, 1] are stretched, not clipped to black/white
    stretched = as_display_image(np.array([[-3.0, 0.0], [1.0, 5.0]]))
    assert stretched.min() == 0 and stretched.max() == 255 and stretched[0, 1] == 96


def _report(with_map=True):
    n = 6
    data = DataSection(
        response="emb",
        ids=[f"id{i}" for i in range(n - 1)] + [EVIL],
        labels=["a", "b", EVIL, "a", "b", EVIL],
        x=np.arange(n, dtype=np.float32) if with_map else None,
        y=np.arange(n, dtype=np.float32) ** 2 if with_map else None,
        familiarity=np.linspace(-3, 1, n),
        duplicate_groups=[[1, 4]],
        thumbnails={0: thumbnail_uri(np.eye(8))},
    )
    model = ModelSection(
        name=EVIL,
        source="m.onnx",
        iua=[IUARow(EVIL, "RELU", (4, 2, 2), 6, 16, 3.0, 4, 5, 4, 1)],
        pfa=[PFARow("conv", 16, 9, [0, 1, 2, 5, 6, 7, 8, 9, 15])],
    )
    return Report(
        title="t", subtitle=EVIL, facts=[("data", EVIL)], models=[model, model], data=data
    )


def test_every_section_and_every_string_escaped():
    html = render_report(_report())
    for anchor in ("summary", "comparison", "model-health", "data-map", "familiarity",
                   "duplicates", "files"):  # fmt: skip
        assert f'id="{anchor}"' in html
    assert EVIL not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "0–2, 5–9, 15" in html  # units to keep
    payload = re.search(r'id="introscope-data">(.*?)</script>', html, re.S).group(1)
    data = json.loads(payload)
    assert data["label_names"] == [EVIL, "a", "b"] and data["ids"][-1] == EVIL
    codes = np.frombuffer(base64.b64decode(data["codes"]), dtype="<i4")
    assert [data["label_names"][c] for c in codes] == ["a", "b", EVIL, "a", "b", EVIL]
    assert list(data["thumbs"]) == ["0"]
    # dead units 4 of 16 are 25%: flagged
    assert '<span class="bad">4 (25.0%)</span>' in html


def test_plotly_is_inlined_once_and_only_with_a_map():
    from introscope.viz._plotly import plotly_js

    js = plotly_js()
    with_map = render_report(_report())
    assert with_map.count(js[:200]) == 1 and "cdn.plot.ly" not in with_map.replace(js, "")
    without = render_report(_report(with_map=False))
    assert js[:200] not in without and "No 2-D projection" in without
    assert len(without) < 200_000


def test_pfa_table_strategy_and_units_are_text_columns():
    from introscope.viz._report_page import PFARow, _pfa_table

    html = _pfa_table([PFARow("conv", 16, 9, [0, 1, 2, 3, 7], strategy="Gaussian")])
    kinds = re.findall(r'<th data-type="(\w+)"', html)
    # layer, original units, recommended, kept, strategy, units to keep
    assert kinds == ["text", "num", "num", "num", "text", "text"]
    cells = re.findall(r'<td class="(\w+)">', html)
    assert cells == ["name", "num", "num", "num", "name", "name"]
