"""The batch engine's work folder and the stage functions both engines share.

``OUT/_work`` holds each stage's files and a marker written last (see :mod:`nlp_seg.runs.batch`
for the stages): the inputs planned and read in exact chunks, each chunk's encoding, the fit on
the seeded sample (a saved segmenter folder: JSON + safetensors, never a pickle) and each
chunk's placed part. :mod:`nlp_seg.runs.batch` (local engine) and
:mod:`nlp_seg.runs.batch_ray` (Ray engine) both import from here, and not from each other.
"""

from __future__ import annotations

import codecs
import fcntl
import glob
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nlp_seg.errors import InputError, NlpsegError
from nlp_seg.io.read import (
    ColumnSpec,
    detect_columns,
    detect_encoding,
    restore_numeric,
    runaway_quote,
    sniff_delimiter,
    value_shape,
)
from nlp_seg.io.write import (
    TEMP_SUFFIX,
    atomic_write,
    file_sha256,
    fsync_dir,
    fsync_tree,
    write_json,
)
from nlp_seg.normalize import STATUS_OK, normalize_texts
from nlp_seg.progress import Reporter, StageTimer
from nlp_seg.segmenter import ASSIGNMENT_COLUMNS, Segmenter, SegmenterConfig, build_assignments
from nlp_seg.stages.placement import fit_sample

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
DETECT_ROWS = 10_000
WORK = "_work"
# 2: inputs fingerprinted by content (SHA-256), not by size and mtime.
FORMAT_VERSION = 2

CONTRACT_SCHEMA = pa.schema(
    [
        ("sentiment_label", pa.string()),
        ("sentiment_score", pa.float64()),
        ("sentiment_confidence", pa.float64()),
        ("segment_id", pa.int64()),
        ("segment_name", pa.string()),
        ("segment_probability", pa.float64()),
        ("is_outlier", pa.bool_()),
        ("status", pa.string()),
        ("aspects", pa.string()),
        ("sentiment_mixed", pa.bool_()),
    ]
)
assert tuple(CONTRACT_SCHEMA.names) == ASSIGNMENT_COLUMNS

# Settings that change what pass 1 stores: a mismatch means the stored chunks are unusable.
ENCODE_KEYS = (
    "profile",
    "embedding_model",
    "sentiment_model",
    "max_seq_length",
    "max_chars",
    "lowercase",
    "restore_diacritics",
    "noise_filter",
    "precision",
)
# Settings that change only the fit and the placement: a mismatch refits, reusing pass 1.
FIT_KEYS = (
    "weights",
    "aspects",
    "min_cluster_size",
    "min_samples",
    "n_components",
    "n_neighbors",
    "seed",
    "keep_outliers",
    "merge_similar",
    "fit_sample_size",
    "playbook",
    "lang",
)


@dataclass
class BatchOptions:
    """How ``nlpseg batch`` runs (as opposed to what it computes, in ``SegmenterConfig``)."""

    chunk_size: int = 50_000
    engine: str = "local"
    write_csv: bool = True
    restart: bool = False
    clean: bool = False
    ray_address: str | None = None
    workers: int | None = None


# --------------------------------------------------------------------------- inputs
@dataclass
class InputFile:
    path: Path
    sep: str | None = None
    encoding: str | None = None
    #: A database source: its redacted URL and rows (``path`` is then its Parquet snapshot).
    source: str | None = None
    rows: int | None = None
    label: str | None = None
    _sha256: str | None = field(default=None, repr=False)
    _stat: tuple[int, int, int, int] | None = field(default=None, repr=False)

    def _stat_key(self) -> tuple[int, int, int, int]:
        st = self.path.stat()
        # ctime cannot be set back by a user (os.utime moves it to now), so an edit in place
        # with the size and mtime restored still changes this key.
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    @property
    def sha256(self) -> str:
        """SHA-256 of the file's bytes, computed once per run (the work folder's fingerprint of
        this input and the hash ``run.json`` records)."""
        if self._sha256 is None:
            before = self._stat_key()
            digest = file_sha256(self.path)
            if self._stat_key() != before:
                raise InputError(f"{self.path.name} changed while it was being read; try again")
            self._sha256, self._stat = digest, before
        return self._sha256

    def check_unchanged(self) -> None:
        """Refuse a file written to since it was hashed: its chunks would mix two versions."""
        if self._stat is not None and self._stat_key() != self._stat:
            raise NlpsegError(
                f"{self.path.name} changed while nlpseg batch was reading it, so the stored "
                "chunks mix two versions of it; run again with --restart"
            )


