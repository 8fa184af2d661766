"""Micro-batching and the model calls behind ``/v1/score`` and ``/v1/assign``.

:class:`MicroBatcher` queues requests and answers them in shared model calls;
:class:`ModelRunner` holds the segmenter and runs those calls in the service's single model
thread. A batch encodes every distinct text of its requests once, then places each request on
its own, through the same code as the files:

* a segmenter fitted without ``--orders/--events``: :meth:`Segmenter.predict` on the request's
  rows (what ``nlpseg assign`` runs);
* a segmenter saved from a behaviour run:
  :func:`~nlp_seg.runs.behavior_job.assign_behavior_encoded` on the request's rows and the
  orders / events they carry (what ``nlpseg assign --orders`` runs), at the saved unit: a
  customer-unit model pools the rows of one customer.

A placement step may depend on the rows placed with it (UMAP's ``transform`` does, batched
distance arithmetic rounds differently): one client's answer must not depend on what another
sent at the same time, so requests share the encoder, never the placement.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nlp_seg.service.middleware import Metrics

if TYPE_CHECKING:
    from nlp_seg.segmenter import Segmenter

log = logging.getLogger(__name__)

#: Column names of a request's rows inside the behaviour path (never a behaviour column's).
TEXT_COLUMN = "\0text"
CUSTOMER_COLUMN = "\0customer_id"


class OverloadedError(Exception):
    """The queue is full: the client should retry later (503)."""


class ClientGoneError(Exception):
    """The client went away before its request's turn: nothing was computed for it."""


@dataclass(eq=False)
class _Pending:
    payload: Any
    size: int
    future: asyncio.Future[Any]
    #: Still in the queue (its texts count against ``max_queue_texts``).
    queued: bool = True


