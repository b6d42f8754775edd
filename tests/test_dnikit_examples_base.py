"""DNIKit 2.0's own usage examples for base, processors and samples, run under both libraries.

Every example below is adapted from a docstring example of ``dnikit.base``, ``dnikit.processors``
or ``dnikit.samples`` (random data replaced by fixed arrays, ``...`` by small concrete inputs).
The same source runs once under DNIKit (``tests/dnikit_ref.run_dnikit``, one subprocess for all
examples) and once in this process with ``dnikit`` replaced by ``introscope``; the JSON-encoded
results must be equal. Examples whose results deliberately differ are compared in separate tests.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from tests.dnikit_ref import run_dnikit

_PRELUDE = """
import functools
import pathlib
from collections.abc import Mapping
import numpy as np
from {lib}.base import (
    Batch, PipelineStage, Producer, TrainTestSplitProducer, multi_introspect, peek_first_batch,
    pipeline,
)
from {lib}.processors import (
    Cacher, Composer, Concatenator, FieldRemover, FieldRenamer, Flattener, MeanStdNormalizer,
    MetadataRemover, MetadataRenamer, Pooler, Processor, SnapshotRemover, SnapshotSaver,
    Transposer,
)
from {lib}.samples import StubProducer
from {lib}.exceptions import DNIKitException


def enc(x):
    # JSON-friendly form that keeps dtype and container kind where they matter.
    if isinstance(x, Batch):
        return {{
            "fields": {{k: enc(v) for k, v in sorted(x.fields.items())}},
            "snapshots": {{k: enc(v) for k, v in sorted(x.snapshots.items())}},
            "metadata": {{k.name if not k.name.endswith(("identifier", "path", "labels"))
                         else "std." + k.name.rsplit(".", 1)[-1]: enc(x.metadata[k])
                         for k in sorted(x.metadata.keys(), key=lambda k: k.name)}},
            "batch_size": x.batch_size,
        }}
    if isinstance(x, np.ndarray):
        return {{"dtype": str(x.dtype), "shape": list(x.shape), "data": x.tolist()}}
    if isinstance(x, np.generic):
        return {{"scalar": str(x.dtype), "value": x.item()}}
    if isinstance(x, Mapping):
        return {{"dict": {{str(k): enc(v) for k, v in x.items()}}}}
    if isinstance(x, list):
        return {{"list": [enc(v) for v in x]}}
    if isinstance(x, tuple):
        return {{"tuple": [enc(v) for v in x]}}
    if isinstance(x, (pathlib.Path,)):
        return {{"path": str(x)}}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return {{"other": type(x).__name__}}


out = {{}}


def example(fn):
    try:
        out[fn.__name__] = enc(fn())
    except Exception as exc:
        # Exception classes differ by name; compare what an ``except`` clause would catch.
        out[fn.__name__] = {{"raised": [isinstance(exc, c) for c in (
            DNIKitException, ValueError, TypeError, KeyError, IndexError)]}}
    return fn
"""

# Each example: a function whose name is the key of its result. ``arrays`` holds the inputs.
_EXAMPLES = r"""
@example
def batch_fields():
    batch = Batch({"input_images": arrays["images"], "labels": arrays["labels"][:6]})
    keys = list(batch.fields.keys())
    images = batch.fields["input_images"]
    shapes = [f"field {k} has shape {v.shape}" for k, v in batch.fields.items()]
    new_batch = Batch({"images": np.zeros((32, 3, 64, 64))})
    return keys, images, shapes, new_batch.batch_size, batch.batch_size, len(batch.elements)


@example
def batch_snapshots():
    producer = pipeline(
        StubProducer({"data": arrays["x"]}),
        SnapshotSaver(save="origin"),
        Processor(lambda a: a * 10.0),
    )
    batch = peek_first_batch(producer, 4)
    origin_batch = batch.snapshots["origin"]
    return ("origin" in batch.snapshots, origin_batch.fields["data"],
            batch.batch_size == origin_batch.batch_size, batch)


@example
def batch_metadata_flat_and_dict():
    META_KEY = Batch.MetaKey[int]("META_KEY")
    DICT_META_KEY = Batch.DictMetaKey[float]("DICT_META_KEY")
    builder = Batch.Builder({"x": arrays["x"]})
    builder.metadata[META_KEY] = list(range(10))
    builder.metadata[DICT_META_KEY] = {"key": [0.5 * i for i in range(10)]}
    batch = builder.make_batch()
    flat_metadata = batch.metadata[META_KEY]
    dict_metadata = batch.metadata[DICT_META_KEY]["key"]
    return (flat_metadata, len(flat_metadata) == batch.batch_size, dict_metadata,
            flat_metadata == list(range(10)), batch.metadata[DICT_META_KEY] == {
                "key": [0.5 * i for i in range(10)]})


