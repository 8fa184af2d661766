"""``nlpseg serve``: an HTTP API that scores and segments new text with a fitted segmenter.

Shops want a review labelled the moment it is posted; a CRM wants to ask which segment a
customer is in now. This module holds the routes, :func:`create_app` and :func:`serve`:
FastAPI (an OpenAPI spec at ``/openapi.json``) served by uvicorn, with

* **micro-batching** (:mod:`nlp_seg.service.batching`): concurrent small requests wait in an
  asyncio queue for at most ``max_wait_ms`` and share one encoder call of up to
  ``max_batch_texts`` texts; the model call runs in a single worker thread, so the event loop
  keeps answering (health, metrics, queueing) while the CPU encodes;
* **the answers of** ``nlpseg assign`` **for a request's rows**: each request is placed on its
  own, through :meth:`Segmenter.predict` or, for a segmenter saved from a behaviour run
  (``--orders/--events``), through the code of ``nlpseg assign --orders``, with the orders and
  events the rows carry; each result says what it was placed on (``placed_on``) and which
  behaviour features were unknown (``warnings``);
* **limits** that answer 413/422 with a JSON error instead of failing: texts per request, text
  length, body size;
* **bounded resources** (503 with ``Retry-After`` when full): the texts waiting per endpoint,
  the request-body bytes held at once (memory grows with that budget, not with the number of
  clients), open connections; deadlines for a request's headers and body (408) and idle
  kept-alive connections (:mod:`nlp_seg.service.protocol`); a request whose client went away
  is not computed;
* optional **API key** (``NLPSEG_API_KEY`` or a key file), a **Host allow-list** (against DNS
  rebinding of a service bound to localhost) and **Prometheus metrics** at ``/metrics``
  (:mod:`nlp_seg.service.middleware`).

The model is loaded once, before the first request, from a folder fixed at start; nothing in a
request names a file. Request texts are never written to disk (the embedding cache is off).
"""

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import os
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pandas as pd

from nlp_seg.service.batching import (
    AssignPayload,
    ClientGoneError,
    MicroBatcher,
    ModelRunner,
    OverloadedError,
    Placement,
)
from nlp_seg.service.middleware import (
    LOCAL_HOSTS,
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    HostCheckMiddleware,
    Metrics,
    MetricsMiddleware,
    PendingBytes,
    error_body,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from nlp_seg.segmenter import Segmenter

log = logging.getLogger(__name__)

API_KEY_ENV = "NLPSEG_API_KEY"
SETTINGS_ENV = "NLPSEG_SERVE_SETTINGS"
#: What a result was placed on (``None``: nothing, e.g. an empty text at the review unit).
PLACED_ON = ("text+behavior", "text", "behavior")


@dataclass
class ServiceSettings:
    """Limits and batching of one service process (every field has a safe default).

    ``api_key`` defaults to ``NLPSEG_API_KEY`` via :meth:`from_env`; ``None`` or empty means no
    authentication (the service binds to localhost by default for that reason).

    Resource bounds: ``max_queue_texts`` texts (or rows) may wait per endpoint;
    ``max_pending_bytes`` of request bodies may be held at once (read, queued or computed;
    at least ``max_body_bytes``); ``max_connections`` connections may be open. Past each a
    request is answered 503 with ``Retry-After``. Deadlines: ``header_timeout_s`` for a
    request's headers, ``body_timeout_s`` for its body (408), ``keep_alive_s`` idle between
    two requests; ``max_header_bytes`` per request head. The connection settings are applied
    by the server (:func:`server_options`), the others by the app. ``allowed_hosts``: the
    ``Host`` names answered (``None``: any); :func:`serve` sets it for a localhost binding.
    """

    model_dir: str | None = None
    max_texts: int = 256
    max_text_chars: int = 5000
    max_body_bytes: int = 2_000_000
    max_batch_texts: int = 64
    max_wait_ms: float = 5.0
    max_queue_texts: int = 2048
    max_pending_bytes: int = 32_000_000
    max_connections: int = 256
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: int = 5
    max_header_bytes: int = 16_384
    allowed_hosts: list[str] | None = None
    api_key: str | None = None
    warmup: bool = True
    device: str | None = None
    precision: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_texts",
            "max_text_chars",
            "max_body_bytes",
            "max_batch_texts",
            "max_queue_texts",
            "max_connections",
            "keep_alive_s",
            "max_header_bytes",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if self.header_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ValueError("header_timeout_s and body_timeout_s must be > 0")
        if self.max_pending_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_pending_bytes ({self.max_pending_bytes}) must be at least max_body_bytes "
                f"({self.max_body_bytes}), or no request of the largest size could be read"
            )
        if self.allowed_hosts is not None:
            self.allowed_hosts = list(self.allowed_hosts)

    @classmethod
    def from_env(cls, **overrides: Any) -> "ServiceSettings":
        """Settings from ``NLPSEG_SERVE_SETTINGS`` (JSON, set by ``nlpseg serve --workers N``
        for its worker processes) and ``NLPSEG_API_KEY``, then ``overrides``."""
        values: dict[str, Any] = {}
        raw = os.environ.get(SETTINGS_ENV)
        if raw:
            known = {f.name for f in fields(cls)}
            values.update({k: v for k, v in json.loads(raw).items() if k in known})
        key = os.environ.get(API_KEY_ENV)
        if key:
            values["api_key"] = key
        values.update(overrides)
        return cls(**values)

    def public(self) -> dict[str, Any]:
        """The settings without the API key (for logs and ``/readyz``)."""
        out = asdict(self)
        out["api_key"] = bool(self.api_key)
        return out


