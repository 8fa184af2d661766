"""``nlpseg batch``: millions of rows in bounded memory, resumable after a kill.

``analyze`` holds a whole file and its embeddings in memory; ``batch`` never holds more than one
chunk (``--chunk-size`` rows) plus the fit sample. It runs in stages, each leaving files under
``OUT/_work/`` and a marker written last, so a run that is killed at any point and started again
skips what is done and finishes with every input row exactly once:

1. **encode** (pass 1): stream the inputs in chunks of exactly ``chunk_size`` rows (chunks run
   across file boundaries, so chunk ``k`` is always rows ``[k*size, (k+1)*size)`` of the
   concatenated inputs whatever the engine); normalise, score sentiment and embed each chunk
   with :meth:`Segmenter.encode` (dedup + on-disk cache), and store the input columns, the
   clean texts, float16 embeddings and sentiment probabilities;
2. **fit**: choose a seeded sample of scorable rows (the ``fit_sample_size`` rows whose seeded
   hash of the global row number is smallest: the same rows for any chunking or engine, in
   O(sample) memory), fit :meth:`Segmenter.fit_encoded` on it and save the fitted segmenter
   (JSON + safetensors, no pickle);
3. **place** (pass 2): label every other row chunk by chunk with
   :meth:`Segmenter.place_encoded`; sample rows keep the labels the fit gave them, exactly as
   :meth:`Segmenter.fit` does for its own sample;
4. **finish**: stream the parts into ``assignments.parquet`` (and a spreadsheet-safe
   ``assignments.csv`` unless ``--no-csv``), then ``segments.json`` and ``run.json``.

``--engine ray`` runs stages 1 and 3 as Ray Data jobs (see :mod:`nlp_seg.runs.batch_ray`); the fit
stays on the driver and every file layout is the same, so the engines can resume each other.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from nlp_seg.errors import InputError, NlpsegError
from nlp_seg.io.write import (
    CSV_LINE_TERMINATOR,
    file_sha256,
    package_versions,
    spreadsheet_safe,
    write_json,
)
from nlp_seg.normalize import STATUS_OK
from nlp_seg.progress import Reporter, SilentReporter, StageTimer
from nlp_seg.runs.batch_work import (
    ENCODE_KEYS,
    FIT_KEYS,
    FORMAT_VERSION,
    BatchOptions,
    FittedState,
    InputPlan,
    WorkDir,
    _check_manifest,
    encode_table,
    fit_on_sample,
    iter_chunks,
    place_chunk,
    plan_inputs,
)
from nlp_seg.segmenter import Segmenter, SegmenterConfig
from nlp_seg.stages.naming import naming_rules

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- outputs
def _concat_outputs(
    work: WorkDir, n_chunks: int, out: Path, write_csv: bool
) -> tuple[list[Path], pd.DataFrame]:
    """Stream the parts into the output files; return per-row counts for the profiles."""
    files = [out / "assignments.parquet"]
    counts: list[pd.DataFrame] = []
    writer: pq.ParquetWriter | None = None
    tmp_pq = out / ".assignments.parquet.partial"
    tmp_csv = out / ".assignments.csv.partial"
    csv_fh = open(tmp_csv, "w", encoding="utf-8-sig", newline="") if write_csv else None  # noqa: SIM115
    try:
        for k in range(n_chunks):
            table = pq.read_table(work.part(k))
            if writer is None:
                writer = pq.ParquetWriter(tmp_pq, table.schema)
            elif table.schema != writer.schema:
                table = table.cast(writer.schema)
            writer.write_table(table)
            tail = table.select(["segment_id", "is_outlier", "status"]).to_pandas()
            counts.append(
                tail.groupby(["segment_id", "status", "is_outlier"], dropna=False)
                .size()
                .rename("n")
                .reset_index()
            )
            if csv_fh is not None:
                spreadsheet_safe(table.to_pandas()).to_csv(
                    csv_fh, header=k == 0, index=False, lineterminator=CSV_LINE_TERMINATOR
                )
    finally:
        if writer is not None:
            writer.close()
        if csv_fh is not None:
            csv_fh.close()
    os.replace(tmp_pq, files[0])
    if write_csv:
        os.replace(tmp_csv, out / "assignments.csv")
        files.insert(0, out / "assignments.csv")
    else:
        with contextlib.suppress(FileNotFoundError):
            (out / "assignments.csv").unlink()
    table = pd.concat(counts).groupby(["segment_id", "status", "is_outlier"]).n.sum().reset_index()
    return files, table


def _full_profiles(segments: list[dict[str, Any]], counts: pd.DataFrame) -> list[dict[str, Any]]:
    """Sizes, shares and outlier shares over every row; the rest stays as profiled on the
    sample (a uniform random sample, so its sentiment mix and keywords estimate the whole)."""
    ok = counts[counts["status"] == STATUS_OK]
    total = int(ok["n"].sum())
    size = ok.groupby("segment_id").n.sum()
    outl = ok[ok["is_outlier"]].groupby("segment_id").n.sum()
    profiles = []
    for s in segments:
        sid = int(s["id"])
        n = int(size.get(sid, 0))
        sample_size = s["size"]
        profiles.append(
            {
                **s,
                "size": n,
                "share": round(n / total, 4) if total else 0.0,
                "with_text": n,
                "outlier_share": round(int(outl.get(sid, 0)) / n, 4) if n else 0.0,
                "sample_size": sample_size,
            }
        )
    known = {int(s["id"]) for s in segments}
    for sid in sorted(set(size.index.tolist()) - known):
        n = int(size[sid])
        profiles.append(
            {
                "id": int(sid),
                "name": "outlier" if sid < 0 else str(sid),
                "size": n,
                "share": round(n / total, 4) if total else 0.0,
                "note": "rows placed here after the fit; not profiled",
            }
        )
    return profiles


# --------------------------------------------------------------------------- the job
def _input_info(plan: InputPlan, rows_per_file: list[int]) -> list[dict[str, Any]]:
    info = []
    for i, fp in enumerate(plan.fingerprint()):
        rows = rows_per_file[i] if i < len(rows_per_file) else None
        info.append({**fp, "rows": rows, "sha256": file_sha256(plan.files[i].path)})
    return info


def _encode_local(
    plan: InputPlan,
    work: WorkDir,
    config: SegmenterConfig,
    chunk_size: int,
    reporter: Reporter,
    timer: StageTimer,
) -> tuple[int, int, list[int], Segmenter]:
    """Pass 1 on this machine. Returns rows, chunks, rows per file and the segmenter used."""
    seg = Segmenter(config, reporter=reporter)
    rows_per_file: list[int] = []
    n_rows = 0
    n_chunks = 0
    for k, table in enumerate(iter_chunks(plan, chunk_size, rows_per_file)):
        n_chunks = k + 1
        n_rows += table.num_rows
        if work.encoded(k):
            continue
        t0 = time.perf_counter()
        enc = encode_table(seg, table, plan.spec, timer)
        work.save_encoded(k, table, enc)
        reporter.message(
            f"chunk {k}: rows {k * chunk_size:,}-{k * chunk_size + table.num_rows - 1:,} "
            f"encoded in {time.perf_counter() - t0:.1f} s"
        )
    return n_rows, n_chunks, rows_per_file, seg


def run_batch(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    config: SegmenterConfig | None = None,
    options: BatchOptions | None = None,
    *,
    text_col: str | None = None,
    id_col: str | None = None,
    behavior_cols: list[str] | None = None,
    encoding: str | None = None,
    reporter: Reporter | None = None,
) -> Any:
    """``nlpseg batch``: the whole pipeline over inputs of any size, resumable (see module)."""
    from nlp_seg.runs.jobs import RunResult

    config = config or SegmenterConfig()
    options = options or BatchOptions()
    reporter = reporter or SilentReporter()
    if options.engine not in ("local", "ray"):
        raise NlpsegError(f"unknown --engine {options.engine!r}; use local or ray")
    if options.chunk_size < 1:
        raise NlpsegError("--chunk-size must be at least 1")
    config.resolved_models()
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    timer = StageTimer()
    out = Path(out_dir)
    with timer("plan"):
        plan = plan_inputs(inputs, text_col, id_col, behavior_cols, encoding)
    cfg = asdict(config)
    manifest = {
        "format_version": FORMAT_VERSION,
        "encode": {
            "inputs": plan.fingerprint(),
            "chunk_size": options.chunk_size,
            "columns": asdict(plan.spec),
            "encoding": encoding,
            **{k: cfg[k] for k in ENCODE_KEYS},
        },
        "fit": {k: cfg[k] for k in FIT_KEYS},
    }
    manifest = json.loads(json.dumps(manifest))  # tuples -> lists, as read back from disk
    work = WorkDir(out)
    work.lock()
    try:
        _check_manifest(work, manifest, options.restart, reporter)
        reporter.message(
            f"{len(plan.files)} input file(s); text column [bold]{plan.spec.text}[/bold]"
            + (f", id column {plan.spec.id}" if plan.spec.id else "")
            + (f", behaviour columns {', '.join(plan.spec.behavior)}" if plan.spec.behavior else "")
        )
        done_path = work.root / "encoded.json"
        enc_timer = StageTimer()
        seg_used: Segmenter | None = None
        resumed = {"chunks_encoded_before": 0, "chunks_placed_before": 0, "fit_reused": False}
        with timer("encode"):
            if done_path.exists():
                summary = json.loads(done_path.read_text(encoding="utf-8"))
                resumed["chunks_encoded_before"] = summary["chunks"]
                reporter.message("All chunks already encoded: reusing them")
            else:
                if work.chunks.exists():
                    resumed["chunks_encoded_before"] = sum(
                        1 for d in work.chunks.iterdir() if (d / "ENCODED").exists()
                    )
                if options.engine == "ray":
                    from nlp_seg.runs.batch_ray import encode_with_ray

                    n_rows, n_chunks, rows_per_file = encode_with_ray(
                        plan, work, config, options, reporter
                    )
                else:
                    n_rows, n_chunks, rows_per_file, seg_used = _encode_local(
                        plan, work, config, options.chunk_size, reporter, enc_timer
                    )
                if n_rows == 0:
                    raise InputError("the input files have no rows")
                summary = {"rows": n_rows, "chunks": n_chunks, "rows_per_file": rows_per_file}
                write_json(summary, done_path)
        n_rows, n_chunks = int(summary["rows"]), int(summary["chunks"])
        if not (work.fit / "FITTED").exists():
            work.reset_fit()
            fit_on_sample(work, config, plan.spec, n_chunks, options.chunk_size, reporter, timer)
        else:
            resumed["fit_reused"] = True
            reporter.message("Fit already done: reusing it")
        with timer("place"):
            todo = [k for k in range(n_chunks) if not work.placed(k)]
            resumed["chunks_placed_before"] = n_chunks - len(todo)
            if todo and options.engine == "ray":
                from nlp_seg.runs.batch_ray import place_with_ray

                place_with_ray(work, todo, options, reporter)
            elif todo:
                state = FittedState.load(work)
                with reporter.stage(f"Placing {len(todo)} chunks", total=len(todo)) as advance:
                    for k in todo:
                        place_chunk(work, k, options.chunk_size, state)
                        advance(1)
        info = json.loads((work.fit / "FITTED").read_text(encoding="utf-8"))
        with timer("write"):
            out.mkdir(parents=True, exist_ok=True)
            files, counts = _concat_outputs(work, n_chunks, out, options.write_csv)
            segments = _full_profiles(info["segments"], counts)
            write_json(
                {
                    "naming_rules": naming_rules(),
                    "profiled_on": f"a seeded sample of {info['sample_size']} rows; size, share "
                    "and outlier_share count every row",
                    "segments": segments,
                },
                out / "segments.json",
            )
            files.append(out / "segments.json")
        status = counts.groupby("status").n.sum().sort_values(ascending=False).astype(int).to_dict()
        warnings = [info["note"]] if info.get("note") else []
        seconds = {
            **timer.seconds,
            **{f"pipeline.{k}": v for k, v in enc_timer.seconds.items()},
            **{f"pipeline.fit.{k}": v for k, v in info["timings"].items()},
        }
        seconds["total"] = round(time.perf_counter() - t0, 3)
        run_info = {
            "command": "batch",
            "engine": options.engine,
            "started_at": started,
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "inputs": _input_info(plan, summary.get("rows_per_file") or []),
            "columns": asdict(plan.spec),
            "rows_in": n_rows,
            "rows_out": int(counts["n"].sum()),
            "status_counts": {str(k): int(v) for k, v in status.items()},
            "seed": config.seed,
            "parameters": cfg,
            "batch": {
                "chunk_size": options.chunk_size,
                "chunks": n_chunks,
                "fit_sample_rows": info["sample_size"],
                "fit_sample_selection": "scorable rows with the smallest splitmix64(seed, row) "
                "keys (same rows for any chunking or engine)",
                "embeddings_stored_as": "float16",
                **resumed,
            },
            "models": {
                "embedding": seg_used.embedder.describe()
                if seg_used is not None and seg_used.embedder is not None
                else {"model": config.resolved_models()[0]},
                "sentiment": seg_used.sentiment.describe()
                if seg_used is not None and seg_used.sentiment is not None
                else {"model": config.resolved_models()[1]},
            },
            "pipeline": info["pipeline"],
            "versions": package_versions(),
            "seconds": seconds,
            "warnings": warnings,
        }
        write_json(run_info, out / "run.json")
        files.append(out / "run.json")
    finally:
        work.unlock()
    if options.clean:
        shutil.rmtree(work.root, ignore_errors=True)
    return RunResult(
        out,
        files,
        n_rows,
        int(counts["n"].sum()),
        run_info["status_counts"],
        segments,
        warnings,
        seconds["total"],
    )
