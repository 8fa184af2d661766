"""``nlpseg batch``: chunked, resumable, and the same result however it gets there.

The central test starts a real ``python -m nlp_seg batch`` subprocess with the tiny models,
SIGKILLs it during pass 1 and again during pass 2, starts it again, and checks that every input
row comes out exactly once, in order, with the contract columns, and that the result equals an
uninterrupted run with the same seed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CONTRACT = [
    "sentiment_label",
    "sentiment_score",
    "sentiment_confidence",
    "segment_id",
    "segment_name",
    "segment_probability",
    "is_outlier",
    "status",
    "aspects",
    "sentiment_mixed",
    "next_best_action",  # personalisation (README: Personalisation)
    "recommended_items",
]
CHUNK = 300
SAMPLE = 1000


def batch_cmd(inputs: list[Path], out: Path, tiny: dict[str, Path], *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "nlp_seg",
        "-q",
        "batch",
        *map(str, inputs),
        "--out",
        str(out),
        "--chunk-size",
        str(CHUNK),
        "--fit-sample-size",
        str(SAMPLE),
        "--embedding-model",
        str(tiny["embedding"]),
        "--sentiment-model",
        str(tiny["sentiment"]),
        *extra,
    ]


def run_ok(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def start_and_kill_at(cmd: list[str], marker: Path, timeout: float = 600) -> int:
    """Start ``cmd``; SIGKILL it as soon as ``marker`` exists. Returns its exit code."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ)
    )
    deadline = time.monotonic() + timeout
    while proc.poll() is None and not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return proc.returncode


