"""Adversarial cases for ``nlpseg batch``: inputs edited under its feet, kills mid-write,
durable markers, and a Ray engine asked for more than its cluster can run.

Each test drives the real CLI (a subprocess) with the tiny models, as a careless user or a
hostile environment would, and checks the written files themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from test_cli import assert_one_line_error, nlpseg, tiny_args

REPO = Path(__file__).resolve().parents[2]
CHUNK = 100
ROWS = 320  # four chunks, the last one short


@pytest.fixture(scope="module")
def reviews(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    sys.path.insert(0, str(REPO / "scripts"))
    from make_example import make_reviews

    df = make_reviews(n_customers=250, seed=11).iloc[:ROWS].reset_index(drop=True)
    assert len(df) == ROWS
    return df


def batch_args(src: Path, out: Path, tiny: dict[str, Path], *extra: str) -> list[str]:
    return [
        "batch", str(src), "--out", str(out), "--chunk-size", str(CHUNK),
        "--fit-sample-size", "200", "--no-cache", *tiny_args(tiny), *extra,
    ]  # fmt: skip


def popen_nlpseg(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "nlp_seg", "-q", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


def kill_when(proc: subprocess.Popen[bytes], ready, timeout: float = 600) -> int:  # noqa: ANN001
    """SIGKILL ``proc`` as soon as ``ready()`` is true; its exit code."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return proc.returncode


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- item 5
#: Records each fsync and rename of a real ``nlpseg`` run to ``NLPSEG_TRACE`` (the CLI itself,
#: only watched), so the order of durable writes can be checked without pulling the power.
TRACER = """
import os, runpy, sys
log = open(os.environ["NLPSEG_TRACE"], "a", buffering=1)
real_fsync, real_replace = os.fsync, os.replace
def fsync(fd):
    log.write("fsync\\t" + os.readlink(f"/proc/self/fd/{fd}") + "\\n")
    real_fsync(fd)
def replace(src, dst, **kw):
    real_replace(src, dst, **kw)
    log.write("replace\\t" + os.path.abspath(dst) + "\\n")
os.fsync, os.replace = fsync, replace
sys.argv = ["nlpseg", *sys.argv[1:]]
runpy.run_module("nlp_seg", run_name="__main__")
"""


