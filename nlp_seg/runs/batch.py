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
   ``assignments.csv`` unless ``--no-csv``), then ``segments.json``, the ``--save-model``
   folder, ``audiences/`` and ``report.html`` (from the few columns they read) and
   ``run.json``.

With ``--orders`` / ``--events`` / ``--unit customer``, stages 2-4 are replaced by the code
``nlpseg analyze`` runs, on every row of pass 1 at once (see :func:`_finish_with_behavior`):
the same segments and the same files as ``analyze`` for the same input and seed.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nlp_seg.errors import InputError, NlpsegError
from nlp_seg.io.write import (
    CSV_LINE_TERMINATOR,
    fsync_dir,
    fsync_file,
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
    SNAPSHOT_DIR,
    BatchOptions,
    FittedState,
    InputPlan,
    WorkDir,
    check_manifest,
    encode_table,
    fit_on_sample,
    iter_chunks,
    load_all_encoded,
    place_chunk,
    plan_inputs,
)
from nlp_seg.segmenter import Segmenter, SegmenterConfig
from nlp_seg.stages.naming import naming_rules

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- outputs
def _concat_outputs(
    work: WorkDir,
    n_chunks: int,
    out: Path,
    write_csv: bool,
    add_columns: Any = None,
) -> tuple[list[Path], pd.DataFrame]:
    """Stream the parts into the output files; return per-row counts for the profiles.
    ``add_columns`` (a part's Arrow table -> the table with more columns) adds the
    personalisation columns as each part streams by."""
    files = [out / "assignments.parquet"]
    counts: list[pd.DataFrame] = []
    writer: pq.ParquetWriter | None = None
    tmp_pq = out / ".assignments.parquet.partial"
    tmp_csv = out / ".assignments.csv.partial"
    csv_fh = open(tmp_csv, "w", encoding="utf-8-sig", newline="") if write_csv else None  # noqa: SIM115
    try:
        for k in range(n_chunks):
            table = pq.read_table(work.part(k))
            if add_columns is not None:
                table = add_columns(table)
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
    fsync_file(tmp_pq)
    os.replace(tmp_pq, files[0])
    if write_csv:
        fsync_file(tmp_csv)
        os.replace(tmp_csv, out / "assignments.csv")
        files.insert(0, out / "assignments.csv")
    else:
        with contextlib.suppress(FileNotFoundError):
            (out / "assignments.csv").unlink()
    fsync_dir(out)
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
    """run.json's inputs: the SHA-256 the work folder was checked against (hashed once per run,
    before any row was read), so the hash recorded is that of the rows in the outputs."""
    info = []
    for i, fp in enumerate(plan.fingerprint()):
        rows = rows_per_file[i] if i < len(rows_per_file) else None
        info.append({**fp, "rows": rows})
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