@dataclass
class InputPlan:
    """The files of a batch run, their common format and columns, and the detected roles."""

    files: list[InputFile]
    fmt: str
    columns: list[str]
    spec: ColumnSpec
    schema: pa.Schema = field(repr=False)
    raw_columns: list[str] = field(default_factory=list)  # CSV header as written (unstripped)

    def fingerprint(self) -> list[dict[str, Any]]:
        """Each input's path, size and SHA-256 (by content: an input edited in place with its
        size and mtime restored is still another input). A database source is its redacted
        URL (with the query), its row count and the SHA-256 of the snapshot of its rows."""
        return [
            {"path": str(f.path), "size": f.path.stat().st_size, "sha256": f.sha256}
            if f.source is None
            else {
                "path": f.source,
                "rows": f.rows,
                "sha256": f.sha256,
                "snapshot": str(f.path),
            }
            for f in self.files
        ]

    def check_unchanged(self) -> None:
        for f in self.files:
            f.check_unchanged()


def expand_inputs(patterns: Sequence[str | Path]) -> list[Path]:
    """Files from paths, folders (their supported files, sorted) and globs (sorted matches)."""
    files: list[Path] = []
    suffixes = CSV_SUFFIXES + PARQUET_SUFFIXES
    for pat in patterns:
        p = Path(pat).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in suffixes)
            if not found:
                raise InputError(f"no CSV, TSV or Parquet files in folder {p}")
            files.extend(found)
        elif p.exists():
            files.append(p)
        elif glob.has_magic(str(pat)):
            found = sorted(Path(m) for m in glob.glob(str(p), recursive=True) if Path(m).is_file())
            if not found:
                raise InputError(f"no files match {pat}")
            files.extend(found)
        else:
            raise InputError(f"input file not found: {p}")
    resolved = [f.resolve() for f in files]
    dup = {str(f) for f in resolved if resolved.count(f) > 1}
    if dup:
        raise InputError(f"input listed more than once: {', '.join(sorted(dup))}")
    if not resolved:
        raise InputError("no input files given")
    return resolved


SNAPSHOT_DIR = "_source"


def snapshot_input(url: str, out: Path, chunk_rows: int) -> InputFile:
    """A database source as a batch input: its rows copied chunk by chunk to
    ``OUT/_source/<table>.parquet`` (bounded memory), which the run then streams and
    fingerprints like any Parquet input, so a resumed run reads the very rows it started on
    when the database returns the same rows in the same order."""
    from nlp_seg.io.database import parse_url, redact_url, snapshot_to_parquet, source_name

    src = parse_url(url)
    dest = out / SNAPSHOT_DIR / f"{src.table or 'query'}.parquet"
    rows = snapshot_to_parquet(url, dest, chunk_rows)
    return InputFile(dest.resolve(), source=redact_url(url), rows=rows, label=source_name(url))


def _sniff_encoding(path: Path, encoding: str | None) -> str:
    """UTF-8 (BOM stripped) when the file's head decodes as UTF-8, else the detected one."""
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError as exc:
            raise InputError(f"unknown encoding {encoding!r}") from exc
        return encoding
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8-sig"
    except UnicodeDecodeError:
        pass
    encoding = detect_encoding(head, path.name)
    log.warning("%s is not UTF-8; decoded as %s (use --encoding to override)", path.name, encoding)
    return encoding


def _csv_reader(f: InputFile, chunk_size: int, nrows: int | None = None) -> Any:
    return pd.read_csv(
        f.path,
        sep=f.sep,
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        skip_blank_lines=True,
        encoding=f.encoding,
        chunksize=chunk_size,
        nrows=nrows,
    )


def _string_schema(columns: list[str]) -> pa.Schema:
    return pa.schema([(c, pa.string()) for c in columns])