@example
def elements_index_slice_iterate():
    builder = Batch.Builder({"data": arrays["x"]})
    builder.metadata[Batch.MetaKey("m")] = [f"e{i}" for i in range(10)]
    batch = builder.make_batch()
    element = batch.elements[7]
    subset = batch.elements[-1, 1, 2, 3, 5, 8]
    sliced = batch.elements[1:9:2]
    listed = batch.elements[[0, 9]]
    rows = [element.fields["data"] for element in batch.elements]
    return (element.fields["data"], element.metadata[Batch.MetaKey("m")], subset, sliced,
            listed, rows, isinstance(element, Batch.ElementType))


@example
def element_scalar_field():
    batch = Batch({"v": arrays["labels"]})
    return batch.elements[2].fields["v"], batch.elements[-1].fields["v"]


@example
def meta_keys_typed_and_untyped():
    key_untyped = Batch.MetaKey("example")
    key_typed = Batch.MetaKey[int]("example2")
    dict_untyped = Batch.DictMetaKey("example")
    dict_typed = Batch.DictMetaKey[int]("example2")
    return (key_untyped.name, key_typed.name, dict_untyped.name, dict_typed.name,
            key_typed == Batch.MetaKey("example2"), key_untyped == dict_untyped,
            len({key_untyped, Batch.MetaKey[str]("example"), dict_untyped}))


@example
def metadata_type_operations():
    FLAT_META_KEY = Batch.MetaKey[int]("FLAT_META_KEY")
    DICT_META_KEY = Batch.DictMetaKey[float]("DICT_META_KEY")
    OTHER = Batch.MetaKey("OTHER")
    builder = Batch.Builder({"x": arrays["x"][:3]})
    builder.metadata[FLAT_META_KEY] = [4, 5, 6]
    builder.metadata[DICT_META_KEY] = {"key": [1.0, 2.0, 3.0], "other": [7.0, 8.0, 9.0]}
    batch = builder.make_batch()
    plain = Batch({"x": arrays["x"][:3]})
    batch_element = batch.elements[1]
    return (
        batch.metadata[FLAT_META_KEY], batch.metadata[DICT_META_KEY]["key"],
        FLAT_META_KEY in batch.metadata, DICT_META_KEY in batch.metadata, OTHER in batch.metadata,
        bool(batch.metadata), bool(plain.metadata),
        sorted(k.name for k in batch.metadata.keys()),
        batch_element.metadata[FLAT_META_KEY], batch_element.metadata[DICT_META_KEY],
        batch_element.metadata[DICT_META_KEY] == {"key": 2.0, "other": 8.0},
        FLAT_META_KEY in batch_element.metadata, OTHER in batch_element.metadata,
        bool(batch_element.metadata), bool(plain.elements[0].metadata),
        sorted(k.name for k in batch_element.metadata.keys()),
    )


@example
def nested_type_names():
    def annotated(m: Batch.MetadataType.ElementType, b: Batch.Builder.MutableMetadataType) -> bool:
        return isinstance(m, Batch.MetadataType.ElementType) and isinstance(
            b, Batch.Builder.MutableMetadataType)

    builder = Batch.Builder({"x": arrays["x"][:2]})
    batch = builder.make_batch()
    return (annotated(batch.elements[0].metadata, builder.metadata),
            isinstance(batch.metadata, Batch.MetadataType),
            isinstance(batch.elements, Batch.ElementsView),
            isinstance(batch.elements[1], Batch.ElementType))


@example
def builder_fields_snapshots_metadata():
    builder = Batch.Builder()
    builder.fields["images"] = np.zeros((32, 64, 64, 3))
    builder.fields["images"][:, :, :, 0] = 1.0
    builder.fields["keep"] = np.arange(32)
    previous_batch = builder.make_batch()
    del builder.fields["images"]
    builder.snapshots["origin"] = previous_batch
    builder.snapshots["snapshot"] = previous_batch
    del builder.snapshots["origin"]
    FLAT_META_KEY = Batch.MetaKey[int]("FLAT_META_KEY")
    builder.metadata[FLAT_META_KEY] = list(range(32))
    batch = builder.make_batch()
    return (batch.elements[[0, 31]], float(previous_batch.fields["images"].sum()),
            sorted(batch.snapshots), sorted(batch.snapshots["snapshot"].fields))


