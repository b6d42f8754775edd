"""DatasetReport: one pass, summary columns, bad input, and the Parquet + JSON save format."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from introscope.base import Batch  # noqa: E402
from introscope.exceptions import IntroscopeError, IntroscopeValueError  # noqa: E402
from introscope.introspectors.report import DatasetReport, ReportConfig  # noqa: E402
from introscope.introspectors.report._collect import _GrowingArray, collect  # noqa: E402
from introscope.introspectors.report._columns import clean_name  # noqa: E402
from introscope.samples import StubProducer  # noqa: E402

SUMMARY_ONLY = ReportConfig(familiarity=None, duplicates=None, projection=None)


class CountingProducer:
    """Counts how often it is called (passes) and how many batches it yields."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = 0
        self.batches = 0

    def __call__(self, batch_size: int):
        self.calls += 1
        for batch in self.inner(batch_size):
            self.batches += 1
            yield batch


def _producer(n: int = 30, width: int = 6, labels: dict | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    meta: dict = {Batch.StdKeys.IDENTIFIER: [f"item-{i}" for i in range(n)]}
    if labels is not None:
        meta[Batch.StdKeys.LABELS] = labels
    return StubProducer({"emb": rng.normal(size=(n, width)).astype(np.float32)}, meta)


def _batches(*batches: Batch):
    def producer(batch_size: int):
        yield from batches

    return producer


def _batch(fields: dict, ids=None, labels=None) -> Batch:
    builder = Batch.Builder(fields)
    if ids is not None:
        builder.metadata[Batch.StdKeys.IDENTIFIER] = ids
    if labels is not None:
        builder.metadata[Batch.StdKeys.LABELS] = labels
    return builder.make_batch()


def test_summary_columns_are_ids_and_labels_as_str() -> None:
    n = 10
    mixed = ["cat", (1, 2, 3.5), 0.75, "cat", "", (1, 2, 3.5), 4, ("a", 1), False, None]
    producer = CountingProducer(
        StubProducer(
            {"f": np.zeros((n, 3))},
            {
                Batch.StdKeys.IDENTIFIER: list(range(n)),
                Batch.StdKeys.LABELS: {"nums": list(range(n)), "mix": mixed, "": ["x"] * n},
            },
        )
    )
    report = DatasetReport.introspect(producer, config=SUMMARY_ONLY, batch_size=3)
    assert list(report.data.columns) == ["id", "nums", "mix", ""]
    assert list(report.data["id"]) == [str(i) for i in range(n)]
    assert list(report.data["mix"]) == [str(v) for v in mixed]
    assert all(type(v) is str for v in report.data["mix"])
    assert producer.calls == 1 and producer.batches == 4


def test_clean_name_keeps_letters_digits_dash_underscore() -> None:
    assert clean_name("layer 1/conv.2-a_b") == "layer_1conv2-a_b"
    assert clean_name("é ü") == "_"


def test_growing_array_equals_concatenation_and_promotes_dtype() -> None:
    rng = np.random.default_rng(1)
    parts = [rng.normal(size=(k, 4)).astype(np.float32) for k in (3, 700, 1, 900, 1500)]
    parts.append(rng.normal(size=(5, 4)))  # float64 batch: promotes, as np.concatenate does
    buf = _GrowingArray(parts[0])
    for part in parts:
        buf.append(part)
    expected = np.concatenate(parts)
    assert buf.array().dtype == expected.dtype == np.float64
    np.testing.assert_array_equal(buf.array(), expected)


def test_collect_pulls_once_and_buffers_every_row() -> None:
    producer = CountingProducer(_producer(n=2500, width=5))
    collected = collect(producer, 256, keep_responses=True)
    assert producer.calls == 1
    assert collected.batches == 10
    np.testing.assert_array_equal(collected.responses["emb"], producer.inner._batch.fields["emb"])
    assert collected.ids[:2] == ["item-0", "item-1"] and len(collected.ids) == 2500


# ---------------------------------------------------------------- bad input


def test_missing_identifiers_is_a_clear_error() -> None:
    producer = _batches(
        _batch({"f": np.zeros((2, 3))}, ids=["a", "b"]), _batch({"f": np.zeros((2, 3))})
    )
    with pytest.raises(IntroscopeValueError, match=r"batch 1 has no Batch\.StdKeys\.IDENTIFIER"):
        DatasetReport.introspect(producer, config=SUMMARY_ONLY)


def test_label_dimensions_must_not_change_between_batches() -> None:
    producer = _batches(
        _batch({"f": np.zeros((2, 3))}, ids=["a", "b"], labels={"c": ["x", "y"]}),
        _batch({"f": np.zeros((1, 3))}, ids=["c"], labels={"d": ["x"]}),
    )
    with pytest.raises(IntroscopeValueError, match=r"batch 1 has label dimensions \['d'\]"):
        DatasetReport.introspect(producer, config=SUMMARY_ONLY)
    no_labels_later = _batches(
        _batch({"f": np.zeros((2, 3))}, ids=["a", "b"], labels={"c": ["x", "y"]}),
        _batch({"f": np.zeros((1, 3))}, ids=["c"]),
    )
    with pytest.raises(IntroscopeValueError, match="every element needs a value"):
        DatasetReport.introspect(no_labels_later, config=SUMMARY_ONLY)


def test_label_that_is_not_one_value_per_element() -> None:
    producer = _batches(
        _batch({"f": np.zeros((2, 3))}, ids=["a", "b"], labels={"tags": [["x", "y"], ["z"]]})
    )
    with pytest.raises(
        IntroscopeValueError, match=r"label 'tags' of element 0 in batch 0 is a list"
    ):
        DatasetReport.introspect(producer, config=SUMMARY_ONLY)


def test_label_dimension_named_id_is_refused() -> None:
    producer = _producer(n=4, labels={"id": list("abcd")})
    with pytest.raises(IntroscopeValueError, match="label dimension 'id' clashes"):
        DatasetReport.introspect(producer, config=SUMMARY_ONLY)


def _config_needing_responses() -> ReportConfig:
    # Responses are checked as soon as any component runs; the strategies are never used here
    # because the error comes from the pass over the producer.
    return ReportConfig(familiarity=None, duplicates=object(), projection=None)


def test_responses_must_be_2d_and_the_error_names_the_fix() -> None:
    producer = _batches(_batch({"conv": np.zeros((2, 3, 4, 4))}, ids=["a", "b"]))
    with pytest.raises(
        IntroscopeValueError, match=r"'conv' has shape \(3, 4, 4\).*Pooler.*Flattener"
    ):
        DatasetReport.introspect(producer, config=_config_needing_responses())


def test_nan_in_responses_names_field_and_batch() -> None:
    bad = np.zeros((2, 3))
    bad[1, 2] = np.nan
    producer = _batches(
        _batch({"f": np.zeros((2, 3))}, ids=["a", "b"]), _batch({"f": bad}, ids=["c", "d"])
    )
    with pytest.raises(IntroscopeValueError, match=r"'f' holds 1 NaN/Inf value\(s\) in batch 1"):
        DatasetReport.introspect(producer, config=_config_needing_responses())


def test_responses_whose_column_names_collide() -> None:
    producer = _batches(_batch({"a.b": np.zeros((2, 3)), "ab": np.ones((2, 3))}, ids=["x", "y"]))
    with pytest.raises(IntroscopeValueError, match=r"'a\.b' and 'ab' both become 'ab'"):
        DatasetReport.introspect(producer, config=_config_needing_responses())


def test_width_change_between_batches() -> None:
    producer = _batches(
        _batch({"f": np.zeros((2, 3))}, ids=["a", "b"]),
        _batch({"f": np.zeros((2, 4))}, ids=["c", "d"]),
    )
    with pytest.raises(IntroscopeValueError, match="4 dimensions in batch 1 but 3 in batch 0"):
        DatasetReport.introspect(producer, config=_config_needing_responses())


def test_bad_config_and_batch_size() -> None:
    with pytest.raises(IntroscopeValueError, match="config must be a ReportConfig"):
        DatasetReport.introspect(_producer(), config={"familiarity": None})
    with pytest.raises(IntroscopeValueError, match="batch_size"):
        DatasetReport.introspect(_producer(), config=SUMMARY_ONLY, batch_size=0)
    with pytest.raises(IntroscopeValueError, match="split_familiarity_min must be an int"):
        ReportConfig(familiarity=None, duplicates=None, projection=None, split_familiarity_min=2.5)
    with pytest.raises(IntroscopeValueError, match="takes a pandas DataFrame"):
        DatasetReport(data={"id": [1]})


# ---------------------------------------------------------------- save / load


def _rich_frame(n: int = 25) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "id": [f"img/{i}.png" for i in range(n)],
            "color": [["red", "", "blue"][i % 3] for i in range(n)],
            "": ["label"] * n,
            "duplicates_emb": pd.Series(rng.integers(-1, 3, n), dtype=np.int32),
            "projection_emb_x": rng.normal(size=n).astype(np.float32),
            "projection_emb_y": rng.normal(size=n).astype(np.float32),
            "familiarity_emb": rng.normal(size=n),
            "splitFamiliarity_emb_byAttr_color": [
                {"red": np.float64(rng.normal()), "": np.float64(-1e300 * i), "blue": np.float64(i)}
                for i in range(n)
            ],
            "splitFamiliarity_emb_byAttr_": [{} for _ in range(n)],
        }
    )


