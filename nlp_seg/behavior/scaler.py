"""Behaviour: numeric customer features made comparable before fusion.

Spend, order counts and recency are heavy-tailed: one whale would otherwise stretch the whole
block. Skewed non-negative columns are log-transformed, then every column is robust-scaled
(median / inter-quartile range) and missing values are set to the median (zero after scaling),
with a per-row flag of how many were missing. The learned state is plain JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

SKEW_THRESHOLD = 1.0


class BehaviorScaler:
    """Log-transform skewed columns and robust-scale all; fitted state ends with ``_``."""

    def __init__(self, columns: Sequence[str] = ()) -> None:
        self.columns = list(columns)

    def fit(self, frame: pd.DataFrame) -> BehaviorScaler:
        self.columns_: list[str] = list(self.columns or frame.columns)
        self.log_: dict[str, bool] = {}
        self.median_: dict[str, float] = {}
        self.scale_: dict[str, float] = {}
        for col in self.columns_:
            x = pd.to_numeric(frame[col], errors="coerce").astype(float)
            finite = x[np.isfinite(x)]
            use_log = bool(
                len(finite) > 2 and finite.min() >= 0 and abs(float(finite.skew())) > SKEW_THRESHOLD
            )
            if use_log:
                finite = np.log1p(finite)
            med = float(finite.median()) if len(finite) else 0.0
            q1, q3 = (
                (float(finite.quantile(0.25)), float(finite.quantile(0.75)))
                if len(finite)
                else (0.0, 0.0)
            )
            iqr = q3 - q1
            if iqr <= 1e-12:
                iqr = float(finite.std()) if len(finite) > 1 else 0.0
            self.log_[col] = use_log
            self.median_[col] = med
            self.scale_[col] = iqr if iqr > 1e-12 else 1.0
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(frame), len(self.columns_)), dtype=np.float64)
        for j, col in enumerate(self.columns_):
            if col in frame.columns:
                x = pd.to_numeric(frame[col], errors="coerce").astype(float).to_numpy()
            else:
                x = np.full(len(frame), np.nan)
            if self.log_[col]:
                with np.errstate(invalid="ignore", divide="ignore"):
                    x = np.log1p(np.clip(x, 0, None))
            z = (x - self.median_[col]) / self.scale_[col]
            z[~np.isfinite(z)] = 0.0
            out[:, j] = np.clip(z, -10, 10)
        return out

    def fit_transform(self, frame: pd.DataFrame) -> np.ndarray:
        return self.fit(frame).transform(frame)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns_,
            "log": self.log_,
            "median": self.median_,
            "scale": self.scale_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BehaviorScaler:
        s = cls(d["columns"])
        s.columns_ = list(d["columns"])
        s.log_ = {k: bool(v) for k, v in d["log"].items()}
        s.median_ = {k: float(v) for k, v in d["median"].items()}
        s.scale_ = {k: float(v) for k, v in d["scale"].items()}
        return s


def missing_behavior(block: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.Series:
    """Per row, the behaviour features it has no number for, comma-joined (``""``: none).

    Those are placed at the fitted median (:meth:`BehaviorScaler.transform`), which can put a
    row somewhere its real value would not: the ``behavior_missing`` output column says so per
    row. ``columns`` absent from ``block`` count as missing in every row.
    """
    columns = list(block.columns) if columns is None else list(columns)
    known = np.zeros((len(block), len(columns)), dtype=bool)
    for j, col in enumerate(columns):
        if col in block.columns:
            x = pd.to_numeric(block[col], errors="coerce").astype(float).to_numpy()
            known[:, j] = np.isfinite(x)
    names = np.array(columns, dtype=object)
    return pd.Series([",".join(names[~row]) for row in known], index=block.index, dtype="string")
