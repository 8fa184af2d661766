"""``nlpseg batch --engine ray``: passes 1 and 3 of :mod:`nlp_seg.runs.batch` as Ray Data jobs.

* Pass 1 reads the inputs with ``ray.data.read_csv`` / ``read_parquet``, cuts them into blocks of
  exactly ``chunk_size`` rows in input order (``repartition(..., strict=True)`` with
  ``preserve_order``), and encodes each block in an actor that loads the models once
  (``num_gpus=1`` per actor when the cluster has GPUs, one CPU each otherwise). Because a block
  is a chunk, an actor runs exactly the same :func:`~nlp_seg.runs.batch_work.encode_table` call as
  the local engine. The driver streams the results in order into the same ``_work`` layout.
* The fit runs on the driver (:func:`~nlp_seg.runs.batch_work.fit_on_sample`), on the same sample.
* Pass 3 places chunks in actors that load the fitted segmenter folder once and write their parts
  and markers themselves.

**Sizing** (:func:`plan_pool`). Every actor holds one CPU (and one GPU on a GPU cluster) for the
whole stage, and Ray Data's read and repartition tasks need a CPU of their own: actors that
take every CPU starve the reads and the job waits forever. So the pool is at most the cluster's
CPUs minus one (and at most its GPUs), by default as many as are free now; a ``--workers`` the
cluster can never run is refused with a one-line message, before any model is loaded.

**Same labels as the local engine.** An actor encodes chunk ``k`` with the very call the local
engine makes, on the same rows (Ray's CSV reader is configured to give the cells pandas gives),
so with ``--no-cache`` the outputs are identical, byte for byte (``tests/test_batch.py``). An
actor's torch runs one thread where the local engine's runs one per core, which gave the same
bits on the machines tested; GPU actors' float32 output is not the CPU's. With the embedding
cache on, rare rows can differ: a text repeated in two chunks is served from the cache by the
local engine (encoded with the earlier chunk) but may be encoded again with its own chunk when
Ray encodes both at once, and a transformer's float32 output depends on the batch it ran in
(by ~2e-6 for the bundled encoder), which can flip a label at a near tie. Resumed or
re-chunked runs with the cache on are alike in this.

On a cluster, ``--out`` must be a folder every node can read and write (a shared filesystem),
nlpseg must be installed on every node, and ``RAY_ADDRESS=ray://head:10001`` (or
``--ray-address``) says which cluster to join.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nlp_seg.errors import NlpsegError
from nlp_seg.io.read import ColumnSpec
from nlp_seg.progress import Reporter
from nlp_seg.runs.batch_work import (
    BatchOptions,
    EncodedChunk,
    FittedState,
    InputPlan,
    WorkDir,
    encode_table,
    place_chunk,
)
from nlp_seg.segmenter import Segmenter, SegmenterConfig

log = logging.getLogger(__name__)

PREFIX = "__nlpseg_"


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise NlpsegError(
            "--engine ray needs Ray Data: pip install 'nlpseg[ray]' (or 'ray[data]')"
        ) from exc
    return ray


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Use the Ray instance already initialised by the caller, else join ``address`` /
    ``RAY_ADDRESS``, else start a local one for this run only."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        started = True
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # chunk k must be rows [k*size, (k+1)*size)
    ctx.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


#: CPUs kept free of model actors for Ray Data's read and repartition tasks.
SPARE_CPUS = 1


def plan_pool(
    total: dict[str, float],
    free: dict[str, float],
    workers: int | None,
    use_gpus: bool,
) -> tuple[int, dict[str, float], str | None]:
    """How many model actors to start and what each holds, from the cluster's resources
    (``ray.cluster_resources()``) and those free now (``ray.available_resources()``).

    Returns ``(size, remote_args, warning)``. Raises :class:`NlpsegError` (one line) for a
    setting the cluster can never run: actors on every CPU leave none for the read tasks, and
    Ray Data then waits forever.
    """
    cpus = int(total.get("CPU", 0))
    gpus = int(total.get("GPU", 0)) if use_gpus else 0
    free_cpus = int(free.get("CPU", 0))
    free_gpus = int(free.get("GPU", 0)) if use_gpus else 0
    most = cpus - SPARE_CPUS
    if most < 1:
        raise NlpsegError(
            f"--engine ray needs at least {SPARE_CPUS + 1} CPUs in the Ray cluster (one per model "
            f"actor, {SPARE_CPUS} for Ray Data's read tasks) and this one has {cpus}; "
            "use --engine local"
        )
    if gpus:
        most = min(most, gpus)
    if workers is not None:
        if workers < 1:
            raise NlpsegError("--workers must be at least 1")
        if gpus and workers > gpus:
            raise NlpsegError(
                f"--workers {workers} asks for {workers} GPU actors but the Ray cluster has "
                f"{gpus} GPU(s); use --workers {most} or fewer (or leave it out)"
            )
        if workers > most:
            raise NlpsegError(
                f"--workers {workers} cannot run on this Ray cluster: each model actor holds "
                f"one of its {cpus} CPUs{' (and a GPU)' if gpus else ''} and Ray Data's read "
                f"tasks need {SPARE_CPUS} more, so at most {most} actor(s) fit; use --workers "
                f"{most} or fewer (or leave it out)"
            )
    room = free_cpus - SPARE_CPUS
    if gpus:
        room = min(room, free_gpus)
    warning = None
    if workers is None:
        size = max(1, min(most, room))
        if room < 1:
            warning = "the Ray cluster has no CPU free for a model actor now; the job waits for one"
    else:
        size = workers
        if workers > room:
            warning = (
                f"only {max(room, 0)} model actor(s) fit in the Ray cluster's free resources "
                f"now; the job waits until {workers} do"
            )
    remote: dict[str, float] = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
    return size, remote, warning


def _pool(
    ray: Any, workers: int | None, use_gpus: bool, reporter: Reporter
) -> tuple[Any, dict[str, float]]:
    """An actor pool sized by :func:`plan_pool` from the cluster's resources."""
    size, remote, warning = plan_pool(
        ray.cluster_resources(), ray.available_resources(), workers, use_gpus
    )
    if warning:
        reporter.message(f"Ray: {warning}")
    return ray.data.ActorPoolStrategy(size=size), remote