@pytest.fixture(scope="module")
def reviews_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 3,000 generated reviews (with awkward rows): ten chunks of 300."""
    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo / "scripts"))
    from make_example import make_reviews

    df = make_reviews(n_customers=1900, seed=5)
    df.loc[3, "review"] = ""
    df.loc[400, "review"] = None
    df.loc[650, "review"] = '=HYPERLINK("http://evil")'
    path = tmp_path_factory.mktemp("batch") / "reviews.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def uninterrupted(reviews_csv: Path, tiny_models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batch_plain")
    out = root / "out"
    run_ok(batch_cmd([reviews_csv], out, tiny_models, "--cache-dir", str(root / "cache")))
    return out


def test_uninterrupted_run_writes_the_contract(reviews_csv: Path, uninterrupted: Path) -> None:
    src = pd.read_csv(reviews_csv, keep_default_na=False, dtype=str)
    got = pd.read_parquet(uninterrupted / "assignments.parquet")
    assert list(got.columns) == list(src.columns) + CONTRACT
    assert got["review_id"].tolist() == src["review_id"].tolist()
    assert got["review_id"].is_unique
    csv = pd.read_csv(uninterrupted / "assignments.csv", keep_default_na=False, dtype=str)
    assert csv["review_id"].tolist() == src["review_id"].tolist()
    assert csv.loc[650, "review"].startswith("'=")  # spreadsheet-safe, as analyze
    assert set(got.loc[[3, 400], "status"]) == {"empty_text"}
    ok = got["status"] == "ok"
    assert (got.loc[ok, "segment_id"] >= 0).all()
    assert got.loc[ok, "sentiment_score"].between(-1, 1).all()
    segments = json.loads((uninterrupted / "segments.json").read_text())["segments"]
    assert sum(s["size"] for s in segments) == int(ok.sum())
    run = json.loads((uninterrupted / "run.json").read_text())
    assert run["command"] == "batch"
    assert run["rows_in"] == run["rows_out"] == len(src)
    assert run["batch"]["chunks"] == -(-len(src) // CHUNK)
    assert run["batch"]["fit_sample_rows"] == SAMPLE
    assert run["inputs"][0]["rows"] == len(src)


def test_report_audiences_and_saved_model(
    reviews_csv: Path, uninterrupted: Path, tiny_models, tmp_path: Path
) -> None:
    """As analyze: report.html (with the map of the fit sample), audiences/ and --save-model,
    whose segmenter ``nlpseg assign`` uses to label rows as batch labelled them."""
    html = (uninterrupted / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and 'id="map"' in html
    segments = json.loads((uninterrupted / "segments.json").read_text())["segments"]
    index = pd.read_csv(uninterrupted / "audiences" / "index.csv", encoding="utf-8-sig")
    assert set(index["segment_id"]) == {s["id"] for s in segments if s["id"] >= 0}
    got = pd.read_parquet(uninterrupted / "assignments.parquet")
    run = json.loads((uninterrupted / "run.json").read_text())
    id_col = run["audiences"]["id_column"]
    assert id_col == run["columns"]["id"] and id_col in got.columns
    per_segment = got[got["segment_id"] >= 0].groupby("segment_id")[id_col].nunique()
    assert index.set_index("segment_id")["customers"].to_dict() == per_segment.to_dict()

    # --save-model on a finished run: nothing is encoded, fitted or placed again.
    out, model = tmp_path / "out", tmp_path / "model"
    shutil.copytree(uninterrupted, out)
    run_ok(batch_cmd([reviews_csv], out, tiny_models, "--no-cache", "--save-model", str(model)))
    run = json.loads((out / "run.json").read_text())
    assert run["batch"]["fit_reused"] is True and run["saved_model"] == str(model)
    state = json.loads((model / "segmenter.json").read_text())
    assert state["models"]["embedding"]["sha256"]  # assign refuses another encoder
    few = tmp_path / "few.csv"
    pd.read_csv(reviews_csv, dtype=str, keep_default_na=False).iloc[:300].to_csv(few, index=False)
    proc = subprocess.run(
        [sys.executable, "-m", "nlp_seg", "-q", "assign", str(few), "--model", str(model)]
        + ["--out", str(tmp_path / "assigned"), "--no-cache"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    placed = pd.read_parquet(tmp_path / "assigned" / "assignments.parquet")
    ok = got["status"].iloc[:300].to_numpy() == "ok"
    same = placed["segment_id"].to_numpy()[ok] == got["segment_id"].to_numpy()[:300][ok]
    assert same.mean() >= 0.95


def test_killed_twice_resumes_to_the_same_result(
    reviews_csv: Path, uninterrupted: Path, tiny_models, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cmd = batch_cmd([reviews_csv], out, tiny_models, "--cache-dir", str(tmp_path / "cache"))
    work = out / "_work"

    # Killed in pass 1, right after the second chunk is stored.
    code = start_and_kill_at(cmd, work / "chunks" / "000001" / "ENCODED")
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "assignments.parquet").exists()
    assert not (work / "encoded.json").exists()

    # Killed in pass 2, right after the first part is placed.
    code = start_and_kill_at(cmd, work / "parts" / "000000.done")
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    assert (work / "fit" / "FITTED").exists()
    assert not (out / "assignments.parquet").exists()

    run_ok(cmd)
    src = pd.read_csv(reviews_csv, keep_default_na=False, dtype=str)
    got = pd.read_parquet(out / "assignments.parquet")
    assert got["review_id"].tolist() == src["review_id"].tolist()  # each row once, in order
    assert list(got.columns) == list(src.columns) + CONTRACT
    pd.testing.assert_frame_equal(got, pd.read_parquet(uninterrupted / "assignments.parquet"))
    csv_bytes = (uninterrupted / "assignments.csv").read_bytes()
    assert (out / "assignments.csv").read_bytes() == csv_bytes
    run = json.loads((out / "run.json").read_text())
    assert run["batch"]["chunks_encoded_before"] == run["batch"]["chunks"]
    assert run["batch"]["fit_reused"] is True
    assert run["batch"]["chunks_placed_before"] >= 1


def test_folder_of_files_equals_one_file(
    reviews_csv: Path, uninterrupted: Path, tiny_models, tmp_path: Path
) -> None:
    """Chunks run across file boundaries, so splitting the input changes nothing."""
    src = pd.read_csv(reviews_csv, keep_default_na=False, dtype=str)
    folder = tmp_path / "in"
    folder.mkdir()
    src.iloc[:1000].to_csv(folder / "a.csv", index=False)
    src.iloc[1000:].to_csv(folder / "b.csv", index=False)
    out = tmp_path / "out"
    # A fresh cache, as the uninterrupted run had: a text served from the cache was encoded
    # in another batch than it would be without, which moves its float32 vector by ~1e-8
    # and UMAP can turn that into other segments; like must be compared with like.
    run_ok(batch_cmd([folder], out, tiny_models, "--cache-dir", str(tmp_path / "c"), "--no-csv"))
    got = pd.read_parquet(out / "assignments.parquet")
    want = pd.read_parquet(uninterrupted / "assignments.parquet")
    assert got["review_id"].tolist() == src["review_id"].tolist()
    assert got["segment_id"].tolist() == want["segment_id"].tolist()
    np.testing.assert_allclose(got["sentiment_score"], want["sentiment_score"], atol=1e-5)
    assert not (out / "assignments.csv").exists()
    run = json.loads((out / "run.json").read_text())
    assert [f["rows"] for f in run["inputs"]] == [1000, len(src) - 1000]


def test_parquet_input_streams_with_its_types(
    reviews_csv: Path, uninterrupted: Path, tiny_models, tmp_path: Path
) -> None:
    from nlp_seg.runs.batch import BatchOptions, run_batch
    from nlp_seg.segmenter import SegmenterConfig

    src = pd.read_csv(reviews_csv, keep_default_na=False, dtype=str)
    src["rating"] = src["rating"].astype(int)
    path = tmp_path / "reviews.parquet"
    src.to_parquet(path, index=False, row_group_size=700)  # row groups unlike the chunks
    cfg = SegmenterConfig(
        embedding_model=str(tiny_models["embedding"]),
        sentiment_model=str(tiny_models["sentiment"]),
        fit_sample_size=SAMPLE,
        cache_dir=str(tmp_path / "cache"),  # fresh, as the uninterrupted run's
    )
    result = run_batch([path], tmp_path / "out", cfg, BatchOptions(chunk_size=CHUNK))
    assert result.rows_out == len(src)
    got = pd.read_parquet(tmp_path / "out" / "assignments.parquet")
    want = pd.read_parquet(uninterrupted / "assignments.parquet")
    assert got["rating"].dtype.kind == "i"  # Parquet types are kept
    assert got["review_id"].tolist() == src["review_id"].tolist()
    assert got["segment_id"].tolist() == want["segment_id"].tolist()


def test_new_clustering_settings_reuse_the_encoded_chunks(
    reviews_csv: Path, uninterrupted: Path, tiny_models, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(uninterrupted, out)
    cache = tmp_path / "empty-cache"
    proc = run_ok(
        batch_cmd(
            [reviews_csv], out, tiny_models, "--cache-dir", str(cache), "--min-cluster-size", "60"
        )
    )
    run = json.loads((out / "run.json").read_text())
    assert run["batch"]["chunks_encoded_before"] == run["batch"]["chunks"]
    assert run["batch"]["fit_reused"] is False
    assert run["parameters"]["min_cluster_size"] == 60
    assert "pipeline.embedding" not in run["seconds"]  # no text was encoded again
    # (the keyword step may still embed its candidate words, a few hundred short strings,
    # through the cache: run.json counts them apart, under pipeline.keywords)
    assert "Traceback" not in proc.stderr

    # Other inputs or encoding settings must not silently mix with the stored chunks.
    proc = subprocess.run(
        batch_cmd([reviews_csv], out, tiny_models, "--max-seq-length", "32"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "--restart" in last and "max_seq_length" in last


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module, limited to 2 CPUs (Ray starts slowly)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'nlpseg[ray]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_ray_engine_matches_local(
    fmt: str, reviews_csv: Path, tiny_models, tmp_path: Path, local_ray
) -> None:
    """Same seed, same sample: ``--engine ray`` writes exactly what the local engine writes."""
    from nlp_seg.runs.batch import BatchOptions, run_batch
    from nlp_seg.segmenter import SegmenterConfig

    src = pd.read_csv(reviews_csv, dtype=str, keep_default_na=False).iloc[:500]
    small = tmp_path / f"small.{fmt}"
    if fmt == "csv":
        src.to_csv(small, index=False)
    else:
        src.assign(rating=src["rating"].astype(int)).to_parquet(
            small, index=False, row_group_size=180
        )
    cfg = SegmenterConfig(
        embedding_model=str(tiny_models["embedding"]),
        sentiment_model=str(tiny_models["sentiment"]),
        fit_sample_size=300,  # so most rows are placed by the actors, not by the fit
        cache_dir=None,
    )
    local = run_batch([small], tmp_path / "local", cfg, BatchOptions(chunk_size=150))
    messages = _Messages()
    remote = run_batch(
        [small],
        tmp_path / "ray",
        cfg,
        BatchOptions(chunk_size=150, engine="ray"),
        reporter=messages,
    )
    assert local.rows_out == remote.rows_out == 500
    a = pd.read_parquet(tmp_path / "local" / "assignments.parquet")
    b = pd.read_parquet(tmp_path / "ray" / "assignments.parquet")
    assert b["review_id"].tolist() == src["review_id"].tolist()  # every row once, in order
    pd.testing.assert_frame_equal(a, b)
    if fmt == "csv":
        ca = (tmp_path / "local" / "assignments.csv").read_bytes()
        assert (tmp_path / "ray" / "assignments.csv").read_bytes() == ca
    sa, sb = (json.loads((tmp_path / d / "segments.json").read_text()) for d in ("local", "ray"))
    assert sa["segments"] == sb["segments"]
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run["engine"] == "ray"
    assert run["batch"]["chunks"] == 4
    # progress for both Ray stages; the 2-CPU instance runs one model actor (one CPU stays
    # free for Ray Data's read tasks)
    assert "Encoding chunks (Ray)" in messages.stages
    assert "Placing 4 chunks (Ray)" in messages.stages
    assert messages.advanced["Encoding chunks (Ray)"] == 4
    assert any(m.startswith("Ray: encoding with 1 actor(s)") for m in messages.lines)
    assert any(m.startswith("chunk 3: rows 450-499 encoded") for m in messages.lines)


class _Messages:
    """A reporter that records what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stages: list[str] = []
        self.advanced: dict[str, int] = {}

    def message(self, text: str) -> None:
        self.lines.append(text)

    def stage(self, name: str, total: int | None = None):  # noqa: ANN201 - a context manager
        import contextlib

        self.stages.append(name)
        self.advanced[name] = 0

        @contextlib.contextmanager
        def cm():  # noqa: ANN202
            def advance(n: int) -> None:
                self.advanced[name] += n

            yield advance

        return cm()


