"""File-level jobs behind the CLI: read a file, run the segmenter, write the contract files.

Kept apart from :mod:`nlp_seg.segmenter` (which works on in-memory texts) so the Python API,
the CLI and the service share one implementation of "a run" and its ``run.json``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nlp_seg.behavior.scaler import missing_behavior
from nlp_seg.errors import InputError
from nlp_seg.io.database import input_record, source_name
from nlp_seg.io.read import ColumnSpec, detect_columns, read_table, restore_numeric
from nlp_seg.io.write import (
    merge_input_and_assignments,
    package_versions,
    status_counts,
    write_csv,
    write_json,
    write_parquet,
)
from nlp_seg.progress import Reporter, SilentReporter, StageTimer
from nlp_seg.segmenter import ASSIGNMENT_COLUMNS, SCORE_COLUMNS, Segmenter, SegmenterConfig
from nlp_seg.stages.naming import naming_rules

log = logging.getLogger(__name__)


@dataclass
class TimeOptions:
    """The texts' time column and how segments are followed over time (``--time-col``,
    ``--period``, ``--reference-date``)."""

    column: str | None = None
    #: week, month, quarter, or auto (from the span)
    period: str = "auto"
    #: what relative dates ("2 tuần trước") count back from; default today (UTC)
    reference_date: str | None = None

    def reference(self) -> pd.Timestamp:
        from nlp_seg.io.read import parse_dates, today_utc

        if not self.reference_date:
            return today_utc()
        ref = parse_dates(pd.Series([self.reference_date], dtype=object)).iloc[0]
        if pd.isna(ref):
            raise InputError(f"--reference-date {self.reference_date!r} is not a date")
        return ref


@dataclass
class RefreshContext:
    """A refresh: the previous segmenter (whose ids the new fit keeps), what it is called in
    the outputs, and optionally the previous run's folder (for movers and complaint terms)."""

    previous: Segmenter
    label: str
    previous_run: Any = None  # a runs.drift.RunState


@dataclass
class RunResult:
    """What a job produced, for the CLI's summary and for callers of the API."""

    out_dir: Path | None
    files: list[Path]
    rows_in: int
    rows_out: int
    status: dict[str, int]
    segments: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: What an output row is, as ``--unit`` says: ``review`` (an input row) or ``customer``.
    unit: str = "review"


def unit_of(beh_run: Any) -> str:
    """``customer`` when a behaviour run wrote one row per customer, else ``review``."""
    customer = beh_run is not None and beh_run.info.get("unit") == "customer"
    return "customer" if customer else "review"


def _load_input(
    input_path: str | Path,
    text_col: str | None,
    id_col: str | None,
    behavior_cols: list[str] | None,
    encoding: str | None,
    time_col: str | None = None,
) -> tuple[pd.DataFrame, ColumnSpec, list[str]]:
    frame = read_table(input_path, encoding=encoding, typed=False)  # cells as typed
    typed = restore_numeric(frame.copy())
    spec = detect_columns(
        typed, text_col=text_col, id_col=id_col, behavior_cols=behavior_cols, date_col=time_col
    )
    warnings: list[str] = []
    numeric_text = pd.to_numeric(typed[spec.text], errors="coerce").notna()
    filled = typed[spec.text].notna()
    if filled.sum() and numeric_text.sum() >= 0.9 * filled.sum():
        warnings.append(
            f"the text column {spec.text!r} holds numbers, not text, in "
            f"{int(numeric_text.sum())} of {int(filled.sum())} rows; their sentiment and "
            "segments mean little: name the review column with --text-col"
        )
    return frame, spec, warnings


def repeat_writers_note(frame: pd.DataFrame, spec: ColumnSpec) -> str | None:
    """What ``analyze`` says when ids repeat: customers who wrote several reviews, each review
    segmented on its own (a note, not a warning: that is what a review-level run does)."""
    if spec.id is None:
        return None
    ids = frame[spec.id].dropna()
    counts = ids.value_counts()
    repeat = int((counts > 1).sum())
    if not repeat:
        return None
    reviews = int(counts[counts > 1].sum())
    return (
        f"{repeat} customers ({spec.id}) wrote more than one review ({reviews} reviews): "
        "each review is segmented on its own; --orders with --unit customer segments customers"
    )