class MicroBatcher:
    """Queue requests and answer them in shared model calls.

    The loop takes the first waiting request, then keeps taking requests until the batch
    holds ``max_texts`` texts or ``max_wait_s`` has passed since the first one, and runs
    ``fn(payloads) -> results`` (one result per payload, same order) in ``executor``. While
    a call runs, new requests queue up, so under load batches fill without waiting at all.
    A request larger than ``max_texts`` is a batch of its own; one that would overflow the
    batch waits for the next.

    The queue is bounded by the **texts** waiting (``max_queue_texts``), not by requests: a
    request that would take it past the bound is refused (:class:`OverloadedError`, a 503),
    except that an empty queue takes any one request. A request whose client goes away
    while it waits is dropped before its batch is computed.
    """

    def __init__(
        self,
        kind: str,
        fn: Callable[[list[Any]], list[Any]],
        *,
        max_texts: int,
        max_wait_s: float,
        max_queue_texts: int,
        executor: ThreadPoolExecutor,
        metrics: Metrics,
    ) -> None:
        self.kind = kind
        self.fn = fn
        self.max_texts = max_texts
        self.max_wait_s = max_wait_s
        self.max_queue_texts = max_queue_texts
        self.executor = executor
        self.metrics = metrics
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._queued_texts = 0
        self._queued_requests = 0
        self._held: _Pending | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    def full_message(self) -> str | None:
        """Why a new request would be refused now (the queue holds its bound), or ``None``."""
        if self._queued_texts < self.max_queue_texts:
            return None
        return (
            f"{self.kind} queue is full ({self._queued_texts} texts waiting, limit "
            f"{self.max_queue_texts}); retry later"
        )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batch-{self.kind}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _gauges(self) -> None:
        self.metrics.queue_depth.labels(self.kind).set(self._queued_requests)
        self.metrics.queue_texts.labels(self.kind).set(self._queued_texts)

    def _dequeued(self, item: _Pending) -> None:
        if item.queued:
            item.queued = False
            self._queued_texts -= item.size
            self._queued_requests -= 1

    async def submit(
        self, payload: Any, size: int, gone: Callable[[], Awaitable[Any]] | None = None
    ) -> Any:
        """Queue one request's payload and wait for its result.

        ``gone``: returns an awaitable that completes when the client disconnects; if it does
        before the request's batch is computed, the request is dropped
        (:class:`ClientGoneError`).
        """
        size = max(1, size)
        if self._queued_texts and self._queued_texts + size > self.max_queue_texts:
            self.metrics.rejected.labels("queue_full").inc()
            raise OverloadedError(
                f"{self.kind} queue is full ({self._queued_texts} texts waiting, limit "
                f"{self.max_queue_texts}); retry later"
            )
        pending = _Pending(payload, size, asyncio.get_running_loop().create_future())
        self._queued_texts += size
        self._queued_requests += 1
        self._queue.put_nowait(pending)
        self._gauges()
        if gone is None:
            return await pending.future
        watcher = asyncio.ensure_future(gone())
        try:
            await asyncio.wait({pending.future, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._drop(pending)
            raise
        finally:
            watcher.cancel()
        if pending.future.done():
            return pending.future.result()
        self._drop(pending)
        self.metrics.rejected.labels("disconnected").inc()
        raise ClientGoneError(f"{self.kind}: the client went away before its turn")

    def _drop(self, pending: _Pending) -> None:
        """Forget a request nobody waits for: out of the queue's count, never computed."""
        if not pending.future.done():
            pending.future.cancel()
        self._dequeued(pending)
        self._gauges()

    async def _next(self, timeout: float | None) -> _Pending | None:
        """The next request still waited for (dropped ones are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if self._held is not None:
            item, self._held = self._held, None
            if not item.future.done():
                return item
        while True:
            if deadline is None:
                item = await self._queue.get()
            else:
                left = deadline - loop.time()
                try:
                    if left <= 0:
                        item = self._queue.get_nowait()
                    else:
                        item = await asyncio.wait_for(self._queue.get(), left)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    return None
            self._dequeued(item)
            if not item.future.done():
                return item

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
            self._gauges()
            # A client that went away while its request waited is not computed.
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


@dataclass
class AssignPayload:
    """One ``/v1/assign`` request, checked and ready for the model thread.

    ``behavior`` holds the behaviour values sent per row (the model's columns; NaN where not
    sent). ``orders`` / ``events`` are the request's lists, cleaned into the frames
    :func:`~nlp_seg.behavior.tables.read_orders` / ``read_events`` return; ``orders_of`` /
    ``events_of`` are the customer keys that sent a list (``None``: the model uses no such
    source); ``reference_date`` is the date recency and tenure are measured from.
    """

    texts: list[str | None]
    behavior: pd.DataFrame | None = None
    customer_ids: list[Any] | None = None
    orders: pd.DataFrame | None = None
    events: pd.DataFrame | None = None
    orders_of: set[str] | None = None
    events_of: set[str] | None = None
    reference_date: pd.Timestamp | None = None
    #: About the request's lists as a whole (orders that are not purchases...).
    warnings: list[str] = field(default_factory=list)


@dataclass
class Placement:
    """What one request's rows were placed as, one entry per result (a row, or a customer of
    a customer-unit model)."""

    #: The contract's assignment columns.
    assignments: pd.DataFrame
    #: Request row positions behind each result.
    rows: list[list[int]]
    #: Whether each result had text to place.
    has_text: np.ndarray
    #: ``review`` (one result per row) or ``customer`` (one per customer).
    unit: str = "review"
    #: Behaviour features it was placed with (the model's columns, unscaled; NaN: unknown, the
    #: fitted median); ``None`` for a model without behaviour.
    behavior: pd.DataFrame | None = None
    #: ``value_tier`` / ``loyalty_tier`` when the model has tier rules.
    tiers: pd.DataFrame | None = None
    reference_date: str | None = None
    #: About the request as a whole (orders that are not purchases, CLV...).
    warnings: list[str] = field(default_factory=list)


class ModelRunner:
    """The model calls behind the endpoints; run only in the service's single model thread.

    ``score_batch`` returns one DataFrame of score columns per request; ``assign_batch`` one
    :class:`Placement` per request.
    """

    def __init__(self, segmenter: "Segmenter") -> None:
        self.segmenter = segmenter
        self.setup: dict[str, Any] = getattr(segmenter, "behavior_setup_", None) or {}

    def score_batch(self, payloads: list[list[str | None]]) -> list[pd.DataFrame]:
        """Sentiment of every request's texts, from one scorer call over their distinct texts.

        Same columns and values as ``nlpseg score`` (``SCORE_COLUMNS``).
        """
        from nlp_seg.normalize import STATUS_OK, normalize_texts
        from nlp_seg.segmenter import SCORE_COLUMNS, STATUS_LOW_INFORMATION, build_assignments

        seg = self.segmenter
        norms = [normalize_texts(texts, max_chars=seg.config.max_chars) for texts in payloads]
        distinct = sorted({n.text for norm in norms for n in norm if n.status == STATUS_OK})
        probs_all, noise_all = (
            seg.score_clean(distinct) if distinct else (np.zeros((0, 3)), np.zeros(0, bool))
        )
        row_of = {t: i for i, t in enumerate(distinct)}
        out = []
        for norm in norms:
            n = len(norm)
            status = np.array([x.status for x in norm], dtype=object)
            ok = status == STATUS_OK
            probs = np.full((n, 3), np.nan)
            if ok.any():
                rows = [row_of[x.text] for x in norm if x.status == STATUS_OK]
                probs[ok] = probs_all[rows]
                status[np.flatnonzero(ok)[noise_all[rows]]] = STATUS_LOW_INFORMATION
                probs[status == STATUS_LOW_INFORMATION] = np.nan
            frame = build_assignments(
                np.full(n, -1), np.zeros(n), np.zeros(n, dtype=bool), probs, status, {}
            )
            out.append(frame[list(SCORE_COLUMNS)])
        return out

    def assign_batch(self, payloads: list[AssignPayload]) -> list[Placement]:
        """Placements of every request's rows: one encoder pass over the batch's distinct
        texts, then each request placed on its own with those encodings."""
        from nlp_seg.normalize import STATUS_OK, normalize_texts

        seg = self.segmenter
        norms = [normalize_texts(p.texts, max_chars=seg.config.max_chars) for p in payloads]
        distinct = sorted({n.text for norm in norms for n in norm if n.status == STATUS_OK})
        emb_all = np.zeros((0, 0), np.float32)
        probs_all = np.zeros((0, 3))
        if distinct:
            emb_all, probs_all = seg.encode(distinct)
        row_of = {t: i for i, t in enumerate(distinct)}

        def encoded(texts: Sequence[str], timer: Any = None) -> tuple[np.ndarray, np.ndarray]:
            idx = [row_of[t] for t in texts]
            return emb_all[idx], probs_all[idx]

        out = []
        for payload, norm in zip(payloads, norms, strict=True):
            if self.setup:
                out.append(self._with_behavior(payload, norm, encoded))
                continue
            frame = seg.predict(payload.texts, payload.behavior, encode=encoded)
            ok = frame["status"].to_numpy(dtype=object) == STATUS_OK
            out.append(
                Placement(
                    frame,
                    [[i] for i in range(len(frame))],
                    ok,
                    behavior=payload.behavior.reset_index(drop=True)
                    if payload.behavior is not None
                    else None,
                )
            )
        return out

    def _with_behavior(
        self,
        payload: AssignPayload,
        norm: list[Any],
        encoded: Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]],
    ) -> Placement:
        """One request for a segmenter saved from a behaviour run: the rows and their
        customers' orders / events through the code of ``nlpseg assign --orders``."""
        from nlp_seg.io.read import ColumnSpec
        from nlp_seg.normalize import STATUS_OK
        from nlp_seg.runs.behavior_job import assign_behavior_encoded
        from nlp_seg.segmenter import ASSIGNMENT_COLUMNS

        seg = self.segmenter
        n = len(norm)
        status = np.array([x.status for x in norm], dtype=object)
        clean = [x.text for x in norm]
        ok = status == STATUS_OK
        probs = np.full((n, 3), np.nan)
        emb = np.zeros((n, 0), np.float32)
        if ok.any():
            emb_ok, probs_ok = encoded([c for c, k in zip(clean, ok, strict=True) if k])
            emb = np.zeros((n, emb_ok.shape[1]), np.float32)
            emb[ok], probs[ok] = emb_ok, probs_ok
        status = seg.flag_noise(clean, status, emb)  # as Segmenter.encode_rows does
        frame = pd.DataFrame(
            {
                CUSTOMER_COLUMN: pd.Series(payload.customer_ids or [None] * n, dtype=object),
                TEXT_COLUMN: pd.Series(payload.texts, dtype=object),
            }
        )
        behavior_cols: tuple[str, ...] = ()
        if payload.behavior is not None:
            behavior_cols = tuple(payload.behavior.columns)
            frame = pd.concat([frame, payload.behavior.reset_index(drop=True)], axis=1)
        spec = ColumnSpec(TEXT_COLUMN, CUSTOMER_COLUMN, behavior_cols)
        placed = assign_behavior_encoded(
            seg,
            frame,
            spec,
            clean,
            status,
            emb,
            probs,
            orders=payload.orders,
            events=payload.events,
            orders_of=payload.orders_of,
            events_of=payload.events_of,
            frame_fills=True,
            reference_date=payload.reference_date,
        )
        table = placed.table.reset_index(drop=True)
        tier_cols = [c for c in ("value_tier", "loyalty_tier") if c in table]
        return Placement(
            table[list(ASSIGNMENT_COLUMNS)],
            placed.rows,
            placed.has_text,
            unit=placed.info["unit"],
            behavior=placed.block.reset_index(drop=True)
            if seg.behavior_scaler_ is not None
            else None,
            tiers=table[tier_cols] if tier_cols else None,
            reference_date=placed.info["reference_date"],
            warnings=[*payload.warnings, *placed.warnings],
        )

    def warm_up(self) -> None:
        """Load the models and compile UMAP's code before the service says it is ready (the
        second text, Vietnamese typed without diacritics, builds the restorer's tables)."""
        texts = ["warm-up text: good product, fast delivery", "hang tot, giao hang nhanh"]
        self.assign_batch([AssignPayload(texts, customer_ids=[None, None])])
