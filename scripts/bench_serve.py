"""Benchmark ``nlpseg serve``: requests/s and p50/p99 latency on this machine (localhost only).

    python scripts/bench_serve.py                       # fit a model on the example, serve it
    python scripts/bench_serve.py --model DIR           # a folder from analyze --save-model
    python scripts/bench_serve.py --seconds 5 --compare-unbatched --json out.json
    python scripts/bench_serve.py --suite load,burst --threads 1   # the limits under load

The server runs as ``nlpseg serve`` in its own process (so the load generator does not share its
interpreter); the load comes from asyncio + httpx clients in this process. Scenarios, each for
``--seconds`` after a short warm-up:

* ``assign 1 text, 1 client``: one request at a time, the latency floor;
* ``assign 1 text, N clients``: many small concurrent requests, where micro-batching pays;
* ``assign 32 texts, 4 clients``: batched requests;
* ``score 1 text, N clients``: sentiment only.

``--compare-unbatched`` serves the same model a second time with ``--max-batch-size 1`` and
repeats the concurrent single-text scenario, to show what micro-batching buys.

``--suite`` picks what runs (comma-separated; default ``throughput``, the scenarios above):

* ``load``: a bounded load test, ``--load-clients`` (50) clients posting one-text
  ``/v1/assign`` requests for ``--load-seconds`` (60), each client stopping at the deadline or
  after ``--load-max-requests`` (2000) requests: failures (any answer but 200, or a transport
  error), p50/p99 latency, requests/s;
* ``burst``: ``--burst`` (200) concurrent near-limit bodies (``--max-body-bytes`` minus 1%,
  256 texts each) sent at once to ``/v1/score`` with a ``--burst-timeout`` (60 s) client
  deadline; the server's resident memory before and its peak during the burst (VmRSS and
  VmHWM of its process, Linux), and how the requests were answered (200, 503 with
  ``Retry-After``, or given up by the client: such requests are dropped, not computed).

Each suite serves the model with ``nlpseg serve``'s default limits (only the batching options
below change), on 127.0.0.1 only.
Without ``--model`` the script fits a segmenter on ``examples/reviews.csv`` with the default
(bundled) profile, or with ``--embedding-model``/``--sentiment-model`` folders, and saves it to
a temporary folder first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fit_model(dest: Path, embedding_model: str | None, sentiment_model: str | None) -> None:
    """Fit on the bundled example and save, as ``nlpseg analyze --save-model`` would."""
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    frame = pd.read_csv(REPO / "examples" / "reviews.csv")
    seg = Segmenter(
        SegmenterConfig(embedding_model=embedding_model, sentiment_model=sentiment_model)
    )
    seg.fit(frame["review"].tolist(), frame[["rating"]])
    seg.save(str(dest))


@contextlib.contextmanager
def server(model: Path, extra: list[str]) -> Iterator[str]:
    """``nlpseg serve`` on a free localhost port until the block ends; yields its URL."""
    with served(model, extra) as (url, _):
        yield url


@contextlib.contextmanager
def served(model: Path, extra: list[str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``nlpseg serve`` on a free localhost port until the block ends; yields (URL, process)."""
    port = free_port()
    cmd = [sys.executable, "-m", "nlp_seg", "-q", "serve", "--model", str(model)]
    cmd += ["--port", str(port), *extra]
    env = {k: v for k, v in os.environ.items() if k != "NLPSEG_API_KEY"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise SystemExit(f"server exited: {err.strip()[-500:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("server not ready after 600 s")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def load(
    url: str, path: str, bodies: list[dict[str, Any]], clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` loops posting ``bodies`` in turn for ``seconds``; latency of each request."""
    latencies: list[float] = []
    failures = 0
    texts = 0

    async def one(i: int, stop: float) -> None:
        nonlocal failures, texts
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
            k = i
            while time.perf_counter() < stop:
                body = bodies[k % len(bodies)]
                k += clients
                t0 = time.perf_counter()
                r = await client.post(path, json=body)
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    failures += 1
                else:
                    texts += len(r.json()["results"])

    start = time.perf_counter()
    await asyncio.gather(*(one(i, start + seconds) for i in range(clients)))
    wall = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "failed": failures,
        "requests_per_s": round(len(latencies) / wall, 1),
        "texts_per_s": round(texts / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
    }


def scenarios(texts: list[str], clients: int) -> list[tuple[str, str, list[dict], int]]:
    single_assign = [{"rows": [{"id": i, "text": t}]} for i, t in enumerate(texts)]
    batch_assign = [
        {"rows": [{"id": j, "text": texts[(i + j) % len(texts)]} for j in range(32)]}
        for i in range(0, len(texts), 32)
    ]
    single_score = [{"texts": [t]} for t in texts]
    return [
        ("assign 1 text, 1 client", "/v1/assign", single_assign, 1),
        (f"assign 1 text, {clients} clients", "/v1/assign", single_assign, clients),
        ("assign 32 texts, 4 clients", "/v1/assign", batch_assign, 4),
        (f"score 1 text, {clients} clients", "/v1/score", single_score, clients),
    ]


def batch_counts(url: str) -> tuple[float, float]:
    """Model calls and requests answered by them so far (all kinds), from ``/metrics``."""
    calls = requests = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("nlpseg_batch_requests_count"):
            calls += float(line.rsplit(" ", 1)[1])
        elif line.startswith("nlpseg_batch_requests_sum"):
            requests += float(line.rsplit(" ", 1)[1])
    return calls, requests


def measure(
    url: str, path: str, bodies: list[dict[str, Any]], clients: int, seconds: float
) -> dict[str, Any]:
    calls0, req0 = batch_counts(url)
    result = asyncio.run(load(url, path, bodies, clients, seconds))
    calls1, req1 = batch_counts(url)
    calls = calls1 - calls0
    result["requests_per_model_call"] = round((req1 - req0) / calls, 2) if calls else None
    return result


def run(args: argparse.Namespace, model: Path) -> list[dict[str, Any]]:
    frame = pd.read_csv(REPO / "examples" / "reviews.csv")
    texts = frame["review"].astype(str).tolist()
    rows: list[dict[str, Any]] = []
    base = ["--max-wait-ms", str(args.max_wait_ms), "--max-batch-size", str(args.max_batch_size)]
    if args.threads:
        base += ["--threads", str(args.threads)]
    with server(model, base) as url:
        asyncio.run(load(url, "/v1/assign", [{"rows": [{"text": texts[0]}]}], 1, 1.0))
        for name, path, bodies, clients in scenarios(texts, args.clients):
            result = measure(url, path, bodies, clients, args.seconds)
            rows.append({"scenario": name, **result})
            print(json.dumps(rows[-1]), flush=True)
    if args.compare_unbatched:
        unbatched = ["--max-batch-size", "1", "--max-wait-ms", "0", *base[4:]]
        with server(model, unbatched) as url:
            asyncio.run(load(url, "/v1/assign", [{"rows": [{"text": texts[0]}]}], 1, 1.0))
            name, path, bodies, clients = scenarios(texts, args.clients)[1]
            result = measure(url, path, bodies, clients, args.seconds)
            rows.append({"scenario": f"{name}, no micro-batching", **result})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def load_test(
    url: str, texts: list[str], clients: int, seconds: float, max_requests: int
) -> dict[str, Any]:
    """``clients`` loops of one-text ``/v1/assign`` requests, each until ``seconds`` have passed
    or it has sent ``max_requests``; every non-200 answer or transport error is a failure."""
    latencies: list[float] = []
    failures: dict[str, int] = {}

    async def one(i: int, stop: float) -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            for k in range(max_requests):
                if time.perf_counter() >= stop:
                    return
                body = {"rows": [{"id": k, "text": texts[(i + k * clients) % len(texts)]}]}
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/assign", json=body)
                    why = None if r.status_code == 200 else str(r.status_code)
                except httpx.HTTPError as exc:
                    why = type(exc).__name__
                latencies.append(time.perf_counter() - t0)
                if why:
                    failures[why] = failures.get(why, 0) + 1

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(one(i, start + seconds) for i in range(clients)))
        return time.perf_counter() - start

    wall = asyncio.run(main())
    lat = np.asarray(latencies) * 1000
    return {
        "test": f"load: {clients} clients, {seconds:g} s, 1-text /v1/assign",
        "requests": len(latencies),
        "failed": sum(failures.values()),
        "failures": failures,
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(lat.max()), 1),
        "wall_s": round(wall, 1),
    }


def proc_mb(pid: int, field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of a process in MB (``None`` off Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def near_limit_body(max_body_bytes: int, max_texts: int = 256, max_chars: int = 5000) -> bytes:
    """A ``/v1/score`` body of ``max_texts`` distinct review-like texts just under the limit."""
    base = "Sản phẩm rất tốt, giao hàng nhanh 😍 nhưng pin tệ quá, mong shop cải thiện. "
    chars = max_chars
    while True:
        texts = [(f"{i} " + base * (max_chars // len(base) + 1))[:chars] for i in range(max_texts)]
        body = json.dumps({"texts": texts}).encode()
        if len(body) <= max_body_bytes * 0.99 or chars <= 10:
            return body
        chars -= 50


def burst_test(
    url: str, proc: subprocess.Popen[bytes], n: int, max_body_bytes: int, timeout: float
) -> dict[str, Any]:
    """``n`` concurrent near-limit bodies at once; the server's RSS before and at its peak.

    One such body is sent alone first: its peak is what a single request's model calls take
    (encoding long texts), which the burst's peak is compared with.
    """
    body = near_limit_body(max_body_bytes)
    headers = {"content-type": "application/json"}

    def reset_peak() -> None:
        with contextlib.suppress(OSError):  # VmHWM restarts from the current RSS
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")

    reset_peak()
    before_one = proc_mb(proc.pid, "VmRSS")
    t0 = time.perf_counter()
    one_status = httpx.post(f"{url}/v1/score", content=body, headers=headers, timeout=600)
    one_s = time.perf_counter() - t0
    peak_one = proc_mb(proc.pid, "VmHWM")
    reset_peak()
    before = proc_mb(proc.pid, "VmRSS")
    codes: dict[str, int] = {}

    async def one(client: httpx.AsyncClient) -> None:
        try:
            r = await client.post("/v1/score", content=body, headers=headers)
            key = str(r.status_code)
            if r.status_code == 503 and r.headers.get("retry-after") is None:
                key = "503 without Retry-After"
        except httpx.TimeoutException:
            key = "client gave up"
        except httpx.HTTPError as exc:
            key = type(exc).__name__
        codes[key] = codes.get(key, 0) + 1

    async def main() -> float:
        limits = httpx.Limits(max_connections=n)
        async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
            start = time.perf_counter()
            await asyncio.gather(*(one(client) for _ in range(n)))
            return time.perf_counter() - start

    wall = asyncio.run(main())
    time.sleep(1.0)  # let the server drop what the clients gave up on
    peak = proc_mb(proc.pid, "VmHWM")
    dropped = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith('nlpseg_rejected_requests_total{reason="disconnected"}'):
            dropped = float(line.rsplit(" ", 1)[1])
    return {
        "test": f"burst: {n} concurrent bodies of {len(body) / 1e6:.2f} MB (256 texts)",
        "answers": codes,
        "dropped_unanswered": int(dropped),
        "one_request": {
            "status": one_status.status_code,
            "seconds": round(one_s, 1),
            "rss_before_mb": before_one,
            "rss_peak_mb": peak_one,
        },
        "rss_before_mb": before,
        "rss_peak_mb": peak,
        "rss_growth_mb": round(peak - before, 1) if peak and before else None,
        "peak_over_one_request_mb": round(peak - peak_one, 1) if peak and peak_one else None,
        "wall_s": round(wall, 1),
    }


def run_limits(args: argparse.Namespace, model: Path, suites: set[str]) -> list[dict[str, Any]]:
    frame = pd.read_csv(REPO / "examples" / "reviews.csv")
    texts = frame["review"].astype(str).tolist()
    extra = ["--max-wait-ms", str(args.max_wait_ms), "--max-batch-size", str(args.max_batch_size)]
    if args.threads:
        extra += ["--threads", str(args.threads)]
    rows: list[dict[str, Any]] = []
    with served(model, extra) as (url, proc):
        asyncio.run(load(url, "/v1/assign", [{"rows": [{"text": texts[0]}]}], 1, 1.0))
        if "load" in suites:
            rows.append(
                load_test(url, texts, args.load_clients, args.load_seconds, args.load_max_requests)
            )
            print(json.dumps(rows[-1]), flush=True)
        if "burst" in suites:
            rows.append(burst_test(url, proc, args.burst, 2_000_000, args.burst_timeout))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="saved segmenter folder (default: fit one)")
    ap.add_argument("--embedding-model", help="when fitting: embedding model (default bundled)")
    ap.add_argument("--sentiment-model", help="when fitting: sentiment model (default bundled)")
    ap.add_argument("--seconds", type=float, default=10.0, help="per scenario")
    ap.add_argument("--clients", type=int, default=16, help="concurrent clients")
    ap.add_argument("--max-batch-size", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--threads", type=int, help="nlpseg serve --threads (torch CPU threads)")
    ap.add_argument("--compare-unbatched", action="store_true")
    ap.add_argument(
        "--suite", default="throughput", help="comma-separated: throughput, load, burst"
    )
    ap.add_argument("--load-clients", type=int, default=50)
    ap.add_argument("--load-seconds", type=float, default=60.0)
    ap.add_argument("--load-max-requests", type=int, default=2000, help="per client")
    ap.add_argument("--burst", type=int, default=200, help="concurrent near-limit bodies")
    ap.add_argument("--burst-timeout", type=float, default=60.0, help="client deadline, s")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    suites = {s.strip() for s in args.suite.split(",") if s.strip()}
    unknown = suites - {"throughput", "load", "burst"}
    if unknown:
        ap.error(f"unknown --suite {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = Path(tmp) / "model"
            print("fitting a segmenter on examples/reviews.csv ...", flush=True)
            fit_model(model, args.embedding_model, args.sentiment_model)
        rows = run(args, model) if "throughput" in suites else []
        limit_rows = run_limits(args, model, suites) if suites & {"load", "burst"} else []
    info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "model": str(args.model or "fitted on examples/reviews.csv"),
        "threads": args.threads or "torch default",
        "results": rows,
        "limits": limit_rows,
    }
    print()
    print(f"{info['machine']}; model: {info['model']}; torch threads: {info['threads']}")
    if rows:
        print(
            "| scenario | requests/s | texts/s | p50 ms | p99 ms | requests/model call | failed |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['scenario']} | {r['requests_per_s']} | {r['texts_per_s']} | {r['p50_ms']} "
            f"| {r['p99_ms']} | {r['requests_per_model_call']} | {r['failed']} |"
        )
    for r in limit_rows:
        print(f"- {r['test']}: {json.dumps({k: v for k, v in r.items() if k != 'test'})}")
    if args.json:
        args.json.write_text(json.dumps(info, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