def _run_info(
    kind: str,
    input_path: str | Path,
    spec: ColumnSpec,
    seg: Segmenter,
    rows_in: int,
    rows_out: int,
    status: dict[str, int],
    seconds: dict[str, float],
    warnings: list[str],
    started: str,
    frame: pd.DataFrame | None = None,
) -> dict[str, Any]:
    return {
        "command": kind,
        "started_at": started,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "input": input_record(input_path, frame),
        "columns": asdict(spec),
        "rows_in": rows_in,
        "rows_out": rows_out,
        "status_counts": status,
        "seed": seg.config.seed,
        "parameters": asdict(seg.config),
        "models": {
            "embedding": seg.embedder.describe() if seg.embedder is not None else None,
            "sentiment": seg.sentiment.describe() if seg.sentiment is not None else None,
        },
        "pipeline": seg.describe(),
        "versions": package_versions(),
        "seconds": seconds,
        "warnings": warnings,
    }


def write_run_outputs(
    out: Path,
    frame: pd.DataFrame,
    seg: Segmenter,
    spec: ColumnSpec,
    timer: StageTimer,
    *,
    beh_run: Any = None,
    input_name: str,
    save_model: str | Path | None = None,
    audiences: bool = True,
    audience_options: Any = None,
    report: bool = True,
    csv: bool = True,
    time_options: TimeOptions | None = None,
    refresh: RefreshContext | None = None,
    notes: dict[str, Any] | None = None,
    run_notes: Sequence[str] = (),
) -> tuple[pd.DataFrame, list[Path], dict[str, Any] | None]:
    """The files of a run held in memory: ``assignments.csv`` / ``.parquet``,
    ``segments.json``, the ``--save-model`` folder, ``audiences/`` and ``report.html``.

    ``frame`` is the input and ``seg`` the segmenter fitted on it; ``beh_run`` (the
    :class:`~nlp_seg.runs.behavior_job.BehaviorResult` of a behaviour run) brings its own
    output table (one row per customer at ``--unit customer``). ``nlpseg analyze`` and
    ``nlpseg batch`` with behaviour both write through here, so the two cannot drift;
    ``csv=False`` (``batch --no-csv``) leaves out ``assignments.csv``. Returns
    the output table, the files written and the audiences' entry for run.json (see
    :func:`write_run_json`); ``notes`` receives the ``time``, ``drift`` and
    ``personalisation`` entries of run.json (see :mod:`nlp_seg.runs.personalise`).

    ``time_options`` adds each segment's volume and sentiment per period (``over_time`` in
    segments.json, a chart in the report); ``refresh`` (``nlpseg refresh``) adds
    ``drift.json``, ``movers.csv`` and the movers' audiences, and the report's drift section.
    """
    notes = notes if notes is not None else {}
    customer_unit = unit_of(beh_run) == "customer"
    # one row per customer at --unit customer, whatever the input called its id
    id_col = "customer_id" if customer_unit else None
    with timer("write"):
        if beh_run is not None:
            merged = beh_run.table
        else:
            merged = merge_input_and_assignments(frame, seg.assignments_, ASSIGNMENT_COLUMNS)
        time_opts = time_options or TimeOptions()
        reference = time_opts.reference()
        notes["time"] = add_over_time(
            seg.segments_, frame, merged, spec, time_opts, reference, customer_unit
        )
        merged, segments, personal = personalise_run(merged, seg, spec, beh_run, id_col)
        files = [out / "assignments.csv", out / "assignments.parquet", out / "segments.json"]
        if csv:
            write_csv(merged, files[0])
        else:
            files[0].unlink(missing_ok=True)
            files.pop(0)
        write_parquet(merged, out / "assignments.parquet")
        write_json(
            {
                "naming_rules": beh_run.naming_rules if beh_run is not None else naming_rules(),
                "time": notes["time"],
                "segments": segments,
            },
            out / "segments.json",
        )
        if save_model:
            seg.columns_ = spec
            seg.save(save_model)
    id_out = "customer_id" if customer_unit else (spec.id if spec.id in merged.columns else None)
    drift = None
    if refresh is not None:
        with timer("drift"):
            drift, drift_files = write_refresh_drift(
                out, merged, seg, spec, refresh, id_out, audience_options
            )
        files.extend(drift_files)
        notes["drift"] = {
            "file": "drift.json",
            "refit_advised": drift["refit_advised"],
            "warnings": drift["warnings"],
            "movers": drift["movers"]["customers"],
        }
    more, audience_info = write_audiences_and_report(
        out,
        merged,
        seg.segments_,
        spec,
        timer,
        id_col=id_col,
        # rows of the segmenter are rows of the output table at either unit
        coords=lambda: _map_coordinates(seg),
        input_name=input_name,
        lang=seg.config.lang,
        seed=seg.config.seed,
        audiences=audiences,
        audience_options=audience_options,
        report=report,
        period=(notes["time"] or {}).get("period"),
        reference_date=reference,
        drift=drift,
        run_notes=run_notes,
        unit=unit_of(beh_run),
    )
    with timer("personalisation"):
        from nlp_seg.runs.personalise import write_personal_files

        personal_files, personal["email_campaign"] = write_personal_files(
            out,
            merged,
            segments,
            id_col=id_col or (spec.id if spec.id in merged.columns else None),
            lang=seg.config.lang,
            playbook=seg.config.playbook,
            audiences=audiences,
            audience_options=audience_options,
        )
    notes["personalisation"] = personal
    return merged, files + more + personal_files, audience_info


