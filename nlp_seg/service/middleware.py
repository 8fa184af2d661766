"""The service's ASGI middleware: Host check, API key, body limits, Prometheus metrics.

Each wraps the FastAPI app built by :func:`nlp_seg.service.app.create_app` and answers its
own errors in the one JSON error shape (:func:`error_body`) without reaching a route. From
the outside in:

* :class:`MetricsMiddleware` counts and times every request into :class:`Metrics`;
* :class:`HostCheckMiddleware` answers only the Host names of an allow-list (421), so a web
  page on a DNS-rebound name cannot reach a service bound to localhost;
* :class:`ApiKeyMiddleware` requires the key everywhere but ``/healthz`` and ``/readyz``,
  compared in constant time (401), before any of the body is read;
* :class:`BodyLimitMiddleware` reads at most ``max_bytes`` of a body (413 past it), within
  ``timeout_s`` (408), and only while the bodies held by the process stay within a
  :class:`PendingBytes` budget (503 with ``Retry-After``).
"""

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
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

CLOSE = (b"connection", b"close")
RETRY = (b"retry-after", b"1")


class PendingBytes:
    """A budget of request-body bytes the process holds at once (read, queued or computed).

    A request reserves its body's bytes before they are read and releases them when its
    answer has been sent, so the memory requests take grows with this budget, not with how
    many clients send at once. One event loop uses it; no lock is needed.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0

    def reserve(self, n: int) -> bool:
        """Take ``n`` bytes if they fit (always when nothing is held); ``False`` if not."""
        if self.held and self.held + n > self.capacity:
            return False
        self.held += n
        return True

    def release(self, n: int) -> None:
        self.held = max(0, self.held - n)


class BodyLimitMiddleware:
    """Read a body within its limits, then replay it to the app.

    * **size**: a declared ``Content-Length`` over ``max_bytes`` is refused (413) before
      anything is read; a body without one (chunked) is refused as soon as it goes past;
    * **time**: the whole body must arrive within ``timeout_s`` of the request's headers
      (408 and the connection closed), so a client trickling bytes cannot hold a slot;
    * **memory**: the body's bytes are reserved in ``budget`` first; when they do not fit,
      or ``full(path)`` says the request's queue has no room (a message), the request is
      answered 503 with ``Retry-After`` (its body read and dropped, never kept, so the
      client reads the answer instead of a reset connection).

    No handler ever sees an unbounded stream.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        budget: PendingBytes | None = None,
        timeout_s: float | None = None,
        full: Callable[[str], str | None] | None = None,
        metrics: "Metrics | None" = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.budget = budget
        self.timeout_s = timeout_s
        self.full = full
        self.metrics = metrics

    def _count(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejected.labels(reason).inc()

    async def _receive(self, receive: Receive, deadline: float | None) -> Message | None:
        """The next message, or ``None`` when the body's time is up."""
        if deadline is None:
            return await receive()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return None
        try:
            return await asyncio.wait_for(receive(), left)
        except asyncio.TimeoutError:
            return None

    async def _drain(self, receive: Receive, deadline: float | None, size: int) -> bool:
        """Read and drop the rest of a body (at most ``max_bytes`` in all); ``False`` when it
        does not end in time or within the limit."""
        while True:
            message = await self._receive(receive, deadline)
            if message is None or message["type"] == "http.disconnect":
                return False
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return False
            if not message.get("more_body", False):
                return True

    async def _busy(
        self,
        send: Send,
        receive: Receive,
        deadline: float | None,
        size: int,
        why: str | None = None,
    ) -> None:
        self._count("queue_full" if why else "busy")
        await self._drain(receive, deadline, size)
        held = self.budget.capacity if self.budget is not None else 0
        message = why or (
            f"server busy: the requests in progress hold its {held}-byte budget; retry later"
        )
        await send_error(send, 503, "overloaded", message, [RETRY, CLOSE])

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
            await send_error(send, 413, "payload_too_large", too_big, [CLOSE])
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s if self.timeout_s else None
        budget = self.budget
        reserved = 0
        why = self.full(scope["path"]) if self.full is not None else None
        if why:  # no room in its queue: refused before its body takes memory
            await self._busy(send, receive, deadline, 0, why)
            return
        if declared and budget is not None:
            if not budget.reserve(declared):
                await self._busy(send, receive, deadline, 0)
                return
            reserved = declared
        try:
            buf = bytearray()
            while True:
                message = await self._receive(receive, deadline)
                if message is None:
                    self._count("body_timeout")
                    await send_error(
                        send,
                        408,
                        "request_timeout",
                        f"the request body did not arrive within {self.timeout_s:g} s",
                        [CLOSE],
                    )
                    return
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size = len(buf) + len(chunk)
                if size > self.max_bytes:
                    await send_error(send, 413, "payload_too_large", too_big, [CLOSE])
                    return
                if budget is not None and size > reserved:  # chunked: reserve as it comes
                    if not budget.reserve(size - reserved):
                        del buf
                        await self._busy(send, receive, deadline, size)
                        return
                    reserved = size
                buf += chunk
                if not message.get("more_body", False):
                    break
            body = bytes(buf)
            del buf
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
        finally:
            if reserved and budget is not None:
                budget.release(reserved)


def host_name(value: str) -> str:
    """A Host header's (or an allow-list entry's) name: lower case, without port or final
    dot, an IPv6 address in brackets (``[::1]``)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    if value.count(":") > 1:  # a bare IPv6 address (allow-list entries only)
        return f"[{value}]"
    return value.split(":", 1)[0].rstrip(".")


#: The names of this machine a browser uses for a service bound to localhost.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")


class HostCheckMiddleware:
    """Answer only requests whose ``Host`` header names an allowed host (421 otherwise).

    A service bound to localhost is reachable from a web page through DNS rebinding (a name
    the attacker controls, re-pointed at 127.0.0.1): the browser then sends the attacker's
    name as ``Host``. Checking it against ``allowed`` (names without port; ``*`` allows
    any) closes that door. A request without ``Host`` is refused too.
    """

    def __init__(
        self, app: ASGIApp, allowed: Iterable[str], metrics: "Metrics | None" = None
    ) -> None:
        self.app = app
        self.allowed = frozenset(host_name(h) for h in allowed)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        host = None
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = host_name(value.decode("latin-1"))
                break
        if host not in self.allowed:
            if self.metrics is not None:
                self.metrics.rejected.labels("bad_host").inc()
            await send_error(
                send,
                421,
                "misdirected_request",
                "this service does not answer for that Host header (nlpseg serve "
                "--allowed-host adds a name)",
                [CLOSE],
            )
            return
        await self.app(scope, receive, send)


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
        self.queue_texts = Gauge(
            "nlpseg_queue_texts",
            "Texts (or rows) waiting for a model call, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.pending_bytes = Gauge(
            "nlpseg_pending_body_bytes",
            "Request-body bytes held by requests in progress (the --max-pending-bytes budget).",
            registry=self.registry,
        )
        self.rejected = Counter(
            "nlpseg_rejected_requests",
            "Requests refused or dropped to protect the service, by reason: queue_full, busy "
            "(body budget), body_timeout, bad_host, disconnected (client gone before its turn).",
            ["reason"],
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
