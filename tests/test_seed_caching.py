"""The seed's caching example: with a Cacher after the model, the model runs once, however many
times (and at whatever batch sizes) the response producer is read afterwards."""

import numpy as np
import pytest

from introscope.base import (
    Batch,
    ImageFormat,
    Model,
    ResponseInfo,
    accumulate_batches,
    multi_introspect,
    peek_first_batch,
    pipeline,
)
from introscope.processors import Cacher, FieldRenamer, ImageResizer
from introscope.samples import StubImageDataset

Kind = ResponseInfo.LayerKind


def _info(name, shape, kind):
    return ResponseInfo(
        name, np.dtype(np.float64), shape, ResponseInfo.Layer(name, kind, kind.name)
    )


class TinyImageNet:
    """A stand-in for MobileNet: global average pool then a 3x2 dense layer, in numpy.

    Counts how many times inference ran and on how many images.
    """

    def __init__(self) -> None:
        self.W = np.array([[1.0, -2.0], [0.5, 0.0], [-1.0, 3.0]])
        self.calls = 0
        self.images = 0

    def run_inference(self, inputs, outputs):
        x = inputs["input_1"]
        self.calls += 1
        self.images += x.shape[0]
        pooled = x.mean(axis=(1, 2))
        values = {"global_pool": pooled, "logits": pooled @ self.W}
        return {name: values[name] for name in outputs}

    def get_response_infos(self):
        return [
            _info("global_pool", (None, 3), Kind.AVERAGE_POOLING_2D),
            _info("logits", (None, 2), Kind.DENSE),
        ]

    def get_input_layer_responses(self):
        return [_info("input_1", (None, 224, 224, 3), Kind.PLACEHOLDER)]


@pytest.fixture
def cifar_like():
    return StubImageDataset(dataset_size=7, image_width=32, image_height=24, channel_count=3)


def test_model_runs_once_however_often_the_cached_producer_is_read(cifar_like):
    backend = TinyImageNet()
    mobilenet = Model(backend)

    # As in the seed (which lacks a comma after mobilenet()).
    cacher = Cacher()
    try:
        response_producer = pipeline(
            cifar_like,
            ImageResizer(pixel_format=ImageResizer.Format.HWC, size=(224, 224)),
            mobilenet(),
            # Cache responses from MobileNet inference
            cacher,
        )
        assert backend.calls == 0  # nothing runs until the producer is read

        first = list(response_producer(4))
        assert [b.batch_size for b in first] == [4, 3]
        assert (backend.calls, backend.images) == (2, 7)

        for batch_size in (4, 3, 1, 7, 100):
            again = list(response_producer(batch_size))
            assert sum(b.batch_size for b in again) == 7
            assert all(b.batch_size == batch_size for b in again[:-1])
        peek_first_batch(response_producer, 2)
        totals = multi_introspect(
            lambda p: sum(float(b.fields["logits"].sum()) for b in p(5)),
            lambda p: sum(b.batch_size for b in p(2)),
            producer=response_producer,
        )
        assert totals[1] == 7
        assert (backend.calls, backend.images) == (2, 7)  # still the first pass only

        # What was cached is what the model computes on the resized images.
        reference = Model(TinyImageNet())
        expected = accumulate_batches(
            pipeline(
                cifar_like,
                ImageResizer(pixel_format=ImageFormat.HWC, size=(224, 224)),  # the other spelling
                reference(),
            ),
            batch_size=7,
        )
        cached = accumulate_batches(cacher.as_producer(), batch_size=3)
        assert list(cached.fields) == ["global_pool", "logits"]
        np.testing.assert_allclose(cached.fields["logits"], expected.fields["logits"], rtol=1e-12)
        np.testing.assert_allclose(
            cached.fields["global_pool"], expected.fields["global_pool"], rtol=1e-12
        )
        assert totals[0] == pytest.approx(float(expected.fields["logits"].sum()), rel=1e-12)
        # the Cacher numbered the elements, as DNIKit does
        assert cached.metadata[Batch.StdKeys.IDENTIFIER] == list(range(7))
    finally:
        Cacher.clear(cacher.storage_path)


def test_cached_producer_feeds_new_pipelines_without_rerunning_the_model(cifar_like):
    backend = TinyImageNet()
    cacher = Cacher()
    try:
        response_producer = pipeline(
            cifar_like,
            ImageResizer(pixel_format=ImageResizer.Format.HWC, size=(224, 224)),
            Model(backend)("logits"),
            cacher,
        )
        list(response_producer(3))
        renamed = pipeline(response_producer, FieldRenamer({"logits": "scores"}))
        sizes = [b.fields["scores"].shape for b in renamed(5)]
        assert sizes == [(5, 2), (2, 2)]
        assert sum(b.batch_size for b in cacher.as_producer()(2)) == 7
        assert backend.calls == 3  # ceil(7 / 3) batches on the first pass, none after
    finally:
        Cacher.clear(cacher.storage_path)
