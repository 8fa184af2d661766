"""``nlpseg warmup``: pay UMAP's JIT compilation once per machine, not in the first real run.

umap-learn's numba functions compile on first call (10-60 s on a small CPU). With
:func:`nlp_seg.stages.reduction.configure_numba_cache` the machine code is cached under
``NLPSEG_HOME/numba``, so only the very first process pays. Warming up runs the same code paths
as a real run (UMAP fit and transform through :class:`UmapReducer`, HDBSCAN fit and
``approximate_predict`` through :class:`HdbscanClusterer`) on small synthetic data, so a
container image or a CI job can bake the cache in ahead of time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def _cache_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc")) if folder else 0


def warm_up(prepare_models: bool = False, rows: int = 4_200, dims: int = 48) -> list[str]:
    """Compile (or load) the numba cache; optionally prepare the bundled encoder too.

    ``rows`` is above 4,096 on purpose: from there UMAP builds its neighbour graph with
    pynndescent's NN-descent, whose code (about 30 s to compile) is otherwise first compiled by
    the first large real run.

    Returns lines for the CLI to print: where the cache is and how long warming took (a second
    call is fast because it only loads what the first compiled).
    """
    from nlp_seg.stages.clustering import HdbscanClusterer
    from nlp_seg.stages.reduction import UmapReducer, configure_numba_cache

    configure_numba_cache()
    folder = Path(os.environ["NUMBA_CACHE_DIR"])
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(4, dims))
    x = (centres[rng.integers(0, 4, rows)] + rng.normal(size=(rows, dims))).astype(np.float32)
    reducer = UmapReducer(n_components=5, n_neighbors=15, seed=42)
    reduced = reducer.fit_transform(x)
    clusterer = HdbscanClusterer(min_cluster_size=20).fit(reduced)
    clusterer.predict(reducer.transform(x[:64]))
    lines = [
        f"numba cache: {folder} ({_cache_files(folder)} files)",
        f"UMAP + HDBSCAN warmed up in {time.perf_counter() - t0:.1f} s",
    ]
    if prepare_models:
        from nlp_seg.models.bundled import prepare_bundled_encoder

        t1 = time.perf_counter()
        path = prepare_bundled_encoder()
        lines.append(f"bundled encoder ready: {path} ({time.perf_counter() - t1:.1f} s)")
    return lines
