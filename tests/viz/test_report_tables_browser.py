"""The report's tables in real headless Chromium: click-to-sort headers (numbers numerically, a
second click reverses, the state shown, keyboard operable) and the search box over the rows."""

import pathlib

import pytest
from chromium_cdp import Chromium, chromium_available, load_report, shot

pytestmark = pytest.mark.skipif(
    not chromium_available(), reason="headless Chromium (/usr/bin/chromium) is not installed"
)


def _report(tmp: pathlib.Path) -> pathlib.Path:
    from introscope.viz._report_page import (
        DataSection,
        IUARow,
        ModelSection,
        PFARow,
        Report,
        render_report,
    )

    def iua(name, units, dead, channels=None):
        return IUARow(name=name, kind="RELU", shape=(units,), samples=50, units=units,
                      mean_inactive=units / 4, dead_units=dead, mostly_dead_units=dead,
                      channels=channels, dead_channels=0 if channels else None)  # fmt: skip

    model = ModelSection(
        name="net.onnx",
        source="net.onnx",
        iua=[iua("relu2", 100, 3, 4), iua("ReLU10", 9, 9), iua("relu1", 20, 0, 2)],
        pfa=[
            PFARow("relu1", 20, 5, [0, 1, 2, 3, 4]),
            PFARow("relu2", 100, 64, range(64), "Gaussian"),
        ],
    )
    ids = [f"img_{i:02d}.png" for i in range(12)]
    data = DataSection(
        response="/relu3/Relu_output_0",
        ids=ids,
        labels=["cat"] * 6 + ["dog"] * 6,
        duplicate_groups=[[0, 1, 2], [3, 4], [5, 6, 7, 8], [10, 11]],
        duplicate_copies=[0, 2, 2, 0],
    )
    report = Report(title="t", subtitle="s", models=[model], data=data,
                    files=[("b.json", "two"), ("a.png", "one")])  # fmt: skip
    path = tmp / "report.html"
    path.write_text(render_report(report), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    path = _report(tmp_path_factory.mktemp("tables"))
    with Chromium(width=1280, height=900) as c:
        load_report(c, path)
        assert c.evaluate("window.introscopeTablesReady === true")
        yield c


def _column(c, table, col):
    return c.evaluate(
        f"[...document.querySelectorAll('table.{table} tbody tr')]"
        f".filter(r => !r.hidden).map(r => r.cells[{col}].textContent)"
    )


def _click(c, table, col):
    c.evaluate(f"document.querySelectorAll('table.{table} thead th button.sort')[{col}].click()")


def _state(c, table, col):
    return c.evaluate(
        f"""(function () {{
          var th = document.querySelectorAll('table.{table} thead th')[{col}];
          return [th.getAttribute('aria-sort'), th.querySelector('.sort-ind').textContent];
        }})()"""
    )


def _type(c, table, text):
    """Focus the search box above ``table``, clear it and type ``text`` as a user would."""
    c.evaluate(
        f"""(function () {{
          var box = document.querySelector('table.{table}').previousElementSibling
                            .querySelector('input');
          box.value = ''; box.dispatchEvent(new Event('input')); box.focus();
        }})()"""
    )
    if text:
        c.page("Input.insertText", text=text)
    return c.evaluate(
        f"document.querySelector('table.{table}').previousElementSibling"
        ".querySelector('.filter-count').textContent"
    )


def test_numbers_sort_numerically_and_a_second_click_reverses(page):
    c = page
    assert _column(c, "iua", 0) == ["relu2", "ReLU10", "relu1"]  # model order at first
    assert _state(c, "iua", 3) == ["none", "↕"]
    _click(c, "iua", 3)  # units: 100, 9, 20 -> 9, 20, 100 (as text it would be 100, 20, 9)
    assert _column(c, "iua", 3) == ["9", "20", "100"]
    assert _state(c, "iua", 3) == ["ascending", "▲"]
    _click(c, "iua", 3)
    assert _column(c, "iua", 3) == ["100", "20", "9"]
    assert _state(c, "iua", 3) == ["descending", "▼"]
    _click(c, "iua", 5)  # dead units "3 (3.0%)", "9 (100.0%)", "0 (0.0%)": by the count
    assert [t.split()[0] for t in _column(c, "iua", 5)] == ["0", "3", "9"]
    assert _state(c, "iua", 3) == ["none", "↕"]  # only the sorted column shows a state


def test_text_sorts_in_natural_order_and_empty_cells_stay_last(page):
    c = page
    _click(c, "iua", 0)
    assert _column(c, "iua", 0) == ["relu1", "relu2", "ReLU10"]
    _click(c, "iua", 0)
    assert _column(c, "iua", 0) == ["ReLU10", "relu2", "relu1"]
    for _ in range(2):  # dead channels: ReLU10 has none ("–"), last either way
        _click(c, "iua", 7)
        assert _column(c, "iua", 7)[-1] == "–"


def test_headers_sort_from_the_keyboard(page):
    c = page
    c.evaluate("document.querySelectorAll('table.pfa thead th button.sort')[2].focus()")
    for key, code, vk, text in (("Enter", "Enter", 13, "\r"), (" ", "Space", 32, " ")):
        c.page("Input.dispatchKeyEvent", type="keyDown", key=key, code=code,
               windowsVirtualKeyCode=vk, text=text)  # fmt: skip
        c.page("Input.dispatchKeyEvent", type="keyUp", key=key, code=code, windowsVirtualKeyCode=vk)
        want = ["5", "64"] if key == "Enter" else ["64", "5"]
        assert _column(c, "pfa", 2) == want, key
        assert c.evaluate("document.activeElement.classList.contains('sort')")


def test_pfa_strategy_and_units_to_keep_sort_as_text(page):
    c = page
    _click(c, "pfa", 4)  # strategy: text, not a number (KL would parse as NaN)
    assert _column(c, "pfa", 4) == ["Gaussian", "KL"]
    _click(c, "pfa", 4)
    assert _column(c, "pfa", 4) == ["KL", "Gaussian"]
    _click(c, "pfa", 5)  # units to keep "0-4" and "0-63": text ("0-4" would parse as 0)
    assert _column(c, "pfa", 5) == ["0–4", "0–63"]
    _click(c, "pfa", 5)
    assert _column(c, "pfa", 5) == ["0–63", "0–4"]


def test_search_filters_rows_case_insensitively_and_counts(page):
    c = page
    assert _type(c, "iua", "") == "3 of 3 rows"
    assert _type(c, "iua", "RELU1") == "2 of 3 rows"
    assert sorted(_column(c, "iua", 0)) == ["ReLU10", "relu1"]
    _click(c, "iua", 3)  # sorting keeps the filter
    assert len(_column(c, "iua", 0)) == 2
    assert _type(c, "iua", "nothing") == "0 of 3 rows"
    assert _type(c, "iua", "") == "3 of 3 rows"


def test_duplicate_sets_table_is_exact_first_and_searchable_by_sample_id(page):
    c = page
    kinds = _column(c, "dup-sets", 1)
    assert kinds == ["exact", "near, 2 exact copies", "near", "near"]
    assert _column(c, "dup-sets", 4)[0] == "img_03.png, img_04.png"
    assert _type(c, "dup-sets", "IMG_1") == "1 of 4 rows"
    assert _column(c, "dup-sets", 4) == ["img_10.png, img_11.png"]
    assert _type(c, "dup-sets", "img_0") == "3 of 4 rows"
    _click(c, "dup-sets", 2)  # samples, numerically
    assert _column(c, "dup-sets", 2) == ["2", "3", "4"]
    c.evaluate("document.getElementById('duplicates').scrollIntoView()")
    shot(c, "tables_duplicates.png")
    c.evaluate("document.getElementById('model-health').scrollIntoView()")
    shot(c, "tables_model_health.png")
    assert c.problems() == []


def _id_report(tmp: pathlib.Path, ids) -> pathlib.Path:
    from introscope.viz._report_page import DataSection, Report, render_report

    data = DataSection(
        response="emb",
        ids=ids,
        labels=["a"] * len(ids),
        duplicate_groups=[[3, 13], [30, 31], [1, 2], [10, 11]],
        duplicate_copies=[0, 0, 0, 0],
    )
    path = tmp / "ids.html"
    path.write_text(render_report(Report(title="t", subtitle="s", data=data)), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("ids", "queries"),
    [
        # integer ids: only whole ids match, so "3" is not 13 or 30
        (list(range(40)), {"3": 1, "13": 1, "1": 1, "4": 0, "0": 0}),
        # names: an exact id shows only its rows, anything else is a substring
        (
            [f"s{i}.png" for i in range(40)],
            {"s1.png": 1, "S1.PNG": 1, "s1": 3, "s3": 2, ".png": 4, "zz": 0},
        ),
    ],
)
def test_sample_id_search_matches_whole_ids_before_substrings(tmp_path, ids, queries):
    with Chromium(width=1000, height=700) as c:
        load_report(c, _id_report(tmp_path, ids))
        for q, n in queries.items():
            assert _type(c, "dup-sets", q) == f"{n} of 4 rows", q
        assert _type(c, "dup-sets", "") == "4 of 4 rows"
        assert c.problems() == []