# --------------------------------------------------------------------------- Ray sizing
@pytest.mark.parametrize(
    ("total", "free", "workers", "gpus", "size", "warns"),
    [
        ({"CPU": 2}, {"CPU": 2}, None, False, 1, False),  # one CPU left for the reads
        ({"CPU": 16}, {"CPU": 16}, None, False, 15, False),
        ({"CPU": 16}, {"CPU": 5}, None, False, 4, False),  # sized from what is free now
        ({"CPU": 16}, {"CPU": 0}, None, False, 1, True),
        ({"CPU": 16}, {"CPU": 16}, 3, False, 3, False),
        ({"CPU": 16}, {"CPU": 3}, 8, False, 8, True),  # possible, but waits
        ({"CPU": 16, "GPU": 4}, {"CPU": 16, "GPU": 4}, None, True, 4, False),
        ({"CPU": 16, "GPU": 4}, {"CPU": 16, "GPU": 1}, None, True, 1, False),
        ({"CPU": 3, "GPU": 4}, {"CPU": 3, "GPU": 4}, None, True, 2, False),
        ({"CPU": 16, "GPU": 4}, {"CPU": 16, "GPU": 4}, None, False, 15, False),  # --device cpu
    ],
)
def test_ray_pool_is_sized_from_free_resources(
    total: dict, free: dict, workers: int | None, gpus: bool, size: int, warns: bool
) -> None:
    from nlp_seg.runs.batch_ray import plan_pool

    got, remote, warning = plan_pool(total, free, workers, gpus)
    assert got == size
    assert remote == (
        {"num_gpus": 1, "num_cpus": 1} if gpus and total.get("GPU") else {"num_cpus": 1}
    )
    assert bool(warning) is warns


