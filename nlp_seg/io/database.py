"""Database sources and targets: read a table or a query, write a run's results back.

A source is a URL where a path would be: ``duckdb:///reviews.duckdb?table=reviews`` (DuckDB,
embedded, through the ``duckdb`` package), ``postgresql://user@host:5432/shop?table=reviews``
(PostgreSQL through SQLAlchemy and psycopg; libpq's ``PGPASSWORD``, ``PGUSER``, ``PGHOST``,
``PGPORT``, ... fill in what the URL leaves out) or ``sqlite:///shop.db?table=reviews``.
``?query=SELECT ...`` (or ``--query``) reads a query instead of a table; with DuckDB that also
reads Parquet or CSV exports (``duckdb:///:memory:?query=SELECT * FROM 'orders.parquet'``).
Three slashes and the path is relative, four and it is absolute (SQLAlchemy's rule).

A password is never written anywhere: every URL shown or recorded goes through
:func:`redact_url`. A bad URL, an unknown driver, a missing table, refused credentials or an
unreachable server is one :class:`~nlp_seg.errors.InputError` line naming the redacted URL.

Write-back (:func:`write_back`) puts a run into four tables in one transaction: the current
assignments and segments (replaced), one row per run and every run's assignments (appended).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from nlp_seg.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
#: URL schemes nlpseg reads and writes, and the SQLAlchemy driver behind each (DuckDB is
#: driven directly through its own package).
DRIVERS = {
    "duckdb": "duckdb",
    "sqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
#: What nlpseg's own URL parameters are called (removed before the URL reaches a driver).
OWN_PARAMS = ("table", "query")
DEFAULT_PREFIX = "nlpseg_"
TABLE_ROLES = ("assignments", "segments", "runs", "history")
CONNECT_TIMEOUT_S = 10


def is_database_url(source: object) -> bool:
    """Whether ``source`` is a URL (``scheme://...``) rather than a file path."""
    return isinstance(source, str) and _URL_RE.match(source.strip()) is not None


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (what logs, messages and run.json show)."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#@]*)@", url)
    if m is None:
        return url
    userinfo = m.group(2)
    user = userinfo.split(":", 1)[0]
    shown = f"{user}:***" if ":" in userinfo else user
    return f"{m.group(1)}{shown}@{url[m.end() :]}"


def with_query(source: str, query: str | None, flag: str = "--query") -> str:
    """``source`` with ``query`` as its ``?query=`` parameter (how ``--query`` reaches the
    readers: every reader takes one string)."""
    if query is None:
        return source
    if not is_database_url(source):
        raise InputError(f"{flag} needs a database URL (duckdb://, postgresql://, sqlite://)")
    sep = "&" if "?" in source else "?"
    return f"{source}{sep}query={quote(query, safe='')}"


@dataclass(frozen=True)
class Source:
    """A parsed database URL: the driver's URL, and the table or query nlpseg reads from it."""

    scheme: str
    driver_url: Any  # sqlalchemy.engine.URL (DuckDB's too: its database is the file)
    table: str | None
    query: str | None
    shown: str

    @property
    def is_duckdb(self) -> bool:
        return self.scheme == "duckdb"

    @property
    def duckdb_path(self) -> str:
        return self.driver_url.database or ":memory:"

    @property
    def select(self) -> str:
        """The SQL that reads the source (the table by name, or the query as given)."""
        if self.query:
            return self.query
        if self.table is None:
            raise InputError(
                f"{self.shown}: name the table (?table=reviews) or give a query (--query)"
            )
        return f"SELECT * FROM {self.table}"

    @property
    def name(self) -> str:
        """How messages name the source: the table, or ``query``, and the database."""
        where = self.driver_url.database or self.driver_url.host or self.scheme
        return f"{self.table or 'query'} in {Path(str(where)).name or where}"