@pytest.fixture(scope="module")
def edited_in_place(
    reviews: pd.DataFrame, tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict:
    """A run killed after its first chunk; the input then edited in place (same size, same
    mtime); the re-run refused; a --restart run traced."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("the trace needs /proc to name fsynced files")
    root = tmp_path_factory.mktemp("edited").resolve()
    src, out = root / "reviews.csv", root / "out"
    reviews.to_csv(src, index=False)
    args = batch_args(src, out, tiny_models)
    marker = out / "_work" / "chunks" / "000000" / "ENCODED"
    code = kill_when(popen_nlpseg(args), marker.exists)
    assert code == -signal.SIGKILL, "the run finished before it could be killed"

    # Edit rows of chunks 0 and 3 in place: letters only (as many bytes, the same quoting),
    # the mtime put back.
    before = src.stat()
    original = src.read_bytes()
    edited = reviews.copy()
    for row in (5, 310):
        edited.loc[row, "review"] = re.sub("[A-Za-z]", "X", edited.loc[row, "review"])
    assert edited.loc[5, "review"] != reviews.loc[5, "review"]
    edited.to_csv(src, index=False)
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = src.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert src.read_bytes() != original

    refused = nlpseg("-q", *args)
    trace = root / "trace.log"
    restarted = subprocess.run(
        [sys.executable, "-c", TRACER, "-q", *args, "--restart"],
        capture_output=True,
        text=True,
        env={**os.environ, "NLPSEG_TRACE": str(trace)},
        timeout=600,
    )
    return {
        "src": src,
        "out": out,
        "edited": edited,
        "refused": refused,
        "restarted": restarted,
        "trace": trace,
    }


def test_input_edited_in_place_with_size_and_mtime_restored_is_refused(
    edited_in_place: dict,
) -> None:
    refused = edited_in_place["refused"]
    assert_one_line_error(refused, "reviews.csv changed")
    assert "--restart" in refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 2


def test_restart_after_an_edit_has_only_the_new_text_and_its_hash(edited_in_place: dict) -> None:
    proc = edited_in_place["restarted"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    out, src, edited = edited_in_place["out"], edited_in_place["src"], edited_in_place["edited"]
    got = pd.read_parquet(out / "assignments.parquet")
    assert got["review_id"].tolist() == edited["review_id"].tolist()  # every row once
    assert got["review"].tolist() == edited["review"].tolist()  # none of the old text
    run = json.loads((out / "run.json").read_text())
    assert run["inputs"][0]["sha256"] == sha256(src)
    manifest = json.loads((out / "_work" / "manifest.json").read_text())
    assert manifest["encode"]["inputs"][0]["sha256"] == sha256(src)


def test_every_marker_follows_fsynced_files_and_folders(edited_in_place: dict) -> None:
    """In the traced run, before each stage marker is renamed into place, every file of its
    folder was fsynced after being written and the folder was fsynced after the renames."""
    proc = edited_in_place["restarted"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [
        tuple(line.split("\t", 1)) for line in edited_in_place["trace"].read_text().splitlines()
    ]
    work = edited_in_place["out"] / "_work"
    markers = [work / "chunks" / f"{k:06d}" / "ENCODED" for k in range(4)]
    markers += [work / "parts" / f"{k:06d}.done" for k in range(4)]
    markers += [work / "fit" / "FITTED", work / "encoded.json"]
    for marker in markers:
        at = events.index(("replace", str(marker)))
        before = events[:at]
        folder = marker.parent
        data = [
            p
            for p in folder.iterdir()
            if p.is_file() and p != marker and not p.name.startswith(".")
        ]
        if marker.name.endswith(".done"):
            data = [folder / marker.name.replace(".done", ".parquet")]
        if marker.name == "encoded.json":
            data = markers[:4]
        if marker.name == "FITTED":  # the sample's arrays and the saved segmenter folder
            data = [p for p in data if p.is_file()] + list((folder / "segmenter").iterdir())
        for p in data:
            wrote = [i for i, e in enumerate(before) if e == ("replace", str(p))]
            synced = [i for i, e in enumerate(before) if e[0] == "fsync" and e[1] == str(p)] + [
                i
                for i, e in enumerate(before)
                if e[0] == "fsync" and e[1].startswith(str(p.parent / f".{p.name}."))
            ]
            assert synced, f"{p.name} was not fsynced before {marker.name}"
            if wrote:  # renamed into place: its folder was fsynced after the rename
                assert ("fsync", str(p.parent)) in before[wrote[-1] :], p
        assert ("fsync", str(folder)) in events[at:], f"{marker} itself was not made durable"


# --------------------------------------------------------------------------- item 8
def test_kill_mid_write_leaves_debris_the_next_run_removes(
    reviews: pd.DataFrame, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """kill -9 while pass 2 writes (at the first temporary file of a part, else at the first
    part), plus the debris a kill inside any write can leave: the next run removes it all,
    leaves the user's own files alone and ends with every row exactly once."""
    src, out = tmp_path / "reviews.csv", tmp_path / "out"
    reviews.to_csv(src, index=False)
    args = batch_args(src, out, tiny_models)
    parts = out / "_work" / "parts"

    def writing_a_part() -> bool:
        try:
            return any(
                e.name.startswith(".") or e.name.endswith(".done") for e in os.scandir(parts)
            )
        except FileNotFoundError:
            return False

    code = kill_when(popen_nlpseg(args), writing_a_part)
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "assignments.parquet").exists()
    work = out / "_work"
    planted = [
        work / "chunks" / "000001" / ".emb.npy.k3j_x9ab.tmp",
        work / "parts" / ".000003.parquet.a1b2c3d4.tmp",
        work / "fit" / ".FITTED.q1w2e3r4.tmp",
        out / ".assignments.parquet.partial",
        out / ".assignments.csv.partial",
        out / ".run.json.q1w2e3r4.tmp",
    ]
    for p in planted:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a file")
    left = [Path(d) / n for d, _, names in os.walk(out) for n in names if n.startswith(".")]
    left = [p for p in left if p.name != ".lock"]
    mine = [out / ".my-notes", out / "notes.tmp"]
    for p in mine:
        p.write_text("the user's own", encoding="utf-8")

    proc = nlpseg(*batch_args(src, out, tiny_models))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "temporary file(s) left by an interrupted run" in proc.stderr
    assert not [p for p in left if p.exists()], "debris left behind"
    assert all(p.read_text(encoding="utf-8") == "the user's own" for p in mine)
    after = [Path(d) / n for d, _, names in os.walk(out) for n in names]
    assert not [p for p in after if p.name.endswith((".tmp", ".partial")) and p not in mine]
    got = pd.read_parquet(out / "assignments.parquet")
    assert got["review_id"].tolist() == reviews["review_id"].tolist()  # every row once, in order
    assert got["review_id"].is_unique
    csv = pd.read_csv(out / "assignments.csv", dtype=str, keep_default_na=False)
    assert csv["review_id"].tolist() == reviews["review_id"].tolist()
    run = json.loads((out / "run.json").read_text())
    assert run["rows_in"] == run["rows_out"] == ROWS
    assert run["batch"]["chunks_encoded_before"] == 4 and run["batch"]["fit_reused"] is True