def plan_inputs(
    paths: Sequence[str | Path],
    text_col: str | None = None,
    id_col: str | None = None,
    behavior_cols: list[str] | None = None,
    encoding: str | None = None,
    *,
    out: Path | None = None,
    chunk_rows: int = 50_000,
    date_col: str | None = None,
) -> InputPlan:
    """Check the inputs share one format and one set of columns; detect the column roles.

    CSV cells are kept as the strings that were typed (ids keep their zeros and every chunk
    has the same column types); Parquet keeps its own types. Roles are detected on the first
    rows of the first file, as ``analyze`` would. One database URL is read through a
    snapshot under ``out`` (:func:`snapshot_input`).
    """
    from nlp_seg.io.database import is_database_url

    if any(is_database_url(p) for p in paths):
        if len(paths) != 1 or out is None:
            raise InputError("nlpseg batch reads one database source, not several or with files")
        files = [snapshot_input(str(paths[0]), out, chunk_rows)]
    else:
        files = [InputFile(p) for p in expand_inputs(paths)]
    readable = CSV_SUFFIXES + PARQUET_SUFFIXES
    kinds = {
        "parquet" if f.path.suffix.lower() in PARQUET_SUFFIXES else "csv"
        for f in files
        if f.path.suffix.lower() in readable
    }
    unknown = [f.path.name for f in files if f.path.suffix.lower() not in readable]
    if unknown:
        raise InputError(
            f"nlpseg batch reads CSV, TSV and Parquet; cannot stream {', '.join(unknown)} "
            "(convert it to Parquet, or use nlpseg analyze)"
        )
    if len(kinds) > 1:
        raise InputError("batch inputs must all be CSV/TSV or all Parquet, not a mix")
    fmt = kinds.pop()
    for f in files:
        if f.path.stat().st_size == 0:
            raise InputError(f"input file is empty: {f.path}")
    head: pd.DataFrame
    if fmt == "csv":
        columns: list[str] | None = None
        raw_columns: list[str] = []
        for f in files:
            f.encoding = _sniff_encoding(f.path, encoding)
            if f.path.suffix.lower() == ".tsv":
                f.sep = "\t"
            else:
                with open(f.path, encoding=f.encoding, errors="replace") as fh:
                    f.sep = sniff_delimiter(fh.read(65536))
            try:
                raw = [str(c) for c in _csv_reader(f, 1, nrows=1).get_chunk().columns]
                cols = [c.strip() for c in raw]
            except (ValueError, pd.errors.ParserError, StopIteration) as exc:
                raise _read_error(f, exc) from exc
            if columns is None:
                columns, raw_columns = cols, raw
            elif cols != columns:
                raise InputError(
                    f"{f.path.name} has columns {cols}, but {files[0].path.name} has {columns}; "
                    "batch inputs must share their columns"
                )
        assert columns is not None
        schema = _string_schema(columns)
        try:
            head = next(iter(_csv_reader(files[0], DETECT_ROWS, nrows=DETECT_ROWS)))
        except StopIteration as exc:
            raise InputError(f"input file has no rows: {files[0].path}") from exc
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise _read_error(files[0], exc) from exc
        head.columns = columns
        head = restore_numeric(head)
    else:
        schema = None
        for f in files:
            try:
                sch = pq.read_schema(f.path)
            except (OSError, pa.ArrowInvalid) as exc:
                raise InputError(f"cannot read {f.path.name}: {exc}".splitlines()[0]) from exc
            sch = pa.schema([fld for fld in sch if fld.name != "__index_level_0__"])
            if schema is None:
                schema = sch
            elif sch.names != schema.names:
                raise InputError(
                    f"{f.path.name} has columns {sch.names}, but {files[0].path.name} has "
                    f"{schema.names}; batch inputs must share their columns"
                )
        assert schema is not None
        columns = [str(c) for c in schema.names]
        raw_columns = columns
        pf = pq.ParquetFile(files[0].path)
        first = next(pf.iter_batches(batch_size=DETECT_ROWS, columns=columns), None)
        if first is None:
            raise InputError(f"input file has no rows: {files[0].path}")
        head = first.to_pandas()
    spec = detect_columns(
        head, text_col=text_col, id_col=id_col, behavior_cols=behavior_cols, date_col=date_col
    )
    return InputPlan(files, fmt, columns, spec, schema, raw_columns)


def _refuse_runaway_quotes(frame: pd.DataFrame, f: InputFile, rows_before: int) -> None:
    """Stop on a cell where a quote left open swallowed the rows after it (read as one text
    they would be lost as rows); ``analyze`` and ``score`` read such a file row by row."""
    width = frame.shape[1]
    if width < 2:
        return
    firsts = frame.iloc[:64, 0].dropna().astype(str)
    shapes = {value_shape(v) for v in firsts if "\n" not in v and "\r" not in v}
    for j, col in enumerate(frame.columns):
        broken = frame[col].astype("string").str.contains("\n|\r", regex=True, na=False)
        for i in np.flatnonzero(broken.to_numpy(dtype=bool)):
            row = ["" if pd.isna(v) else str(v) for v in frame.iloc[i].tolist()]
            # read leniently, a quote that closed with text after it stays in the cell
            if runaway_quote(row, f.sep or ",", width, shapes, lambda cell=row[j]: '"' in cell):
                raise InputError(_open_quote_message(f, f"row {rows_before + i + 1}", col))


