"""``nlpseg serve``: an HTTP API that scores and segments new text with a fitted segmenter.

Shops want a review labelled the moment it is posted; a CRM wants to ask which segment a
customer is in now. This module is the service behind that: FastAPI (an OpenAPI spec at
``/openapi.json``) served by uvicorn, with

* **micro-batching**: concurrent small requests wait in an asyncio queue for at most
  ``max_wait_ms`` and share one encoder call of up to ``max_batch_texts`` texts; the model call
  runs in a single worker thread, so the event loop keeps answering (health, metrics, queueing)
  while the CPU encodes;
* **results identical to** :meth:`Segmenter.predict` **for a request's rows**: a batch encodes
  every distinct text of its requests once, then each request is placed on its own through
  ``predict`` itself (a placement step may depend on the rows placed with it: UMAP's
  ``transform`` does, batched distance arithmetic rounds differently; one client's answer must
  not depend on what another sent at the same time);
* **limits** that answer 413/422 with a JSON error instead of failing: texts per request, text
  length, body size (a middleware that reads at most ``max_body_bytes``), a bounded queue (503);
* optional **API key** (``NLPSEG_API_KEY``), compared in constant time, required everywhere but
  ``/healthz`` and ``/readyz``;
* **Prometheus metrics** at ``/metrics``: requests and latency per endpoint, batch sizes, model
  call time, queue depth.

The model is loaded once, before the first request, from a folder fixed at start; nothing in a
request names a file. Request texts are never written to disk (the embedding cache is off).
"""

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from fastapi import FastAPI

    from nlp_seg.segmenter import Segmenter

log = logging.getLogger("nlp_seg.service.app")

API_KEY_ENV = "NLPSEG_API_KEY"
SETTINGS_ENV = "NLPSEG_SERVE_SETTINGS"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
KNOWN_PATHS = frozenset(
    {
        "/v1/score",
        "/v1/assign",
        "/v1/segments",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
    }
)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class ServiceSettings:
    """Limits and batching of one service process (every field has a safe default).

    ``api_key`` defaults to ``NLPSEG_API_KEY`` via :meth:`from_env`; ``None`` or empty means no
    authentication (the service binds to localhost by default for that reason).
    """

    model_dir: str | None = None
    max_texts: int = 256
    max_text_chars: int = 5000
    max_body_bytes: int = 2_000_000
    max_batch_texts: int = 64
    max_wait_ms: float = 5.0
    max_queue: int = 1000
    api_key: str | None = None
    warmup: bool = True
    device: str | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_texts", "max_text_chars", "max_body_bytes", "max_batch_texts"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_wait_ms < 0 or self.max_queue < 1:
            raise ValueError("max_wait_ms must be >= 0 and max_queue >= 1")

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