@pytest.mark.parametrize(
    ("total", "workers", "gpus", "needle"),
    [
        ({"CPU": 2}, 2, False, "--workers 2 cannot run on this Ray cluster"),  # the hang
        ({"CPU": 8}, 8, False, "use --workers 7 or fewer"),
        ({"CPU": 8}, 50, False, "at most 7 actor(s) fit"),
        ({"CPU": 1}, None, False, "needs at least 2 CPUs"),
        ({"CPU": 16, "GPU": 2}, 3, True, "has 2 GPU(s); use --workers 2 or fewer"),
        ({"CPU": 2, "GPU": 2}, 2, True, "use --workers 1 or fewer"),
    ],
)
def test_ray_pool_refuses_what_the_cluster_cannot_run(
    total: dict, workers: int | None, gpus: bool, needle: str
) -> None:
    from nlp_seg.errors import NlpsegError
    from nlp_seg.runs.batch_ray import plan_pool

    with pytest.raises(NlpsegError) as err:
        plan_pool(total, total, workers, gpus)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_ray_heartbeat_says_what_it_waits_for() -> None:
    from nlp_seg.runs.batch_ray import _heartbeat

    messages = _Messages()
    with _heartbeat(messages, ["chunk 3"], every=0.2):
        time.sleep(0.7)
    assert messages.lines and messages.lines[0].startswith("Ray: waiting for chunk 3 (")