def _text_file(plan: InputPlan) -> str:
    """How messages name the inputs."""
    first = plan.files[0]
    return (
        (first.label or first.path.name)
        if len(plan.files) == 1
        else (f"the {len(plan.files)} inputs")
    )


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
    save_model: str | Path | None = None,
    behavior_options: Any = None,
    audiences: bool = True,
    audience_options: Any = None,
    report: bool = True,
    to_db: Any = None,
    time_options: Any = None,
) -> Any:
    """``nlpseg batch``: the whole pipeline over inputs of any size, resumable (see module).

    ``save_model``, ``behavior_options``, ``audiences`` / ``audience_options`` and ``report``
    mean what they mean for :func:`nlp_seg.runs.jobs.analyze_file`. With behaviour (orders,
    events or ``unit="customer"``) pass 1 still streams and resumes, and then every row is
    segmented in memory, as ``analyze`` does (see :func:`_finish_with_behavior`).
    ``to_db`` writes the results back to a database as ``analyze`` does (checked first).
    """
    from nlp_seg.runs.jobs import check_personalisation

    config = config or SegmenterConfig()
    options = options or BatchOptions()
    check_personalisation(config, behavior_options)
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
    if to_db is not None:
        from nlp_seg.io.database import check_target

        check_target(to_db)
    if time_options is not None:
        time_options.reference()  # a bad --reference-date fails now, not after the encoding
    with timer("plan"):
        plan = plan_inputs(
            inputs,
            text_col,
            id_col,
            behavior_cols,
            encoding,
            out=out,
            chunk_rows=options.chunk_size,
            date_col=time_options.column if time_options is not None else None,
        )
    with_behavior = behavior_options is not None and behavior_options.active
    loaded = None
    if with_behavior:  # refuse bad behaviour files before hours of encoding, not after
        from nlp_seg.runs.behavior_job import check_behavior_inputs, load_behavior
        from nlp_seg.runs.jobs import share_contact_columns

        check_behavior_inputs(plan.spec, behavior_options, _text_file(plan))
        share_contact_columns(behavior_options, audience_options)
        with timer("read_behavior"):
            loaded = load_behavior(behavior_options)
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
        debris = work.remove_debris()
        if debris:
            reporter.message(f"Removed {len(debris)} temporary file(s) left by an interrupted run")
        check_manifest(work, manifest, options.restart, reporter)
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
                plan.check_unchanged()  # an input written to mid-run: its chunks mix versions
                if n_rows == 0:
                    raise InputError("the input files have no rows")
                summary = {"rows": n_rows, "chunks": n_chunks, "rows_per_file": rows_per_file}
                write_json(summary, done_path)
        run = _Run(
            plan,
            work,
            out,
            config,
            options,
            reporter,
            timer,
            enc_timer,
            seg_used,
            summary,
            resumed,
            started,
            t0,
            time_options,
        )
        if with_behavior:
            result = _finish_with_behavior(
                run,
                behavior_options,
                loaded,
                save_model,
                audiences,
                audience_options,
                report,
                to_db,
            )
        else:
            result = _finish_by_chunks(run, save_model, audiences, audience_options, report, to_db)
    finally:
        work.unlock()
    if options.clean:
        shutil.rmtree(work.root, ignore_errors=True)
        shutil.rmtree(out / SNAPSHOT_DIR, ignore_errors=True)
    return result


@dataclass
class _Run:
    """What the finishing stages of one ``run_batch`` call share."""

    plan: InputPlan
    work: WorkDir
    out: Path
    config: SegmenterConfig
    options: BatchOptions
    reporter: Reporter
    timer: StageTimer
    enc_timer: StageTimer
    seg_used: Segmenter | None
    summary: dict[str, Any]
    resumed: dict[str, Any]
    started: str
    t0: float
    time_options: Any = None

    @property
    def n_chunks(self) -> int:
        return int(self.summary["chunks"])

    @property
    def n_rows(self) -> int:
        return int(self.summary["rows"])

    def run_info(
        self,
        *,
        rows_out: int,
        status: dict[str, int],
        seconds: dict[str, float],
        warnings: list[str],
        pipeline: dict[str, Any],
        batch: dict[str, Any],
        seg: Segmenter | None,
    ) -> dict[str, Any]:
        """run.json of a batch run (its own keys: engine, inputs, batch)."""
        config = self.config

        def model(slot: Any, i: int) -> dict[str, Any]:
            return slot.describe() if slot is not None else {"model": config.resolved_models()[i]}

        return {
            "command": "batch",
            "engine": self.options.engine,
            "started_at": self.started,
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "inputs": _input_info(self.plan, self.summary.get("rows_per_file") or []),
            "columns": asdict(self.plan.spec),
            "rows_in": self.n_rows,
            "rows_out": rows_out,
            "status_counts": {str(k): int(v) for k, v in status.items()},
            "seed": config.seed,
            "parameters": asdict(config),
            "batch": {
                "chunk_size": self.options.chunk_size,
                "chunks": self.n_chunks,
                **batch,
                "embeddings_stored_as": "float16",
                **self.resumed,
            },
            "models": {
                "embedding": model(seg.embedder if seg is not None else None, 0),
                "sentiment": model(seg.sentiment if seg is not None else None, 1),
            },
            "pipeline": pipeline,
            "versions": package_versions(),
            "seconds": seconds,
            "warnings": warnings,
        }