def personalise_run(
    table: pd.DataFrame,
    seg: Segmenter,
    spec: ColumnSpec,
    beh_run: Any = None,
    id_col: str | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]], dict[str, Any]]:
    """The output table with ``next_best_action`` and ``recommended_items``, the segment
    profiles with their action and message drafts, and the run.json entry: what ``analyze``,
    ``batch`` and ``assign`` all add (see :mod:`nlp_seg.runs.personalise`)."""
    from nlp_seg.runs.personalise import personalise_segments, personalise_table

    id_col = id_col or (spec.id if spec.id in table.columns else None)
    table, info = personalise_table(
        table,
        seg.segments_,
        id_col=id_col,
        orders=beh_run.orders if beh_run is not None else None,
        playbook=seg.config.playbook,
        recommender=beh_run.recommender if beh_run is not None else "als",
        n_items=beh_run.recommend_n if beh_run is not None else 10,
        seed=seg.config.seed,
    )
    return table, personalise_segments(seg.segments_, seg.config.playbook), info


def check_personalisation(config: SegmenterConfig | None, behavior_options: Any = None) -> None:
    """Refuse a bad playbook (a hostile template, an unknown action) or an unknown
    ``--recommender`` before any model runs, so nothing is half-written."""
    from nlp_seg.behavior.recommend import check_recommender
    from nlp_seg.stages.personalise import load_personalisation

    load_personalisation(config.playbook if config is not None else None)
    if behavior_options is not None:
        check_recommender(behavior_options.recommender)


def add_over_time(
    segments: list[dict[str, Any]],
    frame: pd.DataFrame,
    table: pd.DataFrame,
    spec: ColumnSpec,
    options: TimeOptions,
    reference: pd.Timestamp,
    customer_unit: bool,
) -> dict[str, Any] | None:
    """Each segment's ``over_time`` entries (see :mod:`nlp_seg.io.timeline`) and the run's
    ``time`` entry; ``None`` when the input has no time column."""
    from nlp_seg.io.read import parse_dates
    from nlp_seg.io.timeline import over_time, period_code, period_name

    if spec.date is None or spec.date not in frame.columns:
        return None
    info: dict[str, Any] = {"column": spec.date, "reference_date": str(reference.date())}
    if customer_unit:
        info["note"] = "segments over time are counted per review (--unit review)"
        return info
    dates = parse_dates(frame[spec.date].reset_index(drop=True), reference)
    info["rows_dated"] = int(dates.notna().sum())
    info["rows_undated"] = int(dates.isna().sum())
    if not dates.notna().any():
        info["note"] = f"no cell of {spec.date!r} reads as a date"
        return info
    code = period_code(options.period, dates)
    info["period"] = period_name(code)
    info["first"] = str(dates.min().date())
    info["last"] = str(dates.max().date())
    per_segment, periods = over_time(dates, table.reset_index(drop=True), code)
    info["periods"] = periods
    for s in segments:
        s["over_time"] = per_segment.get(int(s["id"]), [])
    return info