def _clean(value: Any) -> Any:
    """A JSON-ready Python value: NaN/NA to ``None``, NumPy scalars to Python ones."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a contract-column DataFrame as JSON-ready dicts."""
    cols = list(frame.columns)
    return [
        {c: _clean(v) for c, v in zip(cols, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]


def _jsonable(obj: Any) -> Any:
    """Deep copy of ``obj`` with NumPy values made plain (segment profiles)."""

    def plain(o: Any) -> Any:
        if isinstance(o, np.ndarray):
            return o.tolist()
        return _clean(o) if np.isscalar(o) else str(o)

    return json.loads(json.dumps(obj, default=plain))


# ----------------------------------------------------------------------------- behaviour rows


def _invalid(loc: Sequence[Any], message: str) -> Exception:
    """A 422 naming ``loc`` in the request body, in the shape schema errors have."""
    from fastapi.exceptions import RequestValidationError

    return RequestValidationError([{"loc": ("body", *loc), "msg": message, "type": "value_error"}])


def _check_readable(values: list[Any], parse: Any, locs: list[tuple[Any, ...]], what: str) -> None:
    """422 at the first value ``parse`` cannot read (NaN/NaT); ``None`` values are allowed."""
    given = [v for v in values if v is not None]
    if not given:
        return
    parsed = parse(pd.Series(given)).isna().to_numpy()
    if parsed.any():
        at = [loc for loc, v in zip(locs, values, strict=True) if v is not None]
        raise _invalid(at[int(np.flatnonzero(parsed)[0])], f"cannot be read as {what}")


def behavior_payload(
    rows: Sequence[Any],
    reference_date: str | None,
    *,
    input_cols: list[str],
    sources: list[str],
    fit_reference_date: str | None,
) -> AssignPayload:
    """The model-thread payload of one ``/v1/assign`` request: texts, behaviour values, and
    (for a segmenter saved from a behaviour run) the orders / events lists of the rows'
    customers cleaned as ``nlpseg assign --orders`` cleans a file
    (:func:`~nlp_seg.behavior.tables.orders_from_records`).

    A customer's list may sit on any of its rows; rows of one customer that both carry a list
    must carry the same one. A list needs the row's ``customer_id``; dates and amounts that
    cannot be read are refused (422), not dropped. Recency and tenure are measured from
    ``reference_date`` when given, else from the fit's reference date or the request's latest
    order / event date, whichever is later (what ``nlpseg assign`` does with a file holding
    the fit's orders).
    """
    from nlp_seg.behavior.tables import (
        events_from_records,
        id_keys,
        orders_from_records,
        parse_amounts,
        parse_dates,
    )
    from nlp_seg.behavior.tables import reference_date as latest_date

    texts = [r.text for r in rows]
    behavior = None
    if input_cols:
        behavior = pd.DataFrame(
            [r.behavior.model_dump(by_alias=True) if r.behavior else {} for r in rows],
            columns=input_cols,
            dtype=float,
        )
    customer_ids = [r.customer_id for r in rows]
    payload = AssignPayload(texts, behavior, customer_ids)
    if not sources:
        return payload
    keys = id_keys(pd.Series(customer_ids, dtype=object)).tolist()
    lists: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in sources}
    records: dict[str, list[dict[str, Any]]] = {s: [] for s in sources}
    locs: dict[str, list[tuple[Any, ...]]] = {s: [] for s in sources}
    for i, row in enumerate(rows):
        for source in sources:
            items = getattr(row, source, None)
            if items is None:
                continue
            key = keys[i]
            if key is None:
                raise _invalid(
                    ("rows", i, "customer_id"), f"a row with {source} needs its customer_id"
                )
            dumped = [item.model_dump() for item in items]
            if key in lists[source]:
                if lists[source][key] != dumped:
                    raise _invalid(
                        ("rows", i, source),
                        f"rows of customer {key!r} carry different {source} lists; send a "
                        f"customer's {source} once (on any of its rows)",
                    )
                continue
            lists[source][key] = dumped
            for j, rec in enumerate(dumped):
                records[source].append({"customer_id": key, **rec})
                locs[source].append(("rows", i, source, j))
    date_text = "a date (ISO 8601 such as 2025-03-31, dd/mm/yyyy or Unix epoch)"
    if "orders" in sources:
        recs, at = records["orders"], locs["orders"]
        _check_readable(
            [r["date"] for r in recs], parse_dates, [(*a, "date") for a in at], date_text
        )
        _check_readable(
            [r["amount"] for r in recs],
            parse_amounts,
            [(*a, "amount") for a in at],
            "an amount (a number or a currency string such as '1.234.000 ₫')",
        )
        payload.orders_of = set(lists["orders"])
        if lists["orders"]:
            payload.orders, w = orders_from_records(recs)
            payload.warnings += w
    if "events" in sources:
        recs, at = records["events"], locs["events"]
        _check_readable(
            [r["time"] for r in recs], parse_dates, [(*a, "time") for a in at], date_text
        )
        payload.events_of = set(lists["events"])
        if lists["events"]:
            payload.events, w = events_from_records(recs)
            payload.warnings += w
    orders, events = payload.orders, payload.events
    dated = (orders is not None and bool((orders["purchase"] | orders["refund"]).any())) or (
        events is not None and len(events) > 0
    )
    latest = latest_date(orders, events) if dated else None
    if reference_date is not None:
        ref = parse_dates(pd.Series([reference_date], dtype=object)).iloc[0]
        if pd.isna(ref):
            raise _invalid(("reference_date",), f"cannot be read as {date_text}")
        if latest is not None and latest > ref:
            raise _invalid(
                ("reference_date",),
                f"is before the request's latest order or event ({latest.date()})",
            )
    else:
        candidates = [pd.Timestamp(fit_reference_date)] if fit_reference_date else []
        candidates += [latest] if latest is not None else []
        ref = max(candidates) if candidates else None
    payload.reference_date = ref
    return payload


def assign_results(rows: Sequence[Any], placement: Placement, sources: list[str]) -> dict[str, Any]:
    """The ``/v1/assign`` answer for one request's placement: one result per row (review
    unit) or per customer (customer unit), each saying what it was placed on and which
    behaviour features were unknown."""
    records = frame_records(placement.assignments)
    beh = placement.behavior
    cols = list(beh.columns) if beh is not None else []
    known = beh.notna().to_numpy() if beh is not None else np.zeros((len(records), 0), bool)
    values = frame_records(beh) if beh is not None else None
    tiers = frame_records(placement.tiers) if placement.tiers is not None else None
    per_customer = placement.unit == "customer"
    what = "customer" if per_customer else "row"
    hint = (
        f"send its customer's {' / '.join(sources)} with a customer_id, or behavior values"
        if sources
        else "send behavior values"
    )
    results = []
    for j, rec in enumerate(records):
        members = placement.rows[j]
        first = rows[members[0]] if members else None
        has_text = bool(placement.has_text[j])
        any_known = bool(known[j].any()) if cols else False
        warnings: list[str] = []
        placed_on: str | None = None
        if has_text:
            placed_on = "text+behavior" if any_known else "text"
        elif per_customer and any_known:
            placed_on = "behavior"
        missing = [c for c, k in zip(cols, known[j], strict=True) if not k]
        if cols and (has_text or per_customer) and missing:
            listed = ", ".join(missing)
            if placed_on == "text":
                warnings.append(
                    f"placed on text alone: no behaviour for this {what} ({hint}); the "
                    f"features {listed} count as the fitted median"
                )
            elif placed_on is None:
                warnings.append(
                    f"no text and no behaviour for this {what}: placed with {listed} at the "
                    "fitted median"
                )
            else:
                warnings.append(
                    f"behaviour features {listed} are unknown for this {what}: they count as "
                    "the fitted median"
                )
        results.append(
            {
                "id": None if per_customer or first is None else first.id,
                "customer_id": first.customer_id if first is not None else None,
                "rows": list(members),
                **rec,
                "placed_on": placed_on,
                "behavior": values[j] if values is not None else None,
                "value_tier": tiers[j].get("value_tier") if tiers is not None else None,
                "loyalty_tier": tiers[j].get("loyalty_tier") if tiers is not None else None,
                "warnings": warnings,
            }
        )
    return {
        "unit": placement.unit,
        "reference_date": placement.reference_date,
        "results": results,
        "warnings": list(placement.warnings),
    }


# ----------------------------------------------------------------------------- the app


def create_app(segmenter: "Segmenter", settings: "ServiceSettings | None" = None) -> "FastAPI":
    """The HTTP service for a fitted ``segmenter`` (see the module docstring).

    The segmenter is used as given, except that its embedding cache is switched off so request
    texts never reach the disk. Request schemas carry the limits in ``settings`` and the
    model's behaviour inputs (its behaviour columns; ``orders`` / ``events`` for a segmenter
    saved from a behaviour run), so the OpenAPI spec documents them and FastAPI enforces them
    (422).
    """
    from fastapi import HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, ConfigDict, Field, create_model
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from nlp_seg.version import __version__

    settings = settings or ServiceSettings.from_env()
    if not hasattr(segmenter, "segments_"):
        raise ValueError("the segmenter is not fitted; fit it or load a saved one")
    if settings.threads:
        # torch's intra-op pool is per process; several workers (or a busy machine) each
        # using every core oversubscribe the CPU, and its spinning threads then run slower
        # than one thread does.
        import torch

        torch.set_num_threads(settings.threads)
    segmenter.config.cache_dir = None
    if segmenter.embedder is not None and hasattr(segmenter.embedder, "cache_dir"):
        segmenter.embedder.cache_dir = None
    runner = ModelRunner(segmenter)
    from nlp_seg.stages.personalise import load_personalisation

    playbook = load_personalisation(segmenter.config.playbook)
    base_names = {int(s["id"]): s.get("base_name", "") for s in segmenter.segments_}
    metrics = Metrics()
    segments_payload = {"segments": _jsonable(segmenter.segments_)}
    setup = runner.setup
    scaler = getattr(segmenter, "behavior_scaler_", None)
    behavior_cols: list[str] = list(scaler.columns_) if scaler is not None else []
    rating_col = setup.get("rating_column") if setup else None
    # A behaviour model's own columns, plus the star rating its customer features read.
    input_cols = behavior_cols + (
        [rating_col] if rating_col and rating_col not in behavior_cols else []
    )
    sources = [s for s in ("orders", "events") if s in (setup.get("sources") or [])]
    unit = str(setup.get("unit", "review")) if setup else "review"
    state: dict[str, Any] = {"ready": False, "error": None}

    strict = ConfigDict(strict=True, extra="forbid")
    Text = Annotated[str, Field(max_length=settings.max_text_chars)]
    Short = Annotated[str, Field(max_length=100)]
    Finite = Annotated[float, Field(allow_inf_nan=False)]
    Id = str | int | None

    class ScoreRequest(BaseModel):
        model_config = strict
        texts: list[Text | None] = Field(  # type: ignore[valid-type]
            min_length=1,
            max_length=settings.max_texts,
            description="Texts to score; empty or null texts come back with status empty_text.",
        )

    # A behaviour object whose properties are exactly this model's behaviour inputs.
    behavior_fields: dict[str, Any] = {
        f"col_{i}": (float | None, Field(default=None, alias=col, allow_inf_nan=False))
        for i, col in enumerate(input_cols)
    }
    Behavior = create_model(
        "Behavior",
        __config__=ConfigDict(strict=True, extra="forbid", populate_by_name=False),
        **behavior_fields,
    )

    class Order(BaseModel):
        model_config = strict
        date: Short | int | Finite = Field(  # type: ignore[valid-type]
            description="Order date: ISO 8601, dd/mm/yyyy or Unix epoch (seconds or ms)."
        )
        amount: Finite | Short | None = Field(  # type: ignore[valid-type]
            description="A number or a currency string ('1.234.000 ₫', '$12.50', 'R$ 10,00'); "
            "negative: a refund; null: unknown (counts for frequency, not for value)."
        )
        status: Short | None = Field(  # type: ignore[valid-type]
            default=None, description="Cancelled, refunded, returned... are not purchases."
        )
        channel: Short | None = None  # type: ignore[valid-type]
        items: Finite | None = None  # type: ignore[valid-type]

    class Event(BaseModel):
        model_config = strict
        type: Short = Field(  # type: ignore[valid-type]
            description="email_send, email_open, click, session, cart_add, cart_abandon "
            "(or a synonym: 'add to cart', 'opened', 'page_view'...)."
        )
        time: Short | int | Finite = Field(  # type: ignore[valid-type]
            description="ISO 8601, dd/mm/yyyy or Unix epoch (seconds or ms)."
        )

    row_fields: dict[str, Any] = {
        "id": (Id, Field(default=None, description="Your row id, echoed back.")),
        "customer_id": (
            Id,
            Field(
                default=None,
                description="The row's customer: "
                + (
                    "rows of one customer are pooled into one result (customer-unit model)"
                    if unit == "customer"
                    else "its orders / events give the row its customer's behaviour"
                    if sources
                    else "echoed back"
                )
                + ".",
            ),
        ),
        "text": (Text | None, None),
        "behavior": (
            Behavior | None,
            Field(
                default=None,
                description="Behaviour values by name: "
                + (", ".join(input_cols) if input_cols else "none (text only)")
                + ("; they fill the features the orders / events leave unknown" if sources else "")
                + "; missing ones count as the training median.",
            ),
        ),
    }
    if "orders" in sources:
        row_fields["orders"] = (
            list[Order] | None,
            Field(
                default=None,
                description="The orders of the row's customer (its whole history; [] for none). "
                "Without: its order features are unknown (the training median).",
            ),
        )
    if "events" in sources:
        row_fields["events"] = (
            list[Event] | None,
            Field(default=None, description="The events of the row's customer."),
        )
    AssignRow = create_model("AssignRow", __config__=strict, **row_fields)
    request_fields: dict[str, Any] = {
        "rows": (list[AssignRow], Field(min_length=1, max_length=settings.max_texts))  # type: ignore[valid-type]
    }
    if sources:
        request_fields["reference_date"] = (
            Short | None,
            Field(
                default=None,
                description="Date recency and tenure are measured from (e.g. today). Default: "
                "the fit's reference date, or the request's latest order / event when later.",
            ),
        )
    AssignRequest = create_model("AssignRequest", __config__=strict, **request_fields)

    class ScoreResult(BaseModel):
        sentiment_label: Literal["negative", "neutral", "positive"] | None
        sentiment_score: float | None
        sentiment_confidence: float | None
        status: str

    class ScoreResponse(BaseModel):
        results: list[ScoreResult]

    class AssignResult(BaseModel):
        id: str | int | None = Field(description="The row's id (null for a customer result).")
        customer_id: str | int | None
        rows: list[int] = Field(description="Positions of the request rows behind this result.")
        segment_id: int
        segment_name: str
        segment_probability: float | None
        is_outlier: bool
        sentiment_label: Literal["negative", "neutral", "positive"] | None
        sentiment_score: float | None
        sentiment_confidence: float | None
        status: str
        aspects: str = Field(
            "",
            description="What the text praises or complains about (a model fitted with "
            "--aspects): aspect:polarity pairs joined with ';'; empty otherwise.",
        )
        sentiment_mixed: bool = Field(
            False, description="The text praises one aspect and complains about another."
        )
        placed_on: Literal["text+behavior", "text", "behavior"] | None = Field(
            description="What the result was placed on (null: nothing, e.g. an empty text)."
        )
        behavior: dict[str, float | None] | None = Field(
            description="The behaviour features it was placed with (null: unknown)."
        )
        value_tier: str | None
        loyalty_tier: str | None
        next_best_action: str = Field(
            description="What to do for this row or customer (see README Personalisation)."
        )
        warnings: list[str] = Field(description="Why placement used less than the model can.")

    class AssignResponse(BaseModel):
        unit: Literal["review", "customer"] = Field(
            description="review: one result per row; customer: one per customer, its rows pooled."
        )
        reference_date: str | None
        results: list[AssignResult]
        warnings: list[str]

    class ErrorDetail(BaseModel):
        code: str
        message: str
        details: list[dict[str, Any]] | None = None

    class ErrorResponse(BaseModel):
        error: ErrorDetail

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorResponse, "description": desc}
        for code, desc in (
            (400, "Malformed Content-Length header."),
            (401, "Missing or wrong API key (when a key is set)."),
            (408, "The request body did not arrive in time."),
            (413, "Request body larger than the limit."),
            (421, "Host header not in the service's allow-list."),
            (422, "Invalid JSON or a request that breaks the schema or its limits."),
            (503, "Queue full or request budget in use; retry after Retry-After seconds."),
        )
    }

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlpseg-model")
    wait_s = settings.max_wait_ms / 1000.0
    score_batcher = MicroBatcher(
        "score",
        runner.score_batch,
        max_texts=settings.max_batch_texts,
        max_wait_s=wait_s,
        max_queue_texts=settings.max_queue_texts,
        executor=executor,
        metrics=metrics,
    )
    assign_batcher = MicroBatcher(
        "assign",
        runner.assign_batch,
        max_texts=settings.max_batch_texts,
        max_wait_s=wait_s,
        max_queue_texts=settings.max_queue_texts,
        executor=executor,
        metrics=metrics,
    )
    budget = PendingBytes(settings.max_pending_bytes)
    metrics.pending_bytes.set_function(lambda: budget.held)
    batchers = {"/v1/score": score_batcher, "/v1/assign": assign_batcher}

    def queue_full(path: str) -> str | None:
        batcher = batchers.get(path)
        return batcher.full_message() if batcher is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        score_batcher.start()
        assign_batcher.start()

        async def warm() -> None:
            try:
                if settings.warmup:
                    await loop.run_in_executor(executor, runner.warm_up)
                state["ready"] = True
            except Exception:  # noqa: BLE001 - /readyz says failed; the log says why
                log.exception("warm-up failed")
                state["error"] = True

        warm_task = loop.create_task(warm())
        try:
            yield
        finally:
            warm_task.cancel()
            await score_batcher.stop()
            await assign_batcher.stop()
            executor.shutdown(wait=False, cancel_futures=True)

    from fastapi_offline import FastAPIOffline

    # /docs from Swagger UI assets shipped in the fastapi-offline package, not a CDN: the page
    # works on air-gapped machines.
    app = FastAPIOffline(
        title="nlpseg",
        version=__version__,
        description="Sentiment and customer segments for new texts, from a fitted nlpseg "
        "segmenter. Limits: "
        f"{settings.max_texts} texts or rows per request, {settings.max_text_chars} "
        f"characters per text, {settings.max_body_bytes} bytes per body.",
        lifespan=lifespan,
        redoc_url=None,
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()))
            details.append({"loc": loc, "msg": str(e.get("msg", "")), "type": e.get("type", "")})
        first = details[0] if details else {"loc": "body", "msg": "invalid request"}
        message = f"{first['loc']}: {first['msg']}" if first["loc"] else first["msg"]
        body = json.loads(error_body("invalid_request", message, details[:20]))
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (not UTF-8): bad JSON, like the rest.
            body = error_body("invalid_request", "body: cannot be parsed as UTF-8 JSON")
            return JSONResponse(json.loads(body), status_code=422)
        codes = {
            404: "not_found",
            405: "method_not_allowed",
            499: "client_closed_request",
            503: "overloaded",
        }
        code = codes.get(exc.status_code, "http_error")
        return JSONResponse(
            json.loads(error_body(code, str(exc.detail))),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error: %s", exc, exc_info=exc)
        return JSONResponse(
            json.loads(error_body("internal_error", "internal error; see the service log")),
            status_code=500,
        )

    async def _submit(
        batcher: MicroBatcher, payload: Any, size: int, connection: Request
    ) -> pd.DataFrame:
        metrics.request_texts.labels(f"/v1/{batcher.kind}").observe(size)

        async def gone() -> None:
            # The body has been read: the next ASGI message is the client's disconnect.
            while (await connection.receive())["type"] != "http.disconnect":
                pass

        try:
            return await batcher.submit(payload, size, gone)
        except OverloadedError as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from exc
        except ClientGoneError as exc:  # nobody reads the answer
            raise HTTPException(499, str(exc)) from exc

    @app.post(
        "/v1/score",
        response_model=ScoreResponse,
        responses=errors,
        summary="Sentiment of texts",
    )
    async def score(request: ScoreRequest, connection: Request) -> dict[str, Any]:
        """Sentiment label, score in [-1, 1] and confidence of each text, in order."""
        frame = await _submit(score_batcher, request.texts, len(request.texts), connection)
        records = frame_records(frame)
        for r in records:
            metrics.rows.labels("score", r["status"]).inc()
        return {"results": records}

    @app.post(
        "/v1/assign",
        response_model=AssignResponse,
        responses=errors,
        summary="Segment of rows (text + optional behaviour)",
    )
    async def assign(request: AssignRequest, connection: Request) -> dict[str, Any]:  # type: ignore[valid-type]
        """Segment id, name, membership probability, outlier flag and sentiment of each row
        (or, for a customer-unit model, of each customer, its rows pooled), in order: what
        ``nlpseg assign`` (``--orders`` / ``--events`` made of the rows' lists) gives for the
        same rows. ``placed_on`` and ``warnings`` say what each result was placed on."""
        rows = request.rows  # type: ignore[attr-defined]
        payload = behavior_payload(
            rows,
            getattr(request, "reference_date", None),
            input_cols=input_cols,
            sources=sources,
            fit_reference_date=setup.get("reference_date") if setup else None,
        )
        placement = await _submit(assign_batcher, payload, len(rows), connection)
        answer = assign_results(rows, placement, sources)
        from nlp_seg.stages.personalise import next_best_action

        for rec in answer["results"]:
            metrics.rows.labels("assign", rec["status"]).inc()
            row_fields = {k: rec.get(k) for k in ("value_tier", "loyalty_tier", "sentiment_label")}
            row_fields["base"] = base_names.get(rec["segment_id"], "")
            rec["next_best_action"] = next_best_action(playbook, row_fields)
        return answer

    @app.get("/v1/segments", summary="The fitted segments' profiles", responses=errors)
    async def segments() -> dict[str, Any]:
        """Every segment's id, name, size, sentiment mix, keywords, quotes and action."""
        return segments_payload

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        """200 while the process answers (no authentication)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: models loaded and warmed up",
        responses={503: {"model": ErrorResponse, "description": "Still warming up, or failed."}},
    )
    async def readyz() -> Any:
        """200 once the models are loaded and compiled; 503 before (no authentication, so
        it says only that: no model path, version or error text; the log has the cause)."""
        if state["ready"]:
            return {"status": "ready"}
        code, message = (
            ("warm_up_failed", "warm-up failed; see the service log")
            if state["error"]
            else ("warming_up", "loading and warming up the models")
        )
        return JSONResponse(json.loads(error_body(code, message)), status_code=503)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, 401: errors[401]},
    )
    async def prometheus() -> Response:
        """Request counts and latency per endpoint, batch sizes, model call time, queue depth
        (Prometheus text format)."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    # Outermost last: metrics, Host check, API key (before any body byte is read), body limits.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        budget=budget,
        timeout_s=settings.body_timeout_s,
        full=queue_full,
        metrics=metrics,
    )
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    if settings.allowed_hosts is not None:
        app.add_middleware(HostCheckMiddleware, allowed=settings.allowed_hosts, metrics=metrics)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.ready = state
    app.state.pending_bytes = budget
    return app


