"""Fusion: one vector per row from text, sentiment, behaviour and (optional) aspect blocks.

A 384-dimensional embedding would drown a 3-dimensional sentiment block if the blocks were
simply concatenated. Each block is therefore centred and divided by the square root of its
total variance (so every block carries unit total variance), then multiplied by its weight:
the *weight*, not the dimension, sets how hard a block pulls on the clustering.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: ``aspects`` only takes part with a taxonomy (``--aspects``): what a text praises and
#: complains about then shapes the segments as much as its wording (docs/benchmarks.md).
DEFAULT_WEIGHTS: dict[str, float] = {"text": 1.0, "sentiment": 1.0, "behavior": 1.0, "aspects": 1.0}


def parse_weights(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """Parse ``"text=1,sentiment=0.5"`` (or a mapping) on top of :data:`DEFAULT_WEIGHTS`."""
    from nlp_seg.errors import NlpsegError

    weights = dict(DEFAULT_WEIGHTS)
    if spec is None:
        return weights
    items: Mapping[str, Any]
    if isinstance(spec, str):
        items = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if "=" not in part:
                raise NlpsegError(f"bad --weights entry {part!r}; use e.g. text=1,sentiment=1")
            k, v = part.split("=", 1)
            items[k.strip()] = v.strip()  # type: ignore[index]
    else:
        items = spec
    for key, value in items.items():
        if key not in DEFAULT_WEIGHTS:
            raise NlpsegError(f"unknown weight {key!r}; known blocks: {', '.join(DEFAULT_WEIGHTS)}")
        try:
            w = float(value)
        except (TypeError, ValueError) as exc:
            raise NlpsegError(f"weight for {key!r} is not a number: {value!r}") from exc
        if not np.isfinite(w) or w < 0:
            raise NlpsegError(f"weight for {key!r} must be >= 0, got {value!r}")
        weights[key] = w
    return weights


def parse_weights_keys(spec: str | None) -> set[str]:
    """The blocks a ``--weights`` value names (to check it against the other options)."""
    return {p.split("=", 1)[0].strip() for p in (spec or "").split(",") if "=" in p}


class BlockFuser:
    """Learns per-block centring and scale on ``fit``; ``transform`` fuses new rows the same way."""

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self.weights = dict(weights or DEFAULT_WEIGHTS)

    def fit(self, blocks: Mapping[str, np.ndarray | None]) -> BlockFuser:
        self.blocks_: list[str] = []
        self.means_: dict[str, np.ndarray] = {}
        self.scales_: dict[str, float] = {}
        self.dims_: dict[str, int] = {}
        for name, x in blocks.items():
            if x is None or x.size == 0 or self.weights.get(name, 0.0) == 0.0:
                continue
            x = np.asarray(x, dtype=np.float64)
            mean = x.mean(axis=0)
            total_var = float(((x - mean) ** 2).sum(axis=1).mean())
            self.blocks_.append(name)
            self.means_[name] = mean
            self.scales_[name] = float(np.sqrt(total_var)) if total_var > 1e-12 else 1.0
            self.dims_[name] = x.shape[1]
        return self

    def transform(self, blocks: Mapping[str, np.ndarray | None]) -> np.ndarray:
        parts = []
        for name in self.blocks_:
            x = blocks.get(name)
            if x is None:
                raise ValueError(f"block {name!r} was used in fit but is missing")
            x = np.asarray(x, dtype=np.float64)
            dims = getattr(self, "dims_", {}).get(name)
            if dims is not None and x.shape[1] != dims:
                from nlp_seg.errors import NlpsegError

                raise NlpsegError(
                    f"block {name!r} has {x.shape[1]} columns here but {dims} when fitted "
                    "(a changed model or taxonomy); re-fit the segmenter"
                )
            parts.append((x - self.means_[name]) / self.scales_[name] * self.weights[name])
        if not parts:
            raise ValueError("no block with a positive weight to fuse")
        return np.hstack(parts).astype(np.float32)

    def fit_transform(self, blocks: Mapping[str, np.ndarray | None]) -> np.ndarray:
        return self.fit(blocks).transform(blocks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe learned state (saved segmenters contain no pickle for this stage)."""
        return {
            "weights": self.weights,
            "blocks": self.blocks_,
            "means": {k: v.tolist() for k, v in self.means_.items()},
            "scales": self.scales_,
            "dims": self.dims_,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BlockFuser:
        f = cls(d["weights"])
        f.blocks_ = list(d["blocks"])
        f.means_ = {k: np.asarray(v) for k, v in d["means"].items()}
        f.scales_ = {k: float(v) for k, v in d["scales"].items()}
        f.dims_ = {k: int(v) for k, v in d["dims"].items()}
        return f