@example
def builder_mutable_metadata():
    FLAT_META_KEY = Batch.MetaKey[int]("FLAT_META_KEY")
    DICT_META_KEY = Batch.DictMetaKey[float]("DICT_META_KEY")
    builder = Batch.Builder({"x": arrays["x"][:4]})
    empty = bool(builder.metadata)
    builder.metadata[FLAT_META_KEY] = [2, 7, 1, 8]
    builder.metadata[DICT_META_KEY] = {"digits": [1., 2., 3., 4.], "tens": [10., 20., 30., 40.]}
    builder.metadata[DICT_META_KEY]["hundreds"] = [100., 200., 300., 400.]
    flat_metadata = builder.metadata[FLAT_META_KEY]
    dict_metadata = builder.metadata[DICT_META_KEY]
    flat_metadata.append(9)  # edits the builder's own list
    del builder.metadata[FLAT_META_KEY]
    del builder.metadata[DICT_META_KEY]["tens"]
    state = (empty, FLAT_META_KEY in builder.metadata, DICT_META_KEY in builder.metadata,
             bool(builder.metadata), sorted(k.name for k in builder.metadata.keys()),
             sorted(dict_metadata))
    return state, builder.make_batch()


@example
def builder_dict_entry_on_new_key():
    LABELS = Batch.DictMetaKey("labels")
    builder = Batch.Builder({"x": arrays["x"][:3]})
    builder.metadata[LABELS]["color"] = ["red", "green", "blue"]
    return builder.make_batch()


@example
def builder_empty_dict_metadata_is_dropped():
    D = Batch.DictMetaKey("d")
    builder = Batch.Builder({"x": arrays["x"][:3]})
    builder.metadata[D] = {}
    batch = builder.make_batch()
    return D in batch.metadata, bool(batch.metadata), batch


@example
def builder_only_empty_dict_metadata():
    builder = Batch.Builder()
    builder.metadata[Batch.DictMetaKey("d")] = {}
    return builder.make_batch()


@example
def builder_from_base_then_delete_fields():
    M = Batch.MetaKey("m")
    b = Batch.Builder({"a": arrays["x"][:5], "b": arrays["labels"][:5]})
    b.metadata[M] = list("vwxyz")
    base = b.make_batch()
    builder = Batch.Builder(base=base)
    del builder.fields["a"]
    one = builder.make_batch()
    del builder.fields["b"]
    none = builder.make_batch()
    return base, one, none, sorted(Batch.Builder(base=base).fields)


@example
def builder_from_base_without_metadata_then_delete_all():
    builder = Batch.Builder(base=Batch({"a": arrays["x"]}))
    del builder.fields["a"]
    return builder.make_batch()


@example
def std_keys_use_cases():
    dataset = [("img%d.png" % i, i, 2 * i, 10, 20) for i in range(3)]
    builder = Batch.Builder({"x": arrays["x"][:3]})
    builder.metadata[Batch.StdKeys.IDENTIFIER] = [
        (path, x, y, w, h) for path, x, y, w, h in dataset]
    builder.metadata[Batch.StdKeys.PATH] = [path for path, *_ in dataset]
    CROP = Batch.MetaKey("crop")
    builder.metadata[CROP] = [(x, y, w, h) for _, x, y, w, h in dataset]
    builder.metadata[Batch.StdKeys.LABELS] = {
        "shape": ["square", "square", "triangle"],
        "color": ["blue", "red", "green"],
    }
    batch = builder.make_batch()
    labels_shapes = batch.metadata[Batch.StdKeys.LABELS]["shape"]
    labels_colors = batch.metadata[Batch.StdKeys.LABELS]["color"]
    user_path = Batch.MetaKey("PATH")
    return (batch, labels_shapes, labels_colors, user_path in batch.metadata,
            user_path == Batch.StdKeys.PATH, Batch.DictMetaKey("LABELS") == Batch.StdKeys.LABELS)


@example
def producers_function_and_class():
    def simple_producer(batch_size):
        for i in range(3):
            data = arrays["noise"][i * batch_size:(i + 1) * batch_size]
            yield Batch({"input": data})

    class ClassProducer(Producer):
        def __init__(self):
            self._dims = (10, 1)

        def __call__(self, batch_size):
            for i in range(3):
                data = arrays["noise"][i * batch_size:(i + 1) * batch_size]
                yield Batch({"input": data.reshape(batch_size, *self._dims)})

    a = [b.fields["input"] for b in simple_producer(4)]
    b = [b.fields["input"] for b in ClassProducer()(4)]
    first = peek_first_batch(ClassProducer(), 2)
    return a, b, first, [x.batch_size for x in pipeline(simple_producer)(5)]