def _finish_by_chunks(
    run: _Run,
    save_model: str | Path | None,
    audiences: bool,
    audience_options: Any,
    report: bool,
    to_db: Any = None,
) -> Any:
    """Review unit without behaviour files: fit on the sample, place chunk by chunk, stream the
    outputs (memory bounded by a chunk and the sample), then audiences and report from the
    columns they read."""
    from nlp_seg.runs.jobs import RunResult, write_audiences_and_report, write_run_json

    work, options, reporter, timer, out = run.work, run.options, run.reporter, run.timer, run.out
    n_chunks = run.n_chunks
    if not (work.fit / "FITTED").exists():
        work.reset_fit()
        fit_on_sample(
            work, run.config, run.plan.spec, n_chunks, options.chunk_size, reporter, timer
        )
    else:
        run.resumed["fit_reused"] = True
        reporter.message("Fit already done: reusing it")
    with timer("place"):
        todo = [k for k in range(n_chunks) if not work.placed(k)]
        run.resumed["chunks_placed_before"] = n_chunks - len(todo)
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
    from nlp_seg.runs.personalise import add_personal_columns, personalise_segments

    def add_columns(part: pa.Table) -> pa.Table:
        return add_personal_columns(part, info["segments"], run.config.playbook)

    with timer("write"):
        out.mkdir(parents=True, exist_ok=True)
        files, counts = _concat_outputs(work, n_chunks, out, options.write_csv, add_columns)
        segments = _full_profiles(info["segments"], counts)
        time_info, reference = _over_time(run, segments)
        segments = personalise_segments(segments, run.config.playbook)
        write_json(
            {
                "naming_rules": naming_rules(),
                "profiled_on": f"a seeded sample of {info['sample_size']} rows; size, share "
                "and outlier_share count every row",
                "time": time_info,
                "segments": segments,
            },
            out / "segments.json",
        )
        files.append(out / "segments.json")
        if save_model:
            _save_fitted(work, save_model, run.config, run.seg_used)
    profiled = [s for s in segments if "sentiment" in s]  # not the rows placed after the fit
    spec = run.plan.spec
    table, coords = _extras_table(
        run, audiences and bool(profiled), report and bool(profiled), audience_options
    )
    more, audience_info = write_audiences_and_report(
        out,
        table,
        profiled,
        spec,
        timer,
        coords=(lambda: coords) if coords is not None else None,
        input_name=_text_file(run.plan),
        lang=run.config.lang,
        seed=run.config.seed,
        audiences=audiences,
        audience_options=audience_options,
        report=report,
        period=(time_info or {}).get("period"),
        reference_date=reference,
        run_notes=[info["note"]] if info.get("note") else [],
    )
    files += more
    from nlp_seg.io.write import write_csv as write_csv_file
    from nlp_seg.runs.personalise import MESSAGES_FILE, messages_table

    write_csv_file(messages_table(segments), out / MESSAGES_FILE)
    files.append(out / MESSAGES_FILE)
    status = counts.groupby("status").n.sum().sort_values(ascending=False).astype(int).to_dict()
    warnings = [info["note"]] if info.get("note") else []
    seconds = {
        **timer.seconds,
        **{f"pipeline.{k}": v for k, v in run.enc_timer.seconds.items()},
        **{f"pipeline.fit.{k}": v for k, v in info["timings"].items()},
    }
    seconds["total"] = round(time.perf_counter() - run.t0, 3)
    rows_out = int(counts["n"].sum())
    run_info = run.run_info(
        rows_out=rows_out,
        status=status,
        seconds=seconds,
        warnings=warnings,
        pipeline=info["pipeline"],
        batch={
            "fit_sample_rows": info["sample_size"],
            "fit_sample_selection": "scorable rows with the smallest splitmix64(seed, row) "
            "keys (same rows for any chunking or engine)",
        },
        seg=run.seg_used,
    )
    if save_model:
        run_info["saved_model"] = str(save_model)
    if time_info is not None:
        run_info["time"] = time_info
    run_info["personalisation"] = {
        "note": "recommended_items is empty: no --orders given",
        "email_campaign": {
            "file": "audiences/email_campaign.csv",
            "written": False,
            "reason": "nlpseg batch writes it with --orders / --events / --unit customer "
            "(the in-memory finish), not when streaming chunks",
        },
    }
    write_run_json(out, run_info, files, None, audience_info, to_db=to_db)
    return RunResult(
        out,
        files,
        run.n_rows,
        rows_out,
        run_info["status_counts"],
        segments,
        warnings,
        seconds["total"],
    )


