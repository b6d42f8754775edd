"""Misuse that type checkers must reject: each marked line must give the error code after E:."""

# ruff: noqa: B015, B018

from __future__ import annotations

import numpy as np

import torch
from introscope.base import (
    Batch,
    multi_introspect,
    peek_first_batch,
    pipeline,
    producer_from_batches,
)
from introscope.introspectors import IUA, PFA, Duplicates, Familiarity, ReportConfig

SCORE = Batch.MetaKey[float]("score")
TAGS = Batch.DictMetaKey[str]("tags")
PATH_KEY = Batch.MetaKey[str]("path")
b = Batch({"x": np.zeros((4, 3))})
p = producer_from_batches(b)
builder = Batch.Builder({"x": np.zeros((2, 1))})
builder.metadata[SCORE] = ["high", "low"]  # E: misc
builder.metadata[SCORE].append("x")  # E: arg-type
builder.metadata[TAGS]["c"] = [1, 2]  # E: list-item
builder.metadata[SCORE]["c"] = [1.0]  # E: call-overload
builder.metadata[TAGS].append("x")  # E: attr-defined
b.metadata[PATH_KEY][0].no_such()  # E: attr-defined
b.metadata.get(PATH_KEY, [])[0].no_such()  # E: attr-defined
b.elements[0].metadata[PATH_KEY].no_such()  # E: attr-defined
b.metadata[Batch.StdKeys.IDENTIFIER].no_such()  # E: attr-defined
ids: list[str] = b.metadata[Batch.StdKeys.IDENTIFIER]  # E: index
iua = IUA.introspect(p, batch_size="64")  # E: arg-type
iua.results["x"].mean_inactiv  # E: attr-defined
iua.results["x"].inactive_array.upper()  # E: attr-defined
pfa = PFA.introspect(p)
pfa.get_recipe(strategy=PFA.UnitSelectionStrategy.L1Max())  # E: arg-type
fam = Familiarity.introspect(p)
scored = peek_first_batch(pipeline(p, fam))
scored.metadata[fam.meta_key]["x"][0].scor  # E: attr-defined
scored.metadata[fam.meta_key]["x"][0].percentile < 1  # E: operator
dup = Duplicates.introspect(p, threshold=0.5)  # E: arg-type
dup.results["x"][0].indexes  # E: attr-defined
cand: Duplicates.DuplicateSetCandidate = dup  # E: assignment
ReportConfig(split_familiarity_min="50")  # E: arg-type
a, c = multi_introspect(IUA(), producer=p)  # E: misc
multi_introspect(IUA(), "not an introspector", producer=p)  # E: call-overload
IUA.monitor("not a model")  # E: arg-type
with IUA.monitor(torch.nn.ReLU()) as m:
    m.result.resluts  # E: attr-defined