@example
def pipeline_stages_simple_and_stateful():
    class Simple(PipelineStage):
        def _get_batch_processor(self):
            def simple_batch_operation(batch):
                data = {"result": batch.fields["input"] * 2.0}
                return Batch(data)
            return simple_batch_operation

    class Stateful(PipelineStage):
        def __init__(self, factor):
            self.factor = factor

        def _get_batch_processor(self):
            factor = self.factor

            def batch_operation(batch):
                return Batch({"input": batch.fields["input"] * factor})
            return batch_operation

    source = StubProducer({"input": arrays["x"]})
    p = pipeline(source, Stateful(3.0), Simple())
    return list(p(4)), list(p(4))


@example
def pipeline_with_pooler_and_peek():
    in_producer = StubProducer({"resp": arrays["conv"]})
    postprocessor = Pooler(dim=-1, method=Pooler.Method.MAX)
    out_producer = pipeline(in_producer, [postprocessor, Processor(lambda a: a + 1.0)])
    batch = peek_first_batch(out_producer, batch_size=3)
    return batch, [b.batch_size for b in out_producer(4)]


@example
def processor_to_db():
    def to_db_func(x):
        ref_value = 1e-5
        return 20 * np.log10(x / ref_value)

    processor = Processor(to_db_func)
    p = pipeline(StubProducer({"power": arrays["positive"], "other": arrays["positive"] + 1}),
                 processor)
    only = pipeline(StubProducer({"power": arrays["positive"], "other": arrays["positive"]}),
                    Processor(to_db_func, fields="power"))
    return list(p(3)), peek_first_batch(only, 10)


@example
def field_processors():
    src = StubProducer({"img": arrays["conv"], "vec": arrays["x"]})
    nhwc = peek_first_batch(pipeline(src, Transposer(dim=[0, 3, 1, 2], fields="img")), 10)
    norm = peek_first_batch(pipeline(src, MeanStdNormalizer(mean=0.5, std=2.0)), 10)
    flat_c = peek_first_batch(pipeline(src, Flattener()), 10)
    flat_f = peek_first_batch(pipeline(src, Flattener(order="F", fields=["img"])), 10)
    pooled = {m.name: peek_first_batch(pipeline(src, Pooler(dim=(1, 2), method=m, fields="img")), 10)
              for m in Pooler.Method}
    removed = peek_first_batch(pipeline(src, FieldRemover(fields="img")), 10)
    kept = peek_first_batch(pipeline(src, FieldRemover(fields=["img"], keep=True)), 10)
    renamed = peek_first_batch(pipeline(src, FieldRenamer({"img": "vec", "vec": "img"})), 10)
    onto = peek_first_batch(pipeline(src, FieldRenamer({"img": "vec"})), 10)
    return nhwc, norm, flat_c, flat_f, pooled, removed, kept, renamed, onto


@example
def concatenator_example():
    src = StubProducer({"M": arrays["m"], "N": arrays["n"]})
    joined = peek_first_batch(pipeline(src, Concatenator(dim=1, output_field="MN",
                                                         fields=["M", "N"])), 10)
    last = peek_first_batch(pipeline(src, Concatenator(dim=-2, output_field="NM",
                                                       fields=["N", "M"])), 10)
    return joined, last


@example
def snapshots_through_concatenator_and_remover():
    src = StubProducer({"a": arrays["m"], "b": arrays["n"]},
                       metadata={Batch.MetaKey("id"): list(range(10))})
    p = pipeline(
        src,
        SnapshotSaver(),
        Concatenator(dim=1, output_field="c", fields=["a", "b"]),
        FieldRemover(fields=["a", "b"]),
        SnapshotSaver(save="joined", fields="c"),
        SnapshotSaver(save="no_c", fields="c", keep=False),
        Processor(lambda x: -x),
    )
    batches = list(p(4))
    element = batches[1].elements[2]
    removed_one = list(pipeline(p, SnapshotRemover(snapshots="snapshot"))(4))
    kept_one = list(pipeline(p, SnapshotRemover(snapshots=["joined"], keep=True))(4))
    removed_all = list(pipeline(p, SnapshotRemover())(4))
    return (batches, element.fields["c"], element.snapshots["snapshot"].fields["a"],
            element.snapshots["joined"].fields["c"],
            element.snapshots["snapshot"].metadata[Batch.MetaKey("id")],
            removed_one, kept_one, removed_all)


