"""``nlpseg refresh`` and ``nlpseg compare``: segments followed from one period to the next.

A refresh fits the new period's rows with the saved segmenter's settings and models, keeps
its segment ids where segments share most of their members (:meth:`Segmenter.refresh
<nlp_seg.segmenter.Segmenter.refresh>`), and writes a normal run folder plus ``drift.json``,
``movers.csv`` and the movers' audiences (:mod:`nlp_seg.runs.drift`). ``compare`` writes the
same drift files for two finished run folders.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nlp_seg.errors import InputError
from nlp_seg.progress import Reporter, SilentReporter
from nlp_seg.runs.drift import compare_runs, load_run, write_drift_outputs
from nlp_seg.runs.jobs import RefreshContext, RunResult, TimeOptions, analyze_file
from nlp_seg.segmenter import load_segmenter


def refresh_file(
    input_path: str | Path,
    out_dir: str | Path,
    model_dir: str | Path,
    *,
    previous_run: str | Path | None = None,
    text_col: str | None = None,
    id_col: str | None = None,
    encoding: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    batch_size: int | None = None,
    cache_dir: str | None = None,
    lang: str | None = None,
    reporter: Reporter | None = None,
    save_model: str | Path | None = None,
    behavior_options: Any = None,
    audiences: bool = True,
    audience_options: Any = None,
    report: bool = True,
    time_options: TimeOptions | None = None,
    to_db: Any = None,
) -> RunResult:
    """Refit on ``input_path`` (the new period) keeping the ids of the segmenter saved in
    ``model_dir``; ``previous_run`` (that segmenter's run folder) adds movers and complaint
    terms. Everything else is as :func:`~nlp_seg.runs.jobs.analyze_file`."""
    reporter = reporter or SilentReporter()
    before = load_run(previous_run) if previous_run is not None else None
    previous = load_segmenter(
        model_dir,
        device=device,
        precision=precision,
        batch_size=batch_size,
        cache_dir=cache_dir,
        reporter=reporter,
    )
    config = dataclasses.replace(previous.config, cache_dir=cache_dir)
    if lang:
        config.lang = lang
    setup = previous.behavior_setup_ or {}
    active = behavior_options is not None and behavior_options.active
    if setup and not active:
        raise InputError(
            f"the segmenter in {model_dir} was fitted with orders/events (unit "
            f"{setup.get('unit', 'review')}); pass the new period's --orders/--events too"
        )
    if active and setup.get("unit") and behavior_options.unit != setup["unit"]:
        behavior_options.unit = setup["unit"]  # the saved unit: segments are of one kind
    columns = previous.columns_
    result = analyze_file(
        input_path,
        out_dir,
        config,
        text_col=text_col,
        id_col=id_col,
        behavior_cols=list(columns.behavior) if columns is not None and columns.behavior else None,
        encoding=encoding,
        reporter=reporter,
        save_model=save_model,
        behavior_options=behavior_options,
        audiences=audiences,
        audience_options=audience_options,
        report=report,
        time_options=time_options,
        refresh=RefreshContext(previous, str(model_dir), before),
        to_db=to_db,
    )
    return result


def compare_folders(
    run_a: str | Path,
    run_b: str | Path,
    out_dir: str | Path,
    audience_options: Any = None,
) -> tuple[dict[str, Any], list[Path]]:
    """``nlpseg compare``: ``drift.json``, ``movers.csv`` and movers' audiences from run
    folder ``run_a`` (earlier) to ``run_b`` (later), written to ``out_dir``."""
    before, after = load_run(run_a), load_run(run_b)
    drift, moved = compare_runs(before, after)
    out = Path(out_dir)
    files = write_drift_outputs(out, drift, moved, after, audience_options)
    return drift, files
