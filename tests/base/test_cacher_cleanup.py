"""An anonymous Cacher's temporary folder does not outlive it; a named one stays."""

import gc
import pathlib
import subprocess
import sys

import numpy as np

from introscope.base import Batch, CachedProducer, pipeline
from introscope.processors import Cacher


def _data(bs):
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    for i in range(0, 20, bs):
        yield Batch({"x": x[i : i + bs]})


def test_anonymous_cache_is_removed_when_its_pipeline_is_collected():
    cacher = Cacher()
    root = cacher.storage_path
    producer = pipeline(_data, cacher)
    assert sum(b.batch_size for b in producer(8)) == 20 and cacher.cached
    reader = cacher.as_producer()
    del cacher, producer
    gc.collect()
    assert root.is_dir()  # a producer reading it keeps it
    assert sum(b.batch_size for b in reader(5)) == 20
    del reader
    gc.collect()
    assert not root.exists()


def test_anonymous_cache_is_removed_at_interpreter_exit_and_a_copy_is_kept(tmp_path):
    code = f"""
import numpy as np
from introscope.base import Batch, pipeline
from introscope.processors import Cacher
cacher = Cacher()
producer = pipeline(lambda bs: iter([Batch({{"x": np.ones((3, 2))}})]), cacher)
list(producer(3))
cacher.as_producer().copy_to({str(tmp_path / "kept")!r})
print(cacher.storage_path)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    anonymous = pathlib.Path(out.stdout.strip().splitlines()[-1])
    assert anonymous.name.startswith("introscope-cacher-") and not anonymous.exists()
    (batch,) = list(CachedProducer(tmp_path / "kept")(3))
    np.testing.assert_array_equal(batch.fields["x"], np.ones((3, 2)))


def test_named_cache_stays(tmp_path):
    cacher = Cacher(tmp_path / "cache")
    list(pipeline(_data, cacher)(10))
    del cacher
    gc.collect()
    assert sum(b.batch_size for b in CachedProducer(tmp_path / "cache")(7)) == 20