@example
def metadata_processors():
    LABELS = Batch.StdKeys.LABELS
    EXTRA = Batch.DictMetaKey("extra")
    ID = Batch.StdKeys.IDENTIFIER
    src = StubProducer({"x": arrays["x"][:4]}, metadata={
        ID: [10, 11, 12, 13],
        LABELS: {"color": ["red", "blue", "red", "green"], "size": [1, 2, 3, 4]},
        EXTRA: {"color": [0, 0, 1, 1]},
    })
    runs = {
        "all": MetadataRemover(),
        "id": MetadataRemover(meta_keys=ID),
        "labels": MetadataRemover(meta_keys=LABELS),
        "keep_labels": MetadataRemover(meta_keys=[LABELS], keep=True),
        "key_color": MetadataRemover(keys="color"),
        "keep_key_size": MetadataRemover(keys=["size"], keep=True),
        "labels_color": MetadataRemover(meta_keys=LABELS, keys="color"),
        "rename": MetadataRenamer({"color": "colour"}),
        "rename_one": MetadataRenamer({"color": "colour"}, meta_keys=EXTRA),
        "swap": MetadataRenamer({"color": "size", "size": "color"}, meta_keys=LABELS),
    }
    return {name: peek_first_batch(pipeline(src, stage), 4) for name, stage in runs.items()}


@example
def field_renamer_leaves_dict_metadata_alone():
    D = Batch.DictMetaKey("per_field")
    b = Batch.Builder({"x": arrays["x"][:2], "y": arrays["labels"][:2]})
    b.metadata[D] = {"x": [1, 2], "y": [3, 4]}
    out = FieldRenamer({"x": "z"})._get_batch_processor()(b.make_batch())
    return out


@example
def metadata_only_batch_through_stages():
    M = Batch.MetaKey("m")

    def only_metadata(batch_size):
        for start in range(0, 5, batch_size):
            b = Batch.Builder()
            b.metadata[M] = list(range(start, min(5, start + batch_size)))
            yield b.make_batch()

    p = pipeline(only_metadata, Processor(lambda a: a * 2), SnapshotSaver(), SnapshotRemover(),
                 Pooler(dim=1, method=Pooler.Method.MAX), Composer(lambda b: b.elements[:1]))
    return list(p(2)), list(pipeline(only_metadata)(7))


@example
def composer_filters():
    LABELS = Batch.StdKeys.LABELS
    src = StubProducer({"x": arrays["x"]}, metadata={
        LABELS: {"parity": ["even", "odd"] * 5}})
    by_element = pipeline(src, Composer.from_element_filter(lambda e: e.fields["x"][0] > 5))
    by_label = pipeline(src, Composer.from_dict_metadata(LABELS, "parity", "odd"))
    by_batch = pipeline(src, Composer(lambda b: b.elements[[0]]))
    # DNIKit passes empty batches on (introscope drops them): compare the non-empty ones.
    def nonempty(p, n):
        return [b for b in p(n) if b.batch_size]
    return nonempty(by_element, 3), nonempty(by_label, 4), nonempty(by_batch, 4)


@example
def batch_size_one_and_larger_than_data():
    M = Batch.MetaKey("m")
    D = Batch.DictMetaKey("d")
    src = StubProducer({"x": arrays["x"]}, metadata={M: list("abcdefghij"), D: {"k": list(range(10))}})
    p = pipeline(src, SnapshotSaver(), Processor(lambda a: a + 1))
    return list(p(1))[:3], list(p(100)), list(p(10)), [b.batch_size for b in p(3)]


@example
def stub_producer_with_empty_metadata():
    return list(StubProducer({"x": arrays["x"]}, metadata={})(4))


@example
def generator_function_producer_rerun():
    def gen(batch_size):
        for start in range(0, 7, batch_size):
            yield Batch({"a": arrays["x"][start:min(7, start + batch_size)]})

    p = pipeline(gen, SnapshotSaver(), Pooler(dim=1, method=Pooler.Method.SUM))
    return list(p(3)), list(p(3)), list(p(2))


@example
def peek_first_batch_is_lazy():
    pulled = []

    def gen(batch_size):
        for i in range(5):
            pulled.append(i)
            yield Batch({"a": np.full((batch_size, 2), float(i))})

    first = peek_first_batch(pipeline(gen, Processor(lambda a: a * 2)), 3)
    return first, len(pulled)


