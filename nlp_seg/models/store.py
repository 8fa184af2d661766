"""The saved-segmenter folder on disk: JSON state, safetensors arrays, a manifest of hashes.

A model folder holds::

    segmenter.json        format version, config, model ids + checksums, input columns, and
                          every stage's learned state as plain data (behaviour scaler and
                          setup, fuser, placement parameters, segment profiles)
    arrays.safetensors    the fit sample's fused vectors, segments and outlier flags, from
                          which new rows are placed (see nlp_seg.stages.placement)
    manifest.json         SHA-256 of every file above

Only formats that cannot run code are written or read: JSON and safetensors. UMAP and HDBSCAN
objects are not stored at all; new rows are placed from the stored arrays, so a folder loads
on other library versions and a folder from a stranger cannot run code. Any other file in the
folder (a ``*.joblib`` or ``*.pkl`` left by an older nlpseg, or planted) is never opened. The
manifest catches accidents and swapped files; it is not a signature.

This module only reads and writes files; :func:`nlp_seg.segmenter.load_segmenter` turns the
state back into a :class:`~nlp_seg.segmenter.Segmenter`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from nlp_seg.errors import NlpsegError

log = logging.getLogger(__name__)

FORMAT = "nlpseg-segmenter"
FORMAT_VERSION = 2
STATE_FILE = "segmenter.json"
ARRAYS_FILE = "arrays.safetensors"
MANIFEST_FILE = "manifest.json"
KNOWN_FILES = (STATE_FILE, ARRAYS_FILE)


class ModelFolderError(NlpsegError):
    """A saved-segmenter folder is missing, incomplete, tampered with or from another version."""


# ---------------------------------------------------------------------------- hashing
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: nlpseg's record of converting the bundled encoder (timings, sources): not the model, and
#: different on every machine that converts it (``nlp_seg.models.bundled.MANIFEST``).
CONVERSION_RECORD = "nlpseg_manifest.json"


def folder_fingerprint(folder: str | Path, legacy: bool = False) -> str:
    """One SHA-256 over every file of a model folder (relative path + content hash, sorted), so
    the same model copied elsewhere, or converted again on another machine, has the same
    fingerprint. ``legacy`` also hashes the conversion record, as nlpseg 0.1 did when saving."""
    root = Path(folder)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        rel = p.relative_to(root).as_posix()
        if any(part.startswith(".") for part in p.relative_to(root).parts):
            continue  # editor/VCS/lock files are not the model
        if rel == CONVERSION_RECORD and not legacy:
            continue
        h.update(rel.encode("utf-8") + b"\0" + file_sha256(p).encode("ascii") + b"\n")
    return h.hexdigest()


def slot_folder(slot: Any) -> Path | None:
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


def model_record(slot: Any, model_id: str) -> dict[str, Any]:
    folder = slot_folder(slot)
    return {
        "id": model_id,
        "path": str(folder) if folder else None,
        "sha256": folder_fingerprint(folder) if folder else None,
    }


# ---------------------------------------------------------------------------- write
def write_folder(path: str | Path, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``state`` (JSON) and ``arrays`` (safetensors) to folder ``path`` with a manifest.

    Files of an earlier save there are replaced; stale pickles an older nlpseg wrote are
    removed so nobody mistakes them for part of the model.
    """
    from safetensors.numpy import save_file

    from nlp_seg.io.write import write_json

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise NlpsegError(f"--save-model must be a folder, but {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("reducer.joblib", "clusterer.joblib"):
        (out / stale).unlink(missing_ok=True)
    write_json({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, out / STATE_FILE)
    names = [STATE_FILE]
    if arrays:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(out / ARRAYS_FILE))
        names.append(ARRAYS_FILE)
    else:
        (out / ARRAYS_FILE).unlink(missing_ok=True)
    manifest = {
        "format": FORMAT,
        "algorithm": "sha256",
        "files": {name: file_sha256(out / name) for name in sorted(names)},
        "note": "JSON and safetensors only: nothing in this folder is code. nlpseg refuses any "
        "file whose hash differs from this list and never opens files not listed.",
    }
    write_json(manifest, out / MANIFEST_FILE)
    return out


# ---------------------------------------------------------------------------- read
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
    for required in (STATE_FILE,):
        if required not in files:
            raise ModelFolderError(f"{mpath} does not list {required}; refusing to load")
    for name, expected in files.items():
        if name not in KNOWN_FILES:
            raise ModelFolderError(
                f"{mpath} lists an unexpected file {name!r} (a saved segmenter holds only "
                f"{', '.join(KNOWN_FILES)}); refusing to load"
            )
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


def read_folder(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The state and arrays of a verified model folder (see :func:`verify_folder`)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    root = Path(path)
    files = verify_folder(root)
    try:
        state = json.loads((root / STATE_FILE).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelFolderError(f"{root / STATE_FILE} is not valid JSON") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ModelFolderError(f"{root / STATE_FILE} is not an nlpseg segmenter")
    version = int(state.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise ModelFolderError(
            f"{root} was saved by a newer nlpseg (format {version}); upgrade nlpseg"
        )
    if version < FORMAT_VERSION:
        raise ModelFolderError(
            f"{root} was saved by an older nlpseg (format {version}, which stored UMAP and "
            "HDBSCAN as pickles); re-fit it with nlpseg analyze --save-model"
        )
    arrays: dict[str, np.ndarray] = {}
    if ARRAYS_FILE in files:
        try:
            arrays = load_file(str(root / ARRAYS_FILE))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelFolderError(f"{root / ARRAYS_FILE} is not a valid safetensors file") from exc
    return state, arrays