def parse_url(url: str, *, need_source: bool = True) -> Source:
    """Split a database URL into the driver's URL and nlpseg's ``table`` / ``query``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = redact_url(url)
    m = _URL_RE.match(url.strip())
    scheme = m.group(1).lower() if m else ""
    if scheme not in DRIVERS:
        raise InputError(
            f"unsupported database URL {shown}; nlpseg reads duckdb://, postgresql:// and "
            "sqlite:// (a file path has no scheme)"
        )
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError) as exc:
        raise InputError(f"cannot parse the database URL {shown}: {_first_line(exc)}") from exc
    params = dict(parsed.query)
    table, query = params.get("table"), params.get("query")
    if isinstance(table, tuple) or isinstance(query, tuple):
        raise InputError(f"{shown}: give table= and query= at most once")
    if table is not None and query is not None:
        raise InputError(f"{shown}: give a table or a query, not both")
    if table is not None and not _IDENT_RE.match(table):
        raise InputError(f"{shown}: {table!r} is not a table name (use --query for SQL)")
    if need_source and table is None and not query:
        raise InputError(f"{shown}: name the table (?table=reviews) or give a query (--query)")
    driver_url = parsed.difference_update_query(OWN_PARAMS).set(drivername=DRIVERS[scheme])
    return Source(scheme, driver_url, table, query, shown)


def source_name(source: str | Path) -> str:
    """How messages name an input: a file's name, or a database source's table and file."""
    if is_database_url(source):
        return parse_url(str(source), need_source=False).name
    return Path(source).name


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _db_error(src: Source, exc: BaseException, doing: str) -> InputError:
    message = _first_line(exc)
    password = src.driver_url.password
    if password:
        message = message.replace(str(password), "***")
    return InputError(f"cannot {doing} {src.shown}: {message}")


def _driver_errors() -> tuple[type[BaseException], ...]:
    import duckdb
    from sqlalchemy.exc import SQLAlchemyError

    return (duckdb.Error, SQLAlchemyError, OSError, ImportError)


def _engine(src: Source) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    args = {"connect_timeout": CONNECT_TIMEOUT_S} if src.scheme != "sqlite" else {}
    return create_engine(src.driver_url, poolclass=NullPool, connect_args=args)


def _refuse_missing_file(src: Source, doing: str) -> None:
    """An SQLite file that does not exist: an error, not a new empty database (DuckDB's
    read-only connection refuses one itself)."""
    path = src.driver_url.database
    missing = bool(path) and path != ":memory:" and not Path(path).expanduser().exists()
    if src.scheme == "sqlite" and missing:
        raise InputError(f"cannot {doing} {src.shown}: no SQLite file at {path}")


def _duckdb_connect(src: Source, *, read_only: bool) -> Any:
    import duckdb

    path = src.duckdb_path
    if path != ":memory:" and read_only and not Path(path).expanduser().exists():
        raise InputError(f"cannot read {src.shown}: no DuckDB file at {path}")
    return duckdb.connect(path, read_only=read_only and path != ":memory:")


def read_database(url: str, query: str | None = None) -> pd.DataFrame:
    """The rows of a database table or query as a DataFrame, in the database's own types."""
    src = parse_url(with_query(url, query))
    _refuse_missing_file(src, "read")
    try:
        if src.is_duckdb:
            with _duckdb_connect(src, read_only=True) as con:
                frame = con.execute(src.select).fetch_df()
        else:
            import pandas as pd
            from sqlalchemy import text

            with _engine(src).connect() as conn:
                frame = pd.read_sql_query(text(src.select), conn)
    except InputError:
        raise
    except _driver_errors() as exc:
        raise _db_error(src, exc, "read") from exc
    if frame.shape[1] == 0 or len(frame) == 0:
        raise InputError(f"{src.shown} has no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def iter_database(url: str, chunk_rows: int) -> Iterator[pa.Table]:
    """The rows of a table or query as Arrow tables of at most ``chunk_rows`` rows, streamed
    (server-side cursor / DuckDB record batches): memory for one chunk, whatever the size."""
    import pyarrow as pa

    src = parse_url(url)
    _refuse_missing_file(src, "read")
    schema = None
    try:
        if src.is_duckdb:
            with _duckdb_connect(src, read_only=True) as con:
                result = con.execute(src.select)
                # DuckDB 2 renamed fetch_record_batch (1.x) to to_arrow_reader
                to_reader = getattr(result, "to_arrow_reader", None) or result.fetch_record_batch
                reader = to_reader(chunk_rows)
                for batch in reader:
                    if batch.num_rows:
                        yield pa.Table.from_batches([batch])
            return
        import pandas as pd
        from sqlalchemy import text

        with _engine(src).connect() as conn:
            conn = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows)
            for frame in pd.read_sql_query(text(src.select), conn, chunksize=chunk_rows):
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if schema is None:
                    schema = pa.schema(
                        [
                            f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                            for f in table.schema
                        ]
                    )
                yield table.cast(schema)
    except InputError:
        raise
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(f"{src.shown}: column types change between chunks ({exc})") from exc
    except _driver_errors() as exc:
        raise _db_error(src, exc, "read") from exc


