"""The bundled strategies: streamed exact PCA, scikit-learn PCA and t-SNE, UMAP, PaCMAP.

Constructor arguments and defaults are DNIKit 2.0's. What differs: ``PCA`` is exact (from a
streamed covariance) rather than ``IncrementalPCA``'s approximation, and takes any batch size;
t-SNE and PaCMAP give their embedding only for the rows they were fitted on and raise for
anything else; UMAP gives its fitted embedding for the rows it was fitted on whatever the batch
size, and ``transform``s only rows it has not seen.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from introscope.base._producer import check_batch_size
from introscope.exceptions import IntroscopeError, IntroscopeValueError, MissingDependencyError
from introscope.introspectors._state_contract import StateError

from ._checks import at, check_responses, check_target_dimensions
from ._pca_state import PCAFit, PCAState
from ._protocols import DimensionReductionStrategyType
from ._rows import POSITION_RTOL, FittedRows
from ._umap_knn import UMAPNeighbors, check_umap_neighbors, fit_umap, knn_options

__all__ = ["PCA", "StandardPCA", "TSNE", "UMAP", "PaCMAP"]


def _check_fit_size(who: str, k: int, data: np.ndarray) -> None:
    n, d = data.shape
    if k > d:
        raise IntroscopeValueError(
            f"{who}: target_dimensions={k} exceeds the {d} features of the data; ask for at "
            f"most {d} dimensions"
        )
    if k > n:
        raise IntroscopeValueError(
            f"{who}: target_dimensions={k} exceeds the {n} samples fitted; fit on more data "
            f"or ask for at most {n} dimensions"
        )


class _Base:
    """What every bundled strategy shares: the target, argument checks, repr."""

    _label = "DimensionReduction.Strategy"

    def __init__(self, target_dimensions: int) -> None:
        self.target_dimensions: int = check_target_dimensions(self._label, target_dimensions)

    def check_batch_size(self, batch_size: int) -> None:
        """Any positive batch size works."""
        check_batch_size(batch_size)

    def _checked(self, data: Any, where: str = "") -> np.ndarray:
        return check_responses(self._label, "", data, where)

    def transform_one_shot(self) -> np.ndarray:
        raise IntroscopeError(
            f"{self._label} projects any data: call transform(data), not transform_one_shot()"
        )

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in getattr(self, "_parameters", {}).items())
        return f"{self._label}({self.target_dimensions}{extra})"


class PCA(_Base):
    """Exact principal component analysis from a covariance streamed batch by batch.

    Memory is O(features^2) whatever the number of samples; any batch size works (also one
    smaller than ``target_dimensions``), and the components equal scikit-learn's exact ``PCA``
    (up to float64 rounding; float32 data is multiplied in float32 about its mean, see
    ``precision``: a component ``r`` times weaker than the first is then off by about
    ``6e-8 * r`` relative, more for rows sorted by class, and fitting warns above 1e-4). The
    state (``PCAState``) merges across shards.

    Args:
        target_dimensions: number of principal components to project on.
        precision: ``"auto"`` (default) or ``"float64"``; see ``PCAState``.
        warn_precision: warn when float32 products leave the kept components inexact (see
            ``PCAState.result``); ``False`` where only distances in the projection matter
            (a reduction before other introspectors: their absolute error stays ~6e-8 of the
            largest variance), as DatasetReport's own reduction does.
    """

    _label = "DimensionReduction.Strategy.PCA"

    def __init__(
        self, target_dimensions: int = 2, *, precision: str = "auto", warn_precision: bool = True
    ) -> None:
        super().__init__(target_dimensions)
        self.state = PCAState(precision=precision)
        self.precision = precision
        self.warn_precision = bool(warn_precision)
        self.fit_: PCAFit | None = None

    @classmethod
    def from_state(
        cls, state: PCAState, target_dimensions: int = 2, *, warn_precision: bool = True
    ) -> PCA:
        """A fitted PCA from a state, e.g. the merge of states accumulated on several shards."""
        pca = cls(target_dimensions, precision=state.precision, warn_precision=warn_precision)
        pca.state = state
        pca.fit_complete()
        return pca

    def default_batch_size(self) -> int:
        # DNIKit's default (IncrementalPCA needed batches of at least target_dimensions).
        return max(self.target_dimensions * 5, 500)

    def fit_incremental(self, data: np.ndarray) -> None:
        self._fit_checked(self._checked(data))

    def _fit_checked(self, data: np.ndarray, where: str = "") -> None:
        try:
            self.state.update(data)
        except StateError as exc:
            raise IntroscopeValueError(f"{self._label}: the data{at(where)} {exc}") from None
        self.fit_ = None

    def fit_complete(self) -> None:
        if self.state.count == 0:
            raise IntroscopeError(f"{self._label}: no data was fitted; there is nothing to fit")
        self.fit_ = self.state.result(
            target_dimensions=self.target_dimensions, warn_precision=self.warn_precision
        )

    @property
    def is_one_shot(self) -> bool:
        return False

    def _fitted(self) -> PCAFit:
        if self.fit_ is None:
            raise IntroscopeError(f"{self._label}: not fitted; call fit_complete() first")
        return self.fit_

    def transform(self, data: np.ndarray) -> np.ndarray:
        return self._transform_at(self._checked(data), None)

    def _transform_at(self, data: np.ndarray, start: int | None, where: str = "") -> np.ndarray:
        fit = self._fitted()
        if data.shape[1] != fit.mean.shape[0]:
            raise IntroscopeValueError(
                f"{self._label}: data has {data.shape[1]} features{at(where)} but the PCA was "
                f"fitted on {fit.mean.shape[0]}"
            )
        return fit.transform(data)

    @property
    def components_(self) -> np.ndarray:
        """(target_dimensions, features) principal axes (scikit-learn's name)."""
        return self._fitted().components

    @property
    def mean_(self) -> np.ndarray:
        return self._fitted().mean

    @property
    def explained_variance_(self) -> np.ndarray:
        return self._fitted().explained_variance

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        return self._fitted().explained_variance_ratio

    def _clone(self) -> DimensionReductionStrategyType:
        return PCA(
            self.target_dimensions, precision=self.precision, warn_precision=self.warn_precision
        )

    def __repr__(self) -> str:
        extra = "" if self.precision == "auto" else f", precision={self.precision!r}"
        return f"{self._label}({self.target_dimensions}{extra})"


class _Collecting(_Base):
    """A strategy that needs all of the fitting rows in memory at once."""

    def __init__(
        self,
        target_dimensions: int,
        _parameters: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        super().__init__(target_dimensions)
        if _parameters is not None and kwargs:
            raise IntroscopeValueError(
                f"{self._label}: pass the algorithm's options either as keywords or as "
                f"_parameters, not both"
            )
        self._parameters: dict[str, Any] = dict(_parameters if _parameters is not None else kwargs)
        self._rows = FittedRows(self._label)

    def default_batch_size(self) -> int:
        return 1024

    def fit_incremental(self, data: np.ndarray) -> None:
        self._fit_checked(self._checked(data))

    def _fit_checked(self, data: np.ndarray, where: str = "") -> None:
        self._rows.append(data, where)

    def fit_complete(self) -> None:
        data = self._rows.finish()
        _check_fit_size(self._label, self.target_dimensions, data)
        self._fit(data)

    def _fit(self, data: np.ndarray) -> None:
        raise NotImplementedError

    def _clone(self) -> DimensionReductionStrategyType:
        return cast(
            "DimensionReductionStrategyType", type(self)(self.target_dimensions, **self._parameters)
        )


def _exact_svd_solver(rows: int, features: int) -> str:
    """The exact scikit-learn PCA solver for a ``rows x features`` fit: ``covariance_eigh``
    (scikit-learn >= 1.5) for tall data, as its ``"auto"`` chooses, else ``full``."""
    import sklearn

    major, minor = (int(part) for part in sklearn.__version__.split(".")[:2])
    tall = features <= 1_000 and rows >= 10 * features
    return "covariance_eigh" if tall and (major, minor) >= (1, 5) else "full"


class StandardPCA(_Collecting):
    """scikit-learn's ``PCA`` fitted on all of the rows at once, with an exact solver.

    scikit-learn's default (``svd_solver="auto"``, which DNIKit uses) switches to an unseeded
    randomized SVD for problems over 500 rows or features with few components: its projection
    then changes from run to run and differs from the exact one. Here the solver is always
    exact: ``"covariance_eigh"`` for tall data (at most 1,000 features and 10 times as many
    rows, what ``"auto"`` picks there too), else the full SVD (``"full"``). Where ``"auto"``
    is exact, the numbers are the same as DNIKit's.

    Args:
        target_dimensions: number of principal components to project on.
    """

    _label = "DimensionReduction.Strategy.StandardPCA"

    def __init__(self, target_dimensions: int = 2) -> None:
        super().__init__(target_dimensions, None, {})
        from sklearn.decomposition import PCA as SKPCA

        self._pca = SKPCA(n_components=self.target_dimensions)
        self._fitted = False

    def _fit(self, data: np.ndarray) -> None:
        self._pca.set_params(svd_solver=_exact_svd_solver(*data.shape))
        self._pca.fit(data)
        self._fitted = True
        # transform() works on any data: the rows are not needed any more.
        self._rows = FittedRows(self._label)

    @property
    def is_one_shot(self) -> bool:
        return False

    def transform(self, data: np.ndarray) -> np.ndarray:
        return self._transform_at(self._checked(data), None)

    def _transform_at(self, data: np.ndarray, start: int | None, where: str = "") -> np.ndarray:
        if not self._fitted:
            raise IntroscopeError(f"{self._label}: not fitted; call fit_complete() first")
        fitted = self._pca.n_features_in_
        if data.shape[1] != fitted:
            raise IntroscopeValueError(
                f"{self._label}: data has {data.shape[1]} features{at(where)} but the PCA was "
                f"fitted on {fitted}"
            )
        return cast(np.ndarray, self._pca.transform(data))

    def _clone(self) -> DimensionReductionStrategyType:
        return StandardPCA(self.target_dimensions)


class _Embedding(_Collecting):
    """A fitted embedding of the fitting rows, looked up again when they are piped through."""

    _algorithm = ""
    _embedding: np.ndarray | None = None

    def _fitted_embedding(self) -> np.ndarray:
        if self._embedding is None:
            raise IntroscopeError(f"{self._label}: not fitted; call fit_complete() first")
        return self._embedding

    def transform_one_shot(self) -> np.ndarray:
        return self._fitted_embedding()

    def transform(self, data: np.ndarray) -> np.ndarray:
        return self._transform_at(self._checked(data), None)

    def _transform_at(self, data: np.ndarray, start: int | None, where: str = "") -> np.ndarray:
        embedding = self._fitted_embedding()
        index = self._rows.locate(data, start)
        unseen = np.flatnonzero(index < 0)
        if unseen.size:
            return self._project_unseen(data, index, unseen, where)
        return cast(np.ndarray, embedding[index])

    def _project_unseen(
        self, data: np.ndarray, index: np.ndarray, unseen: np.ndarray, where: str
    ) -> np.ndarray:
        n_fit = len(self._rows)
        raise IntroscopeValueError(
            f"{self._label}: {unseen.size} of the {data.shape[0]} rows{at(where)} (first: row "
            f"{int(unseen[0])}) are not among the {n_fit} rows {self._algorithm} was fitted on; "
            f"{self._algorithm} embeds only the data it was fitted on (a row is recognised at "
            f"its fitting position, within {POSITION_RTOL:g} of that row's largest magnitude, "
            f"or anywhere by its exact values). Pipe the fitting producer's data through it, "
            f"fit DimensionReduction on this data, or use Strategy.PCA or Strategy.UMAP, which "
            f"project new data"
        )


class TSNE(_Embedding):
    """scikit-learn's t-SNE of all of the fitting rows; it embeds those rows only.

    Args:
        target_dimensions: dimensions of the embedding.
        kwargs: options of ``sklearn.manifold.TSNE`` (or pass them as ``_parameters``).
    """

    _label = "DimensionReduction.Strategy.TSNE"
    _algorithm = "t-SNE"

    def __init__(
        self,
        target_dimensions: int = 2,
        *,
        _parameters: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(target_dimensions, _parameters, kwargs)
        from sklearn.manifold import TSNE as SKTSNE

        self._tsne = SKTSNE(n_components=self.target_dimensions, **self._parameters)

    def _fit(self, data: np.ndarray) -> None:
        self._tsne.fit(data)
        self._embedding = self._tsne.embedding_

    @property
    def is_one_shot(self) -> bool:
        return True


def _require(module: str, package: str, who: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(package, "dimreduction", who)


def _import(module: str, name: str, package: str, who: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise MissingDependencyError(package, "dimreduction", who) from exc


class UMAP(_Embedding):
    """umap-learn's UMAP fitted on all of the fitting rows.

    The fitted rows map to their fitted embedding (by position, else by content), whatever the
    batch size; only rows it has not seen go through ``UMAP.transform``.

    The nearest-neighbour graph UMAP starts from comes from faiss when it applies (Euclidean
    metric, at least 4,096 rows, faiss installed): exact up to 20,000 rows, IVF blocks with a
    measured recall@k >= 0.98 above. umap-learn's own search (pynndescent) is as quick once
    compiled, but numba compiles it in every new process (~25 s on 2 cores); faiss does not.
    The layout is umap-learn's.

    Args:
        target_dimensions: dimensions of the embedding.
        neighbors: ``"auto"`` (faiss when installed and applicable, else umap-learn's search),
            ``"exact"``, ``"approximate"`` (faiss, an error if it does not apply) or ``"umap"``
            (umap-learn's own search).
        kwargs: options of ``umap.UMAP`` (or pass them as ``_parameters``); ``verbose`` is False
            unless given.
    """

    _label = "DimensionReduction.Strategy.UMAP"
    _algorithm = "UMAP"

    def __init__(
        self,
        target_dimensions: int = 2,
        *,
        neighbors: UMAPNeighbors = "auto",
        _parameters: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # Checked here, imported at fit: importing umap compiles numba code for seconds.
        _require("umap", "umap-learn", self._label)
        super().__init__(target_dimensions, _parameters, kwargs)
        self.neighbors: UMAPNeighbors = check_umap_neighbors(neighbors)
        self._umap: Any = None
        #: Where the last fit's neighbour graph came from: "umap-learn", "faiss exact", "faiss ivf(...)".
        self.neighbor_search: str | None = None

    def _fit(self, data: np.ndarray) -> None:
        k, n = self.target_dimensions, data.shape[0]
        if n < k + 2:
            # umap-learn's spectral initialisation takes k + 1 eigenvectors of an n x n graph.
            raise IntroscopeValueError(
                f"{self._label}: UMAP with target_dimensions={k} needs at least {k + 2} samples "
                f"to fit, got {n}; fit on more data, or use PCA for so few samples"
            )
        umap_cls = _import("umap", "UMAP", "umap-learn", self._label)
        options = {"verbose": False, **self._parameters}
        options, self.neighbor_search = knn_options(self.neighbors, options, data)
        self._umap = fit_umap(umap_cls, {"n_components": self.target_dimensions, **options}, data)
        self._embedding = np.asarray(self._umap.embedding_)

    def _clone(self) -> DimensionReductionStrategyType:
        return UMAP(self.target_dimensions, neighbors=self.neighbors, **self._parameters)

    def __repr__(self) -> str:
        text = super().__repr__()
        if self.neighbors == "auto":
            return text
        return f"{text[:-1]}, neighbors={self.neighbors!r})"

    @property
    def is_one_shot(self) -> bool:
        return False

    def _project_unseen(
        self, data: np.ndarray, index: np.ndarray, unseen: np.ndarray, where: str
    ) -> np.ndarray:
        embedding = self._fitted_embedding()
        out = np.empty((data.shape[0], embedding.shape[1]), dtype=embedding.dtype)
        seen = index >= 0
        out[seen] = embedding[index[seen]]
        out[unseen] = self._umap.transform(data[unseen])
        return out


class PaCMAP(_Embedding):
    """PaCMAP of all of the fitting rows; it embeds those rows only.

    Args:
        target_dimensions: dimensions of the embedding.
        kwargs: options of ``pacmap.PaCMAP`` (or pass them as ``_parameters``).
    """

    _label = "DimensionReduction.Strategy.PaCMAP"
    _algorithm = "PaCMAP"

    def __init__(
        self,
        target_dimensions: int = 2,
        *,
        _parameters: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _require("pacmap", "pacmap", self._label)
        super().__init__(target_dimensions, _parameters, kwargs)
        self._pacmap: Any = None

    def _fit(self, data: np.ndarray) -> None:
        pacmap_cls = _import("pacmap", "PaCMAP", "pacmap", self._label)
        # Positional: pacmap renamed its first parameter between releases.
        self._pacmap = pacmap_cls(self.target_dimensions, **self._parameters)
        self._pacmap.fit(data)
        self._embedding = np.asarray(self._pacmap.embedding_)

    @property
    def is_one_shot(self) -> bool:
        return True