def _read_error(f: InputFile, exc: BaseException) -> InputError:
    """A CSV the parser refused, in one line: a quote open to the end of the file said as
    such (pandas: "EOF inside string starting at row N")."""
    found = re.search(r"EOF inside string starting at row (\d+)", str(exc))
    if found:
        return InputError(_open_quote_message(f, f"row {found.group(1)}"))
    return InputError(f"cannot read {f.path.name}: {exc}".splitlines()[0])


def _open_quote_message(f: InputFile, where: str, col: str | None = None) -> str:
    cell = f"in its {col!r} cell " if col else ""
    return (
        f"{f.path.name} {where}: a quote opened {cell}runs on over lines that look like rows "
        "of their own; close the quote and rerun with --restart (nlpseg analyze and score read "
        "such a file row by row, with a warning)"
    )


def iter_file_tables(plan: InputPlan, chunk_size: int) -> Iterator[tuple[int, pa.Table]]:
    """``(file index, table)`` pieces of the inputs, in order, each at most ``chunk_size``."""
    for i, f in enumerate(plan.files):
        if plan.fmt == "csv":
            try:
                done = 0
                for frame in _csv_reader(f, chunk_size):
                    frame.columns = plan.columns
                    _refuse_runaway_quotes(frame, f, done)
                    done += len(frame)
                    yield i, pa.Table.from_pandas(frame, schema=plan.schema, preserve_index=False)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{f.path.name} is not valid {f.encoding} (byte {exc.start} of a block); "
                    "pass the right --encoding"
                ) from exc
            except (ValueError, pd.errors.ParserError) as exc:
                raise _read_error(f, exc) from exc
        else:
            pf = pq.ParquetFile(f.path)
            for rb in pf.iter_batches(batch_size=chunk_size, columns=plan.columns):
                table = pa.Table.from_batches([rb])
                if table.schema != plan.schema:
                    try:
                        table = table.cast(plan.schema)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                        raise InputError(
                            f"{f.path.name}: column types differ from {plan.files[0].path.name} "
                            f"({exc})".splitlines()[0]
                        ) from exc
                yield i, table


def iter_chunks(
    plan: InputPlan, chunk_size: int, rows_per_file: list[int] | None = None
) -> Iterator[pa.Table]:
    """Tables of exactly ``chunk_size`` rows (the last one shorter), across file boundaries."""
    pending: list[pa.Table] = []
    n_pending = 0
    for i, table in iter_file_tables(plan, chunk_size):
        if rows_per_file is not None:
            while len(rows_per_file) <= i:
                rows_per_file.append(0)
            rows_per_file[i] += table.num_rows
        pending.append(table)
        n_pending += table.num_rows
        while n_pending >= chunk_size:
            merged = pa.concat_tables(pending).combine_chunks()
            yield merged.slice(0, chunk_size)
            rest = merged.slice(chunk_size)
            pending, n_pending = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
    if n_pending:
        yield pa.concat_tables(pending).combine_chunks()


# --------------------------------------------------------------------------- encoding
@dataclass
class EncodedChunk:
    """What pass 1 keeps of a chunk: clean texts, status, float16 embeddings, probabilities."""

    clean: list[str]
    status: np.ndarray
    embeddings: np.ndarray
    probs: np.ndarray
    behavior: np.ndarray | None = None

    @property
    def ok(self) -> np.ndarray:
        return self.status == STATUS_OK


def behavior_matrix(table: pa.Table, columns: Sequence[str]) -> np.ndarray | None:
    """Behaviour columns as float64 (non-numbers become NaN, which the scaler imputes)."""
    if not columns:
        return None
    return np.column_stack(
        [
            pd.to_numeric(table.column(c).to_pandas(), errors="coerce").to_numpy(np.float64)
            for c in columns
        ]
    )


