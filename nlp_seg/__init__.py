"""nlpseg: named, actionable customer segments from what customers write and what they do.

The public API is imported lazily so that ``import nlp_seg`` (and the ``nlpseg`` command's
``--help``) stays fast: torch, transformers, umap and hdbscan load only when a stage needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nlp_seg.version import __version__

__all__ = ["Segmenter", "SegmenterConfig", "__version__", "compare_runs", "load_segmenter"]

if TYPE_CHECKING:  # pragma: no cover
    from nlp_seg.runs.drift import compare_runs
    from nlp_seg.segmenter import Segmenter, SegmenterConfig, load_segmenter


def __getattr__(name: str) -> Any:
    if name in {"Segmenter", "SegmenterConfig", "load_segmenter"}:
        from nlp_seg import segmenter as pipeline

        return getattr(pipeline, name)
    if name == "compare_runs":
        from nlp_seg.runs.drift import compare_runs

        return compare_runs
    raise AttributeError(f"module 'nlp_seg' has no attribute {name!r}")
