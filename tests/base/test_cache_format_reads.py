"""The cache's batch files: 64-byte-aligned members read in place, valid .npz, CRC-checked."""

import json
import mmap

import numpy as np
import pytest

from introscope.base import Batch, CachedProducer, _read_buffers, pipeline
from introscope.base._cache_format import MetadataPolicy, read_batch, write_batch
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