def encode_table(
    seg: Segmenter, table: pa.Table, spec: ColumnSpec, timer: StageTimer | None = None
) -> EncodedChunk:
    """Normalise, score and embed one chunk with the segmenter's models (both engines)."""
    timer = timer or StageTimer()
    with timer("normalize"):
        norm = normalize_texts(table.column(spec.text).to_pylist(), max_chars=seg.config.max_chars)
    status = np.array([n.status for n in norm], dtype=object)
    clean = [n.text for n in norm]
    ok = status == STATUS_OK
    n = len(clean)
    probs = np.full((n, 3), np.nan)
    emb = np.zeros((n, 0), np.float16)
    if ok.any():
        emb_ok, probs_ok = seg.encode([c for c, k in zip(clean, ok, strict=True) if k], timer)
        emb = np.zeros((n, emb_ok.shape[1]), np.float16)
        emb[ok] = emb_ok.astype(np.float16)
        probs[ok] = probs_ok
    # Texts that are not reviews: the same flags as analyze's (Segmenter.encode_rows).
    status = seg.flag_noise(clean, status, emb, timer)
    return EncodedChunk(clean, status, emb, probs, behavior_matrix(table, spec.behavior))


# --------------------------------------------------------------------------- work folder
def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    atomic_write(path, write)