@contextmanager
def _heartbeat(reporter: Reporter, what: list[str], every: float = 30.0) -> Iterator[None]:
    """Say what the job waits for while no result has come for ``every`` seconds (a Ray job
    waiting for resources shows nothing otherwise). ``what[0]`` names the awaited result."""
    stop = threading.Event()
    last = [time.monotonic()]
    start = time.monotonic()

    def beat() -> None:
        while not stop.wait(min(every, 5.0)):
            if time.monotonic() - last[0] >= every:
                last[0] = time.monotonic()
                reporter.message(
                    f"Ray: waiting for {what[0]} ({time.monotonic() - start:.0f} s so far)"
                )

    thread = threading.Thread(target=beat, name="nlpseg-ray-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def _expected_chunks(plan: InputPlan, chunk_size: int) -> int | None:
    """Chunks of a Parquet input (its row count is in the footer); None for CSV."""
    if plan.fmt != "parquet":
        return None
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(f.path).metadata.num_rows for f in plan.files)
    return -(-rows // chunk_size) if rows else None


class EncodeActor:
    """Loads the models once per actor; encodes one chunk per call."""

    def __init__(self, config: SegmenterConfig, spec: ColumnSpec, columns: list[str]) -> None:
        self.seg = Segmenter(config)
        self.spec = spec
        self.columns = columns
        embedder = self.seg.encoder.get_embedder()
        self.dim = int(getattr(embedder, "dimension", 0))  # loads the encoder now, not per call

    def __call__(self, table: pa.Table) -> pa.Table:
        table = table.rename_columns(self.columns)
        enc = encode_table(self.seg, table, self.spec)
        n = table.num_rows
        emb = enc.embeddings
        if emb.shape[1] == 0:  # no scorable text in this chunk: keep the column's width
            emb = np.zeros((n, self.dim), np.float16)
        cols: dict[str, pa.Array] = {
            PREFIX + "clean": pa.array(enc.clean, pa.string()),
            PREFIX + "status": pa.array(enc.status.tolist(), pa.string()),
            PREFIX + "probs": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(enc.probs, np.float64).ravel()), 3
            ),
            PREFIX + "emb": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(emb).ravel()), emb.shape[1]
            ),
        }
        if enc.behavior is not None:
            cols[PREFIX + "beh"] = pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(enc.behavior, np.float64).ravel()),
                enc.behavior.shape[1],
            )
        for name, arr in cols.items():
            table = table.append_column(name, arr)
        return table


def _matrix(table: pa.Table, name: str, width: int, dtype: Any) -> np.ndarray:
    flat = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=dtype).reshape(-1, width)


def _read(ray: Any, plan: InputPlan) -> Any:
    paths = [str(f.path) for f in plan.files]
    if plan.fmt == "parquet":
        return ray.data.read_parquet(paths).select_columns(list(plan.columns))  # pushed down
    import pyarrow.csv as pacsv

    first = plan.files[0]
    if any(f.sep != first.sep or f.encoding != first.encoding for f in plan.files):
        raise NlpsegError(
            "--engine ray needs all CSV inputs to share one delimiter and encoding; "
            "use --engine local"
        )
    enc = first.encoding or "utf-8-sig"
    return ray.data.read_csv(
        paths,
        read_options=pacsv.ReadOptions(
            encoding="utf8"
            if enc.lower().replace("_", "-") in ("utf-8", "utf-8-sig", "utf8")
            else enc
        ),
        parse_options=pacsv.ParseOptions(delimiter=first.sep or ",", newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in plan.raw_columns},
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            null_values=[""],
        ),
        file_extensions=None,
    )