def create_app_from_env() -> "FastAPI":
    """App factory for uvicorn's worker processes (``nlpseg serve --workers N``): each worker
    loads the model folder named in ``NLPSEG_SERVE_SETTINGS`` once."""
    from nlp_seg.segmenter import load_segmenter

    settings = ServiceSettings.from_env()
    if not settings.model_dir:
        raise RuntimeError(f"{SETTINGS_ENV} names no model_dir")
    segmenter = load_segmenter(
        settings.model_dir, device=settings.device, precision=settings.precision, cache_dir=None
    )
    return create_app(segmenter, settings)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the service on this machine (``localhost``,
    ``127.0.0.0/8``, ``::1``)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def exposure_problem(host: str, api_key: str | None, allow_unauthenticated: bool) -> str | None:
    """Why the service must not start on ``host`` as configured (``None``: it may): bound
    beyond this machine, it needs a key unless the operator says otherwise."""
    if api_key or allow_unauthenticated or is_loopback(host):
        return None
    return (
        f"refusing to serve on {host} without an API key: anyone who can reach it would read "
        "your segments and quotes; set NLPSEG_API_KEY or --api-key-file, or pass "
        "--allow-unauthenticated"
    )


def host_allow_list(host: str, extra: Sequence[str] = ()) -> list[str] | None:
    """The ``Host`` names a service bound to ``host`` answers: this machine's names plus
    ``extra`` when bound to localhost (or when ``extra`` names any); ``None`` (any) for a
    service bound beyond this machine with no ``extra``."""
    if not extra and not is_loopback(host):
        return None
    return [*LOCAL_HOSTS, *extra]


