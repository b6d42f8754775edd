"""The fit data of one response, streamed into one growing array or a seeded uniform sample.

A mixture model needs all of its fit data at once, so this state is O(samples x features): the
rows are copied into one C-contiguous array of the responses' dtype that grows in place
(``ndarray.resize``, a ``realloc`` that large allocations satisfy by remapping pages rather than
copying), never into a list of batches. With ``max_samples`` it keeps a uniform sample of that
many rows instead: every row gets a key hashed from ``(seed, global row index)`` and the rows
with the smallest keys are kept, so the sample depends neither on the batch size nor on how
the stream was split into shards, and two states of disjoint row ranges merge exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from introscope._validation import count_nonfinite
from introscope.exceptions import IntroscopeError, IntroscopeValueError

from .._state_contract import Capabilities, State, StateError, host_array

__all__ = ["FitData", "check_rows", "check_responses"]

_GROWTH = 1.25  # capacity growth factor; resize zero-fills the new rows, so keep the slack small
_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x.astype(_U64, copy=True)
        z ^= z >> _U64(30)
        z *= _MIX1
        z ^= z >> _U64(27)
        z *= _MIX2
        z ^= z >> _U64(31)
    return z


def row_keys(seed: int, start: int, count: int) -> np.ndarray:
    """Sampling keys of global rows ``start .. start + count - 1`` (uniform, independent uint64)."""
    base = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=_U64))[0]
    idx = np.arange(start + 1, start + count + 1, dtype=_U64)
    with np.errstate(over="ignore"):
        return _splitmix64(base + idx * _GOLDEN)


def check_rows(array: Any) -> np.ndarray:
    """``array`` as a 2-D numeric array of finite values, else a ``StateError``.

    The message reads after ``"Familiarity: response 'name' (batch 3) "``.
    """
    data = host_array(array)
    if data.ndim != 2:
        raise StateError(
            f"has shape {data.shape}; familiarity needs one vector per element, shape "
            f"(samples, features). Reduce the other axes first with "
            f"introscope.processors.Pooler (e.g. a global max or average over the spatial axes) "
            f"or Flattener"
        )
    if data.dtype.kind not in "biuf":
        raise StateError(f"has dtype {data.dtype}; familiarity needs numeric responses")
    if count_nonfinite(data):
        bad = np.flatnonzero(~np.isfinite(data).all(axis=1))
        raise StateError(
            f"holds NaN or Inf in {len(bad)} of its {len(data)} elements (first: element "
            f"{int(bad[0])} of the batch); remove or replace them before fitting or scoring "
            f"familiarity"
        )
    return data


def check_responses(who: str, field: str, array: Any, where: str) -> np.ndarray:
    """``check_rows`` with the error prefixed by ``who``, the field and ``where``."""
    try:
        return check_rows(array)
    except StateError as exc:
        at = f" ({where})" if where else ""
        raise IntroscopeValueError(f"{who}: response {field!r}{at} {exc}") from None


class FitData(State):
    """Streaming fit buffer of one response: ``update(array)``, ``merged(other)``, state dicts.

    O(samples x features) (all rows, or ``max_samples`` of them): a mixture needs its fit data
    at once.

    Args:
        name: the response (field) name, used in error messages
        max_samples: keep a seeded uniform sample of at most this many rows (``None``: all rows)
        seed: seed of the sample's row keys (only used with ``max_samples``)
        offset: global index of the first row this state sees; shards of one stream fed to
            separate states give their starting rows so that their merge equals one state fed
            with the whole stream
    """

    def __init__(
        self, name: str, *, max_samples: int | None = None, seed: int = 0, offset: int = 0
    ) -> None:
        if max_samples is not None and (
            isinstance(max_samples, bool)
            or not isinstance(max_samples, (int, np.integer))
            or max_samples < 1
        ):
            raise IntroscopeValueError(
                f"FitData: max_samples must be a positive int or None, got {max_samples!r}"
            )
        self.name = name
        self.max_samples = None if max_samples is None else int(max_samples)
        self.seed = int(seed)
        self.offset = int(offset)
        self.n_seen = 0
        # Global row ranges [start, stop) folded in (more than one after merging shards).
        self._ranges: list[list[int]] = []
        self._next = self.offset
        self._n = 0
        self._buf: np.ndarray | None = None
        self._keys = np.empty(0, dtype=_U64)  # sampled rows only
        self._index = np.empty(0, dtype=np.int64)  # global row index of each kept row
        self._exported = False

    # -- properties -------------------------------------------------------------------------
    @property
    def n_kept(self) -> int:
        """Rows held (all rows seen, or the sample's size)."""
        return self._n

    @property
    def n_features(self) -> int | None:
        return None if self._buf is None else self._buf.shape[1]

    @property
    def dtype(self) -> np.dtype | None:
        return None if self._buf is None else self._buf.dtype

    @property
    def nbytes(self) -> int:
        return 0 if self._buf is None else self._buf.nbytes

    # -- updates ------------------------------------------------------------------------------
    capabilities = Capabilities(
        mergeable=True, exact=True, passes=1, grows_with=("samples", "units")
    )
    checks_finite = True

    def update(self, array: Any, *, allow_nonfinite: bool = False) -> int:
        """Fold in one batch of rows (shape ``(rows, features)``, finite); returns 0."""
        data = check_rows(array)
        self._check_like(data.shape[1], data.dtype)
        start = self._next
        if len(data) == 0:
            return 0
        self.n_seen += len(data)
        self._next += len(data)
        if self._ranges and self._ranges[-1][1] == start:
            self._ranges[-1][1] = self._next
        else:
            self._ranges.append([start, self._next])
        if self._exported and self._buf is not None:
            # data() handed out a view of the buffer: copy on write, leave that view unchanged.
            self._buf = self._buf[: self._n].copy()
            self._exported = False
        if self.max_samples is None:
            self._append(data)
        else:
            self._sample(data, row_keys(self.seed, start, len(data)), start)
        return 0

    def _check_like(self, features: int, dtype: np.dtype) -> None:
        if self._buf is None:
            return
        if features != self._buf.shape[1]:
            raise StateError(
                f"has {features} features per element but earlier batches had "
                f"{self._buf.shape[1]}; every batch of a response must have the same width"
            )
        if dtype != self._buf.dtype:
            raise StateError(
                f"has dtype {dtype} but earlier batches had {self._buf.dtype}; cast the "
                f"responses to one dtype"
            )

    def _reserve(self, rows: int, features: int, dtype: np.dtype) -> np.ndarray:
        """Capacity for ``rows`` rows, growing the one buffer in place where possible."""
        if self._buf is None:
            self._buf = np.empty((max(rows, 1), features), dtype=dtype)
        elif rows > len(self._buf):
            cap = max(rows, int(len(self._buf) * _GROWTH) + 1)
            if self._exported or not self._buf.flags.owndata:
                grown = np.empty((cap, features), dtype=self._buf.dtype)
                grown[: self._n] = self._buf[: self._n]
                self._buf = grown
                self._exported = False
            else:
                # No view of the buffer is alive (data() marks it exported), so realloc is safe.
                self._buf.resize((cap, features), refcheck=False)
        return self._buf

    def _append(self, data: np.ndarray) -> None:
        need = self._n + len(data)
        buf = self._reserve(need, data.shape[1], data.dtype)
        buf[self._n : need] = data
        self._n = need

    def _sample(self, data: np.ndarray, keys: np.ndarray, start: int) -> None:
        assert self.max_samples is not None
        k = self.max_samples
        index = np.arange(start, start + len(data), dtype=np.int64)
        room = k - self._n
        if room > 0:  # fill the sample first
            take = min(room, len(data))
            self._append(data[:take])
            self._keys = np.concatenate([self._keys, keys[:take]])
            self._index = np.concatenate([self._index, index[:take]])
            data, keys, index = data[take:], keys[take:], index[take:]
            if len(data) == 0:
                return
        self._replace(data, keys, index)

    def _replace(self, data: np.ndarray, keys: np.ndarray, index: np.ndarray) -> None:
        """Keep the ``max_samples`` smallest keys among the held rows and these candidates."""
        assert self.max_samples is not None and self._buf is not None
        k = self.max_samples
        cand = np.nonzero(keys < self._keys.max())[0]
        if len(cand) == 0:
            return
        keys, index, rows = keys[cand], index[cand], cand
        pool = np.concatenate([self._keys, keys])
        keep = np.argpartition(pool, k - 1)[:k] if len(pool) > k else np.arange(len(pool))
        kept_new = keep[keep >= k] - k
        held = np.zeros(k, dtype=bool)
        held[keep[keep < k]] = True
        free = np.nonzero(~held)[0]
        assert len(free) == len(kept_new)
        self._buf[free] = data[rows[kept_new]]
        self._keys[free] = keys[kept_new]
        self._index[free] = index[kept_new]

    # -- results --------------------------------------------------------------------------------
    def result(self, **options: Any) -> np.ndarray:
        """The held rows (see ``data``)."""
        return self.data()

    def data(self) -> np.ndarray:
        """The held rows as one read-only C-contiguous ``(rows, features)`` array.

        Rows are in stream order (a sample's rows sorted by their global index), so the result
        does not depend on the batch size.
        """
        if self._buf is None:
            raise IntroscopeError(f"Familiarity: response {self.name!r} received no rows")
        if self.max_samples is not None:
            order = np.argsort(self._index, kind="stable")
            if not np.array_equal(order, np.arange(self._n)):
                self._buf[: self._n] = self._buf[order]
                self._keys = self._keys[order]
                self._index = self._index[order]
        if len(self._buf) > self._n and self._buf.flags.owndata and not self._exported:
            self._buf.resize((self._n, self._buf.shape[1]), refcheck=False)
        self._exported = True
        out = self._buf[: self._n]
        out.flags.writeable = False
        return out

    # -- merging and state dicts -------------------------------------------------------------------
    def merged(self, other: FitData) -> FitData:
        """A new state holding both states' rows (disjoint data); exact, associative."""
        if (other.max_samples, other.seed) != (self.max_samples, self.seed):
            raise StateError(
                f"cannot merge fit buffers with different max_samples/seed "
                f"({self.max_samples}/{self.seed} vs {other.max_samples}/{other.seed})"
            )
        first, second = (self, other) if self.offset <= other.offset else (other, self)
        ranges = sorted(r[:] for r in [*self._ranges, *other._ranges])
        for (_, stop), (start, _) in zip(ranges, ranges[1:]):
            if self.max_samples is not None and start < stop:
                raise StateError(
                    f"the two sampled fit buffers cover overlapping rows (both hold row "
                    f"{start}); give each shard's accumulator the index of its first row in "
                    f"the whole stream: Familiarity.accumulator(strategy=..., offset=...)"
                )
        out = FitData(self.name, max_samples=self.max_samples, seed=self.seed, offset=first.offset)
        out.n_seen = first.n_seen + second.n_seen
        joined: list[list[int]] = []
        for start, stop in ranges:
            if joined and joined[-1][1] == start:
                joined[-1][1] = stop
            else:
                joined.append([start, stop])
        out._ranges = joined
        out._next = max([self._next, other._next])
        for part in (first, second):
            if part._buf is None:
                continue
            rows = part._buf[: part._n]
            out._check_like(rows.shape[1], rows.dtype)
            if self.max_samples is None:
                out._append(rows)
            elif out._buf is None:
                out._append(rows)
                out._keys, out._index = part._keys.copy(), part._index.copy()
            else:
                room = self.max_samples - out._n
                out._append(rows[:room])
                out._keys = np.concatenate([out._keys, part._keys[:room]])
                out._index = np.concatenate([out._index, part._index[:room]])
                if room < len(rows):
                    out._replace(rows[room:], part._keys[room:], part._index[room:])
        return out

    def state_dict(self) -> dict[str, Any]:
        """numpy arrays and JSON scalars (no pickle); ``from_state_dict`` restores it."""
        rows = np.empty((0, 0)) if self._buf is None else self._buf[: self._n].copy()
        return {
            "name": self.name,
            "max_samples": self.max_samples,
            "seed": self.seed,
            "offset": self.offset,
            "n_seen": self.n_seen,
            "ranges": [r[:] for r in self._ranges],
            "next": self._next,
            "empty": self._buf is None,
            "rows": rows,
            "keys": self._keys.copy(),
            "index": self._index.copy(),
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> FitData:
        out = cls(
            str(state["name"]),
            max_samples=None if state["max_samples"] is None else int(state["max_samples"]),
            seed=int(state["seed"]),
            offset=int(state["offset"]),
        )
        out.n_seen = int(state["n_seen"])
        out._ranges = [[int(a), int(b)] for a, b in state["ranges"]]
        out._next = int(state["next"])
        if not state["empty"]:
            rows = np.asarray(state["rows"])
            out._append(rows)
            out._keys = np.asarray(state["keys"], dtype=_U64).copy()
            out._index = np.asarray(state["index"], dtype=np.int64).copy()
        return out