def write_refresh_drift(
    out: Path,
    table: pd.DataFrame,
    seg: Segmenter,
    spec: ColumnSpec,
    refresh: RefreshContext,
    id_col: str | None,
    audience_options: Any,
) -> tuple[dict[str, Any], list[Path]]:
    """``drift.json``, ``movers.csv`` and the movers' audiences of a refresh (see
    :mod:`nlp_seg.runs.drift`)."""
    from nlp_seg.runs.drift import (
        RunState,
        drift_report,
        movers,
        write_drift_outputs,
    )

    lineage = getattr(seg, "lineage_", None) or {}
    after = RunState(
        seg.segments_,
        table,
        spec.text if spec.text in table.columns else None,
        id_col,
        str(out),
    )
    before = refresh.previous_run or RunState(list(refresh.previous.segments_), label=refresh.label)
    matched = {int(k): int(k) for k in lineage.get("kept", [])}
    drift = drift_report(before, after, matched=matched, novelty_share=lineage.get("novelty_share"))
    drift["before"] = refresh.label
    moved = movers(before, after, matched)
    if before.table is None:
        drift["movers_note"] = (
            "no previous run folder given (--previous): movers need the previous assignments"
        )
    files = write_drift_outputs(out, drift, moved, after, audience_options)
    return drift, files


def share_contact_columns(behavior_options: Any, audience_options: Any) -> None:
    """Give a behaviour run the contact columns named for the audiences (``--email-col`` /
    ``--phone-col``), so ``--unit customer`` carries the same columns into its table."""
    if audience_options is not None:
        behavior_options.email_col = behavior_options.email_col or audience_options.email_col
        behavior_options.phone_col = behavior_options.phone_col or audience_options.phone_col


def _map_coordinates(seg: Segmenter) -> Any:
    from nlp_seg.io.report import map_coordinates

    return map_coordinates(seg)


def write_audiences_and_report(
    out: Path,
    table: pd.DataFrame,
    segments: list[dict[str, Any]],
    spec: ColumnSpec,
    timer: StageTimer,
    *,
    id_col: str | None = None,
    coords: Callable[[], Any] | None = None,
    input_name: str,
    lang: str,
    seed: int,
    audiences: bool = True,
    audience_options: Any = None,
    report: bool = True,
    period: str | None = None,
    reference_date: pd.Timestamp | None = None,
    drift: dict[str, Any] | None = None,
    run_notes: Sequence[str] = (),
    unit: str = "review",
) -> tuple[list[Path], dict[str, Any] | None]:
    """``out/audiences/`` (when ``audiences``) and ``out/report.html`` (when ``report``) from
    ``table``, the output table or the columns of it they read (the id, contact, text, date,
    ``segment_*`` and ``sentiment_score`` columns). ``id_col`` overrides the customer id
    column (default ``spec.id`` when in ``table``); ``coords`` gives the report map's
    ``(rows, xy)`` or ``None`` (see :func:`nlp_seg.io.report.map_coordinates`). Used by
    :func:`write_run_outputs` and by ``nlpseg batch``, which streams its assignments and reads
    back only these columns."""
    files: list[Path] = []
    audience_info = None
    if audiences and segments:
        with timer("audiences"):
            from nlp_seg.io.audiences import write_audiences

            id_in_table = id_col or (spec.id if spec.id in table.columns else None)
            _, audience_info = write_audiences(
                table, table, segments, out, id_in_table, audience_options
            )
            files.append(out / "audiences")
    if report and segments:
        with timer("report"):
            from nlp_seg.io.report import build_report, write_report

            text_in_table = spec.text if spec.text in table.columns else None
            if text_in_table is not None:
                page = build_report(
                    table,
                    segments,
                    text_col=text_in_table,
                    date_col=spec.date if spec.date in table.columns else None,
                    coords=coords() if coords is not None else None,
                    lang=lang,
                    input_name=input_name,
                    seed=seed,
                    period=period,
                    reference_date=reference_date,
                    drift=drift,
                    notes=run_notes,
                    unit=unit,
                )
                files.append(write_report(out / "report.html", page))
    return files, audience_info


