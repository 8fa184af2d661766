"""Saving a fitted segmenter to a folder and loading it back to label new rows the same way.

A model folder holds::

    segmenter.json        format version, config, model ids + checksums, input columns,
                          behaviour scaler and fuser state, novelty radius, segment profiles,
                          and for --orders/--events runs the behaviour setup (unit, block
                          columns, reference date, tier thresholds, CLV parameters)
    arrays.safetensors    the fit sample's fused vectors, segments and outlier flags, with
                          which new rows are placed (see nlp_seg.novelty)
    reducer.joblib        the fitted UMAP reducer          (pickle: see below)
    clusterer.joblib      the fitted HDBSCAN clusterer, with its prediction data
    manifest.json         SHA-256 of every file above

Everything that can be plain data is JSON or safetensors, formats that cannot run code. UMAP
(its neighbour graph and search index) and HDBSCAN (its condensed tree and prediction data)
have no such format, so they are stored with joblib, which is pickle: **loading a pickle can
run code, so only load model folders from a source you trust.** As a guard against corrupted
or swapped files, :func:`load_segmenter` checks every file against ``manifest.json`` *before*
unpickling anything and refuses a folder whose hashes do not match. (The manifest detects
accidents and naive tampering; it is not a signature: whoever can write the folder can rewrite
the manifest too.)

The embedding and sentiment models are not copied (hundreds of MB); the folder records their
ids and a checksum of their files, and loading refuses a model whose files changed, because a
different encoder would silently move every row to other segments.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from nlp_seg.errors import NlpsegError

log = logging.getLogger(__name__)

FORMAT = "nlpseg-segmenter"
FORMAT_VERSION = 1
STATE_FILE = "segmenter.json"
ARRAYS_FILE = "arrays.safetensors"
REDUCER_FILE = "reducer.joblib"
CLUSTERER_FILE = "clusterer.joblib"
MANIFEST_FILE = "manifest.json"
PICKLE_FILES = (REDUCER_FILE, CLUSTERER_FILE)


class ModelFolderError(NlpsegError):
    """A saved-segmenter folder is missing, incomplete, tampered with or from another version."""


# ---------------------------------------------------------------------------- hashing
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_fingerprint(folder: str | Path) -> str:
    """One SHA-256 over every file of a model folder (relative path + content hash, sorted), so
    the same model copied elsewhere has the same fingerprint."""
    root = Path(folder)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        rel = p.relative_to(root).as_posix()
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue  # editor/VCS/lock files are not the model
        h.update(rel.encode("utf-8") + b"\0" + file_sha256(p).encode("ascii") + b"\n")
    return h.hexdigest()


def _slot_folder(slot: Any) -> Path | None:
    """The local folder a loaded embedder / sentiment scorer read its weights from, if any."""
    if slot is None:
        return None
    path = getattr(slot, "_path", None)
    if path is None:
        model_id = getattr(slot, "model_id", None)
        if isinstance(model_id, str) and not model_id.startswith("bundled:"):
            candidate = Path(model_id).expanduser()
            path = candidate if candidate.is_dir() else None
    return Path(path) if path is not None and Path(path).is_dir() else None


def _model_record(slot: Any, model_id: str) -> dict[str, Any]:
    folder = _slot_folder(slot)
    return {
        "id": model_id,
        "path": str(folder) if folder else None,
        "sha256": folder_fingerprint(folder) if folder else None,
    }


# ---------------------------------------------------------------------------- save
def save_segmenter(seg: Any, path: str | Path, columns: Any = None) -> Path:
    """Write a fitted :class:`~nlp_seg.pipeline.Segmenter` to folder ``path`` (created; files
    of an earlier save there are replaced). ``columns`` is the input's
    :class:`~nlp_seg.input.ColumnSpec`, so ``nlpseg assign`` reads new files the same way."""
    import joblib
    from safetensors.numpy import save_file

    from nlp_seg import __version__
    from nlp_seg.export import package_versions

    if not hasattr(seg, "segments_"):
        raise NlpsegError("this segmenter is not fitted yet; call fit before save")
    if not hasattr(seg, "fuser_"):
        raise NlpsegError("nothing was segmented (no row had text), so there is nothing to save")
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise NlpsegError(f"--save-model must be a folder, but {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    emb_id, sent_id = seg.config.resolved_models()
    columns = columns if columns is not None else getattr(seg, "columns_", None)
    neighbours = getattr(seg, "neighbours_", None)
    arrays: dict[str, np.ndarray] = {}
    neighbour_params = None
    if neighbours is not None:
        neighbour_params, arrays = neighbours.to_state()
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "nlpseg_version": __version__,
        "versions": package_versions(),
        "config": asdict(seg.config),
        "models": {
            "embedding": _model_record(seg.embedder, emb_id),
            "sentiment": _model_record(seg.sentiment, sent_id),
        },
        "columns": _columns_dict(columns),
        "behavior_scaler": seg.behavior_scaler_.to_dict() if seg.behavior_scaler_ else None,
        "fuser": seg.fuser_.to_dict(),
        "neighbours": neighbour_params,
        "reducer": _describe(seg.reducer),
        "clusterer": _describe(seg.clusterer),
        "fit": {
            "rows": int(getattr(seg, "n_rows_in_", 0)),
            "scored": int(getattr(seg, "n_scored_", 0)),
            "fit_sample_size": int(getattr(seg, "fit_sample_size_", 0)),
        },
        "segments": seg.segments_,
        # --orders/--events runs: unit, behaviour feature columns, reference date, tier
        # thresholds and CLV parameters, so `nlpseg assign --orders` computes the same features.
        "behavior": getattr(seg, "behavior_setup_", None),
    }
    from nlp_seg.export import write_json

    write_json(state, out / STATE_FILE)
    if arrays:
        save_file(arrays, str(out / ARRAYS_FILE))
    elif (out / ARRAYS_FILE).exists():
        (out / ARRAYS_FILE).unlink()
    joblib.dump(seg.reducer, out / REDUCER_FILE, compress=3)
    joblib.dump(seg.clusterer, out / CLUSTERER_FILE, compress=3)
    names = [STATE_FILE, REDUCER_FILE, CLUSTERER_FILE] + ([ARRAYS_FILE] if arrays else [])
    manifest = {
        "format": FORMAT,
        "algorithm": "sha256",
        "files": {name: file_sha256(out / name) for name in sorted(names)},
        "note": "reducer.joblib and clusterer.joblib are pickles: load this folder only if you "
        "trust where it came from. nlpseg refuses any file whose hash differs from this list.",
    }
    write_json(manifest, out / MANIFEST_FILE)
    return out


def _describe(slot: Any) -> dict[str, Any] | None:
    if slot is None:
        return None
    info = slot.describe() if hasattr(slot, "describe") else {}
    return {"class": f"{type(slot).__module__}.{type(slot).__qualname__}", **info}


def _columns_dict(columns: Any) -> dict[str, Any] | None:
    if columns is None:
        return None
    d = asdict(columns)
    d["behavior"] = list(d.get("behavior") or ())
    return d


# ---------------------------------------------------------------------------- load
def verify_folder(path: str | Path) -> dict[str, str]:
    """Check every file of a model folder against its manifest; the manifest's file map.

    Raises :class:`ModelFolderError` naming the first file that is missing or differs.
    """
    root = Path(path)
    if not root.is_dir():
        raise ModelFolderError(f"model folder not found: {root}")
    mpath = root / MANIFEST_FILE
    if not mpath.is_file():
        raise ModelFolderError(
            f"{root} has no {MANIFEST_FILE}; it was not written by `nlpseg analyze --save-model`"
        )
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"{mpath} is not a valid manifest") from exc
    for required in (STATE_FILE, *PICKLE_FILES):
        if required not in files:
            raise ModelFolderError(f"{mpath} does not list {required}; refusing to load")
    for name, expected in files.items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise ModelFolderError(f"{mpath} lists an unexpected file {name!r}; refusing to load")
        p = root / name
        if not p.is_file():
            raise ModelFolderError(f"{p} is missing from the model folder")
        actual = file_sha256(p)
        if actual != expected:
            raise ModelFolderError(
                f"{p} does not match its SHA-256 in {MANIFEST_FILE} (expected {expected[:12]}..., "
                f"found {actual[:12]}...); the folder was changed after it was saved, refusing "
                "to load it"
            )
    return files


def load_segmenter(
    path: str | Path,
    *,
    device: str | None = None,
    batch_size: int | None = None,
    cache_dir: str | None = None,
    verify_models: bool = True,
    reporter: Any = None,
) -> Any:
    """A fitted :class:`~nlp_seg.pipeline.Segmenter` from a folder written by
    :func:`save_segmenter`, ready for ``predict``.

    The folder's files are checked against ``manifest.json`` before anything is unpickled.
    With ``verify_models`` the embedding and sentiment models are loaded now and their files
    compared with the checksums recorded at save time (a mismatch is an error: the segments
    would not mean the same). ``device`` / ``batch_size`` / ``cache_dir`` override the saved
    run settings, which describe the machine it was fitted on, not this one.
    """
    import joblib
    from safetensors.numpy import load_file

    from nlp_seg.behavior import BehaviorScaler
    from nlp_seg.fusion import BlockFuser
    from nlp_seg.novelty import FitNeighbours
    from nlp_seg.pipeline import Segmenter, SegmenterConfig

    root = Path(path)
    files = verify_folder(root)
    state = json.loads((root / STATE_FILE).read_text(encoding="utf-8"))
    if state.get("format") != FORMAT:
        raise ModelFolderError(f"{root / STATE_FILE} is not an nlpseg segmenter")
    if int(state.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFolderError(
            f"{root} was saved by a newer nlpseg (format {state['format_version']}); upgrade nlpseg"
        )
    known = {f.name for f in fields(SegmenterConfig)}
    cfg = SegmenterConfig(**{k: v for k, v in state["config"].items() if k in known})
    if device is not None:
        cfg.device = device
    if batch_size is not None:
        cfg.batch_size = batch_size
    cfg.cache_dir = cache_dir
    # Pin the exact models the segmenter was fitted with, whatever the profile means today.
    cfg.embedding_model = state["models"]["embedding"]["id"]
    cfg.sentiment_model = state["models"]["sentiment"]["id"]

    reducer = joblib.load(root / REDUCER_FILE)
    clusterer = joblib.load(root / CLUSTERER_FILE)
    seg = Segmenter(cfg, reducer=reducer, clusterer=clusterer, reporter=reporter)
    seg.fuser_ = BlockFuser.from_dict(state["fuser"])
    scaler = state.get("behavior_scaler")
    seg.behavior_scaler_ = BehaviorScaler.from_dict(scaler) if scaler else None
    seg.neighbours_ = None
    if state.get("neighbours") and ARRAYS_FILE in files:
        arrays = load_file(str(root / ARRAYS_FILE))
        seg.neighbours_ = FitNeighbours.from_state(state["neighbours"], arrays)
    seg.segments_ = state["segments"]
    seg.columns_ = _columns_from(state.get("columns"))
    seg.behavior_setup_ = state.get("behavior")
    seg.model_info_ = state["models"]
    seg.saved_state_ = {k: state[k] for k in ("nlpseg_version", "versions", "fit") if k in state}
    seg.fit_sample_size_ = int(state.get("fit", {}).get("fit_sample_size", 0))
    if verify_models:
        check_models(seg)
    return seg


def _columns_from(d: dict[str, Any] | None) -> Any:
    if not d:
        return None
    from nlp_seg.input import ColumnSpec

    known = {f.name for f in fields(ColumnSpec)}
    kw = {k: v for k, v in d.items() if k in known}
    kw["behavior"] = tuple(kw.get("behavior") or ())
    return ColumnSpec(**kw)


def check_models(seg: Any) -> None:
    """Load the segmenter's models and compare their files with the saved checksums."""
    saved = seg.model_info_
    for kind, slot_fn in (("embedding", seg._embedder), ("sentiment", seg._sentiment)):
        expected = saved.get(kind, {}).get("sha256")
        slot = slot_fn()
        if not expected:
            continue  # a hub model read from the Hugging Face cache: only its id is recorded
        if hasattr(slot, "_load"):
            slot._load()
        folder = _slot_folder(slot)
        if folder is None:
            raise ModelFolderError(
                f"the {kind} model {saved[kind]['id']!r} this segmenter was fitted with is not "
                "a local folder here; install or prepare it first (nlpseg models prepare)"
            )
        actual = folder_fingerprint(folder)
        if actual != expected:
            raise ModelFolderError(
                f"the {kind} model at {folder} differs from the one this segmenter was fitted "
                f"with (checksum {actual[:12]}... vs {expected[:12]}...); its segments would not "
                "mean the same, so re-fit (nlpseg analyze --save-model) with this model"
            )