def _finish_with_behavior(
    run: _Run,
    behavior_options: Any,
    loaded: Any,
    save_model: str | Path | None,
    audiences: bool,
    audience_options: Any,
    report: bool,
    to_db: Any = None,
) -> Any:
    """``--orders`` / ``--events`` / ``--unit customer``: every encoded row in memory, then the
    very functions ``nlpseg analyze`` runs
    (:func:`~nlp_seg.runs.behavior_job.run_behavior_job_encoded` and
    :func:`~nlp_seg.runs.jobs.write_run_outputs`), so both give the same segments and the
    same files for the same input and seed. Customer features, CLV and tiers need all of a
    customer's rows together, so this stage holds the whole input (as ``analyze`` does);
    pass 1 is still streamed and resumable. Nothing of it is kept in ``_work/fit``: a re-run
    refits (seconds, next to the encoding).
    """
    from nlp_seg.io.write import status_counts
    from nlp_seg.runs.behavior_job import run_behavior_job_encoded
    from nlp_seg.runs.jobs import RunResult, unit_of, write_run_json, write_run_outputs

    timer, out = run.timer, run.out
    with timer("load_encoded"):
        frame, encoded = load_all_encoded(run.work, run.n_chunks, run.plan)
    seg = run.seg_used or Segmenter(run.config, reporter=run.reporter)
    fit_timer = StageTimer()
    with timer("fit"):
        beh_run = run_behavior_job_encoded(
            seg,
            frame,
            run.plan.spec,
            behavior_options,
            _text_file(run.plan),
            encoded,
            loaded=loaded,
            timer=fit_timer,
        )
    warnings = list(beh_run.warnings)
    if seg.note_:
        warnings.append(seg.note_)
    out.mkdir(parents=True, exist_ok=True)
    notes: dict[str, Any] = {}
    merged, files, audience_info = write_run_outputs(
        out,
        frame,
        seg,
        run.plan.spec,
        timer,
        beh_run=beh_run,
        input_name=_text_file(run.plan),
        save_model=save_model,
        audiences=audiences,
        audience_options=audience_options,
        report=report,
        csv=run.options.write_csv,
        time_options=run.time_options,
        notes=notes,
        run_notes=warnings,
    )
    status = dict(status_counts(merged["status"]))
    seconds = {
        **timer.seconds,
        **{f"pipeline.{k}": v for k, v in run.enc_timer.seconds.items()},
        **{f"pipeline.fit.{k}": v for k, v in seg.timings_.items()},
    }
    seconds["total"] = round(time.perf_counter() - run.t0, 3)
    run_info = run.run_info(
        rows_out=len(merged),
        status=status,
        seconds=seconds,
        warnings=warnings,
        pipeline=seg.describe(),
        batch={
            "fit_sample_rows": int(getattr(seg, "fit_sample_size_", 0)),
            "fit_sample_selection": "in memory after pass 1, as nlpseg analyze: the "
            f"{beh_run.info.get('unit')}s with the smallest splitmix64(seed, row) keys",
        },
        seg=seg,
    )
    if save_model:
        run_info["saved_model"] = str(save_model)
    run_info.update({k: v for k, v in notes.items() if v is not None})
    write_run_json(out, run_info, files, beh_run, audience_info, to_db=to_db)
    return RunResult(
        out,
        files,
        run.n_rows,
        len(merged),
        run_info["status_counts"],
        seg.segments_,
        warnings,
        seconds["total"],
        unit_of(beh_run),
    )


