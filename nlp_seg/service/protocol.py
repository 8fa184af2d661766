"""The HTTP/1.1 connection handling of ``nlpseg serve``: uvicorn's h11 protocol with a header
deadline and a connection cap.

uvicorn bounds a header's size (``h11_max_incomplete_event_size``) and the idle time between
two requests on a kept-alive connection (``timeout_keep_alive``), but not how long a client
may take to send a request's headers: a client trickling one byte at a time (slowloris), or
connecting and sending nothing, holds its connection forever, and nothing bounds how many such
connections there are. :class:`GuardedH11Protocol` adds both:

* **header deadline**: a connection's request line and headers must arrive within
  ``header_timeout`` seconds of the connection (or of the previous answer on a kept-alive
  one); past it the connection is closed (after a 408 when part of a request arrived);
* **connection cap**: while ``max_connections`` connections are open, a new one is answered
  503 with ``Retry-After`` and closed; what it sends is read and dropped, never parsed.

The body's deadline and size are the body-limit middleware's
(:class:`~nlp_seg.service.middleware.BodyLimitMiddleware`). Built with
:func:`protocol_factory`, which ``uvicorn.Config(http=...)`` takes and worker processes can
receive (it pickles).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from nlp_seg.service.middleware import error_body

log = logging.getLogger(__name__)

#: How long a refused connection may stay open while its request is read and dropped.
REFUSED_LINGER_S = 2.0


def _raw_response(status: str, code: str, message: str, extra: bytes = b"") -> bytes:
    body = error_body(code, message)
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    ).encode()
    return head + extra + b"\r\n" + body


OVER_CAPACITY = _raw_response(
    "503 Service Unavailable",
    "overloaded",
    "too many open connections; retry later",
    b"retry-after: 1\r\n",
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap (module docstring).

    ``header_timeout``: seconds for a request's line and headers (``None``: no deadline);
    ``max_connections``: open connections served at once (``None``: no cap).
    """

    _last_refusal_log = 0.0

    def __init__(
        self,
        *args: Any,
        header_timeout: float | None = 10.0,
        max_connections: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self._header_timer: asyncio.TimerHandle | None = None
        self._seen_cycle: Any = None
        self._refused = False

    # -------------------------------------------------------------------- asyncio protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # read and dropped
        super().data_received(data)
        self._note_request()

    def eof_received(self) -> None:
        if self._refused:
            return None  # the transport closes
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        if self._refused:
            return
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.cycle is cycle:
            self._await_headers()  # the next request's headers are due
        else:
            self._note_request()  # a pipelined request started at once

    # -------------------------------------------------------------------- header deadline

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _await_headers(self) -> None:
        self._cancel_header_timer()
        if self.header_timeout:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _note_request(self) -> None:
        """A request's headers have arrived (uvicorn started a new request cycle)."""
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle
            self._cancel_header_timer()

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        partial, _ = self.conn.trailing_data
        if partial:
            self.transport.write(
                _raw_response(
                    "408 Request Timeout",
                    "request_timeout",
                    f"the request headers did not arrive within {self.header_timeout:g} s",
                )
            )
        self.transport.close()

    # -------------------------------------------------------------------- connection cap

    def _refuse(self, transport: asyncio.Transport) -> None:
        self._refused = True
        self.transport = transport
        transport.write(OVER_CAPACITY)
        if transport.can_write_eof():
            transport.write_eof()
        # Keep reading (and dropping) what the client sends for a moment, so its request is
        # not answered by a connection reset before it reads the 503.
        self._header_timer = self.loop.call_later(REFUSED_LINGER_S, transport.close)
        now = time.monotonic()
        if now - GuardedH11Protocol._last_refusal_log > 10:
            GuardedH11Protocol._last_refusal_log = now
            log.warning("connection refused: %d connections open (the cap)", self.max_connections)


def protocol_factory(header_timeout: float | None, max_connections: int | None) -> Any:
    """What ``uvicorn.Config(http=...)`` takes to serve with :class:`GuardedH11Protocol`."""
    return functools.partial(
        GuardedH11Protocol, header_timeout=header_timeout, max_connections=max_connections
    )
