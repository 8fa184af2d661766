"""The service's ASGI middleware: body size limit, API key, Prometheus metrics.

Each wraps the FastAPI app built by :func:`nlp_seg.service.app.create_app` and answers its
own errors in the one JSON error shape (:func:`error_body`) without reaching a route:

* :class:`BodyLimitMiddleware` reads at most ``max_bytes`` of a body (413 past it);
* :class:`ApiKeyMiddleware` requires the key everywhere but ``/healthz`` and ``/readyz``,
  compared in constant time (401);
* :class:`MetricsMiddleware` counts and times every request into :class:`Metrics`.
"""

import hmac
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

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


# ----------------------------------------------------------------------------- errors


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    """The one JSON error shape every non-2xx answer uses."""
    err: dict[str, Any] = {"code": code, "message": message}
    if details:
        err["details"] = details
    return json.dumps({"error": err}, ensure_ascii=False).encode("utf-8")


async def send_error(
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
                    await send_error(send, 400, "bad_request", "invalid Content-Length header")
                    return
        too_big = f"request body is larger than the limit of {self.max_bytes} bytes"
        if declared is not None and declared > self.max_bytes:
            await send_error(send, 413, "payload_too_large", too_big, [(b"connection", b"close")])
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
                await send_error(
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
            await send_error(send, 401, "unauthorized", message, [(b"www-authenticate", b"Bearer")])
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
