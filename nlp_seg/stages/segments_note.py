"""Why a run ended with few segments: the note ``run.json`` carries as ``segments_note``.

A CX lead who gets 3 segments out of 10,000 reviews wants to know whether the data is that
uniform or a setting decided it. What the clustering knows says which: HDBSCAN's smallest
segment (``min_cluster_size``, ~1% of rows by default), how many dense groups it found, the
share of rows it saw as noise (placed in their nearest segment afterwards), and how many
groups were merged because they read the same (:mod:`nlp_seg.stages.merging`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: A run with fewer segments than this on at least :data:`FEW_SEGMENTS_MIN_TEXTS` texts gets
#: a note.
FEW_SEGMENTS = 6
FEW_SEGMENTS_MIN_TEXTS = 1000


def segments_note(
    n_texts: int,
    n_segments: int,
    min_cluster_size: int,
    default_min_cluster_size: bool,
    raw_labels: np.ndarray,
    merges: int,
    clusterer_note: str | None = None,
) -> dict[str, Any] | None:
    """The note (``None`` when the run has enough segments or too few texts to expect more):
    the figures, and ``why``, a sentence with what to change."""
    if n_segments >= FEW_SEGMENTS or n_texts < FEW_SEGMENTS_MIN_TEXTS:
        return None
    raw = np.asarray(raw_labels, dtype=int)
    groups = len(set(raw.tolist()) - {-1})
    noise = float(np.mean(raw < 0)) if len(raw) else 0.0
    reasons = []
    if clusterer_note:
        reasons.append(clusterer_note)
    reasons.append(
        f"HDBSCAN found {groups} dense group{'s' * (groups != 1)} of at least "
        f"min_cluster_size={min_cluster_size} rows"
        + (" (the default, ~1% of the fitted rows)" if default_min_cluster_size else "")
    )
    if noise >= 0.2:
        reasons.append(
            f"{noise:.0%} of the fitted rows were in no dense group (noise, then placed in "
            "their nearest segment): the texts vary more than they cluster"
        )
    if merges:
        reasons.append(
            f"{merges} segment{'s were' if merges != 1 else ' was'} merged into another whose "
            "centre lay within its spread (they read the same)"
        )
    smaller = max(5, min_cluster_size // 3)
    hint = (
        f"for finer segments try --min-cluster-size {smaller}"
        if smaller < min_cluster_size
        else "the texts may simply be alike"
    )
    why = (
        f"{n_segments} segment{'s' * (n_segments != 1)} on {n_texts:,} texts: "
        + "; ".join(reasons)
        + f"; {hint}"
    )
    return {
        "segments": int(n_segments),
        "texts": int(n_texts),
        "min_cluster_size": int(min_cluster_size),
        "min_cluster_size_default": bool(default_min_cluster_size),
        "dense_groups": int(groups),
        "noise_share": round(noise, 4),
        "merges": int(merges),
        "why": why,
    }