# ----------------------------------------------------------------------------- errors


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    """The one JSON error shape every non-2xx answer uses."""
    err: dict[str, Any] = {"code": code, "message": message}
    if details:
        err["details"] = details
    return json.dumps({"error": err}, ensure_ascii=False).encode("utf-8")


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    body = error_body(code, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- middleware


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413, reading at most that many bytes.

    A declared ``Content-Length`` over the limit is refused before anything is read; a body
    without one (chunked) is read up to the limit and refused as soon as it goes past. The
    body that passes is replayed to the app, so no handler ever sees an unbounded stream.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "bad_request", "invalid Content-Length header")
                    return
        too_big = f"request body is larger than the limit of {self.max_bytes} bytes"
        if declared is not None and declared > self.max_bytes:
            await _send_error(send, 413, "payload_too_large", too_big, [(b"connection", b"close")])
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(
                    send, 413, "payload_too_large", too_big, [(b"connection", b"close")]
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ApiKeyMiddleware:
    """Require ``X-API-Key: KEY`` or ``Authorization: Bearer KEY`` except on health paths.

    Keys are compared with :func:`hmac.compare_digest` (constant time), so response timing
    does not leak how much of a guessed key was right.
    """

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        supplied: bytes | None = None
        for name, value in scope.get("headers", []):
            if name == b"x-api-key":
                supplied = value.strip()
                break
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                supplied = value[7:].strip()
        if supplied is None or not hmac.compare_digest(supplied, self.key):
            message = (
                "missing API key: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'"
                if supplied is None
                else "invalid API key"
            )
            await _send_error(
                send, 401, "unauthorized", message, [(b"www-authenticate", b"Bearer")]
            )
            return
        await self.app(scope, receive, send)


class Metrics:
    """The service's Prometheus metrics, in their own registry (one per app)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "nlpseg_http_requests",
            "HTTP requests answered, by endpoint, method and status code.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nlpseg_http_request_duration_seconds",
            "Time from request to the end of the response, by endpoint.",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.request_texts = Histogram(
            "nlpseg_request_texts",
            "Texts (or rows) per request, by endpoint.",
            ["endpoint"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.batch_texts = Histogram(
            "nlpseg_batch_texts",
            "Texts per model call (micro-batch), by kind (score or assign).",
            ["kind"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "nlpseg_batch_requests",
            "Requests sharing one model call, by kind.",
            ["kind"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "nlpseg_model_call_duration_seconds",
            "Time of one model call (encode + sentiment + placement of a micro-batch).",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "nlpseg_queue_requests",
            "Requests waiting for a model call, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.rows = Counter(
            "nlpseg_rows",
            "Rows answered, by kind and status (ok, empty_text, ...).",
            ["kind", "status"],
            registry=self.registry,
        )

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Count and time every request, labelled by a fixed set of endpoints (bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status)).inc()


# ----------------------------------------------------------------------------- batching


class OverloadedError(Exception):
    """The queue is full: the client should retry later (503)."""


@dataclass
class _Pending:
    payload: Any
    size: int
    future: asyncio.Future[Any]


class MicroBatcher:
    """Queue requests and answer them in shared model calls.

    The loop takes the first waiting request, then keeps taking requests until the batch
    holds ``max_texts`` texts or ``max_wait_s`` has passed since the first one, and runs
    ``fn(payloads) -> results`` (one result per payload, same order) in ``executor``. While
    a call runs, new requests queue up, so under load batches fill without waiting at all.
    A request larger than ``max_texts`` is a batch of its own; one that would overflow the
    batch waits for the next.
    """

    def __init__(
        self,
        kind: str,
        fn: Callable[[list[Any]], list[Any]],
        *,
        max_texts: int,
        max_wait_s: float,
        max_queue: int,
        executor: ThreadPoolExecutor,
        metrics: Metrics,
    ) -> None:
        self.kind = kind
        self.fn = fn
        self.max_texts = max_texts
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.executor = executor
        self.metrics = metrics
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._held: _Pending | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batch-{self.kind}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, payload: Any, size: int) -> Any:
        """Queue one request's payload and wait for its result."""
        if self._queue.qsize() >= self.max_queue:
            raise OverloadedError(f"{self.kind} queue is full ({self.max_queue} requests)")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(payload, max(1, size), future))
        self.metrics.queue_depth.labels(self.kind).set(self._queue.qsize())
        return await future

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._held is not None:
            item, self._held = self._held, None
            return item
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            try:
                return self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next(None)
            assert first is not None
            batch, total = [first], first.size
            deadline = loop.time() + self.max_wait_s
            while total < self.max_texts:
                item = await self._next(deadline - loop.time())
                if item is None:
                    break
                if total + item.size > self.max_texts:
                    self._held = item
                    break
                batch.append(item)
                total += item.size
            self.metrics.queue_depth.labels(self.kind).set(self._queue.qsize())
            live = [p for p in batch if not p.future.done()]
            if not live:
                continue
            self.metrics.batch_texts.labels(self.kind).observe(sum(p.size for p in live))
            self.metrics.batch_requests.labels(self.kind).observe(len(live))
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self.executor, self.fn, [p.payload for p in live]
                )
            except Exception as exc:  # noqa: BLE001 - handed to each waiting request
                log.exception("%s model call failed", self.kind)
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            finally:
                self.metrics.model_seconds.labels(self.kind).observe(time.perf_counter() - start)
            for p, result in zip(live, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)


# ----------------------------------------------------------------------------- model calls