def snapshot_to_parquet(url: str, dest: Path, chunk_rows: int) -> int:
    """Copy a table or query to the Parquet file ``dest`` chunk by chunk (``nlpseg batch``
    reads and fingerprints this copy, so a resumed run reads exactly the rows it started on).
    Written whole or not at all; returns the row count."""
    import pyarrow.parquet as pq

    from nlp_seg.io.write import atomic_write

    chunks = iter_database(url, chunk_rows)
    first = next(chunks, None)  # a bad URL or table fails here, before any file is made
    if first is None:
        raise InputError(f"{redact_url(url)} has no rows")
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        with pq.ParquetWriter(tmp, first.schema) as writer:
            for table in _chain(first, chunks):
                writer.write_table(table.cast(first.schema))
                rows += table.num_rows

    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, write)
    return rows


def _chain(first: pa.Table, rest: Iterator[pa.Table]) -> Iterator[pa.Table]:
    yield first
    yield from rest


def frame_sha256(frame: pd.DataFrame) -> str:
    """A checksum of a table's rows as read (pandas' row hashes, in order)."""
    import hashlib

    import pandas as pd

    hashed = pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def input_record(source: str | Path, frame: pd.DataFrame | None = None) -> dict[str, Any]:
    """run.json's record of an input: a file's path and SHA-256, or a database source's
    redacted URL and a checksum of the rows read (``rows_sha256``; a database has no file
    to hash, and the same rows give the same checksum)."""
    from nlp_seg.io.write import file_sha256

    if not is_database_url(source):
        return {"path": str(source), "sha256": file_sha256(source)}
    record: dict[str, Any] = {"path": redact_url(str(source)), "source": "database"}
    if frame is not None:
        record["rows"] = len(frame)
        record["rows_sha256"] = frame_sha256(frame)
    return record


# --------------------------------------------------------------------------- write-back
@dataclass(frozen=True)
class DatabaseTarget:
    """Where ``--to-db`` writes: the URL, and the prefix of the four table names."""

    url: str
    prefix: str = DEFAULT_PREFIX

    def tables(self) -> dict[str, str]:
        return {role: f"{self.prefix}{role}" for role in TABLE_ROLES}