def _save_fitted(
    work: WorkDir, dest: str | Path, config: SegmenterConfig, seg_used: Segmenter | None
) -> None:
    """``--save-model`` without behaviour: the segmenter of ``_work/fit`` (fitted on the
    sample, as every other row was placed with it), re-written to ``dest`` through the model
    store with the checksums of the models that encoded the rows, as ``analyze`` records
    them (so ``nlpseg assign`` refuses a different encoder)."""
    from nlp_seg.models.store import model_record, read_folder, write_folder

    state, arrays = read_folder(work.fit / "segmenter")
    encoder = (seg_used or Segmenter(config)).encoder
    emb_id, sent_id = config.resolved_models()
    models = {}
    for kind, get, model_id in (
        ("embedding", encoder.get_embedder, emb_id),
        ("sentiment", encoder.get_sentiment, sent_id),
    ):
        record = state["models"].get(kind) or {}
        if not record.get("sha256"):
            slot = get()
            if hasattr(slot, "load"):
                slot.load()  # a bundled model knows its folder once loaded
            record = model_record(slot, model_id)
        models[kind] = record
    state["models"] = models
    write_folder(dest, state, arrays)


def _over_time(run: _Run, segments: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, Any]:
    """Segments over time from the time, segment and sentiment columns of the written
    ``assignments.parquet`` (narrow columns, not the texts); the ``time`` entry and the
    reference date of relative dates."""
    from nlp_seg.runs.jobs import TimeOptions, add_over_time

    options = run.time_options or TimeOptions()
    reference = options.reference()
    spec = run.plan.spec
    if spec.date is None:
        return None, reference
    cols = [spec.date, "segment_id", "sentiment_score", "sentiment_label"]
    table = pq.read_table(run.out / "assignments.parquet", columns=cols).to_pandas()
    info = add_over_time(segments, table, table, spec, options, reference, False)
    return info, reference


def _extras_table(
    run: _Run, audiences: bool, report: bool, audience_options: Any
) -> tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray] | None]:
    """The columns of ``assignments.parquet`` the audiences and the report read (id, contact,
    date, ``segment_*``, ``sentiment_score``), and the report map's ``(rows, xy)`` with the
    texts of those rows only (a map shows at most a few thousand points): memory for a few
    narrow columns, not for the texts."""
    from nlp_seg.io.audiences import EMAIL_NAMES, PHONE_NAMES, norm_column_name

    if not (audiences or report):
        return pd.DataFrame(), None
    spec = run.plan.spec
    path = run.out / "assignments.parquet"
    names = pq.read_schema(path).names
    wanted = ["segment_id", "segment_name", "segment_probability", "sentiment_score"]
    if audiences:
        opts = audience_options
        named = {getattr(opts, "email_col", None), getattr(opts, "phone_col", None)}
        wanted += [spec.id] if spec.id else []
        wanted += [
            c for c in names if c in named or norm_column_name(c) in EMAIL_NAMES + PHONE_NAMES
        ]
        if getattr(opts, "by_aspect", False):
            wanted.append("aspects")  # --audience-by aspect
    if report and spec.date:
        wanted.append(spec.date)
    table = pq.read_table(path, columns=[c for c in dict.fromkeys(wanted) if c in names])
    frame = table.to_pandas()
    coords = None
    if report and spec.text in names:
        texts = np.full(len(frame), None, dtype=object)
        rows_path, xy_path = run.work.fit / "map_rows.npy", run.work.fit / "map_xy.npy"
        if rows_path.exists() and xy_path.exists():
            rows = np.load(rows_path, allow_pickle=False)
            xy = np.load(xy_path, allow_pickle=False)
            size = run.options.chunk_size
            for k in np.unique(rows // size):
                local = rows[rows // size == k] - int(k) * size
                col = pq.read_table(run.work.part(int(k)), columns=[spec.text]).column(0)
                texts[local + int(k) * size] = col.take(pa.array(local)).to_pylist()
            coords = (rows, xy)
        frame[spec.text] = pd.array(texts, dtype="string")
    return frame, coords
