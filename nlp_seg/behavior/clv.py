"""Customer lifetime value: BG/NBD (how many more orders) x Gamma-Gamma (how much per order).

Why this model and this library (see the README's *Customer lifetime value*): BG/NBD with
Gamma-Gamma is the standard probabilistic CLV model for non-contractual retail (a customer can
stop buying without telling anyone). Of the libraries that implement it, `lifetimes` fits both
by maximum likelihood in well under a second for tens of thousands of customers, is pure Python
on top of numpy/scipy/pandas, and works here with numpy 2, pandas 3 and scipy 1.17 (checked;
it is unmaintained, so every prediction is checked for finiteness and every failure falls back
instead of stopping the run). `pymc-marketing` (maintained, Bayesian) pulls in PyMC, PyTensor
and a C compiler toolchain: hundreds of MB and minutes of compilation for a feature column;
`btyd` (the lifetimes fork) is not installable from PyPI here.

``clv`` is the expected spend over the next ``horizon_days`` (undiscounted):
``E[orders in horizon | frequency, recency, age] * E[order value | history]``, for customers
with at least one repeat purchase (``clv_method = "bgnbd_gg"``). Customers with too little
history to say anything about their own purchase rate (a single purchase day) and every
customer when the model cannot be fitted get the historical value instead: what they spent in
the last ``horizon_days`` (``clv_method = "historical"``), i.e. "next year looks like last year".
"""

from __future__ import annotations

import logging
import warnings as _warnings
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

MIN_REPEAT_CUSTOMERS = 20
#: L2 penalties tried in turn until both fits converge (lifetimes' optimiser fails on some
#: penalties and not others, e.g. when nobody seems to churn and the dropout parameters go to 0).
PENALIZERS = (0.0, 0.001, 0.01, 0.1)


def historical_value(orders: pd.DataFrame, ref: pd.Timestamp, horizon_days: int) -> pd.Series:
    """Spend per customer in the ``horizon_days`` before the reference date (refunds netted)."""
    recent = orders[
        (orders["purchase"] | orders["refund"])
        & (orders["order_date"] > ref - pd.Timedelta(days=horizon_days))
    ]
    return recent.groupby("customer_key")["amount"].sum(min_count=1).fillna(0.0).clip(lower=0)


def estimate_clv(
    orders: pd.DataFrame,
    ref: pd.Timestamp,
    *,
    horizon_days: int = 365,
    min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
    penalizers: tuple[float, ...] = PENALIZERS,
    params: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any], list[str]]:
    """``clv`` and ``clv_method`` per customer (index: customer key), the model's description
    (parameters, counts) for ``run.json``, and warnings.

    ``params`` (the ``params`` of an earlier run's description, as a saved segmenter keeps
    them) predicts with that fitted model instead of fitting one on ``orders``: ``nlpseg
    assign`` must value new customers on the scale the segments were learned on, and a small
    new file could not fit the model anyway.
    """
    warnings: list[str] = []
    buy = orders[orders["purchase"]]
    keys = pd.Index(sorted(buy["customer_key"].unique()), name="customer_key")
    hist = historical_value(orders, ref, horizon_days).reindex(keys).fillna(0.0)
    out = pd.DataFrame({"clv": hist, "clv_method": "historical"}, index=keys)
    info: dict[str, Any] = {
        "model": "BG/NBD + Gamma-Gamma (lifetimes)",
        "horizon_days": horizon_days,
        "reference_date": str(ref.date()),
        "fallback": "historical: spend in the last horizon_days",
    }
    priced = buy[buy["amount"].notna() & (buy["amount"] > 0)]
    if priced.empty:
        info["used"] = "historical"
        info["reason"] = "no order amounts"
        return out, info, warnings
    try:
        fitted = _fit_lifetimes(
            priced, ref, horizon_days, min_repeat_customers, penalizers, fixed=params
        )
    except Exception as exc:  # noqa: BLE001 - an unmaintained library must never stop a run
        fitted = None
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        info["reason"] = reason
        warnings.append(f"CLV model could not be fitted ({reason}); historical value used")
    if fitted is not None and isinstance(fitted, str):
        info["reason"] = fitted
        warnings.append(f"CLV: {fitted}; historical value used for every customer")
        fitted = None
    if fitted is None:
        info["used"] = "historical"
        info["customers_model"] = 0
        info["customers_historical"] = len(out)
        return out, info, warnings
    pred, params = fitted
    use = pred.index[pred.notna() & np.isfinite(pred) & (pred >= 0)]
    dropped = int(pred.notna().sum() - len(use))
    out.loc[use, "clv"] = pred.loc[use]
    out.loc[use, "clv_method"] = "bgnbd_gg"
    if dropped:
        warnings.append(
            f"CLV model gave no finite value for {dropped} customers; historical value used"
        )
    info.update(
        {
            "used": "bgnbd_gg",
            "params": params,
            "customers_model": len(use),
            "customers_historical": int(len(out) - len(use)),
        }
    )
    return out, info, warnings