class ModelRunner:
    """The model calls behind the endpoints; run only in the service's single model thread.

    ``score_batch`` and ``assign_batch`` take the payloads of every request in a micro-batch
    and return one DataFrame of contract columns per request.
    """

    def __init__(self, segmenter: "Segmenter") -> None:
        self.segmenter = segmenter

    def score_batch(self, payloads: list[list[str | None]]) -> list[pd.DataFrame]:
        """Sentiment of every request's texts, from one scorer call over their distinct texts.

        Same columns and values as ``nlpseg score`` (``SCORE_COLUMNS``).
        """
        from nlp_seg.normalize import STATUS_OK, normalize_texts
        from nlp_seg.segmenter import SCORE_COLUMNS, build_assignments

        seg = self.segmenter
        norms = [normalize_texts(texts, max_chars=seg.config.max_chars) for texts in payloads]
        distinct = sorted({n.text for norm in norms for n in norm if n.status == STATUS_OK})
        probs_all = seg.score_sentiment(distinct) if distinct else np.zeros((0, 3))
        row_of = {t: i for i, t in enumerate(distinct)}
        out = []
        for norm in norms:
            n = len(norm)
            status = np.array([x.status for x in norm], dtype=object)
            ok = status == STATUS_OK
            probs = np.full((n, 3), np.nan)
            if ok.any():
                probs[ok] = probs_all[[row_of[x.text] for x in norm if x.status == STATUS_OK]]
            frame = build_assignments(
                np.full(n, -1), np.zeros(n), np.zeros(n, dtype=bool), probs, status, {}
            )
            out.append(frame[list(SCORE_COLUMNS)])
        return out

    def assign_batch(
        self, payloads: list[tuple[list[str | None], pd.DataFrame | None]]
    ) -> list[pd.DataFrame]:
        """Segments of every request's rows: one encoder pass over the batch's distinct texts,
        then :meth:`Segmenter.predict` on each request's own rows with those encodings."""
        from nlp_seg.normalize import STATUS_OK, normalize_texts

        seg = self.segmenter
        distinct = sorted(
            {
                n.text
                for texts, _ in payloads
                for n in normalize_texts(texts, max_chars=seg.config.max_chars)
                if n.status == STATUS_OK
            }
        )
        if distinct:
            emb_all, probs_all = seg.encode(distinct)
        row_of = {t: i for i, t in enumerate(distinct)}

        def encoded(texts: Sequence[str], timer: Any = None) -> tuple[np.ndarray, np.ndarray]:
            idx = [row_of[t] for t in texts]
            return emb_all[idx], probs_all[idx]

        return [seg.predict(texts, behavior, encode=encoded) for texts, behavior in payloads]

    def warm_up(self) -> None:
        """Load the models and compile UMAP's code before the service says it is ready."""
        self.assign_batch([(["warm-up text: good product, fast delivery"], None)])


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


# ----------------------------------------------------------------------------- the app