def rating_check(
    frame: pd.DataFrame, spec: ColumnSpec, sentiment_score: pd.Series
) -> dict[str, Any] | None:
    """How a star-rating column in the input agrees with the sentiment, or how it was used.

    A rating is not taken as a behaviour feature unless named with ``--behavior-cols`` (it
    says what the text says): it checks the sentiment scores instead, row by row.
    """
    from nlp_seg.behavior.tables import find_rating_column

    col = find_rating_column(frame, exclude=(spec.text, spec.id))
    if col is None:
        return None
    if col in spec.behavior:
        return {"column": col, "used_as": "behaviour (named with --behavior-cols)"}
    rating = pd.to_numeric(frame[col], errors="coerce").reset_index(drop=True)
    score = pd.to_numeric(sentiment_score, errors="coerce").reset_index(drop=True)
    both = rating.notna() & score.notna()
    info: dict[str, Any] = {
        "column": col,
        "used_as": "check of the sentiment",
        "rows": int(both.sum()),
    }
    if both.sum() >= 3 and rating[both].nunique() > 1:
        info["spearman_with_sentiment_score"] = round(
            float(rating[both].corr(score[both], method="spearman")), 4
        )
        info["mean_sentiment_score_by_rating"] = {
            str(k): round(float(v), 4) for k, v in score[both].groupby(rating[both]).mean().items()
        }
    return info


def write_run_json(
    out: Path,
    info: dict[str, Any],
    files: list[Path],
    beh_run: Any = None,
    audience_info: dict[str, Any] | None = None,
    rating: dict[str, Any] | None = None,
    to_db: Any = None,
) -> None:
    """``out/run.json``: ``info`` plus the behaviour, audiences and rating-check entries;
    appended to ``files``. With ``to_db`` (a :class:`~nlp_seg.io.database.DatabaseTarget`)
    the run's ``assignments.parquet`` and ``segments.json`` are first written to the
    database in one transaction and run.json records where (``database``): run.json is
    written last, so a run without it did not finish."""
    if rating is not None:
        info["rating_check"] = rating
    note = (info.get("pipeline") or {}).get("segments_note")
    if note is not None:  # why so few segments, where a reader of run.json looks first
        info["segments_note"] = note
    if beh_run is not None:
        info["behavior"] = beh_run.info
    if audience_info is not None:
        info["audiences"] = audience_info
    if to_db is not None:
        import json

        from nlp_seg.io.database import write_back

        segments = json.loads((out / "segments.json").read_text(encoding="utf-8"))["segments"]
        write_back(to_db, out / "assignments.parquet", segments, info)
    write_json(info, out / "run.json")
    files.append(out / "run.json")


