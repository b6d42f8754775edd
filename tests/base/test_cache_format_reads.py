"""The cache's batch files: 64-byte-aligned members read in place, valid .npz, CRC-checked."""

import json
import mmap

import numpy as np
import pytest

from introscope.base import Batch, CachedProducer, _read_buffers, pipeline
from introscope.base._cache_format import read_batch, write_batch
from introscope.base._cache_metadata import MetadataPolicy
from introscope.exceptions import IntroscopeError
from introscope.processors import Cacher


def _batch(rng):
    b = Batch.Builder(
        {
            "x": rng.normal(size=(7, 5)).astype(np.float32),
            "y": rng.integers(0, 9, size=(7, 3, 2)),
            "f": np.asfortranarray(rng.normal(size=(7, 4))),
        }
    )
    b.metadata[Batch.StdKeys.IDENTIFIER] = [f"id{i}" for i in range(7)]
    return b.make_batch()


def test_members_are_aligned_and_read_without_copies(tmp_path, rng):
    batch = _batch(rng)
    path = tmp_path / "b.npz"
    index = write_batch(path, batch, MetadataPolicy(False))
    assert all(offset % 64 == 0 for offset, *_ in index.values())
    loaded = read_batch(path, True, index)
    for name, array in batch.fields.items():
        got = loaded.fields[name]
        np.testing.assert_array_equal(got, array)
        assert got.flags.aligned and not got.flags.writeable
        base = got
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        # a view of the mapped file (or of the buffer it was read into), not a copy
        base = base.obj if isinstance(base, memoryview) else base
        assert isinstance(base, mmap.mmap) or any(base is buf for buf in _read_buffers._pool)
    # the same file without the manifest's index (the zip directory is parsed) and with numpy
    again = read_batch(path, True, None)
    np.testing.assert_array_equal(again.fields["f"], batch.fields["f"])
    with np.load(path, allow_pickle=False) as npz:
        header = json.loads(npz["header"].tobytes())
        np.testing.assert_array_equal(npz["f0"], batch.fields[header["fields"][0]])


def test_a_flipped_byte_is_caught_by_default_and_read_through_with_verify_false(tmp_path, rng):
    producer = pipeline(lambda bs: iter([_batch(rng)]), Cacher(tmp_path / "c"))
    list(producer(7))
    (file,) = (tmp_path / "c").rglob("batch-*.npz")
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    offset, length, _, _ = manifest["batches"][0]["members"]["f0"]
    data = bytearray(file.read_bytes())
    data[offset + length - 1] ^= 0xFF  # last byte of field x's data
    file.write_bytes(bytes(data))
    with pytest.raises(IntroscopeError, match=r"member 'f0' fails its CRC check"):
        list(CachedProducer(tmp_path / "c")(7))
    (batch,) = list(CachedProducer(tmp_path / "c", verify=False)(7))
    assert batch.fields["x"].shape == (7, 5)


def _ids_batch(ids, labels):
    builder = Batch.Builder({"x": np.zeros((len(ids), 2), np.float32)})
    builder.metadata[Batch.StdKeys.IDENTIFIER] = ids
    builder.metadata[Batch.StdKeys.LABELS] = labels
    return builder.make_batch()


def test_long_string_lists_are_one_member_and_round_trip_exactly(tmp_path):
    n = 40
    ids = [f"images/{i:03d}.png" for i in range(n)]
    ids[3], ids[4], ids[5] = "", "naïve ✓ 日本", "bad\udcff-surrogate"  # empty, unicode, lone
    labels = {
        "class": [str(i % 3) for i in range(n)],
        "nul": [f"a\x00{i}" for i in range(n)],  # holds the separator: stays a JSON list
    }
    batch = _ids_batch(ids, labels)
    path = tmp_path / "b.npz"
    index = write_batch(path, batch, MetadataPolicy(False))
    loaded = read_batch(path, True, index)
    got_ids = loaded.metadata[Batch.StdKeys.IDENTIFIER]
    assert got_ids == ids and type(got_ids) is list and all(type(v) is str for v in got_ids)
    assert loaded.metadata[Batch.StdKeys.LABELS] == labels
    with np.load(path, allow_pickle=False) as npz:
        header = json.loads(npz["header"].tobytes())
    tags = json.dumps(header["metadata"])
    assert tags.count('"strs"') == 2  # the identifiers and the "class" labels; not "nul"
    # short lists stay JSON
    small = _ids_batch(ids[:5], {"class": ["a"] * 5})
    write_batch(tmp_path / "s.npz", small, MetadataPolicy(False))
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        assert '"strs"' not in npz["header"].tobytes().decode()
    assert read_batch(tmp_path / "s.npz").metadata[Batch.StdKeys.IDENTIFIER] == ids[:5]


def test_caches_in_format_1_still_read(tmp_path, monkeypatch):
    from introscope.base import _cache_format, _cache_metadata, _cache_runs

    ids = [f"id{i}" for i in range(50)]
    monkeypatch.setattr(_cache_format, "FORMAT_VERSION", 1)
    monkeypatch.setattr(_cache_runs, "FORMAT_VERSION", 1)
    monkeypatch.setattr(_cache_metadata, "_STRS_MIN", 10**9)  # format 1 had no "strs" members
    cacher_dir = tmp_path / "c"
    list(pipeline(lambda bs: iter([_ids_batch(ids, {"c": ids})]), Cacher(cacher_dir))(50))
    monkeypatch.undo()
    manifest = json.loads((cacher_dir / "manifest.json").read_text())
    assert manifest["version"] == 1
    (batch,) = list(CachedProducer(cacher_dir)(50))
    assert batch.metadata[Batch.StdKeys.IDENTIFIER] == ids


def test_a_string_member_that_disagrees_with_its_count_is_reported(tmp_path, monkeypatch):
    from introscope.base import _cache_metadata

    ids = [f"id{i}" for i in range(40)]
    real = _cache_metadata._encode_sequence

    def lying(values, arrays, where):
        out = real(values, arrays, where)
        if isinstance(out, dict):
            out["n"] += 1
        return out

    monkeypatch.setattr(_cache_metadata, "_encode_sequence", lying)
    path = tmp_path / "b.npz"
    write_batch(path, _ids_batch(ids, {}), MetadataPolicy(False))
    monkeypatch.undo()
    with pytest.raises(IntroscopeError, match="holds 40 items, its header says 41"):
        read_batch(path)