def server_options(settings: ServiceSettings) -> dict[str, Any]:
    """``uvicorn.Config`` / ``uvicorn.run`` keyword arguments that apply ``settings``'
    connection limits: the h11 protocol with a header deadline and a connection cap
    (:mod:`nlp_seg.service.protocol`), the idle keep-alive timeout, the header size limit,
    no WebSocket upgrade and no ``Server`` header."""
    from nlp_seg.service.protocol import protocol_factory

    return {
        "http": protocol_factory(settings.header_timeout_s, settings.max_connections),
        "ws": "none",
        "timeout_keep_alive": settings.keep_alive_s,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "server_header": False,
    }


def serve(
    model_dir: str,
    settings: ServiceSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    device: str | None = None,
    precision: str | None = None,
    log_level: str = "info",
    allowed_hosts: Sequence[str] = (),
    allow_unauthenticated: bool = False,
) -> None:
    """Load the model folder and serve it until interrupted (``nlpseg serve``).

    Refuses (``ValueError``) to listen beyond this machine without an API key unless
    ``allow_unauthenticated``; answers only the ``Host`` names of :func:`host_allow_list`.

    With one worker the model is loaded here, once. With ``workers > 1`` uvicorn starts that
    many processes, each loading its own copy (memory grows with the worker count; throughput
    does too, up to the number of CPU cores or GPUs); the folder is checked here first so a
    bad folder fails with one clear error before any worker starts. Unless
    ``settings.threads`` says otherwise, each of several workers gets an equal share of the
    CPU cores for torch. The limits hold per worker.
    """
    import uvicorn

    from nlp_seg.segmenter import load_segmenter

    problem = exposure_problem(host, settings.api_key, allow_unauthenticated)
    if problem:
        raise ValueError(problem)
    settings.model_dir = str(model_dir)
    settings.device = device
    settings.precision = precision
    settings.allowed_hosts = host_allow_list(host, allowed_hosts)
    segmenter = load_segmenter(str(model_dir), device=device, precision=precision, cache_dir=None)
    options = server_options(settings)
    if workers <= 1:
        uvicorn.run(
            create_app(segmenter, settings),
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=10,
            **options,
        )
        return
    del segmenter
    if settings.threads is None:
        settings.threads = max(1, (os.cpu_count() or 1) // workers)
    env_settings = settings.public()
    env_settings.pop("api_key")  # the key travels in NLPSEG_API_KEY only
    os.environ[SETTINGS_ENV] = json.dumps(env_settings)
    if settings.api_key:
        os.environ[API_KEY_ENV] = settings.api_key
    uvicorn.run(
        "nlp_seg.service.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=10,
        **options,
    )