def _save_table(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


class WorkDir:
    """``OUT/_work``: stage outputs and their markers; a stage's marker is written last."""

    def __init__(self, out_dir: Path) -> None:
        self.root = out_dir / WORK
        self.chunks = self.root / "chunks"
        self.fit = self.root / "fit"
        self.parts = self.root / "parts"
        self._lock: Any = None

    def lock(self) -> None:
        """Refuse a second run on the same folder (the kernel frees the lock if we are killed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.root / ".lock", "w")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise NlpsegError(
                f"another nlpseg batch is running on {self.root.parent}; wait for it or use "
                "another --out"
            ) from exc

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def chunk_dir(self, k: int) -> Path:
        return self.chunks / f"{k:06d}"

    def encoded(self, k: int) -> bool:
        return (self.chunk_dir(k) / "ENCODED").exists()

    def placed(self, k: int) -> bool:
        return (self.parts / f"{k:06d}.done").exists()

    def part(self, k: int) -> Path:
        return self.parts / f"{k:06d}.parquet"

    def save_encoded(self, k: int, table: pa.Table, enc: EncodedChunk) -> None:
        d = self.chunk_dir(k)
        _mkdir_durable(d)
        _save_table(d / "input.parquet", table)
        _save_table(
            d / "clean.parquet",
            pa.table(
                {
                    "text": pa.array(enc.clean, pa.string()),
                    "status": pa.array(enc.status.tolist(), pa.string()),
                }
            ),
        )
        _save_npy(d / "emb.npy", enc.embeddings)
        _save_npy(d / "probs.npy", np.asarray(enc.probs, np.float64))
        if enc.behavior is not None:
            _save_npy(d / "beh.npy", enc.behavior)
        # Each file above was fsynced with its folder (atomic_write): the marker is written last.
        write_json({"rows": table.num_rows}, d / "ENCODED")

    def load_encoded(self, k: int, mmap: bool = False) -> EncodedChunk:
        d = self.chunk_dir(k)
        clean = pq.read_table(d / "clean.parquet")
        mode = "r" if mmap else None
        beh = np.load(d / "beh.npy", mmap_mode=mode) if (d / "beh.npy").exists() else None
        return EncodedChunk(
            clean.column("text").to_pylist(),
            np.asarray(clean.column("status").to_pylist(), dtype=object),
            np.load(d / "emb.npy", mmap_mode=mode),
            np.load(d / "probs.npy", mmap_mode=mode),
            beh,
        )

    def load_status(self, k: int) -> np.ndarray:
        col = pq.read_table(self.chunk_dir(k) / "clean.parquet", columns=["status"]).column(0)
        return np.asarray(col.to_pylist(), dtype=object)

    def reset_fit(self) -> None:
        shutil.rmtree(self.fit, ignore_errors=True)
        shutil.rmtree(self.parts, ignore_errors=True)

    def remove_debris(self) -> list[Path]:
        """Delete the temporary files a killed run left (call while holding the lock).

        Under ``_work`` every dot-file but ``.lock`` is a temporary file; in ``OUT`` (and its
        ``audiences/``) the ``.NAME.*.tmp`` files :func:`atomic_write` writes and the
        ``.assignments.*.partial`` files the final concatenation writes, plus the unsuffixed
        temporary names older versions wrote. Nothing else is touched.
        """
        removed: list[Path] = []
        if self.root.is_dir():
            for folder, _, names in os.walk(self.root):
                for name in names:
                    if name.startswith(".") and name != ".lock":
                        removed.append(Path(folder) / name)
        out = self.root.parent
        for folder in (out, out / "audiences"):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if p.is_file() and _OUT_DEBRIS.match(p.name):
                    removed.append(p)
        for p in removed:
            p.unlink(missing_ok=True)
        return removed


# Temporary names in OUT: atomic_write's (".run.json.k3j_x9ab.tmp"; older versions had no
# suffix, so only the names of nlpseg's own outputs are matched without one) and the
# concatenation's partial files.
_OUT_DEBRIS = re.compile(
    r"^\.(?:.+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + r"|assignments\.(?:csv|parquet)\.partial"
    r"|(?:assignments\.(?:csv|parquet)|segments\.json|run\.json|report\.html|index\.csv"
    r"|segment_[^/]*\.csv)\.[a-z0-9_]{8})$"
)


def _mkdir_durable(path: Path) -> None:
    """Create ``path`` (and parents); fsync the parent of each folder created."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for p in reversed(missing):
        fsync_dir(p.parent)


def _diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def _changed_input(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """How the inputs differ from those a work folder was started with, or None if the same."""
    before, now = old.get("inputs") or [], new.get("inputs") or []
    if before == now:
        return None
    if [f.get("path") for f in before] != [f.get("path") for f in now]:
        return "the input files are not the same files"
    for a, b in zip(before, now, strict=True):
        if a != b:
            name = Path(b["path"]).name
            return f"{name} changed (its content's SHA-256 differs)"
    return None


def _holds_work(work: WorkDir) -> bool:
    """Whether ``_work`` holds anything a resumed run would reuse (a chunk, the encoded
    marker, the fit, placed parts)."""
    if (work.root / "encoded.json").exists():
        return True
    return any(d.is_dir() and any(d.iterdir()) for d in (work.chunks, work.fit, work.parts))


def check_manifest(
    work: WorkDir, manifest: dict[str, Any], restart: bool, reporter: Reporter
) -> None:
    """Reuse ``_work`` when it was made from the same inputs and encoding settings.

    Other clustering settings only invalidate the fit and the placement: pass 1 (the slow
    part) is kept, so trying another ``--min-cluster-size`` on a million rows costs a refit.
    """
    path = work.root / "manifest.json"
    if restart and work.root.exists():
        for child in (work.chunks, work.fit, work.parts, path, work.root / "encoded.json"):
            if child.is_dir():
                shutil.rmtree(child)
            elif child.exists():
                child.unlink()
    if path.exists() and not _holds_work(work):
        path.unlink()  # a run that stopped before its first chunk: nothing to keep or refuse
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("format_version") != manifest["format_version"]:
            raise NlpsegError(
                f"{work.root} was made by another version of nlpseg batch (work folder format "
                f"{old.get('format_version')}, this one writes {manifest['format_version']}); "
                "pass --restart to start over, or use another --out"
            )
        changed_input = _changed_input(old.get("encode", {}), manifest["encode"])
        if changed_input:
            raise NlpsegError(
                f"{changed_input} since {work.root} was started, so its stored chunks are of "
                "other rows; pass --restart to start over, or use another --out"
            )
        if old.get("encode") != manifest["encode"]:
            changed = _diff(old.get("encode", {}), manifest["encode"])
            raise NlpsegError(
                f"{work.root} was started with other inputs or encoding settings "
                f"({', '.join(changed)} changed); pass --restart to start over, or use another "
                "--out"
            )
        if old.get("fit") != manifest["fit"]:
            changed = _diff(old.get("fit", {}), manifest["fit"])
            reporter.message(
                f"Clustering settings changed ({', '.join(changed)}): refitting, reusing the "
                "encoded chunks"
            )
            work.reset_fit()
    write_json(manifest, path)


# --------------------------------------------------------------------------- sampling
def select_sample(
    work: WorkDir, n_chunks: int, chunk_size: int, size: int, seed: int
) -> np.ndarray:
    """Sorted global row numbers of the fit sample: the scorable rows with the smallest keys.

    A bottom-k sample of a seeded hash is a uniform sample without replacement that depends
    only on the seed and the row numbers, so it is the same for any chunking, engine or resume,
    and needs memory for the sample only.
    """
    best_rows = np.zeros(0, dtype=np.int64)
    for k in range(n_chunks):
        ok = work.load_status(k) == STATUS_OK
        rows = np.flatnonzero(ok).astype(np.int64) + k * chunk_size
        if not len(rows):
            continue
        best_rows = fit_sample(np.concatenate([best_rows, rows]), size, seed)
    return best_rows


# --------------------------------------------------------------------------- fit
def fit_on_sample(
    work: WorkDir,
    config: SegmenterConfig,
    spec: ColumnSpec,
    n_chunks: int,
    chunk_size: int,
    reporter: Reporter,
    timer: StageTimer,
) -> None:
    """Stage 2: sample, fit, and save the fitted segmenter and the sample's own labels."""
    with timer("sample"):
        sample = select_sample(work, n_chunks, chunk_size, config.fit_sample_size, config.seed)
        texts: list[str] = []
        embs: list[np.ndarray] = []
        probs: list[np.ndarray] = []
        behs: list[np.ndarray] = []
        by_chunk = sample // chunk_size
        for k in np.unique(by_chunk):
            local = sample[by_chunk == k] - int(k) * chunk_size
            enc = work.load_encoded(int(k), mmap=True)
            texts.extend(enc.clean[i] for i in local)
            embs.append(np.asarray(enc.embeddings[local], dtype=np.float32))
            probs.append(np.asarray(enc.probs[local]))
            if enc.behavior is not None:
                behs.append(np.asarray(enc.behavior[local]))
    if not len(sample):
        raise InputError("no row has usable text: every text is empty")
    reporter.message(f"Fitting on a seeded sample of {len(sample):,} rows")
    emb = np.vstack(embs)
    behavior = pd.DataFrame(np.vstack(behs), columns=list(spec.behavior)) if spec.behavior else None
    seg = Segmenter(replace(config, fit_sample_size=max(len(sample), 1)), reporter=reporter)
    with timer("fit"):
        seg.fit_encoded(
            texts,
            np.full(len(sample), STATUS_OK, dtype=object),
            emb,
            np.vstack(probs),
            behavior,
        )
    a = seg.assignments_
    work.fit.mkdir(parents=True, exist_ok=True)
    _save_npy(work.fit / "sample_rows.npy", sample)
    from nlp_seg.io.report import map_coordinates

    coords = map_coordinates(seg)
    if coords is not None:  # the report's map: global rows of the sample and their 2-D places
        _save_npy(work.fit / "map_rows.npy", sample[coords[0]].astype(np.int64))
        _save_npy(work.fit / "map_xy.npy", np.asarray(coords[1], np.float64))
    _save_npy(work.fit / "sample_labels.npy", a["segment_id"].to_numpy(np.int64))
    _save_npy(work.fit / "sample_strength.npy", a["segment_probability"].to_numpy(np.float64))
    _save_npy(work.fit / "sample_outlier.npy", a["is_outlier"].to_numpy(bool))
    info = {
        "segments": seg.segments_,
        "sample_size": int(len(sample)),
        "timings": seg.timings_,
        "pipeline": seg.describe(),
        "note": seg.note_,
    }
    # Saved as a segmenter folder (JSON + safetensors, like --save-model): pass 2 and a
    # resumed run read it back without unpickling anything.
    with timer("save_fit"):
        seg.columns_ = spec
        seg.save(work.fit / "segmenter")
        fsync_tree(work.fit)  # the saved folder is on disk before its marker
    write_json(info, work.fit / "FITTED")


@dataclass
class FittedState:
    """Everything pass 2 needs, loaded from ``_work/fit`` (never from memory, so a resumed
    run and an uninterrupted one place rows with identical state)."""

    seg: Segmenter
    sample_rows: np.ndarray
    labels: np.ndarray
    strength: np.ndarray
    outlier: np.ndarray
    info: dict[str, Any]

    @classmethod
    def load(cls, work: WorkDir) -> FittedState:
        from nlp_seg.segmenter import load_segmenter

        info = json.loads((work.fit / "FITTED").read_text(encoding="utf-8"))
        # Placement needs only the stored arrays, not the encoder: skip loading the models.
        seg = load_segmenter(work.fit / "segmenter", verify_models=False)

        def arr(name: str) -> np.ndarray:
            return np.load(work.fit / name, allow_pickle=False)

        return cls(
            seg,
            arr("sample_rows.npy"),
            arr("sample_labels.npy"),
            arr("sample_strength.npy"),
            arr("sample_outlier.npy"),
            info,
        )

    @property
    def names(self) -> dict[int, str]:
        return {int(s["id"]): s["name"] for s in self.info["segments"]}


# --------------------------------------------------------------------------- placement
def place_chunk(work: WorkDir, k: int, chunk_size: int, state: FittedState) -> int:
    """Stage 3 for one chunk: label its rows and write its part of the output, then a marker."""
    enc = work.load_encoded(k)
    n = len(enc.clean)
    ok = enc.ok
    labels = np.full(n, -1, dtype=np.int64)
    strength = np.zeros(n)
    outlier = np.zeros(n, dtype=bool)
    start = k * chunk_size
    lo, hi = np.searchsorted(state.sample_rows, [start, start + n])
    in_sample = state.sample_rows[lo:hi] - start
    labels[in_sample] = state.labels[lo:hi]
    strength[in_sample] = state.strength[lo:hi]
    outlier[in_sample] = state.outlier[lo:hi]
    rest = ok.copy()
    rest[in_sample] = False
    if rest.any():
        beh = None
        if enc.behavior is not None:
            columns = list(state.seg.behavior_scaler_.columns_)
            beh = pd.DataFrame(enc.behavior[rest], columns=columns)
        lab, st, out = state.seg.place_encoded(
            np.asarray(enc.embeddings[rest], dtype=np.float32), enc.probs[rest], beh
        )
        labels[rest], strength[rest], outlier[rest] = lab, st, out
    # Aspects need the clauses encoded: the models load here only when a taxonomy is set.
    aspects = state.seg.aspect_cells(
        list(enc.clean), enc.status, np.asarray(enc.embeddings, dtype=np.float32), enc.probs
    )
    assign = build_assignments(
        labels, strength, outlier, enc.probs, enc.status, state.names, aspects=aspects
    )
    contract = pa.Table.from_pandas(assign, schema=CONTRACT_SCHEMA, preserve_index=False)
    table = pq.read_table(work.chunk_dir(k) / "input.parquet")
    clash = set(CONTRACT_SCHEMA.names)
    table = table.rename_columns([f"input_{c}" if c in clash else c for c in table.column_names])
    for name, col in zip(contract.column_names, contract.columns, strict=True):
        table = table.append_column(name, col)
    _mkdir_durable(work.parts)
    _save_table(work.part(k), table)
    write_json({"rows": n}, work.parts / f"{k:06d}.done")
    return n


# --------------------------------------------------------------------------- in memory
def load_all_encoded(
    work: WorkDir, n_chunks: int, plan: InputPlan
) -> tuple[pd.DataFrame, tuple[list[str], np.ndarray, np.ndarray, np.ndarray]]:
    """Every row of pass 1 in memory, for the runs that need them all at once (behaviour):
    the input rows as :func:`nlp_seg.io.read.read_table` reads them (CSV cells that are all
    numbers become numbers) and what :meth:`Segmenter.encode_rows` would give for their texts
    (clean texts, statuses, embeddings as float32, probabilities).

    The embeddings are the float16 vectors pass 1 stored, widened to float32: exactly the
    vectors a behaviour run segments in ``analyze`` too, which rounds its own to float16 first
    (see :func:`nlp_seg.runs.behavior_job.run_behavior_job_encoded`).
    """
    tables: list[pa.Table] = []
    clean: list[str] = []
    status: list[np.ndarray] = []
    embs: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    for k in range(n_chunks):
        tables.append(pq.read_table(work.chunk_dir(k) / "input.parquet"))
        enc = work.load_encoded(k)
        clean.extend(enc.clean)
        status.append(enc.status)
        embs.append(enc.embeddings)
        probs.append(np.asarray(enc.probs, np.float64))
    dim = max((e.shape[1] for e in embs), default=0)
    emb = np.zeros((len(clean), dim), np.float32)
    start = 0
    for e in embs:  # a chunk without any text stored no embedding columns
        if e.shape[1]:
            emb[start : start + len(e)] = e
        start += len(e)
    # CSV cells stay the strings that were typed, exactly as analyze reads them (roles were
    # detected on a typed copy when the inputs were planned).
    frame = pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame()
    all_status = np.concatenate(status) if status else np.zeros(0, dtype=object)
    all_probs = np.vstack(probs) if probs else np.zeros((0, 3))
    return frame, (clean, all_status.astype(object), emb, all_probs)