@example
def cacher_example():
    calls = []

    def producer(batch_size):
        calls.append(batch_size)
        for start in range(0, 100, batch_size):
            yield Batch({"x": arrays["big"][start:start + batch_size]})

    cacher = Cacher()
    pipelined_producer = pipeline(producer, Processor(lambda a: a * 2), cacher)
    before = cacher.cached
    first = list(pipelined_producer(batch_size=32))
    after = cacher.cached
    second = list(pipelined_producer(batch_size=32))
    third = list(pipelined_producer(batch_size=48))
    from_disk = list(cacher.as_producer()(batch_size=60))
    Cacher.clear(cacher.storage_path)
    return (before, after, calls, first, second, third, from_disk)


@example
def cacher_keeps_identifiers():
    src = StubProducer({"x": arrays["x"]},
                       metadata={Batch.StdKeys.IDENTIFIER: [f"id{i}" for i in range(10)]})
    cacher = Cacher()
    p = pipeline(src, cacher)
    first = list(p(4))
    again = list(p(3))
    Cacher.clear(cacher.storage_path)
    return first, again


@example
def cacher_misuse():
    cacher = Cacher()
    errors = []
    try:
        cacher.as_producer()
    except DNIKitException:
        errors.append("as_producer before caching")
    pipeline(StubProducer({"x": arrays["x"]}), cacher)
    try:
        pipeline(StubProducer({"x": arrays["x"]}), cacher)
    except DNIKitException:
        errors.append("second pipeline")
    Cacher.clear(cacher.storage_path)
    return errors


@example
def train_test_split_producer():
    split = ((arrays["xtr"], arrays["ytr"]), (arrays["xte"], arrays["yte"]))
    producer = TrainTestSplitProducer(split)
    batches = list(producer(4))
    plain = list(TrainTestSplitProducer(split, attach_metadata=False, max_samples=5)(2))
    sub = producer.subset(labels=[1, 2], datasets="test")
    sub_batches = list(sub(3))
    sub_train = list(producer.subset(datasets=["train"], max_samples=3)(10))
    np.random.seed(1234)
    producer.shuffle()
    shuffled = list(producer(5))
    return batches, plain, sub_batches, sub_train, shuffled, producer.max_samples


@example
def train_test_split_errors():
    x = arrays["xtr"]
    y = arrays["ytr"]
    outcomes = []
    for bad in [
        ((x, y), (x[:0], y[:0])[:1]),
        ((x[:0], y[:0]), (x[:0], y[:0])),
        ((x, y[:3]), (x, y)),
        ((x, y), (x[:, :1], y)),
    ]:
        try:
            TrainTestSplitProducer(bad)
            outcomes.append("ok")
        except TypeError:
            outcomes.append("TypeError")
        except DNIKitException:
            outcomes.append("DNIKitException")
    try:
        TrainTestSplitProducer(((x, y), (x, y))).subset(labels=[])
    except ValueError:
        outcomes.append("ValueError")
    return outcomes


@example
def multi_introspect_callables():
    src = StubProducer({"x": arrays["x"]})

    def total(producer, batch_size=4):
        return float(sum(b.fields["x"].sum() for b in producer(batch_size)))

    def sizes(producer):
        return [b.batch_size for b in producer(4)]

    return multi_introspect(total, functools.partial(total, batch_size=4),
                            lambda prod: sizes(prod), producer=src)


@example
def exception_message():
    try:
        raise DNIKitException("something failed")
    except DNIKitException as e:
        return e.message, str(e), isinstance(e, RuntimeError)


@example
def bad_construction_errors():
    outcomes = []
    for make in [
        lambda: Batch({}),
        lambda: Batch.Builder({"x": arrays["x"]}, base=Batch({"x": arrays["x"]})),
        lambda: Batch.Builder(Batch({"x": arrays["x"]})),
        lambda: Batch({"a": arrays["x"], "b": arrays["x"][:3]}),
        lambda: Transposer(dim=[1, 0]),
        lambda: Flattener(order="Z"),
        lambda: MetadataRemover(keys=Batch.MetaKey("k")),
    ]:
        try:
            make()
            outcomes.append("ok")
        except ValueError:
            outcomes.append("ValueError")
        except DNIKitException:
            outcomes.append("DNIKitException")
    return outcomes
