"""Reduction: UMAP from the fused space to a few dimensions HDBSCAN can cluster.

The reducer is a slot (BERTopic style): anything with ``fit_transform`` / ``transform`` works.
``UmapReducer`` picks umap-learn on CPU and cuML's UMAP on a GPU machine when it is importable.
Its defaults scale with the row count so tiny inputs do not crash and big ones stay fast.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


# pynndescent functions that take the distance function as an argument: their compiled
# signature includes that function's numba type, which is new in every process, so a cached
# copy is never loaded again and each large run would only add files to the cache (5 per
# process, measured with `nlpseg warmup` twice). They compile per process either way.
_PER_PROCESS = frozenset(
    {
        "generate_leaf_updates",
        "init_random",
        "init_rp_tree",
        "process_candidates",
        "generate_graph_update_array",
        "nn_descent",
        "nn_descent_internal",
    }
)


def configure_numba_cache() -> None:
    """Make UMAP's JIT compile once per machine instead of once per process.

    umap-learn compiles ~100 numba functions without ``cache=True``, which costs 10-60 s in
    every fresh process. We point numba's cache at nlpseg's home and switch caching on for
    those dispatchers before their first call (``Dispatcher.enable_caching`` is what
    ``cache=True`` does); later runs load the machine code from disk.
    """
    if "NUMBA_CACHE_DIR" not in os.environ:
        from nlp_seg.paths import nlpseg_home

        folder = nlpseg_home() / "numba"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(folder)
    global _CACHING_ENABLED
    if _CACHING_ENABLED:
        return
    import importlib
    import warnings

    from numba.core import config as numba_config
    from numba.core.dispatcher import Dispatcher

    # numba reads NUMBA_CACHE_DIR when it is imported and otherwise only when it next compiles;
    # a cache locator is chosen when a dispatcher's cache is created (at import for
    # pynndescent's ``cache=True`` functions, below for umap's). Reload now, before importing
    # umap, so every cache lands in NLPSEG_HOME/numba, not in a site-packages __pycache__
    # that a read-only install cannot write.
    numba_config.reload_config()

    warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
    for name in (
        "umap.umap_",
        "umap.layouts",
        "umap.utils",
        "umap.distances",
        "umap.sparse",
        "umap.spectral",
        # pynndescent marks only some of its functions cache=True; the NN-descent core that
        # UMAP runs above 4,096 rows (nn_descent, init_rp_tree, process_candidates, ...) is
        # not, and compiling it cost ~35 s of a 40 s 10k fit in every fresh process. Those
        # that take the metric as an argument (_PER_PROCESS) cannot be reused from a cache,
        # so ~8 s stays per process (docs/benchmarks.md, "UMAP speed").
        "pynndescent.pynndescent_",
        "pynndescent.rp_trees",
        "pynndescent.utils",
        "pynndescent.distances",
        "pynndescent.graph_utils",
    ):
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - optional submodules
            continue
        for attr, obj in vars(module).items():
            if attr in _PER_PROCESS:
                continue
            if isinstance(obj, Dispatcher) and type(obj._cache).__name__ != "FunctionCache":
                try:
                    obj.enable_caching()
                except Exception as exc:  # noqa: BLE001 - caching is an optimisation only
                    log.debug("numba caching not enabled for %s: %s", obj, exc)
    _CACHING_ENABLED = True


_CACHING_ENABLED = False


def cuml_available() -> bool:
    try:
        import cuml  # noqa: F401
        import cupy

        return bool(cupy.cuda.runtime.getDeviceCount() > 0)
    except Exception:  # noqa: BLE001 - any failure means "not usable here"
        return False


class UmapReducer:
    """UMAP with row-count-aware defaults; ``backend`` is ``auto``, ``cpu`` or ``cuml``."""

    def __init__(
        self,
        n_components: int = 5,
        n_neighbors: int = 15,
        min_dist: float = 0.0,
        metric: str = "euclidean",
        seed: int = 42,
        backend: str = "auto",
        n_epochs: int | None = 200,
    ) -> None:
        self.n_epochs = n_epochs
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.seed = seed
        self.backend = backend

    def _effective(self, n: int) -> tuple[int, int]:
        neighbors = max(2, min(self.n_neighbors, n - 1))
        components = max(1, min(self.n_components, n - 2))
        return neighbors, components

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        distinct = len(np.unique(np.round(x, 6), axis=0)) if n else 0
        if n < 4 or distinct < 4:
            # Too few (distinct) rows for a neighbour graph, e.g. the same text 40 times:
            # keep the top principal directions instead.
            self.model_ = None
            self.backend_ = "identity"
            self.passthrough_mean_ = x.mean(axis=0)
            return (x - self.passthrough_mean_)[:, : self.n_components].astype(np.float32)
        neighbors, components = self._effective(n)
        self.backend_ = (
            "cuml"
            if self.backend == "cuml" or (self.backend == "auto" and cuml_available())
            else "umap-learn"
        )
        if self.backend_ == "cuml":
            from cuml.manifold import UMAP as CumlUMAP

            self.model_ = CumlUMAP(
                n_components=components,
                n_neighbors=neighbors,
                min_dist=self.min_dist,
                metric=self.metric,
                random_state=self.seed,
                n_epochs=self.n_epochs,
            )
        else:
            configure_numba_cache()
            import umap

            self.model_ = umap.UMAP(
                n_components=components,
                n_neighbors=neighbors,
                min_dist=self.min_dist,
                metric=self.metric,
                random_state=self.seed,
                # Not "spectral": on a graph with several components (common when reviews
                # repeat) its ARPACK eigensolver draws restart vectors from a seed it keeps
                # between calls, so a second fit in the same process (the Python API, the
                # batch engines) gave other segments for the same seed. PCA is deterministic.
                init="pca" if n > components + 1 and x.shape[1] >= components else "random",
                low_memory=True,
                transform_seed=self.seed,
                # umap-learn's own default for more than 10,000 rows; below that it runs 500
                # epochs, which polish a picture for the eye but move few rows between dense
                # groups, and cost most of UMAP's time on a small CPU. None restores it.
                n_epochs=self.n_epochs,
            )
        emb = self.model_.fit_transform(x)
        return np.asarray(emb, dtype=np.float32)

    def transform(self, x: np.ndarray) -> np.ndarray:
        if getattr(self, "model_", None) is None:
            return (x - self.passthrough_mean_)[:, : self.n_components].astype(np.float32)
        return np.asarray(self.model_.transform(x), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": getattr(self, "backend_", self.backend),
            "n_components": self.n_components,
            "n_neighbors": self.n_neighbors,
            "min_dist": self.min_dist,
            "metric": self.metric,
            "seed": self.seed,
            "n_epochs": self.n_epochs,
        }