def test_round_trip_is_exact_including_split_familiarity_cells(tmp_path: pathlib.Path) -> None:
    frame = _rich_frame()
    DatasetReport(data=frame).to_disk(tmp_path / "r")
    loaded = DatasetReport.from_disk(tmp_path / "r").data
    assert loaded.equals(frame)
    assert list(loaded.columns) == list(frame.columns)
    assert loaded.dtypes.to_dict() == frame.dtypes.to_dict()
    for name in ("splitFamiliarity_emb_byAttr_color", "splitFamiliarity_emb_byAttr_"):
        for got, want in zip(loaded[name], frame[name], strict=True):
            assert list(got) == list(want)  # label order kept
            assert all(type(v) is np.float64 for v in got.values())
            assert got == want


def test_save_format_is_parquet_and_json_never_pickle(tmp_path: pathlib.Path) -> None:
    DatasetReport(data=_rich_frame()).to_disk(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["report_data.parquet", "report_meta.json"]  # no temporary files left
    assert (tmp_path / "report_data.parquet").read_bytes()[:4] == b"PAR1"
    meta = json.loads((tmp_path / "report_meta.json").read_text())
    assert meta["score_map_columns"] == [
        "splitFamiliarity_emb_byAttr_color",
        "splitFamiliarity_emb_byAttr_",
    ]
    umask = os.umask(0)
    os.umask(umask)
    for name in names:
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_exists_and_missing_errors_as_dnikit(tmp_path: pathlib.Path) -> None:
    report = DatasetReport(data=_rich_frame())
    report.to_disk(tmp_path / "r")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        report.to_disk(tmp_path / "r")
    smaller = DatasetReport(data=_rich_frame(5))
    smaller.to_disk(tmp_path / "r", overwrite=True)
    assert DatasetReport.from_disk(tmp_path / "r").data.equals(smaller.data)
    with pytest.raises(FileNotFoundError, match="report_data.parquet"):
        DatasetReport.from_disk(tmp_path / "nowhere")


def test_dnikit_pickle_save_is_not_loaded(tmp_path: pathlib.Path) -> None:
    (tmp_path / "report_save_data.pkl").write_bytes(b"\x80\x04not loaded")
    with pytest.raises(FileNotFoundError, match="pickle, which introscope never loads"):
        DatasetReport.from_disk(tmp_path)


def test_a_torn_save_is_detected(tmp_path: pathlib.Path) -> None:
    DatasetReport(data=_rich_frame()).to_disk(tmp_path)
    other = tmp_path / "other"
    DatasetReport(data=_rich_frame(7)).to_disk(other)
    # parquet of one save next to the JSON of another, as an interrupted overwrite could leave
    os.replace(other / "report_data.parquet", tmp_path / "report_data.parquet")
    with pytest.raises(IntroscopeError, match="does not match"):
        DatasetReport.from_disk(tmp_path)


def test_summary_report_round_trip(tmp_path: pathlib.Path) -> None:
    labels = {"color": ["a", "b", ""] * 10, "": ["label"] * 30}
    report = DatasetReport.introspect(_producer(labels=labels), config=SUMMARY_ONLY, batch_size=10)
    report.to_disk(tmp_path / "report")
    assert report.data.equals(DatasetReport.from_disk(tmp_path / "report").data)


def test_projection_errors_name_the_projection_setting() -> None:
    from introscope.introspectors import DimensionReduction

    pca2 = DimensionReduction.Strategy.PCA(2)
    unknown = ReportConfig(familiarity=None, duplicates=None, projection={"zz": pca2})
    with pytest.raises(IntroscopeError, match=r"ReportConfig\.projection names responses \['zz'\]"):
        DatasetReport.introspect(_producer(), config=unknown)
    producer = _batches(
        _batch({"a": np.zeros((30, 5)), "b": np.ones((30, 3))}, ids=list(range(30)))
    )
    partial = ReportConfig(familiarity=None, duplicates=None, projection={"a": pca2})
    with pytest.raises(IntroscopeError, match=r"no strategy for response 'b'"):
        DatasetReport.introspect(producer, config=partial)


def test_default_reduction_leaves_wide_responses_with_few_samples_as_they_are() -> None:
    # 30 samples of 64 features: the default PCA to 40 dimensions cannot be fitted.
    from introscope.introspectors.report._components import default_dim_reduction

    wide, many = np.zeros((30, 64)), np.zeros((41, 64))
    assert default_dim_reduction({"w": wide, "m": many, "n": np.zeros((41, 8))}).keys() == {"m"}
    config = ReportConfig(familiarity=None, projection=None)  # duplicates with the default PCA
    report = DatasetReport.introspect(_producer(n=30, width=64), config=config)
    assert len(report.data) == 30 and "duplicates_emb" in report.data.columns


def test_too_few_elements_say_which_report_setting_leaves_the_part_out() -> None:
    # 8 elements: fewer than Duplicates' 10 neighbours; 4: fewer than familiarity's 5 Gaussians.
    no_projection = {"projection": None}
    with pytest.raises(IntroscopeValueError, match=r"ReportConfig\(duplicates=None\) makes"):
        DatasetReport.introspect(_producer(8), config=ReportConfig(**no_projection))
    with pytest.raises(IntroscopeValueError, match=r"ReportConfig\(familiarity=None\) makes"):
        DatasetReport.introspect(
            _producer(4), config=ReportConfig(duplicates=None, **no_projection)
        )
    report = DatasetReport.introspect(
        _producer(8), config=ReportConfig(duplicates=None, **no_projection)
    )
    assert len(report.data) == 8