"""


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240611)
    return {
        "images": rng.random((6, 4, 5, 3)).astype(np.float32),
        "labels": np.arange(10, dtype=np.int64) % 3,
        "x": np.arange(20, dtype=np.float64).reshape(10, 2),
        "noise": rng.standard_normal((20, 10)),
        "conv": rng.standard_normal((10, 4, 3, 2)).astype(np.float32),
        "positive": rng.random((10, 3)) + 0.1,
        "m": rng.standard_normal((10, 2, 3)),
        "n": rng.standard_normal((10, 4, 3)),
        "big": np.arange(300, dtype=np.float32).reshape(100, 3),
        "xtr": rng.random((7, 3, 1)).astype(np.float32),
        "ytr": np.array([[0], [1], [2], [1], [0], [2], [1]]),
        "xte": rng.random((5, 3, 1)).astype(np.float32),
        "yte": np.array([[2], [2], [1], [0], [1]]),
    }


def _source(lib: str) -> str:
    return textwrap.dedent(_PRELUDE.format(lib=lib)) + textwrap.dedent(_EXAMPLES)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[dict, dict]:
    arrays = _arrays()
    ref = run_dnikit(
        _source("dnikit") + "\nresult = out\n", arrays, tmp_path_factory.mktemp("dnikit")
    )
    namespace: dict = {"arrays": arrays}
    exec(compile(_source("introscope"), "<introscope examples>", "exec"), namespace)  # noqa: S102
    # Round-trip through JSON like the reference, so tuples/lists compare the same way.
    ours = json.loads(json.dumps(namespace["out"]))
    return ref, ours


def _names() -> list[str]:
    return [
        line.split("(")[0].removeprefix("def ")
        for line in textwrap.dedent(_EXAMPLES).splitlines()
        if line.startswith("def ")
    ]


@pytest.mark.parametrize("name", _names())
def test_example_matches_dnikit(results, name):
    ref, ours = results
    # An example that broke (a typo, an AttributeError) records no expected exception class on
    # either side, and would then compare equal without testing anything.
    assert ref[name] != {"raised": [False] * 5}, f"the example {name} is broken under DNIKit"
    assert ours[name] == ref[name]


def test_composer_drops_the_empty_batches_dnikit_passes_on():
    # Documented deviation: DNIKit yields empty batches from a Composer, introscope drops them.
    from introscope.base import pipeline
    from introscope.processors import Composer
    from introscope.samples import StubProducer

    src = StubProducer({"x": np.arange(6.0)})
    sizes = [b.batch_size for b in pipeline(src, Composer(lambda b: b.elements[[]]))(2)]
    assert sizes == []


# Regression tests for the compatibility fixes (they run without the DNIKit reference too).


def test_metadata_reads_are_fresh_lists_and_dicts_like_dnikit():
    from introscope.base import Batch

    key, labels = Batch.MetaKey("k"), Batch.StdKeys.LABELS
    builder = Batch.Builder({"x": np.zeros(3)})
    builder.metadata[key] = ["a", "b", "c"]
    builder.metadata[labels] = {"digit": [1, 2, 3]}
    batch = builder.make_batch()
    assert batch.metadata[key] == ["a", "b", "c"]
    assert batch.metadata[labels] == {"digit": [1, 2, 3]}
    assert batch.metadata[key] + ["d"] == ["a", "b", "c", "d"]
    batch.metadata[key].append("z")  # a copy: the batch is unchanged
    batch.metadata[labels]["digit"][0] = 9
    assert batch.metadata[key] == ["a", "b", "c"]
    assert batch.metadata[labels]["digit"] == [1, 2, 3]
    assert type(batch.elements[1].metadata[labels]) is dict
    assert batch.elements[1].metadata[labels] == {"digit": 2}


def test_dict_metakey_without_entries_is_no_metadata():
    from introscope.base import Batch
    from introscope.exceptions import IntroscopeError

    key = Batch.DictMetaKey("d")
    builder = Batch.Builder({"x": np.zeros(3)})
    builder.metadata[key] = {}
    batch = builder.make_batch()
    assert key not in batch.metadata and not batch.metadata
    only = Batch.Builder()
    only.metadata[key] = {}
    with pytest.raises(IntroscopeError, match="at least one field or one metadata entry"):
        only.make_batch()


def test_builder_sets_an_entry_of_a_new_dict_metakey():
    from introscope.base import Batch

    labels = Batch.StdKeys.LABELS
    builder = Batch.Builder({"x": np.zeros(2)})
    builder.metadata[labels]["color"] = ["red", "blue"]
    builder.metadata[labels]["size"] = [1, 2]
    assert builder.make_batch().metadata[labels] == {"color": ["red", "blue"], "size": [1, 2]}
    # A new MetaKey reads as an empty list to fill, as DNIKit's defaultdict does.
    builder.metadata[Batch.MetaKey("flat")].extend([0, 1])
    assert builder.make_batch().metadata[Batch.MetaKey("flat")] == [0, 1]


def test_std_keys_do_not_equal_user_keys_of_the_same_short_name():
    from introscope.base import Batch

    assert Batch.MetaKey("PATH") != Batch.StdKeys.PATH
    assert Batch.MetaKey("IDENTIFIER") != Batch.StdKeys.IDENTIFIER
    assert Batch.DictMetaKey("LABELS") != Batch.StdKeys.LABELS
    builder = Batch.Builder({"x": np.zeros(2)})
    builder.metadata[Batch.StdKeys.PATH] = ["a.png", "b.png"]
    builder.metadata[Batch.MetaKey("PATH")] = ["mine", "mine"]
    batch = builder.make_batch()
    assert batch.metadata[Batch.StdKeys.PATH] == ["a.png", "b.png"]
    assert repr(Batch.StdKeys.LABELS) == "Batch.StdKeys.LABELS"


def test_dnikit_exception_message_attribute():
    from introscope.exceptions import DNIKitException, IntroscopeError

    assert IntroscopeError("boom").message == "boom"

    class Custom(DNIKitException):  # the DNIKit subclassing pattern
        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.message = message.upper()

    assert Custom("boom").message == "BOOM"


def test_invalid_arguments_are_value_errors_as_in_dnikit():
    from introscope.base import Batch, peek_first_batch
    from introscope.exceptions import IntroscopeError
    from introscope.samples import StubProducer

    batch = Batch({"x": np.zeros(2)})
    for make, why in (
        (lambda: Batch({}), "without fields"),
        (lambda: Batch.Builder({"x": np.zeros(2)}, base=batch), "either fields or base"),
        (lambda: Batch.Builder(batch), r"use Batch.Builder\(base=batch\)"),
        (lambda: peek_first_batch(StubProducer({"x": np.zeros(2)}), 0), "batch_size.*got 0"),
    ):
        with pytest.raises(ValueError, match=why) as info:
            make()
        assert isinstance(info.value, IntroscopeError)


def test_numpy_integer_batch_sizes_are_accepted():
    from introscope.base import TrainTestSplitProducer, pipeline
    from introscope.processors import Processor
    from introscope.samples import StubProducer

    x, y = np.zeros((5, 2)), np.arange(5)
    assert [b.batch_size for b in TrainTestSplitProducer(((x, y), (x, y)))(np.int64(4))] == [
        4,
        4,
        2,
    ]
    p = pipeline(StubProducer({"x": x}), Processor(lambda a: a))
    assert [b.batch_size for b in p(np.int32(2))] == [2, 2, 1]


def test_mean_std_normalizer_keeps_float32_with_python_scalars():
    from introscope.base import Batch
    from introscope.processors import MeanStdNormalizer

    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(4, 2)
    out = MeanStdNormalizer(mean=0.5, std=2.0)._get_batch_processor()(Batch({"x": x}))
    assert out.fields["x"].dtype == np.float32
    np.testing.assert_array_equal(out.fields["x"], (x - 0.5) / 2.0)
    arr = MeanStdNormalizer(mean=np.array([0.5, 1.0]), std=2.0)._get_batch_processor()
    assert arr(Batch({"x": x})).fields["x"].dtype == np.float64  # a float64 array promotes


def test_dnikit_nested_type_names_exist():
    from introscope.base import Batch

    builder = Batch.Builder({"x": np.zeros(2)})
    assert isinstance(builder.metadata, Batch.Builder.MutableMetadataType)
    assert isinstance(builder.make_batch().elements[0].metadata, Batch.MetadataType.ElementType)


def test_custom_stage_has_a_logger_like_dnikit():
    from introscope.base import Batch, PipelineStage, pipeline
    from introscope.samples import StubProducer

    class Logs(PipelineStage):
        def _get_batch_processor(self):
            def process(batch: Batch) -> Batch:
                self.logger.debug("batch of %d", batch.batch_size)
                return batch

            return process

    stage = Logs()
    assert stage.logger.name.endswith("Logs")
    assert [b.batch_size for b in pipeline(StubProducer({"x": np.zeros(3)}), stage)(2)] == [2, 1]
