"""IUA: numbers on hand-placed zeros, the accumulator contract, errors and the table view."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from introscope.base import Batch, ResponseInfo
from introscope.exceptions import IntroscopeError
from introscope.introspectors import IUA


def producer_of(data: dict[str, np.ndarray]):
    n = len(next(iter(data.values())))

    def produce(batch_size: int):
        for start in range(0, n, batch_size):
            yield Batch({k: v[start : start + batch_size] for k, v in data.items()})

    return produce


def hand_placed() -> dict[str, np.ndarray]:
    """4 samples; 'dense' has 3 units, 'conv' (2 channels x 2 positions)."""
    dense = np.array(
        [[0.0, 1.0, 0.0], [0.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.0, 5.0, 1e-9]], dtype=np.float32
    )
    conv = np.ones((4, 2, 2), dtype=np.float64)
    conv[0, 0, :] = 0.0  # sample 0: channel 0 fully inactive
    conv[1, 0, 0] = 0.0  # sample 1: one position of channel 0 only
    conv[2, :, :] = 0.0  # sample 2: everything inactive
    conv[3, 1, 1] = -1e-8  # |x| == atol counts as inactive
    return {"dense": dense, "conv": conv}


def test_hand_placed_zeros_give_dnikit_statistics() -> None:
    iua = IUA.introspect(producer_of(hand_placed()), batch_size=3)
    dense = iua.results["dense"]
    # Per sample inactive units: [2, 1, 3, 2] (1e-9 <= atol counts as zero).
    np.testing.assert_array_equal(dense.inactive_array, [2, 1, 3, 2])
    assert dense.inactive_array.dtype == np.int64
    assert dense.mean_inactive == 2.0
    assert dense.std_inactive == pytest.approx(np.std([2, 1, 3, 2]), abs=0)
    np.testing.assert_array_equal(dense.unit_inactive_count_array, [4, 1, 3])
    np.testing.assert_array_equal(dense.unit_inactive_proportion_array, [1.0, 0.25, 0.75])
    assert dense.num_samples == 4 and dense.num_units == 3
    assert dense.dead_units() == 1 and dense.dead_units(0.75) == 2 and dense.dead_units(0.2) == 3

    conv = iua.results["conv"]
    np.testing.assert_array_equal(conv.inactive_array, [2, 1, 4, 1])
    np.testing.assert_array_equal(conv.unit_inactive_count_array, [[3, 2], [1, 2]])
    assert conv.unit_inactive_count_array.shape == (2, 2)


def test_tolerances_follow_numpy_isclose(rng: np.random.Generator) -> None:
    x = rng.standard_normal((50, 20)).astype(np.float32) * 1e-3
    x[::3, ::2] = 0.0
    for atol in (0.0, 1e-8, 1e-4, 1e-3):
        iua = IUA.introspect(producer_of({"x": x}), batch_size=7, atol=atol, rtol=0.3)
        expected = np.isclose(x, np.zeros_like(x), rtol=0.3, atol=atol)
        np.testing.assert_array_equal(iua.results["x"].unit_inactive_count_array, expected.sum(0))
        np.testing.assert_array_equal(iua.results["x"].inactive_array, expected.sum(1))


@pytest.mark.parametrize(
    "dtype", [np.float16, np.float32, np.float64, np.int32, np.uint8, np.bool_, np.complex64]
)
def test_every_numeric_dtype_matches_isclose(rng: np.random.Generator, dtype) -> None:
    x = (rng.integers(-2, 3, size=(30, 5, 4)) * rng.random((30, 5, 4)) * 1e-7).astype(dtype)
    x[0] = 0
    if np.dtype(dtype).kind == "c":
        x = x + 1j * (rng.random(x.shape) < 0.3)
    iua = IUA.introspect(producer_of({"x": x}), batch_size=8)
    expected = np.isclose(x, np.zeros_like(x))
    np.testing.assert_array_equal(iua.results["x"].unit_inactive_count_array, expected.sum(0))
    np.testing.assert_array_equal(iua.results["x"].inactive_array, expected.reshape(30, -1).sum(1))


def test_large_batches_do_not_overflow_the_uint8_fast_path() -> None:
    x = np.zeros((1000, 3000), dtype=np.float32)  # 1000 rows > 255 per uint8 flush
    x[:, 0] = 1.0
    iua = IUA.introspect(producer_of({"x": x}), batch_size=1000)
    counts = iua.results["x"].unit_inactive_count_array
    assert counts[0] == 0 and np.all(counts[1:] == 1000)
    assert np.all(iua.results["x"].inactive_array == 2999)


def test_seed_snippets_run_as_written(rng: np.random.Generator) -> None:
    data = {"a": np.maximum(rng.standard_normal((100, 8)), 0), "b": rng.standard_normal((100, 3))}
    producer = producer_of(data)
    iua = IUA.introspect(producer, batch_size=64)
    table = IUA.show(iua)
    assert list(table.columns[:3]) == ["response", "mean inactive", "std inactive"]
    assert list(table["response"]) == ["a", "b"]
    IUA.show(iua, vis_type=IUA.VisType.CHART)
    iua = IUA.introspect(producer=producer, batch_size=32, rtol=1e-05, atol=1e-08)
    assert iua.results["a"].num_samples == 100


def test_table_columns_and_dead_unit_percentages() -> None:
    data = {"z": np.zeros((10, 4)), "a": np.ones((10, 2)), "m": np.ones((10, 5))}
    data["m"][:, 0] = 0.0
    data["m"][1:, 1] = 0.0  # inactive for 90% of samples
    iua = IUA.introspect(producer_of(data), batch_size=4)
    df = IUA.show(iua, vis_type=IUA.VisType.TABLE, dead_fraction=0.9, details=True)
    assert list(df["response"]) == ["a", "m", "z"]
    m = df.set_index("response").loc["m"]
    assert m["mean inactive"] == pytest.approx(1.9) and m["units"] == 5
    assert m["dead units"] == 1 and m["dead units (%)"] == pytest.approx(20.0)
    assert m["units inactive >= 90%"] == 2 and m["units inactive >= 90% (%)"] == pytest.approx(40.0)
    assert df.set_index("response").loc["z", "dead units (%)"] == 100.0
    only = IUA.show(iua, response_names=["z", "a"])
    assert list(only["response"]) == ["a", "z"]


@pytest.mark.parametrize("names", [["nope"], [], ["a", "missing"]])
def test_show_rejects_unknown_or_empty_response_names(names) -> None:
    iua = IUA.introspect(producer_of({"a": np.zeros((3, 2))}), batch_size=2)
    why = "response_names is empty" if not names else f"unknown response '{names[-1]}'"
    with pytest.raises(ValueError, match=why):
        IUA.show(iua, response_names=names)
    with pytest.raises(ValueError, match=why):
        IUA.show(iua, vis_type=IUA.VisType.CHART, response_names=names)


def test_show_rejects_unknown_vis_type() -> None:
    iua = IUA.introspect(producer_of({"a": np.zeros((3, 2))}), batch_size=2)
    with pytest.raises(ValueError, match="vis_type"):
        IUA.show(iua, vis_type="pie")


def test_merge_of_disjoint_parts_equals_the_whole(rng: np.random.Generator) -> None:
    x = np.maximum(rng.standard_normal((61, 4, 3, 3)), 0)
    y = np.maximum(rng.standard_normal((61, 9)), 0).astype(np.float32)
    whole = IUA.introspect(producer_of({"x": x, "y": y}), batch_size=10, channel_axis=1)
    parts = [
        IUA.introspect(producer_of({"x": x[s], "y": y[s]}), batch_size=7, channel_axis=1)
        for s in (slice(0, 20), slice(20, 21), slice(21, 61))
    ]
    left = parts[0].merge(parts[1]).merge(parts[2])
    right = parts[0].merge(parts[1].merge(parts[2]))
    for merged in (left, right):
        for name in ("x", "y"):
            assert merged.results[name] == whole.results[name]
            assert merged.results[name].std_inactive == whole.results[name].std_inactive
        assert merged.channel_results["x"] == whole.channel_results["x"]
    # merge leaves its inputs unchanged, and later updates of an input do not reach the merge
    assert parts[0].results["x"].num_samples == 20
    only_left = parts[0].merge(IUA())
    parts[0].update("x", x[:5])
    assert only_left.results["x"].num_samples == 20 and parts[0].results["x"].num_samples == 25


def test_merge_rejects_incompatible_states() -> None:
    a = IUA.introspect(producer_of({"x": np.zeros((2, 3))}), batch_size=2)
    b = IUA.introspect(producer_of({"x": np.zeros((2, 4))}), batch_size=2)
    with pytest.raises(IntroscopeError, match="'x'.*shape"):
        a.merge(b)
    c = IUA.introspect(producer_of({"x": np.zeros((2, 3))}), batch_size=2, atol=0.1)
    with pytest.raises(IntroscopeError, match="tolerances"):
        a.merge(c)


def test_update_is_the_accumulator_behind_introspect(rng: np.random.Generator) -> None:
    x = np.maximum(rng.standard_normal((40, 6)), 0)
    acc = IUA()
    for start in range(0, 40, 9):
        acc.update("x", x[start : start + 9])
    assert acc.results["x"] == IUA.introspect(producer_of({"x": x}), batch_size=5).results["x"]


def test_state_is_small_integers_per_sample_and_counters_per_unit() -> None:
    acc = IUA()
    for _ in range(8):
        acc.update("x", np.zeros((128, 300)))
    state = acc.states["x"]
    assert state.units.per_sample.view().dtype == np.uint16  # 300 units fit in 16 bits
    assert state.units.counts.shape == (300,)
    # 1,024 samples: counters (2,400 B) + at most 2x the per-sample array (2 B each).
    assert acc.state_nbytes <= 300 * 8 + 2 * 1024 * 2


def test_nonfinite_raises_by_default_naming_field_and_batch() -> None:
    x = np.ones((6, 3))
    x[4, 1] = np.nan
    with pytest.raises(IntroscopeError, match=r"'x' \(batch 2\) has 1 NaN or Inf"):
        IUA.introspect(producer_of({"x": x, "ok": np.ones((6, 2))}), batch_size=2)
    acc = IUA()
    acc.update("x", x[:2])
    with pytest.raises(IntroscopeError, match=r"'x'.*1 NaN or Inf"):
        acc.update("x", x[4:])
    assert acc.results["x"].num_samples == 2  # a rejected batch leaves the state unchanged


def test_nonfinite_warn_counts_them_as_active_and_reports_per_layer() -> None:
    x = np.zeros((6, 3))
    x[0, 0] = np.inf
    x[5, :] = np.nan
    y = np.zeros((6, 2))
    with pytest.warns(RuntimeWarning, match="'x': 4"):
        iua = IUA.introspect(producer_of({"x": x, "y": y}), batch_size=4, nonfinite="warn")
    assert iua.results["x"].nonfinite == 4 and iua.results["y"].nonfinite == 0
    np.testing.assert_array_equal(iua.results["x"].inactive_array, [2, 3, 3, 3, 3, 0])
    assert "NON-FINITE 4" in str(iua)
    assert IUA.show(iua, details=True).set_index("response").loc["x", "non-finite values"] == 4


def test_finite_data_never_warns(rng: np.random.Generator) -> None:
    x = rng.standard_normal((20, 5)) * 1e30  # large but finite
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iua = IUA.introspect(producer_of({"x": x}), batch_size=8, nonfinite="warn")
    assert iua.results["x"].nonfinite == 0 and iua.results["x"].num_samples == 20
    np.testing.assert_array_equal(iua.results["x"].inactive_array, np.zeros(20))


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(IntroscopeError, match="'s'.*numeric"):
        IUA.introspect(producer_of({"s": np.array([["a"], ["b"]])}), batch_size=2)

    def changing(batch_size: int):
        yield Batch({"x": np.zeros((2, 3))})
        yield Batch({"x": np.zeros((2, 4))})

    with pytest.raises(IntroscopeError, match=r"'x' \(batch 1\).*shape"):
        IUA.introspect(changing)

    def dropping(batch_size: int):
        yield Batch({"x": np.zeros((2, 3)), "y": np.zeros((2, 1))})
        yield Batch({"x": np.zeros((2, 3))})

    with pytest.raises(IntroscopeError, match="batch 1 has fields"):
        IUA.introspect(dropping)
    with pytest.raises(IntroscopeError, match="no batch"):
        IUA.introspect(lambda bs: iter([]))
    for bad in (-1.0, float("nan"), "0.1"):
        with pytest.raises(IntroscopeError, match="atol"):
            IUA(atol=bad)
    with pytest.raises(IntroscopeError, match="nonfinite"):
        IUA(nonfinite="ignore")


def test_channel_view_channels_first_and_last() -> None:
    data = hand_placed()
    conv = data["conv"]  # (4, 2 channels, 2 positions)
    first = IUA.introspect(producer_of({"c": conv}), batch_size=3, channel_axis=1)
    ch = first.channel_results["c"]
    # channel 0 fully inactive in samples 0, 2; channel 1 in sample 2 only.
    np.testing.assert_array_equal(ch.unit_inactive_count_array, [2, 1])
    np.testing.assert_array_equal(ch.inactive_array, [1, 0, 2, 0])
    last = IUA.introspect(
        producer_of({"c": np.moveaxis(conv, 1, -1).copy()}), batch_size=3, channel_axis=-1
    )
    assert last.channel_results["c"] == ch
    assert first.channel_axis("c") == 0 and last.channel_axis("c") == 1
    # dense responses have no channel view
    both = IUA.introspect(producer_of(data), batch_size=3, channel_axis=1)
    assert set(both.channel_results) == {"conv"}
    df = IUA.show(both, details=True).set_index("response")
    assert df.loc["conv", "dead channels"] == 0 and df.loc["conv", "channels"] == 2


def test_channel_axis_from_response_infos(rng: np.random.Generator) -> None:
    kind = ResponseInfo.LayerKind

    def info(name: str, k, typename: str) -> ResponseInfo:
        return ResponseInfo(
            name, np.dtype("float32"), (None, 3, 4, 5), ResponseInfo.Layer(name, k, typename)
        )

    infos = {
        "torch_conv": info("torch_conv", kind.CONV_2D, "Conv2d"),
        "keras_conv": info("keras_conv", kind.CONV_2D, "Conv2D"),
        "relu": info("relu", kind.RELU, "ReLU"),
    }
    x = rng.standard_normal((4, 3, 4, 5))
    iua = IUA.introspect(producer_of({n: x for n in infos}), batch_size=2, response_infos=infos)
    assert iua.channel_axis("torch_conv") == 0
    assert iua.channel_axis("keras_conv") == 2
    assert iua.channel_axis("relu") is None
    explicit = IUA.introspect(
        producer_of({n: x for n in infos}),
        batch_size=2,
        response_infos=infos,
        channel_axis={"relu": 1, "torch_conv": None},
    )
    assert explicit.channel_axis("relu") == 0 and explicit.channel_axis("torch_conv") is None
    with pytest.raises(IntroscopeError, match="channel_axis 0"):
        IUA.introspect(producer_of({"x": x}), channel_axis=0)


def test_text_summary_and_html() -> None:
    iua = IUA.introspect(producer_of(hand_placed()), batch_size=2, channel_axis=1)
    text = str(iua)
    assert "dense" in text and "dead 1 (33.3%)" in text and "dead channels 0/2" in text
    page = iua._repr_html_()
    assert "<table" in page and "dense" in page and "33.3%" in page
    assert "<script" not in page


def test_importing_introspectors_does_not_import_torch() -> None:
    code = "import sys, introscope.introspectors; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_result_keeps_dnikit_types_on_dnikit_names() -> None:
    # DNIKit users compare these with lists: ``result.inactive == [...]`` is one bool
    iua = IUA.introspect(producer_of(hand_placed()), batch_size=3)
    dense, conv = iua.results["dense"], iua.results["conv"]
    assert dense.inactive == [2, 1, 3, 2]
    assert type(dense.inactive) is list
    assert type(dense.inactive[0]) is np.int64  # as DNIKit's (``.item()``, ``.dtype`` work)
    assert dense.unit_inactive_count == [4, 1, 3]
    assert dense.unit_inactive_proportion == [1.0, 0.25, 0.75]
    assert conv.unit_inactive_count == [[3, 2], [1, 2]]
    assert type(conv.unit_inactive_count[0]) is list
    # the same numbers as read-only arrays under the *_array names
    assert dense.inactive_array.dtype == np.int64
    assert conv.unit_inactive_count_array.shape == (2, 2)
    assert not conv.unit_inactive_proportion_array.flags.writeable
    # DNIKit's constructor, from lists
    again = IUA.Result(
        mean_inactive=dense.mean_inactive,
        std_inactive=dense.std_inactive,
        inactive=dense.inactive,
        unit_inactive_count=dense.unit_inactive_count,
        unit_inactive_proportion=dense.unit_inactive_proportion,
    )
    assert again == dense
    with pytest.raises(AttributeError, match="immutable"):
        dense.mean_inactive = 0.0  # type: ignore[misc]


def test_show_has_dnikit_columns_by_default_and_details_on_request() -> None:
    pytest.importorskip("pandas")
    x = np.zeros((4, 3), dtype=np.float32)
    iua = IUA.introspect(producer_of({"relu_10": x, "relu": x + 1, "relu_2": x}), batch_size=4)
    table = IUA.show(iua)
    assert list(table.columns) == ["response", "mean inactive", "std inactive"]
    assert list(table["response"]) == ["relu", "relu_2", "relu_10"]
    assert list(table["mean inactive"]) == [0.0, 3.0, 3.0]
    wide = IUA.show(iua, details=True)
    assert list(wide.columns[:3]) == ["response", "mean inactive", "std inactive"]
    assert {"units", "dead units", "dead units (%)"} <= set(wide.columns)
    assert list(wide["response"]) == ["relu", "relu_2", "relu_10"]
    assert list(wide["dead units"]) == [0, 3, 3]