def analyze_file(
    input_path: str | Path,
    out_dir: str | Path,
    config: SegmenterConfig | None = None,
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
    time_options: TimeOptions | None = None,
    refresh: RefreshContext | None = None,
    to_db: Any = None,
) -> RunResult:
    """``nlpseg analyze``: the whole pipeline on one file, outputs written to ``out_dir``.

    ``audiences`` writes ``out_dir/audiences/`` (see :mod:`nlp_seg.io.audiences`; options in an
    :class:`~nlp_seg.io.audiences.AudienceOptions`), ``report`` writes ``out_dir/report.html``
    in the config's ``lang`` (see :mod:`nlp_seg.io.report`).

    ``behavior_options`` (a :class:`nlp_seg.runs.behavior_job.BehaviorOptions`) joins orders and
    events and picks the unit (review or customer) of the segments. ``time_options`` names the
    time column and period; ``refresh`` (``nlpseg refresh``) keeps a previous segmenter's ids and
    writes the drift outputs. ``to_db`` (a :class:`~nlp_seg.io.database.DatabaseTarget`)
    writes the results back to a database; it is checked before anything is read or written.
    """
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    reporter = reporter or SilentReporter()
    timer = StageTimer()
    time_options = time_options or TimeOptions()
    time_options.reference()  # a bad --reference-date fails before any work
    if to_db is not None:
        from nlp_seg.io.database import check_target

        check_target(to_db)
    check_personalisation(config, behavior_options)
    with timer("read"):
        frame, spec, warnings = _load_input(
            input_path, text_col, id_col, behavior_cols, encoding, time_col=time_options.column
        )
    reporter.message(
        f"Read {len(frame):,} rows; text column [bold]{spec.text}[/bold]"
        + (f", id column {spec.id}" if spec.id else "")
        + (f", behaviour columns {', '.join(spec.behavior)}" if spec.behavior else "")
    )
    seg = Segmenter(
        config or SegmenterConfig(),
        reporter=reporter,
        previous=refresh.previous if refresh is not None else None,
    )
    beh_run = None
    if behavior_options is not None and behavior_options.active:
        from nlp_seg.runs.behavior_job import run_behavior_job

        share_contact_columns(behavior_options, audience_options)
        beh_run = run_behavior_job(seg, frame, spec, behavior_options, source_name(input_path))
        warnings.extend(beh_run.warnings)
    if beh_run is None or behavior_options.unit != "customer":  # pooled there, as intended
        repeat = repeat_writers_note(frame, spec)
        if repeat:
            reporter.message(repeat)
    if beh_run is None:
        behavior = frame[list(spec.behavior)] if spec.behavior else None
        seg.fit(frame[spec.text].tolist(), behavior=behavior)
    note = seg.note_
    if note:
        warnings.append(note)
    out = Path(out_dir)
    notes: dict[str, Any] = {}
    merged, files, audience_info = write_run_outputs(
        out,
        frame,
        seg,
        spec,
        timer,
        beh_run=beh_run,
        input_name=source_name(input_path),
        save_model=save_model,
        audiences=audiences,
        audience_options=audience_options,
        report=report,
        time_options=time_options,
        refresh=refresh,
        notes=notes,
        run_notes=warnings,
    )
    warnings.extend((notes.get("drift") or {}).get("warnings", []))
    seconds = {**timer.seconds, **{f"pipeline.{k}": v for k, v in seg.timings_.items()}}
    seconds["total"] = round(time.perf_counter() - t0, 3)
    status = status_counts(merged["status"])
    info = _run_info(
        "refresh" if refresh is not None else "analyze",
        input_path,
        spec,
        seg,
        len(frame),
        len(merged),
        status,
        seconds,
        warnings,
        started,
        frame,
    )
    info.update({k: v for k, v in notes.items() if v is not None})
    if refresh is not None:
        info["refresh"] = {
            "ids_kept_from": refresh.label,
            "previous_run": refresh.previous_run.label if refresh.previous_run else None,
            **(getattr(seg, "lineage_", None) or {}),
        }
    rows_align = unit_of(beh_run) == "review"
    rating = rating_check(frame, spec, merged["sentiment_score"]) if rows_align else None
    if rating and "spearman_with_sentiment_score" in rating:
        reporter.message(
            f"Rating column {rating['column']} checks the sentiment (Spearman "
            f"{rating['spearman_with_sentiment_score']:+.2f} with sentiment_score); it is not "
            "a behaviour feature unless named with --behavior-cols"
        )
    write_run_json(out, info, files, beh_run, audience_info, rating, to_db=to_db)
    return RunResult(
        out,
        files,
        len(frame),
        len(merged),
        status,
        seg.segments_,
        warnings,
        seconds["total"],
        unit_of(beh_run),
    )