def create_app(segmenter: "Segmenter", settings: "ServiceSettings | None" = None) -> "FastAPI":
    """The HTTP service for a fitted ``segmenter`` (see the module docstring).

    The segmenter is used as given, except that its embedding cache is switched off so request
    texts never reach the disk. Request schemas carry the limits in ``settings``, so the
    OpenAPI spec documents them and FastAPI enforces them (422).
    """
    from fastapi import FastAPI, HTTPException, Request
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
    metrics = Metrics()
    segments_payload = {"segments": _jsonable(segmenter.segments_)}
    scaler = getattr(segmenter, "behavior_scaler_", None)
    behavior_cols: list[str] = list(scaler.columns_) if scaler is not None else []
    state: dict[str, Any] = {"ready": False, "error": None}

    strict = ConfigDict(strict=True, extra="forbid")
    Text = Annotated[str, Field(max_length=settings.max_text_chars)]

    class ScoreRequest(BaseModel):
        model_config = strict
        texts: list[Text | None] = Field(  # type: ignore[valid-type]
            min_length=1,
            max_length=settings.max_texts,
            description="Texts to score; empty or null texts come back with status empty_text.",
        )

    # A behaviour object whose properties are exactly this model's behaviour columns.
    behavior_fields: dict[str, Any] = {
        f"col_{i}": (float | None, Field(default=None, alias=col, allow_inf_nan=False))
        for i, col in enumerate(behavior_cols)
    }
    Behavior = create_model(
        "Behavior",
        __config__=ConfigDict(strict=True, extra="forbid", populate_by_name=False),
        **behavior_fields,
    )

    class AssignRow(BaseModel):
        model_config = strict
        id: str | int | None = Field(
            default=None, description="Your row or customer id, echoed back."
        )
        text: Text | None = None  # type: ignore[valid-type]
        behavior: Behavior | None = Field(  # type: ignore[valid-type]
            default=None,
            description="Behaviour columns the model was fitted with: "
            + (", ".join(behavior_cols) if behavior_cols else "none (text only)")
            + "; missing ones count as the training median.",
        )

    class AssignRequest(BaseModel):
        model_config = strict
        rows: list[AssignRow] = Field(min_length=1, max_length=settings.max_texts)

    class ScoreResult(BaseModel):
        sentiment_label: Literal["negative", "neutral", "positive"] | None
        sentiment_score: float | None
        sentiment_confidence: float | None
        status: str

    class ScoreResponse(BaseModel):
        results: list[ScoreResult]

    class AssignResult(BaseModel):
        id: str | int | None
        segment_id: int
        segment_name: str
        segment_probability: float | None
        is_outlier: bool
        sentiment_label: Literal["negative", "neutral", "positive"] | None
        sentiment_score: float | None
        sentiment_confidence: float | None
        status: str

    class AssignResponse(BaseModel):
        results: list[AssignResult]

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
            (401, "Missing or wrong API key (when NLPSEG_API_KEY is set)."),
            (413, "Request body larger than the limit."),
            (422, "Invalid JSON or a request that breaks the schema or its limits."),
            (503, "Queue full; retry later."),
        )
    }

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nlpseg-model")
    wait_s = settings.max_wait_ms / 1000.0
    score_batcher = MicroBatcher(
        "score",
        runner.score_batch,
        max_texts=settings.max_batch_texts,
        max_wait_s=wait_s,
        max_queue=settings.max_queue,
        executor=executor,
        metrics=metrics,
    )
    assign_batcher = MicroBatcher(
        "assign",
        runner.assign_batch,
        max_texts=settings.max_batch_texts,
        max_wait_s=wait_s,
        max_queue=settings.max_queue,
        executor=executor,
        metrics=metrics,
    )

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
            except Exception as exc:  # noqa: BLE001 - reported by /readyz
                log.exception("warm-up failed")
                state["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]

        warm_task = loop.create_task(warm())
        try:
            yield
        finally:
            warm_task.cancel()
            await score_batcher.stop()
            await assign_batcher.stop()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
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
        codes = {404: "not_found", 405: "method_not_allowed", 503: "overloaded"}
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

    async def _submit(batcher: MicroBatcher, payload: Any, size: int) -> pd.DataFrame:
        metrics.request_texts.labels(f"/v1/{batcher.kind}").observe(size)
        try:
            return await batcher.submit(payload, size)
        except OverloadedError as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from exc

    @app.post(
        "/v1/score",
        response_model=ScoreResponse,
        responses=errors,
        summary="Sentiment of texts",
    )
    async def score(request: ScoreRequest) -> dict[str, Any]:
        """Sentiment label, score in [-1, 1] and confidence of each text, in order."""
        frame = await _submit(score_batcher, request.texts, len(request.texts))
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
    async def assign(request: AssignRequest) -> dict[str, Any]:
        """Segment id, name, membership probability, outlier flag and sentiment of each row,
        in order; identical to ``nlpseg assign`` / ``Segmenter.predict`` for the same rows."""
        texts = [row.text for row in request.rows]
        behavior = None
        if behavior_cols:
            behavior = pd.DataFrame(
                [
                    row.behavior.model_dump(by_alias=True) if row.behavior else {}
                    for row in request.rows
                ],
                columns=behavior_cols,
                dtype=float,
            )
        frame = await _submit(assign_batcher, (texts, behavior), len(texts))
        records = frame_records(frame)
        for row, rec in zip(request.rows, records, strict=True):
            rec["id"] = row.id
            metrics.rows.labels("assign", rec["status"]).inc()
        return {"results": records}

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
        """200 once the models are loaded and compiled; 503 before (no authentication)."""
        if state["ready"]:
            return {"status": "ready", "version": __version__, "model": settings.model_dir}
        code, message = (
            ("warm_up_failed", state["error"])
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

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.ready = state
    return app


def create_app_from_env() -> "FastAPI":
    """App factory for uvicorn's worker processes (``nlpseg serve --workers N``): each worker
    loads the model folder named in ``NLPSEG_SERVE_SETTINGS`` once."""
    from nlp_seg.segmenter import load_segmenter

    settings = ServiceSettings.from_env()
    if not settings.model_dir:
        raise RuntimeError(f"{SETTINGS_ENV} names no model_dir")
    segmenter = load_segmenter(settings.model_dir, device=settings.device, cache_dir=None)
    return create_app(segmenter, settings)


def serve(
    model_dir: str,
    settings: ServiceSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    device: str | None = None,
    log_level: str = "info",
) -> None:
    """Load the model folder and serve it until interrupted (``nlpseg serve``).

    With one worker the model is loaded here, once. With ``workers > 1`` uvicorn starts that
    many processes, each loading its own copy (memory grows with the worker count; throughput
    does too, up to the number of CPU cores or GPUs); the folder is checked here first so a
    bad folder fails with one clear error before any worker starts. Unless
    ``settings.threads`` says otherwise, each of several workers gets an equal share of the
    CPU cores for torch.
    """
    import uvicorn

    from nlp_seg.segmenter import load_segmenter

    settings.model_dir = str(model_dir)
    settings.device = device
    segmenter = load_segmenter(str(model_dir), device=device, cache_dir=None)
    if workers <= 1:
        uvicorn.run(
            create_app(segmenter, settings),
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=10,
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
    )