# --------------------------------------------------------------------------- item 9
@pytest.fixture(scope="module")
def two_cpu_ray() -> str:
    """A 2-CPU Ray instance (as on the machine of the issue); the CLI joins it by address."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'nlpseg[ray]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_ray_workers_that_would_starve_the_reads_are_refused_then_a_sized_pool_finishes(
    reviews: pd.DataFrame, tiny_models: dict[str, Path], tmp_path: Path, two_cpu_ray: str
) -> None:
    """The issue's command (``--workers 2`` on 2 CPUs) hung for 8 minutes: now it is refused in
    one line, and the default pool finishes with progress shown and the local engine's output."""
    src = tmp_path / "reviews.csv"
    reviews.to_csv(src, index=False)
    ray_args = ["--engine", "ray", "--ray-address", two_cpu_ray]
    t0 = time.monotonic()
    proc = nlpseg(*batch_args(src, tmp_path / "starved", tiny_models, *ray_args, "--workers", "2"))
    assert_one_line_error(proc, "--workers 2 cannot run on this Ray cluster")
    assert "use --workers 1 or fewer" in proc.stderr
    assert time.monotonic() - t0 < 300
    assert not (tmp_path / "starved" / "_work" / "chunks").exists()  # refused before encoding

    local = tmp_path / "local"
    assert nlpseg("-q", *batch_args(src, local, tiny_models)).returncode == 0
    remote = tmp_path / "ray"
    proc = subprocess.run(
        [sys.executable, "-m", "nlp_seg", *batch_args(src, remote, tiny_models, *ray_args)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,  # the hang would fail here, not after 8 minutes of nothing
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Ray: encoding with 1 actor(s)" in proc.stderr
    assert "Encoding chunks (Ray)" in proc.stderr and "Placing 4 chunks (Ray)" in proc.stderr
    assert "chunk 3: rows 300-319 encoded" in proc.stderr
    a = pd.read_parquet(local / "assignments.parquet")
    b = pd.read_parquet(remote / "assignments.parquet")
    pd.testing.assert_frame_equal(a, b)  # labels and sentiment equal the local engine's
    assert (local / "assignments.csv").read_bytes() == (remote / "assignments.csv").read_bytes()