def _fit_lifetimes(
    priced: pd.DataFrame,
    ref: pd.Timestamp,
    horizon_days: int,
    min_repeat_customers: int,
    penalizers: tuple[float, ...],
    fixed: dict[str, Any] | None = None,
) -> tuple[pd.Series, dict[str, Any]] | str:
    """Fit both models on weekly periods (or take ``fixed`` parameters); predictions for
    repeat customers, or why not."""
    import contextlib
    import io

    with _warnings.catch_warnings():  # it sets a pandas option that pandas 3 deprecates
        _warnings.simplefilter("ignore")
        from lifetimes import BetaGeoFitter, GammaGammaFitter
        from lifetimes.utils import summary_data_from_transaction_data

    summary = summary_data_from_transaction_data(
        priced,
        "customer_key",
        "order_date",
        monetary_value_col="amount",
        observation_period_end=ref,
        freq="W",
    )
    repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
    if fixed is not None:
        bg, gg = BetaGeoFitter(), GammaGammaFitter()
        bg.params_ = pd.Series(fixed["bgnbd"], dtype=float)
        gg.params_ = pd.Series(fixed["gamma_gamma"], dtype=float)
        with _warnings.catch_warnings(), np.errstate(all="ignore"):
            _warnings.simplefilter("ignore")
            purchases = bg.conditional_expected_number_of_purchases_up_to_time(
                horizon_days / 7.0, repeat["frequency"], repeat["recency"], repeat["T"]
            )
            spend = gg.conditional_expected_average_profit(
                repeat["frequency"], repeat["monetary_value"]
            )
        return (purchases * spend).astype(float), {**fixed, "fitted_on": "saved model"}
    if len(repeat) < min_repeat_customers:
        return (
            f"only {len(repeat)} customers bought in two or more different weeks "
            f"(the model needs {min_repeat_customers})"
        )
    f, r, t = summary["frequency"], summary["recency"], summary["T"]
    last_error = "no penalty converged"
    for pen in penalizers:
        # lifetimes prints the optimiser's state to stdout when it fails; keep stdout clean.
        with (
            _warnings.catch_warnings(),
            np.errstate(all="ignore"),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            _warnings.simplefilter("ignore")
            try:
                bg = BetaGeoFitter(penalizer_coef=pen).fit(f, r, t)
                gg = GammaGammaFitter(penalizer_coef=pen).fit(
                    repeat["frequency"], repeat["monetary_value"]
                )
            except Exception as exc:  # noqa: BLE001 - ConvergenceError and numeric failures
                last_error = f"{type(exc).__name__} with penalizer {pen}"
                continue
            gp = gg.params_
            if not np.all(np.isfinite(bg.params_)) or not np.all(np.isfinite(gp)):
                last_error = f"parameters not finite with penalizer {pen}"
                continue
            if float(gp["q"]) <= 1.0:
                last_error = "Gamma-Gamma q <= 1 (order values too heavy-tailed for a finite mean)"
                continue
            purchases = bg.conditional_expected_number_of_purchases_up_to_time(
                horizon_days / 7.0, repeat["frequency"], repeat["recency"], repeat["T"]
            )
            spend = gg.conditional_expected_average_profit(
                repeat["frequency"], repeat["monetary_value"]
            )
        pred = (purchases * spend).astype(float)
        params = {
            "period": "week",
            "penalizer": pen,
            "bgnbd": {k: float(v) for k, v in bg.params_.items()},
            "gamma_gamma": {k: float(v) for k, v in gp.items()},
            "frequency_monetary_corr": float(
                np.corrcoef(repeat["frequency"], repeat["monetary_value"])[0, 1]
            )
            if len(repeat) > 2
            else None,
        }
        return pred, params
    return f"the model did not fit ({last_error})"