# --------------------------------------------------------------------------- work folder
def test_inputs_are_fingerprinted_by_content(tmp_path: Path) -> None:
    """An input edited in place with its size and mtime put back is another input."""
    from nlp_seg.runs.batch_work import _changed_input, plan_inputs

    path = tmp_path / "in.csv"
    path.write_text("id,review\n1,good phone\n2,bad phone\n", encoding="utf-8")
    before = plan_inputs([path]).fingerprint()
    st = path.stat()
    path.write_text("id,review\n1,good phone\n2,sad phone\n", encoding="utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    after = plan_inputs([path]).fingerprint()
    assert before[0]["sha256"] != after[0]["sha256"]
    msg = _changed_input({"inputs": before}, {"inputs": after})
    assert msg == "in.csv changed (its content's SHA-256 differs)"
    assert _changed_input({"inputs": after}, {"inputs": after}) is None


def test_an_input_written_to_mid_run_is_refused(tmp_path: Path) -> None:
    from nlp_seg.errors import NlpsegError
    from nlp_seg.runs.batch_work import plan_inputs

    path = tmp_path / "in.csv"
    path.write_text("id,review\n1,good phone\n", encoding="utf-8")
    plan = plan_inputs([path])
    plan.fingerprint()  # hashed at the start of the run
    plan.check_unchanged()
    st = path.stat()
    path.write_text("id,review\n1,sad phone\n", encoding="utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # ctime still moves
    with pytest.raises(NlpsegError, match="changed while nlpseg batch was reading it.*--restart"):
        plan.check_unchanged()


def test_debris_of_a_kill_is_removed_and_nothing_else(tmp_path: Path) -> None:
    from nlp_seg.runs.batch_work import WorkDir

    out = tmp_path / "out"
    work = WorkDir(out)
    debris = [
        work.chunks / "000001" / ".emb.npy.k3j_x9ab.tmp",
        work.chunks / "000001" / ".ENCODED.abcdefgh",  # an older version's temp name
        work.parts / ".000002.parquet.a1b2c3d4.tmp",
        work.fit / "segmenter" / ".arrays.safetensors.zzzzzzzz.tmp",
        out / ".assignments.parquet.partial",
        out / ".assignments.csv.partial",
        out / ".run.json.q1w2e3r4.tmp",
        out / ".report.html.q1w2e3r4",
        out / "audiences" / ".index.csv.0a9b8c7d.tmp",
    ]
    kept = [
        work.root / ".lock",
        work.chunks / "000001" / "emb.npy",
        out / "assignments.csv",
        out / ".my-notes",
        out / "notes.tmp",
        out / ".assignments.csv.backup",
    ]
    for p in debris + kept:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    removed = work.remove_debris()
    assert sorted(removed) == sorted(debris)
    assert not [p for p in debris if p.exists()]
    assert all(p.exists() for p in kept)


def test_files_and_folders_are_fsynced_before_their_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file of a chunk is flushed, then renamed into place, then its folder flushed,
    all before the chunk's marker is renamed into place."""
    import pyarrow as pa

    import nlp_seg.io.write as write_module
    from nlp_seg.runs.batch_work import EncodedChunk, WorkDir

    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        real_replace(src, dst)
        events.append(("replace", str(Path(dst).resolve())))

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the fsynced files")
    monkeypatch.setattr(write_module.os, "fsync", fsync)
    monkeypatch.setattr(write_module.os, "replace", replace)
    work = WorkDir(tmp_path.resolve() / "out")
    table = pa.table({"review": ["good", "bad"]})
    enc = EncodedChunk(
        ["good", "bad"],
        np.array(["ok", "ok"], dtype=object),
        np.zeros((2, 4), np.float16),
        np.full((2, 3), 1 / 3),
    )
    work.save_encoded(0, table, enc)
    d = str(work.chunk_dir(0))
    marker = events.index(("replace", f"{d}/ENCODED"))
    before = events[:marker]
    for name in ("input.parquet", "clean.parquet", "emb.npy", "probs.npy"):
        at = before.index(("replace", f"{d}/{name}"))
        assert any(e[0] == "fsync" and f"/.{name}." in e[1] for e in before[:at]), name
        assert ("fsync", d) in before[at:], name
    assert ("fsync", str(work.chunks)) in before  # the new chunk folder's own entry
    assert ("fsync", d) in events[marker:]  # and the marker itself