def check_target(target: DatabaseTarget) -> None:
    """Refuse an unusable ``--to-db`` before the run (a bad URL, driver, credentials or
    server): connect and disconnect, writing nothing (a DuckDB file is not created yet)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", target.prefix):
        raise InputError(f"--db-prefix {target.prefix!r} must be letters, digits and _")
    src = parse_url(target.url, need_source=False)
    if src.table or src.query:
        raise InputError(f"--to-db {src.shown}: give the database only (no table= or query=)")
    try:
        if src.is_duckdb:
            path = Path(src.duckdb_path).expanduser()
            if src.duckdb_path == ":memory:":
                raise InputError(f"--to-db {src.shown}: an in-memory DuckDB keeps nothing")
            if path.exists():
                with _duckdb_connect(src, read_only=False) as con:
                    con.execute("SELECT 1")
            elif not path.parent.is_dir():
                raise InputError(f"cannot write {src.shown}: no folder {path.parent}")
        elif src.scheme == "sqlite" and not Path(src.driver_url.database or "").exists():
            parent = Path(src.driver_url.database or ".").expanduser().parent
            if not src.driver_url.database or not parent.is_dir():
                raise InputError(f"cannot write {src.shown}: no folder {parent}")
        else:
            from sqlalchemy import text

            with _engine(src).connect() as conn:
                conn.execute(text("SELECT 1"))
    except InputError:
        raise
    except _driver_errors() as exc:
        raise _db_error(src, exc, "connect to") from exc


def _json_text(value: Any) -> Any:
    """Lists, dicts and arrays as JSON text (a database column holds one scalar)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def _flat(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a DataFrame of scalars: nested columns as JSON text, dictionary
    columns as their values."""
    import pyarrow as pa

    frame = table.to_pandas()
    for field in table.schema:
        t = field.type
        if pa.types.is_dictionary(t):
            frame[field.name] = frame[field.name].astype(object)
        elif pa.types.is_nested(t):
            frame[field.name] = frame[field.name].map(_json_text)
    return frame


def _segments_frame(segments: Sequence[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame([{k: _json_text(v) for k, v in s.items()} for s in segments])


def _runs_frame(run_id: str, info: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    def ts(value: Any) -> Any:
        return pd.Timestamp(value).tz_convert(None) if value else pd.NaT

    inputs = info.get("input") or (info.get("inputs") or [{}])[0]
    return pd.DataFrame(
        {
            "run_id": [run_id],
            "started_at": pd.Series([ts(info.get("started_at"))], dtype="datetime64[us]"),
            "finished_at": pd.Series([ts(info.get("finished_at"))], dtype="datetime64[us]"),
            "command": [str(info.get("command"))],
            "input": [str(inputs.get("path"))],
            "rows_in": pd.Series([int(info.get("rows_in") or 0)], dtype="int64"),
            "rows_out": pd.Series([int(info.get("rows_out") or 0)], dtype="int64"),
            "run_json": [json.dumps(info, ensure_ascii=False, default=str)],
        }
    )


def write_back(
    target: DatabaseTarget,
    assignments: Path,
    segments: Sequence[dict[str, Any]],
    info: dict[str, Any],
    *,
    chunk_rows: int = 50_000,
) -> dict[str, Any]:
    """Write a run to the database in ONE transaction (all or nothing): ``assignments`` (the
    run's ``assignments.parquet``, read in chunks) replaces ``<prefix>assignments`` and is
    appended to ``<prefix>history`` with the run's id, ``segments`` replace
    ``<prefix>segments``, and one row is appended to ``<prefix>runs`` with ``info`` (run.json,
    which holds no secret). Records ``info["database"]`` before it is written; returns it."""
    import pyarrow.parquet as pq

    src = parse_url(target.url, need_source=False)
    tables = target.tables()
    run_id = uuid.uuid4().hex
    rows = pq.ParquetFile(assignments).metadata.num_rows
    record = {
        "url": src.shown,
        "run_id": run_id,
        "tables": tables,
        "rows_written": {
            tables["assignments"]: rows,
            tables["segments"]: len(segments),
            tables["runs"]: 1,
            tables["history"]: rows,
        },
    }
    info["database"] = record

    def chunks() -> Iterator[pd.DataFrame]:
        pf = pq.ParquetFile(assignments)
        for batch in pf.iter_batches(batch_size=chunk_rows):
            import pyarrow as pa

            yield _flat(pa.Table.from_batches([batch]))

    writer = _DuckWriter(src) if src.is_duckdb else _SqlWriter(src)
    try:
        with writer:
            first = True
            for frame in chunks():
                writer.put(tables["assignments"], frame, replace=first)
                history = frame.copy()
                history.insert(0, "run_id", run_id)
                writer.put(tables["history"], history, replace=False)
                first = False
            writer.put(tables["segments"], _segments_frame(segments), replace=True)
            writer.put(tables["runs"], _runs_frame(run_id, info), replace=False)
    except InputError:
        raise
    except _driver_errors() as exc:
        info.pop("database", None)
        raise _db_error(src, exc, "write to") from exc
    return record


class _DuckWriter:
    """Tables written through DuckDB's own API (a DataFrame scan: typed columns, fast)."""

    def __init__(self, src: Source) -> None:
        self.src = src

    def __enter__(self) -> _DuckWriter:
        import duckdb

        self.con = duckdb.connect(str(Path(self.src.duckdb_path).expanduser()))
        self.con.begin()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self.con.commit()
            else:
                self.con.rollback()
        finally:
            self.con.close()

    def put(self, table: str, frame: pd.DataFrame, *, replace: bool) -> None:
        con = self.con
        con.register("nlpseg_frame", frame)
        try:
            exists = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()[0]
            if replace or not exists:
                con.execute(f"DROP TABLE IF EXISTS {table}")
                con.execute(f"CREATE TABLE {table} AS SELECT * FROM nlpseg_frame")
                return
            have = {
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                    [table],
                ).fetchall()
            }
            described = con.execute("DESCRIBE SELECT * FROM nlpseg_frame").fetchall()
            for name, sql_type, *_ in described:
                if name not in have:  # a column earlier runs did not have
                    con.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {sql_type}')
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM nlpseg_frame")
        finally:
            con.unregister("nlpseg_frame")


def _sql_type(s: pd.Series) -> Any:
    """The SQL column type of a DataFrame column (ints, floats, bools, timestamps, text)."""
    import pandas as pd
    from sqlalchemy import BigInteger, Boolean, DateTime, Float, Text

    if pd.api.types.is_bool_dtype(s.dtype):
        return Boolean()
    if pd.api.types.is_integer_dtype(s.dtype):
        return BigInteger()
    if pd.api.types.is_float_dtype(s.dtype):
        return Float(precision=53)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return DateTime(timezone=False)
    return Text()


def _text_cell(value: Any) -> str | None:
    import pandas as pd

    if value is None or isinstance(value, str):
        return value
    return None if pd.isna(value) else str(value)


class _SqlWriter:
    """Tables written through SQLAlchemy (PostgreSQL, SQLite) with explicit column types."""

    def __init__(self, src: Source) -> None:
        self.src = src

    def __enter__(self) -> _SqlWriter:
        self.ctx = _engine(self.src).begin()
        self.conn = self.ctx.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.ctx.__exit__(exc_type, exc, tb)  # commits, or rolls back on an error

    def put(self, table: str, frame: pd.DataFrame, *, replace: bool) -> None:
        from sqlalchemy import Text, inspect, text

        conn = self.conn
        types = {c: _sql_type(frame[c]) for c in frame.columns}
        frame = frame.copy()
        for c, t in types.items():
            if isinstance(t, Text):  # one type per column: every cell its text, or NULL
                frame[c] = frame[c].astype(object).map(_text_cell)
        if not replace and inspect(conn).has_table(table):
            have = {c["name"] for c in inspect(conn).get_columns(table)}
            quote_name = conn.dialect.identifier_preparer.quote
            for c, t in types.items():
                if c not in have:
                    conn.execute(
                        text(
                            f"ALTER TABLE {quote_name(table)} ADD COLUMN {quote_name(c)} "
                            f"{t.compile(dialect=conn.dialect)}"
                        )
                    )
        frame.to_sql(
            table,
            conn,
            if_exists="replace" if replace else "append",
            index=False,
            dtype=types,
            # executemany: SQLAlchemy batches it into multi-row INSERTs within the driver's
            # parameter limit (PostgreSQL: 65,535 a statement)
            chunksize=50_000,
        )