def encode_with_ray(
    plan: InputPlan,
    work: WorkDir,
    config: SegmenterConfig,
    options: BatchOptions,
    reporter: Reporter,
) -> tuple[int, int, list[int]]:
    """Pass 1 as a Ray Data job; returns rows, chunks and (unknown here) rows per file."""
    cs = options.chunk_size
    with ray_session(options.ray_address) as ray:
        compute, remote = _pool(ray, options.workers, config.device != "cpu", reporter)
        reporter.message(
            f"Ray: encoding with {compute.min_size} actor(s) "
            f"({'1 GPU' if remote.get('num_gpus') else '1 CPU'} each)"
        )
        ds = _read(ray, plan).repartition(target_num_rows_per_block=cs, strict=True)
        ds = ds.map_batches(
            EncodeActor,
            batch_size=cs,
            batch_format="pyarrow",
            compute=compute,
            fn_constructor_kwargs={
                "config": replace(config),
                "spec": plan.spec,
                "columns": list(plan.columns),
            },
            **remote,
        )
        n_rows = n_chunks = 0
        total = _expected_chunks(plan, cs)
        what = ["the first chunk (the actors load the models first)"]
        stage = reporter.stage("Encoding chunks (Ray)", total=total)
        with stage as advance, _heartbeat(reporter, what):
            for k, table in enumerate(ds.iter_batches(batch_size=cs, batch_format="pyarrow")):
                n_chunks, n_rows = k + 1, n_rows + table.num_rows
                what[0] = f"chunk {k + 1}"
                advance(1)
                if work.encoded(k):
                    continue
                _store_encoded(work, plan, k, cs, table, reporter)
    return n_rows, n_chunks, []


def _store_encoded(
    work: WorkDir, plan: InputPlan, k: int, cs: int, table: pa.Table, reporter: Reporter
) -> None:
    """Chunk ``k`` as an actor encoded it, into the ``_work`` layout the local engine writes."""
    dim = table.schema.field(PREFIX + "emb").type.list_size
    beh = None
    if plan.spec.behavior:
        beh = _matrix(table, PREFIX + "beh", len(plan.spec.behavior), np.float64)
    status = np.asarray(table.column(PREFIX + "status").to_pylist(), dtype=object)
    emb = _matrix(table, PREFIX + "emb", dim, np.float16)
    enc = EncodedChunk(
        table.column(PREFIX + "clean").to_pylist(),
        status,
        emb if (status == "ok").any() else emb[:, :0],
        _matrix(table, PREFIX + "probs", 3, np.float64),
        beh,
    )
    work.save_encoded(k, table.select(list(plan.columns)), enc)
    reporter.message(f"chunk {k}: rows {k * cs:,}-{k * cs + table.num_rows - 1:,} encoded")


class PlaceActor:
    """Loads the fitted segmenter once per actor; places one chunk per call."""

    def __init__(self, out_dir: str, chunk_size: int) -> None:
        self.work = WorkDir(Path(out_dir))
        self.state = FittedState.load(self.work)
        self.chunk_size = chunk_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [place_chunk(self.work, int(k), self.chunk_size, self.state) for k in batch["chunk"]]
        return {"chunk": np.asarray(batch["chunk"]), "rows": np.asarray(rows)}


def place_with_ray(
    work: WorkDir, todo: list[int], options: BatchOptions, reporter: Reporter
) -> None:
    """Pass 3 as a Ray Data job over chunk numbers; actors write parts and markers."""
    with ray_session(options.ray_address) as ray:
        compute, _ = _pool(ray, options.workers, False, reporter)
        ds = ray.data.from_items(
            [{"chunk": k} for k in todo], override_num_blocks=len(todo)
        ).map_batches(
            PlaceActor,
            batch_size=1,
            batch_format="numpy",
            compute=compute,
            num_cpus=1,
            fn_constructor_kwargs={
                "out_dir": os.fspath(work.root.parent),
                "chunk_size": options.chunk_size,
            },
        )
        what = ["the first placed chunk (the actors load the fit first)"]
        stage = reporter.stage(f"Placing {len(todo)} chunks (Ray)", total=len(todo))
        with stage as advance, _heartbeat(reporter, what):
            for i, batch in enumerate(ds.iter_batches(batch_size=1, batch_format="numpy")):
                what[0] = f"placed chunk {i + 2} of {len(todo)}"
                advance(len(batch["chunk"]))
