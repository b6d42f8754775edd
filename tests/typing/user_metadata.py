"""Documented metadata idioms, as a user type-checks them (mypy --strict: no error expected)."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence

import numpy as np

from introscope.base import Batch, DictMetaKey, MetaKey, Producer, pipeline
from introscope.introspectors import Familiarity, FamiliarityResult, GMMCovarianceType

SCORE: Batch.MetaKey[float] = Batch.MetaKey("score")
TAGS: Batch.DictMetaKey[str] = Batch.DictMetaKey("tags")
PATH_KEY = Batch.MetaKey[str]("path")  # the MetaKey docstring's construction
PLAIN: MetaKey[int] = MetaKey("plain")  # module-level names (pyright needs these)
NESTED: DictMetaKey[int] = DictMetaKey("nested")


def builder_idioms() -> Batch:
    builder = Batch.Builder({"x": np.zeros((2, 1))})
    builder.metadata[TAGS]["color"] = ["red", "blue"]  # a new DictMetaKey, entry by entry
    builder.metadata[SCORE].append(0.5)  # a new MetaKey, element by element
    builder.metadata[SCORE].append(0.25)
    builder.metadata[Batch.StdKeys.LABELS]["cls"] = [0, 1]
    builder.metadata[Batch.StdKeys.IDENTIFIER] = ["a", "b"]
    builder.metadata[PATH_KEY] = ("a.png", "b.png")
    builder.metadata[PLAIN] = np.array([1, 2]).tolist()
    builder.metadata[NESTED] = {"n": [1, 2]}
    return builder.make_batch()


def my_producer(batch_size: int) -> Iterator[Batch]:
    for start in range(0, 20, batch_size):
        n = min(batch_size, 20 - start)
        builder = Batch.Builder({"emb": np.random.rand(n, 8).astype(np.float32)})
        builder.metadata[Batch.StdKeys.IDENTIFIER] = [f"id{start + i}" for i in range(n)]
        builder.metadata[Batch.StdKeys.LABELS] = {"cls": [i % 2 for i in range(n)]}
        builder.metadata[SCORE] = [0.5] * n
        builder.metadata[TAGS] = {"c": ["a"] * n}
        yield builder.make_batch()


def read_metadata(b: Batch) -> tuple[list[float], dict[str, list[str]], float, str]:
    ids = b.metadata[Batch.StdKeys.IDENTIFIER]
    first: Hashable = ids[0]
    scores: list[float] = b.metadata[SCORE]
    seq: Sequence[float] = b.metadata[SCORE]  # DNIKit's annotation
    tags: dict[str, list[str]] = b.metadata[TAGS]
    labels: Mapping[str, Sequence[Hashable]] = b.metadata[Batch.StdKeys.LABELS]
    el: Batch.ElementType = b.elements[0]
    one: float = el.metadata[SCORE]
    tag: dict[str, str] = el.metadata[TAGS]
    path: str = el.metadata[PATH_KEY].upper()
    view: Batch.MetadataType = b.metadata
    maybe: list[float] | None = b.metadata.get(SCORE)
    tags_or_empty: dict[str, list[str]] = b.metadata.get(TAGS, {})
    print(first, seq, labels, tag, view, maybe, tags_or_empty)
    return scores, tags, one, path


def ids_of(b: Batch) -> list[Hashable]:
    return b.metadata[Batch.StdKeys.IDENTIFIER]


def first_id(b: Batch) -> Hashable:
    return b.elements[0].metadata[Batch.StdKeys.IDENTIFIER]


def familiarity(p: Producer) -> list[float]:
    strategy = Familiarity.Strategy.GMM(
        gaussian_count=3, covariance_type=GMMCovarianceType.DIAG, random_state=0
    )
    gmm: Familiarity.Strategy.GMM = strategy
    fam = Familiarity.introspect(p, strategy=gmm)
    key: DictMetaKey[FamiliarityResult] = fam.meta_key
    out: list[float] = []
    for batch in pipeline(p, fam)(8):
        results: dict[str, list[FamiliarityResult]] = batch.metadata[key]
        for r in results["emb"]:
            out.append(r.score)
            if r.percentile is not None and r.percentile <= 1:
                out.append(r.percentile)
    return out


def fam_results(b: Batch, fam: Familiarity) -> dict[str, list[FamiliarityResult]]:
    return b.metadata[fam.meta_key]
