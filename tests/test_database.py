"""Database sources and write-back against real servers: a DuckDB file and a throw-away
PostgreSQL cluster (initdb + pg_ctl on a free local port), GA4-export events, and the errors
(wrong URL, missing table, bad password, unreachable server) that must stop a run before
anything is written."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PG_ADMIN, PG_ADMIN_PW = "nlpseg_admin", "admin-pw-7Qx"
SHOP_USER, SHOP_PW = "shop", "s3cret-Pw-91"
TABLES = ("nlpseg_assignments", "nlpseg_segments", "nlpseg_runs", "nlpseg_history")


def nlpseg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nlp_seg", "-q", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=600,
    )


def tiny_args(tiny_models: dict[str, Path]) -> list[str]:
    return [
        "--embedding-model",
        str(tiny_models["embedding"]),
        "--sentiment-model",
        str(tiny_models["sentiment"]),
        "--no-cache",
        "--no-report",
    ]


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


def example_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    reviews = pd.read_csv(EXAMPLES / "reviews.csv", dtype={"customer_id": str})
    orders = pd.read_csv(EXAMPLES / "orders.csv", dtype={"customer_id": str})
    return reviews, orders


def expected_customers() -> set[str]:
    reviews, orders = example_tables()
    return set(reviews["customer_id"]) | set(orders["customer_id"])


# --------------------------------------------------------------------------- PostgreSQL
def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres() -> Iterator[dict[str, object]]:
    """A PostgreSQL cluster of its own (scram passwords), with a ``shop`` role and database;
    stopped and removed at the end of the session."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="nlpseg-pg-"))
    as_pg: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
        as_pg = ["runuser", "-u", "postgres", "--"]
        os.chmod(root, 0o755)
    (root / "sock").mkdir()
    (root / "pw").write_text(PG_ADMIN_PW + "\n", encoding="utf-8")
    if as_pg:
        shutil.chown(root, "postgres")
        for p in root.iterdir():
            shutil.chown(p, "postgres")
    data, port = root / "data", _free_port()

    def run(*cmd: str) -> None:
        proc = subprocess.run([*as_pg, *cmd], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    run(
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-U",
        PG_ADMIN,
        "--pwfile",
        str(root / "pw"),
        "--auth=scram-sha-256",
        "-E",
        "UTF8",
        "--no-locale",
    )
    options = f"-p {port} -k {root / 'sock'} -c listen_addresses=127.0.0.1"
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(root / "log"),
        "-w",
        "start",
    )
    try:
        import psycopg

        admin = f"host=127.0.0.1 port={port} user={PG_ADMIN} password={PG_ADMIN_PW} dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {SHOP_USER} LOGIN PASSWORD '{SHOP_PW}'")
            conn.execute(f"CREATE DATABASE shop OWNER {SHOP_USER}")
        yield {"host": "127.0.0.1", "port": port, "db": "shop"}
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def pg_url(
    pg: dict[str, object], *, password: str | None = SHOP_PW, port: int | None = None
) -> str:
    auth = SHOP_USER + (f":{password}" if password is not None else "")
    return f"postgresql://{auth}@{pg['host']}:{port or pg['port']}/{pg['db']}"


def pg_query(pg: dict[str, object], sql: str) -> list[tuple]:
    import psycopg

    dsn = f"host={pg['host']} port={pg['port']} user={SHOP_USER} password={SHOP_PW} dbname=shop"
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


def pg_tables(pg: dict[str, object]) -> set[str]:
    rows = pg_query(
        pg, "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
    )
    return {r[0] for r in rows}