def score_file(
    input_path: str | Path,
    out_file: str | Path,
    config: SegmenterConfig | None = None,
    *,
    text_col: str | None = None,
    id_col: str | None = None,
    encoding: str | None = None,
    reporter: Reporter | None = None,
) -> RunResult:
    """``nlpseg score``: sentiment only; writes the input columns plus the sentiment columns."""

    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    reporter = reporter or SilentReporter()
    frame, spec, warnings = _load_input(input_path, text_col, id_col, [], encoding)
    seg = Segmenter(config or SegmenterConfig(), reporter=reporter)
    timer = StageTimer()
    cols = seg.score(frame[spec.text].tolist(), timer)
    n = len(frame)
    merged = merge_input_and_assignments(frame, cols, SCORE_COLUMNS)
    out = Path(out_file)
    if out.suffix.lower() in (".parquet", ".pq"):
        write_parquet(merged, out)
    else:
        write_csv(merged, out)
    seconds = {**timer.seconds, "total": round(time.perf_counter() - t0, 3)}
    st = status_counts(merged["status"])
    info = _run_info(
        "score", input_path, spec, seg, n, len(merged), st, seconds, warnings, started, frame
    )
    rating = rating_check(frame, spec, merged["sentiment_score"])
    if rating is not None:
        info["rating_check"] = rating
    note = (info.get("pipeline") or {}).get("segments_note")
    if note is not None:  # why so few segments, where a reader of run.json looks first
        info["segments_note"] = note
    run_json = out.with_name(out.stem + ".run.json")
    write_json(info, run_json)
    return RunResult(None, [out, run_json], n, len(merged), st, [], warnings, seconds["total"])


