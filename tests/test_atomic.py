"""introscope._atomic: whole files or nothing, with the umask's permissions."""

from __future__ import annotations

import os
import stat

import pytest

from introscope._atomic import atomic_open, atomic_path, new_file_mode, write_bytes, write_text
from introscope.exceptions import IntroscopeError


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_files_get_the_umask_permissions(tmp_path, umask_027) -> None:
    assert new_file_mode() == 0o640
    assert _mode(write_text(tmp_path / "a.json", "{}")) == 0o640
    assert _mode(write_bytes(tmp_path / "b.bin", b"x")) == 0o640
    with atomic_path(tmp_path / "c.png") as tmp:
        # a library that writes by name through mkstemp leaves 0600; the rename fixes it
        tmp.write_bytes(b"png")
        os.chmod(tmp, 0o600)
    assert _mode(tmp_path / "c.png") == 0o640
    os.umask(0o022)
    assert _mode(write_text(tmp_path / "d.txt", "d")) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = write_text(tmp_path / "plan.json", "old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target, "w") as handle:
            handle.write("new, half written")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_path(tmp_path / "never.png"):
            pass
    with pytest.raises(ValueError, match="mode must be"):
        with atomic_open(tmp_path / "x", "a"):
            pass


def test_pruning_plans_get_the_umask_permissions(tmp_path, umask_027) -> None:
    import numpy as np

    from introscope.base import Batch
    from introscope.introspectors import PFA

    x = np.random.default_rng(0).standard_normal((20, 3))
    pfa = PFA.introspect(lambda size: iter([Batch({"d": x})]), batch_size=20)
    plan = PFA.pruning_plan(pfa.get_recipe())
    plan.save(tmp_path / "plan.json")
    assert _mode(tmp_path / "plan.json") == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def test_overwriting_keeps_the_files_mode_and_writes_through_a_link(tmp_path) -> None:
    private = write_text(tmp_path / "private.png", "old")
    os.chmod(private, 0o600)
    write_text(private, "new")
    assert _mode(private) == 0o600 and private.read_text() == "new"  # not widened to 0644
    real = write_text(tmp_path / "real.png", "old")
    link = tmp_path / "link.png"
    link.symlink_to(real)
    write_text(link, "through")
    assert link.is_symlink() and real.read_text() == "through"
    with pytest.raises(FileNotFoundError, match="no folder .*missing.* to write"):
        write_text(tmp_path / "missing" / "a.png", "x")


def test_saved_results_and_reports_keep_a_private_files_mode_and_links(tmp_path) -> None:
    import numpy as np

    from introscope.base import Batch, producer_from_batches
    from introscope.introspectors import IUA, DatasetReport, ReportConfig

    iua = IUA()
    iua.update("relu", np.maximum(np.random.default_rng(0).normal(size=(10, 4)), 0))
    private = tmp_path / "iua.npz"
    iua.save(private)
    os.chmod(private, 0o600)
    iua.save(private)
    assert _mode(private) == 0o600  # was widened to the umask's 0644
    real = tmp_path / "real.npz"
    iua.save(real)
    (tmp_path / "link.npz").symlink_to(real)
    iua.save(tmp_path / "link.npz")
    assert (tmp_path / "link.npz").is_symlink()  # was replaced by a regular file
    assert IUA.load(tmp_path / "link.npz").results["relu"].num_samples == 10

    pytest.importorskip("pyarrow")
    rows = np.random.default_rng(0).random((30, 3)).astype(np.float32)
    builder = Batch.Builder(fields={"x": rows})
    builder.metadata[Batch.StdKeys.IDENTIFIER] = [str(i) for i in range(30)]
    config = ReportConfig(projection=None, familiarity=None)
    report = DatasetReport.introspect(producer_from_batches(builder.make_batch()), config=config)
    report.to_disk(tmp_path / "report")
    files = sorted((tmp_path / "report").iterdir())
    for path in files:
        os.chmod(path, 0o600)
    report.to_disk(tmp_path / "report", overwrite=True)
    assert [_mode(p) for p in files] == [0o600] * len(files)
    assert sorted((tmp_path / "report").iterdir()) == files  # no temporary left
    (tmp_path / "report" / "report_meta.json").write_text("[1, 2]")
    with pytest.raises(IntroscopeError, match="JSON list, not an object"):
        DatasetReport.from_disk(tmp_path / "report")
    (tmp_path / "bad.npz").write_bytes(b"<html>not found</html>")
    with pytest.raises(IntroscopeError, match="damaged or not an .npz archive") as raised:
        IUA.load(tmp_path / "bad.npz")
    assert "pickle" not in str(raised.value)


def test_a_report_save_that_fails_midway_leaves_the_old_report(tmp_path, monkeypatch) -> None:
    import json

    import numpy as np

    pytest.importorskip("pyarrow")
    from introscope.base import Batch, producer_from_batches
    from introscope.introspectors import DatasetReport, ReportConfig

    def report(n: int) -> DatasetReport:
        rows = np.random.default_rng(n).random((n, 3)).astype(np.float32)
        builder = Batch.Builder(fields={"x": rows})
        builder.metadata[Batch.StdKeys.IDENTIFIER] = [str(i) for i in range(n)]
        config = ReportConfig(projection=None, familiarity=None)
        return DatasetReport.introspect(producer_from_batches(builder.make_batch()), config=config)

    report(30).to_disk(tmp_path / "r")

    def disk_full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", disk_full)  # the description fails, after the data
    with pytest.raises(OSError, match="No space left"):
        report(40).to_disk(tmp_path / "r", overwrite=True)
    monkeypatch.undo()
    assert len(DatasetReport.from_disk(tmp_path / "r").data) == 30  # the old report, whole
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "report_data.parquet",
        "report_meta.json",
    ]


def test_report_descriptions_and_saved_files_that_are_not_whole_are_named(tmp_path) -> None:
    import json

    import numpy as np

    pytest.importorskip("pyarrow")
    from introscope.base import Batch, producer_from_batches
    from introscope.introspectors import IUA, DatasetReport, ReportConfig

    rows = np.random.default_rng(0).random((30, 3)).astype(np.float32)
    builder = Batch.Builder(fields={"x": rows})
    builder.metadata[Batch.StdKeys.IDENTIFIER] = [str(i) for i in range(30)]
    config = ReportConfig(projection=None, familiarity=None)
    DatasetReport.introspect(producer_from_batches(builder.make_batch()), config=config).to_disk(
        tmp_path / "r"
    )
    meta_path = tmp_path / "r" / "report_meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["data_bytes"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(IntroscopeError, match=r"lacks \['data_bytes'\]"):
        DatasetReport.from_disk(tmp_path / "r")
    meta_path.write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(IntroscopeError, match="reads 'introscope.DatasetReport' version 1"):
        DatasetReport.from_disk(tmp_path / "r")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        IUA.load(tmp_path / "r")