@pytest.fixture(scope="session")
def pg_shop(postgres: dict[str, object]) -> dict[str, object]:
    """The example reviews and orders as tables of the ``shop`` database."""
    from sqlalchemy import create_engine

    reviews, orders = example_tables()
    engine = create_engine(pg_url(postgres).replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        reviews.to_sql("reviews", conn, index=False)
        orders.to_sql("orders", conn, index=False)
    engine.dispose()
    return postgres


# --------------------------------------------------------------------------- DuckDB
def make_duckdb(path: Path) -> str:
    import duckdb

    reviews, orders = example_tables()
    with duckdb.connect(str(path)) as con:
        con.register("r", reviews)
        con.register("o", orders)
        con.execute("CREATE TABLE reviews AS SELECT * FROM r")
        con.execute("CREATE TABLE orders AS SELECT * FROM o")
    return f"duckdb:///{path}"


def duck_query(path: Path, sql: str) -> list[tuple]:
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def column_types(rows: list[tuple]) -> dict[tuple[str, str], str]:
    return {(t, c): str(d).lower() for t, c, d in rows}


CATALOG_SQL = (
    "SELECT table_name, column_name, data_type FROM information_schema.columns "
    "WHERE table_name LIKE 'nlpseg_%'"
)


def check_written(
    out: Path,
    count: callable,  # type: ignore[valid-type]
    types: dict[tuple[str, str], str],
    expected: dict[str, str],
    runs: int,
) -> None:
    """The four tables after ``runs`` runs: current state once, history once per run."""
    got = pd.read_parquet(out / "assignments.parquet")
    assert set(got["customer_id"]) == expected_customers()
    n = len(got)
    assert count("SELECT count(*), count(DISTINCT customer_id) FROM nlpseg_assignments") == (n, n)
    assert count("SELECT count(*), count(DISTINCT run_id) FROM nlpseg_runs") == (runs, runs)
    assert count("SELECT count(*), count(DISTINCT run_id) FROM nlpseg_history") == (n * runs, runs)
    segs = json.loads((out / "segments.json").read_text(encoding="utf-8"))["segments"]
    assert count("SELECT count(*), count(DISTINCT id) FROM nlpseg_segments") == (
        len(segs),
        len(segs),
    )
    for key, kind in expected.items():
        table, col = key.split(".")
        assert kind in types[(table, col)], (key, types[(table, col)])
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    db = info["database"]
    assert db["rows_written"]["nlpseg_assignments"] == n
    assert db["rows_written"]["nlpseg_history"] == n
    assert set(db["tables"].values()) == set(TABLES)


def test_duckdb_round_trip(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    url = make_duckdb(db)
    for run in (1, 2):
        out = tmp_path / f"out{run}"
        proc = nlpseg(
            "analyze",
            f"{url}?table=reviews",
            "--orders",
            f"{url}?table=orders",
            "--unit",
            "customer",
            "--to-db",
            url,
            "--out",
            str(out),
            *tiny_args(tiny_models),
        )
        assert proc.returncode == 0, proc.stderr
        types = column_types(duck_query(db, CATALOG_SQL))
        check_written(
            out,
            lambda sql: duck_query(db, sql)[0],
            types,
            {
                "nlpseg_assignments.segment_id": "bigint",
                "nlpseg_assignments.sentiment_score": "double",
                "nlpseg_assignments.is_outlier": "boolean",
                "nlpseg_assignments.segment_name": "varchar",
                "nlpseg_runs.started_at": "timestamp",
                "nlpseg_runs.rows_in": "bigint",
                "nlpseg_history.run_id": "varchar",
            },
            runs=run,
        )
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert info["input"]["path"] == f"{url}?table=reviews"
    assert info["input"]["rows"] == len(example_tables()[0]) and info["input"]["rows_sha256"]
    assert info["behavior"]["orders"]["source"] == "database"
    # the runs table holds each run's run.json, with its run id
    (stored,) = duck_query(
        db, f"SELECT run_json FROM nlpseg_runs WHERE run_id = '{info['database']['run_id']}'"
    )[0]
    assert json.loads(stored)["input"]["path"] == info["input"]["path"]


def test_duckdb_query_over_parquet_export(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """DuckDB reads a Parquet export through --query (no database file at all)."""
    reviews, _ = example_tables()
    reviews.to_parquet(tmp_path / "reviews.parquet")
    out = tmp_path / "out"
    proc = nlpseg(
        "score",
        "duckdb:///:memory:",
        "--query",
        f"SELECT * FROM '{tmp_path / 'reviews.parquet'}' WHERE rating >= 4",
        "--out",
        str(out / "scores.csv"),
        *tiny_args(tiny_models)[:-1],
    )
    assert proc.returncode == 0, proc.stderr
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == int((reviews["rating"] >= 4).sum())
    info = json.loads((out / "scores.run.json").read_text(encoding="utf-8"))
    assert "query=" in info["input"]["path"] and info["input"]["source"] == "database"


def test_batch_from_duckdb_resumes_and_writes_back(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    db = tmp_path / "x.duckdb"
    url = make_duckdb(db)
    out = tmp_path / "batch"
    args = [
        "batch",
        f"{url}?table=reviews",
        "--chunk-size",
        "40",
        "--fit-sample-size",
        "100",
        "--to-db",
        url,
        "--db-prefix",
        "seg_",
        "--out",
        str(out),
        *tiny_args(tiny_models),
    ]
    for _ in range(2):
        proc = nlpseg(*args)
        assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    n = len(example_tables()[0])
    assert info["batch"]["chunks"] == -(-n // 40)
    assert info["batch"]["chunks_encoded_before"] == info["batch"]["chunks"]  # resumed
    (inp,) = info["inputs"]
    assert inp["path"] == f"{url}?table=reviews" and inp["rows"] == n and inp["sha256"]
    assert duck_query(db, "SELECT count(*) FROM seg_assignments")[0] == (n,)
    assert duck_query(db, "SELECT count(*), count(DISTINCT run_id) FROM seg_history")[0] == (
        2 * n,
        2,
    )
    assert not duck_query(
        db, "SELECT * FROM information_schema.tables WHERE table_name LIKE 'nlpseg_%'"
    )


def test_postgres_round_trip(
    tiny_models: dict[str, Path], pg_shop: dict[str, object], tmp_path: Path
) -> None:
    for run in (1, 2):
        out = tmp_path / f"out{run}"
        # the first run has the password in the URL, the second takes it from PGPASSWORD
        password = SHOP_PW if run == 1 else None
        env = {} if run == 1 else {"PGPASSWORD": SHOP_PW}
        url = pg_url(pg_shop, password=password)
        proc = nlpseg(
            "analyze",
            f"{url}?table=reviews",
            "--orders",
            url,
            "--orders-query",
            "SELECT * FROM orders ORDER BY order_id",
            "--unit",
            "customer",
            "--to-db",
            url,
            "--out",
            str(out),
            *tiny_args(tiny_models),
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        types = column_types(pg_query(pg_shop, CATALOG_SQL))
        check_written(
            out,
            lambda sql: pg_query(pg_shop, sql)[0],
            types,
            {
                "nlpseg_assignments.segment_id": "bigint",
                "nlpseg_assignments.sentiment_score": "double precision",
                "nlpseg_assignments.is_outlier": "boolean",
                "nlpseg_assignments.segment_name": "text",
                "nlpseg_runs.started_at": "timestamp",
                "nlpseg_runs.rows_out": "bigint",
                "nlpseg_segments.size": "bigint",
            },
            runs=run,
        )
        text = (out / "run.json").read_text(encoding="utf-8")
        assert SHOP_PW not in text and "PGPASSWORD" not in text
        info = json.loads(text)
        assert (
            info["input"]["path"]
            == f"{pg_url(pg_shop, password='***' if run == 1 else None)}?table=reviews"
        )
        assert info["database"]["url"] == pg_url(pg_shop, password="***" if run == 1 else None)
    stored = pg_query(pg_shop, "SELECT run_json FROM nlpseg_runs")
    assert all(SHOP_PW not in r[0] for r in stored)


# --------------------------------------------------------------------------- GA4 events
def ga4_rows() -> list[dict[str, object]]:
    """GA4 BigQuery export rows (event_timestamp in microseconds, nested params) for the
    example customers: sessions, page views, carts and purchases."""
    reviews, _ = example_tables()
    base = int(pd.Timestamp("2025-06-01").value // 1000)
    rows = []
    for i, cid in enumerate(sorted(set(reviews["customer_id"]))[:40]):
        for k, name in enumerate(
            ["session_start", "page_view", "page_view", "add_to_cart", "purchase", "session_start"]
        ):
            rows.append(
                {
                    "event_date": "20250601",
                    "event_timestamp": base + (i * 10 + k) * 86_400_000_000,
                    "event_name": name,
                    "event_params": [{"key": "ga_session_id", "value": {"int_value": i}}],
                    "user_pseudo_id": f"{1000 + i}.{1700000000 + i}",
                    "user_id": cid if i % 4 else None,  # some visitors never logged in
                    "device": {"category": "mobile"},
                }
            )
    return rows


def test_ga4_export_read_as_events(tmp_path: Path) -> None:
    from nlp_seg.behavior.tables import read_events

    rows = ga4_rows()
    frame = pd.DataFrame(rows)
    frame.to_parquet(tmp_path / "events.parquet")
    events, cols, warnings = read_events(tmp_path / "events.parquet")
    assert cols["schema"] == "ga4_bigquery_export" and cols["id"] == "user_id"
    logged_in = frame[frame["user_id"].notna()]
    assert len(events) == len(logged_in)
    assert set(events["customer_key"]) == set(logged_in["user_id"])
    want = pd.to_datetime(logged_in["event_timestamp"], unit="us").reset_index(drop=True)
    assert (events["time"].reset_index(drop=True) == want).all()
    counts = events["event"].value_counts()
    assert counts["session"] == 2 * logged_in["user_id"].nunique()  # page views are not sessions
    assert counts["cart_add"] == logged_in["user_id"].nunique()
    assert "ga4_page_view" in counts and any("without a customer id" in w for w in warnings)

    # without any user_id, the browser's pseudo id is the customer; timestamps as text
    anon = frame.drop(columns=["user_id"]).assign(
        event_timestamp=frame["event_timestamp"].astype(str)
    )
    anon = anon[anon["event_name"] != "session_start"]
    anon.to_json(tmp_path / "anon.ndjson", orient="records", lines=True)
    events, cols, _ = read_events(tmp_path / "anon.ndjson")
    assert cols["id"] == "user_pseudo_id" and len(events) == len(anon)
    assert events["event"].value_counts()["session"] == int(
        (anon["event_name"] == "page_view").sum()
    )
    assert events["time"].min() == pd.Timestamp("2025-06-01") + pd.Timedelta(days=1)


def test_ga4_events_in_a_run(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "ga4.ndjson"
    pd.DataFrame(ga4_rows()).to_json(path, orient="records", lines=True)
    out = tmp_path / "out"
    proc = nlpseg(
        "analyze",
        str(EXAMPLES / "reviews.csv"),
        "--events",
        str(path),
        "--unit",
        "customer",
        "--out",
        str(out),
        *tiny_args(tiny_models),
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))
    events = info["behavior"]["events"]
    assert "GA4" in events["schema"] and events["columns"]["id"] == "user_id"
    got = pd.read_parquet(out / "assignments.parquet")
    seen = got[got["customer_id"].isin({r["user_id"] for r in ga4_rows() if r["user_id"]})]
    assert len(seen) == 30 and seen["sessions_per_month"].notna().all()


# --------------------------------------------------------------------------- errors
def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_duckdb_errors_write_nothing(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    url = make_duckdb(db)
    target = tmp_path / "target.duckdb"
    out = tmp_path / "out"
    common = ["--to-db", f"duckdb:///{target}", "--out", str(out), *tiny_args(tiny_models)]
    cases = [
        (["analyze", "mysql://u:pw@localhost/shop?table=reviews"], ["unsupported database URL"]),
        (["analyze", f"{url}?table=nope"], ["cannot read", "nope"]),
        (["analyze", f"duckdb:///{tmp_path / 'missing.duckdb'}?table=reviews"], ["no DuckDB file"]),
        (["analyze", f"{url}?table=reviews", "--orders", f"{url}?table=nope"], ["nope"]),
        (["batch", f"{url}?table=nope"], ["nope"]),
        (["analyze", url], ["name the table"]),
    ]
    for args, needles in cases:
        one_line_error(nlpseg(*args, *common), *needles)
        assert_nothing_written(out)
        assert not target.exists()  # the target database was not even created
    # a --to-db in a folder that does not exist is refused before the run
    bad_target = f"duckdb:///{tmp_path / 'nowhere' / 'y.duckdb'}"
    proc = nlpseg("analyze", f"{url}?table=reviews", "--to-db", bad_target, "--out", str(out))
    one_line_error(proc, "no folder")
    assert_nothing_written(out)
    assert {r[0] for r in duck_query(db, "SELECT table_name FROM information_schema.tables")} == {
        "reviews",
        "orders",
    }


def test_postgres_errors_write_nothing(
    tiny_models: dict[str, Path], pg_shop: dict[str, object], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    good = pg_url(pg_shop)
    wrong_pw = pg_url(pg_shop, password="not-the-password")
    closed = pg_url(pg_shop, port=_free_port())
    cases = [
        ([f"{wrong_pw}?table=reviews", "--to-db", good], ["password authentication failed"]),
        ([f"{good}?table=reviews", "--to-db", wrong_pw], ["password authentication failed"]),
        ([f"{closed}?table=reviews", "--to-db", good], ["cannot read", "connect"]),
        ([f"{good}?table=missing_table", "--to-db", good], ["missing_table"]),
        ([f"{good}?table=reviews", "--query", "SELECT 1", "--to-db", good], ["not both"]),
    ]
    before = pg_tables(pg_shop)
    for args, needles in cases:
        line = one_line_error(
            nlpseg("analyze", *args, "--out", str(out), *tiny_args(tiny_models)), *needles
        )
        assert SHOP_PW not in line and "not-the-password" not in line, line
        assert_nothing_written(out)
        assert pg_tables(pg_shop) == before  # no table made or changed


def test_urls_and_redaction() -> None:
    from nlp_seg.io.database import is_database_url, parse_url, redact_url, with_query

    assert is_database_url("postgresql://u@h/db") and is_database_url("duckdb:///x.duckdb")
    assert not is_database_url("reviews.csv") and not is_database_url(Path("/tmp/x.csv"))
    assert (
        redact_url("postgresql://u:p%40ss@h:5432/db?table=t")
        == "postgresql://u:***@h:5432/db?table=t"
    )
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    src = parse_url(with_query("sqlite:///shop.db", "SELECT * FROM t WHERE a = 'x&y' + 1"))
    assert src.query == "SELECT * FROM t WHERE a = 'x&y' + 1" and src.table is None
    assert (
        parse_url("postgres://u:pw@h/db?table=public.reviews").select
        == "SELECT * FROM public.reviews"
    )


def test_sqlite_read_and_write_back(tmp_path: Path) -> None:
    """SQLite through SQLAlchemy: a table read in its own types, and a write-back whose second
    run replaces the current state and appends to the history."""
    import sqlite3

    from nlp_seg.errors import InputError
    from nlp_seg.io.database import DatabaseTarget, check_target, write_back
    from nlp_seg.io.read import read_table

    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE reviews (id INTEGER, review TEXT, rating REAL)")
        conn.executemany(
            "INSERT INTO reviews VALUES (?, ?, ?)", [(1, "ótimo produto", 5.0), (2, "tệ", 1.0)]
        )
    frame = read_table(f"sqlite:///{db}?table=reviews")
    assert list(frame["id"]) == [1, 2] and frame["rating"].dtype.kind == "f"
    with pytest.raises(InputError, match="no SQLite file"):
        read_table(f"sqlite:///{tmp_path / 'other.db'}?table=reviews")
    assert not (tmp_path / "other.db").exists()

    parquet = tmp_path / "assignments.parquet"
    pd.DataFrame(
        {"id": [1, 2], "segment_id": [0, 1], "is_outlier": [False, True], "tags": [["a"], []]}
    ).to_parquet(parquet)
    segments = [{"id": 0, "name": "a", "keywords": ["x", "y"]}, {"id": 1, "name": "b"}]
    target = DatabaseTarget(f"sqlite:///{db}")
    check_target(target)
    for run in (1, 2):
        info = {"command": "analyze", "started_at": "2025-01-01T00:00:00+00:00", "rows_in": 2}
        write_back(target, parquet, segments, info)
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM nlpseg_assignments").fetchone() == (2,)
            assert conn.execute("SELECT count(*) FROM nlpseg_history").fetchone() == (2 * run,)
            assert conn.execute("SELECT tags FROM nlpseg_assignments").fetchall() == [
                ('["a"]',),
                ("[]",),
            ]
            keywords = conn.execute("SELECT keywords FROM nlpseg_segments ORDER BY id").fetchall()
            assert keywords == [('["x", "y"]',), (None,)]


def test_postgres_streamed_snapshot(pg_shop: dict[str, object], tmp_path: Path) -> None:
    """batch's copy of a PostgreSQL query: streamed in chunks (a server-side cursor), every
    row once, and the same bytes for the same rows (what resuming compares)."""
    import pyarrow.parquet as pq

    from nlp_seg.io.database import iter_database, snapshot_to_parquet, with_query
    from nlp_seg.io.write import file_sha256

    url = with_query(pg_url(pg_shop), "SELECT * FROM orders ORDER BY order_id")
    sizes = [t.num_rows for t in iter_database(url, 100)]
    n = len(example_tables()[1])
    assert sum(sizes) == n and max(sizes) == 100 and len(sizes) == -(-n // 100)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert snapshot_to_parquet(url, a, 100) == snapshot_to_parquet(url, b, 100) == n
    assert file_sha256(a) == file_sha256(b)
    got = pq.read_table(a).to_pandas()
    assert list(got["order_id"]) == sorted(example_tables()[1]["order_id"])
    assert got["items"].dtype.kind == "i"  # the database's integer column stays one


def test_postgres_write_back_of_many_rows_is_one_transaction(
    pg_shop: dict[str, object], tmp_path: Path
) -> None:
    """Thousands of rows of many columns (more values than one statement may carry), typed
    columns including a timestamp; a failing write leaves the tables exactly as they were."""
    import numpy as np

    from nlp_seg.errors import InputError
    from nlp_seg.io.database import DatabaseTarget, write_back

    n = 3000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(20)})
    frame["customer_id"] = [f"C{i:05d}" for i in range(n)]
    frame["seen_at"] = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(n), unit="h")
    frame["segment_id"] = rng.integers(0, 4, n)
    parquet = tmp_path / "assignments.parquet"
    frame.to_parquet(parquet)
    target = DatabaseTarget(pg_url(pg_shop), prefix="big_")
    info = {"command": "batch", "started_at": "2025-01-01T00:00:00+00:00", "inputs": [{}]}
    record = write_back(target, parquet, [{"id": 0, "name": "a"}], info)
    assert info["database"] == record and record["rows_written"]["big_assignments"] == n
    assert pg_query(pg_shop, "SELECT count(*) FROM big_assignments") == [(n,)]
    types = column_types(
        pg_query(
            pg_shop,
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'big_assignments'",
        )
    )
    assert types[("big_assignments", "seen_at")] == "timestamp without time zone"
    assert types[("big_assignments", "segment_id")] == "bigint"
    assert types[("big_assignments", "x0")] == "double precision"

    # a later run whose history rows do not fit the history's types (text in a bigint
    # column) fails after replacing the assignments: the whole transaction is rolled back
    frame.assign(segment_id="not-a-number").to_parquet(parquet)
    with pytest.raises(InputError, match="cannot write to postgresql://shop:\\*\\*\\*@"):
        write_back(target, parquet, [{"id": 0}], {"command": "batch", "inputs": [{}]})
    assert pg_query(pg_shop, "SELECT count(*) FROM big_history") == [(n,)]
    assert pg_query(pg_shop, "SELECT count(*) FROM big_runs") == [(1,)]
    types = column_types(pg_query(pg_shop, CATALOG_SQL.replace("nlpseg_%", "big_%")))
    assert types[("big_assignments", "segment_id")] == "bigint"