def assign_file(
    input_path: str | Path,
    model_dir: str | Path,
    out_dir: str | Path,
    *,
    text_col: str | None = None,
    id_col: str | None = None,
    encoding: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    cache_dir: str | None = None,
    reporter: Reporter | None = None,
    behavior_options: Any = None,
    precision: str | None = None,
    allow_missing_behavior: bool = False,
) -> RunResult:
    """``nlpseg assign``: label a new file with a saved segmenter (``analyze --save-model``).

    ``behavior_options`` (a :class:`nlp_seg.runs.behavior_job.BehaviorOptions` with ``orders`` /
    ``events``) computes a behaviour model's features for the new rows and places them at the
    saved unit (see :func:`nlp_seg.runs.behavior_job.assign_with_behavior`); without it a
    behaviour model is refused, since its rows would land where their behaviour might not put
    them, unless ``allow_missing_behavior`` (then it places on text alone, with a warning).

    Writes ``assignments.csv`` / ``assignments.parquet`` (the same contract columns as
    ``analyze``, plus ``behavior_missing`` for a model with behaviour features) and
    ``run.json`` to ``out_dir``. Columns are found the way the segmenter was fitted: the same
    text / id / behaviour column names when the new file has them, else detected. A behaviour
    column the file lacks is refused the same way; an empty cell counts as unknown (the fitted
    median) and its row names it in ``behavior_missing``.
    """
    from nlp_seg.segmenter import load_segmenter

    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    reporter = reporter or SilentReporter()
    timer = StageTimer()
    with timer("load_model"):
        seg = load_segmenter(
            model_dir,
            device=device,
            precision=precision,
            batch_size=batch_size,
            cache_dir=cache_dir,
            reporter=reporter,
        )
    saved = seg.columns_
    with timer("read"):
        frame = read_table(input_path, encoding=encoding, typed=False)  # cells as typed
        cols = set(frame.columns)
        spec = detect_columns(
            restore_numeric(frame.copy()),
            text_col=text_col or (saved.text if saved and saved.text in cols else None),
            id_col=id_col or (saved.id if saved and saved.id in cols else None),
            behavior_cols=[],
        )
    warnings: list[str] = []
    behavior = None
    setup = getattr(seg, "behavior_setup_", None)
    with_files = behavior_options is not None and (
        behavior_options.orders is not None or behavior_options.events is not None
    )
    if with_files and not setup:
        raise InputError(
            f"{model_dir} was saved from a run without --orders / --events; it cannot use them "
            "(re-fit with nlpseg analyze --orders ... --save-model)"
        )
    if setup and not with_files:
        from nlp_seg.runs.behavior_job import text_only_warning

        if not allow_missing_behavior:
            raise InputError(text_only_warning(setup, refused=True))
        warnings.append(text_only_warning(setup))
    if seg.behavior_scaler_ is not None and not with_files:
        wanted = list(seg.behavior_scaler_.columns_)
        missing = [c for c in wanted if c not in cols]
        if missing and not setup:
            if not allow_missing_behavior:
                raise InputError(
                    f"{Path(model_dir).name} was fitted with the behaviour column(s) "
                    f"{', '.join(wanted)}, and {source_name(input_path)} has no "
                    f"{', '.join(missing)}: add it (empty cells count as unknown), or pass "
                    "--allow-missing-behavior to place those rows at the fitted median"
                )
            warnings.append(
                f"behaviour columns {', '.join(missing)} are not in {source_name(input_path)}; "
                "they count as missing (the fitted median), named per row in behavior_missing"
            )
        behavior = frame.reindex(columns=wanted)
        spec = ColumnSpec(spec.text, spec.id, tuple(c for c in wanted if c in cols), spec.date)
    reporter.message(
        f"Read {len(frame):,} rows; text column [bold]{spec.text}[/bold]; "
        f"{len(seg.segments_)} segments from {model_dir}"
    )
    beh_run = None
    if with_files:
        from nlp_seg.runs.behavior_job import assign_with_behavior

        if spec.id is None and saved is not None and saved.id is not None:
            raise InputError(
                f"{source_name(input_path)} has no column {saved.id!r} (the customer id the "
                "model was fitted with); name the id column with --id-col"
            )
        beh_run = assign_with_behavior(
            seg, frame, spec, behavior_options, source_name(input_path), timer
        )
        warnings.extend(beh_run.warnings)
        assignments = beh_run.table[list(ASSIGNMENT_COLUMNS)]
    else:
        with timer("assign"):
            assignments = seg.predict(frame[spec.text].tolist(), behavior=behavior)
    out = Path(out_dir)
    with timer("write"):
        if beh_run is not None:
            merged = beh_run.table
        else:
            merged = merge_input_and_assignments(frame, assignments, ASSIGNMENT_COLUMNS)
        unit_id = "customer_id" if beh_run is not None and "customer_id" in merged else None
        merged, _, personal = personalise_run(merged, seg, spec, beh_run, unit_id)
        # last, so the contract columns keep their places
        if beh_run is not None and beh_run.block is not None:
            merged["behavior_missing"] = missing_behavior(beh_run.block).to_numpy()
        elif behavior is not None:
            merged["behavior_missing"] = missing_behavior(behavior).to_numpy()
        files = [out / "assignments.csv", out / "assignments.parquet"]
        write_csv(merged, files[0])
        write_parquet(merged, files[1])
    seconds = {**timer.seconds, "total": round(time.perf_counter() - t0, 3)}
    status = status_counts(merged["status"])
    info = _run_info(
        "assign",
        input_path,
        spec,
        seg,
        len(frame),
        len(merged),
        status,
        seconds,
        warnings,
        started,
        frame,
    )
    info["model_dir"] = str(model_dir)
    info["saved_models"] = seg.model_info_
    info["personalisation"] = personal
    if beh_run is not None:
        info["behavior"] = beh_run.info
    elif setup:
        info["behavior"] = {"unit": "review", "placement": "text-only", "saved": setup}
    write_json(info, out / "run.json")
    files.append(out / "run.json")
    novel = int(merged["is_outlier"].sum())
    if novel:
        warnings.append(
            f"{novel} rows are flagged is_outlier=true (unlike every fitted row, or among "
            "the fit's outliers); each is still placed in its nearest segment: check them"
        )
    # The summary describes the new rows: segments that received some, with the new rows'
    # own size, share and mean sentiment (not the training profile's).
    ids = assignments["segment_id"].to_numpy()
    scores = pd.to_numeric(assignments["sentiment_score"], errors="coerce").to_numpy()
    segments = []
    for s in seg.segments_:
        members = ids == s["id"]
        if not members.any():
            continue
        finite = np.isfinite(scores[members])
        mean = round(float(np.nanmean(scores[members])), 4) if finite.any() else None
        segments.append(
            {
                **s,
                "size": int(members.sum()),
                "sentiment": {**s["sentiment"], "mean_score": mean},
            }
        )
    total = max(sum(s["size"] for s in segments), 1)
    for s in segments:
        s["share"] = round(s["size"] / total, 4)
    return RunResult(
        out,
        files,
        len(frame),
        len(merged),
        status,
        segments,
        warnings,
        seconds["total"],
        unit_of(beh_run),
    )
