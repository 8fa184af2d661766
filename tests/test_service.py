"""The HTTP service (``nlpseg serve``), tested as a client sees it.

Every test talks HTTP to a real uvicorn server on a free localhost port (in a thread of this
process, or ``nlpseg serve`` in a subprocess), serving a segmenter fitted on the bundled
example with the tiny local models. Nothing is mocked: the model calls, the micro-batcher,
the limits and the authentication are the ones a deployment runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from nlp_seg.segmenter import (  # noqa: E402
    ASSIGNMENT_COLUMNS,
    SCORE_COLUMNS,
    Segmenter,
    SegmenterConfig,
)
from nlp_seg.service.app import (  # noqa: E402
    ServiceSettings,
    create_app,
    frame_records,
    server_options,
)

REPO = Path(__file__).resolve().parent.parent
API_KEY = "s3cret-test-key"
LIMITS = {"max_texts": 8, "max_text_chars": 300, "max_body_bytes": 20_000}
ROWS = [
    {"id": "C1", "text": "Sản phẩm rất tốt, giao hàng nhanh 😍", "behavior": {"rating": 5}},
    {"id": 2, "text": "terrible battery, the screen is bad 😡", "behavior": {"rating": 1}},
    {"id": "C3", "text": "", "behavior": {"rating": 3}},
    {"id": None, "text": "mong shop cải thiện pin", "behavior": {"rating": None}},
    {"text": "great camera, fast delivery"},
    {"id": "C6", "text": None, "behavior": {"rating": 4}},
]


# ----------------------------------------------------------------------------- fixtures


@contextlib.contextmanager
def running(app: object, settings: ServiceSettings | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free localhost port in a thread, with the connection
    limits ``nlpseg serve`` applies (``settings``, default the app's); yield its base URL."""
    import uvicorn

    settings = settings or app.state.settings  # type: ignore[attr-defined]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **server_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "server thread died"
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def wait_ready(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            r = httpx.get(f"{url}/readyz", timeout=5)
            if r.status_code == 200:
                return
            assert r.status_code == 503, r.text
        time.sleep(0.2)
    raise AssertionError("service never became ready")


@pytest.fixture(scope="module")
def fitted(tiny_models: dict[str, Path]) -> Segmenter:
    frame = pd.read_csv(REPO / "examples" / "reviews.csv")
    seg = Segmenter(
        SegmenterConfig(
            embedding_model=str(tiny_models["embedding"]),
            sentiment_model=str(tiny_models["sentiment"]),
            device="cpu",
            seed=7,
        )
    )
    return seg.fit(frame["review"].tolist(), frame[["rating"]])


@pytest.fixture(scope="module")
def base_url(fitted: Segmenter) -> Iterator[str]:
    settings = ServiceSettings(**LIMITS, max_wait_ms=20, api_key=None)
    with running(create_app(fitted, settings)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    # Idle connections are dropped by the client well before the server's keep-alive (5 s)
    # closes them, so a request is never sent on a connection the server is closing.
    limits = httpx.Limits(keepalive_expiry=2)
    with httpx.Client(base_url=base_url, timeout=60, limits=limits) as c:
        yield c


#: The load test's idle deadlines (s). With the defaults (``keep_alive_s`` 5, and the next
#: request's headers due within ``header_timeout_s`` 10 of an answer) a pooled connection of
#: the load test, on a starved CPU (two xdist workers on two shared cores), can sit idle that
#: long between its answer and the client's next request: the server closes it while that
#: request is on its way and the client gets a reset (``httpx.ReadError``). That is HTTP/1.1
#: keep-alive working as specified (``test_idle_keep_alive_connection_is_closed`` checks the
#: limit), not what the load test checks.
LOAD_IDLE_S = 300


@pytest.fixture(scope="module")
def load_url(fitted: Segmenter) -> Iterator[str]:
    """``base_url``'s service with deadlines no CPU stall reaches (the load test's server)."""
    settings = ServiceSettings(
        **LIMITS, max_wait_ms=20, api_key=None, keep_alive_s=LOAD_IDLE_S,
        header_timeout_s=LOAD_IDLE_S,
    )  # fmt: skip
    with running(create_app(fitted, settings)) as url:
        yield url


def expected_assign(seg: Segmenter, rows: list[dict]) -> list[dict]:
    """What ``Segmenter.predict`` says for ``rows`` (the reference for the service)."""
    behavior = pd.DataFrame(
        [(r.get("behavior") or {}) for r in rows], columns=["rating"], dtype=float
    )
    frame = seg.predict([r.get("text") for r in rows], behavior)
    out = frame_records(frame)
    for r, o in zip(rows, out, strict=True):
        o["id"] = r.get("id")
    return out


def assignment_fields(results: list[dict]) -> list[dict]:
    """The contract's assignment columns and the id of each result (what predict gives)."""
    keep = {*ASSIGNMENT_COLUMNS, "id"}
    return [{k: v for k, v in r.items() if k in keep} for r in results]


def assert_error(r: httpx.Response, status: int, code: str, needle: str = "") -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code
    assert needle.lower() in err["message"].lower(), err["message"]
    return err


# ----------------------------------------------------------------------------- happy paths


def test_health_ready_segments_and_spec(client: httpx.Client, fitted: Segmenter) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}  # nothing more, unauthenticated
    segs = client.get("/v1/segments").json()["segments"]
    assert [s["id"] for s in segs] == [s["id"] for s in fitted.segments_]
    assert [s["name"] for s in segs] == [s["name"] for s in fitted.segments_]
    assert segs[0]["size"] == fitted.segments_[0]["size"]
    spec = client.get("/openapi.json").json()
    assert {"/v1/score", "/v1/assign", "/v1/segments", "/healthz", "/readyz", "/metrics"} <= set(
        spec["paths"]
    )
    # the limits are part of the documented schema
    text = json.dumps(spec)
    assert '"maxItems": 8' in text and '"maxLength": 300' in text


def test_assign_is_identical_to_predict(client: httpx.Client, fitted: Segmenter) -> None:
    r = client.post("/v1/assign", json={"rows": ROWS})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["unit"] == "review" and answer["warnings"] == []
    got = answer["results"]
    assert assignment_fields(got) == expected_assign(fitted, ROWS)
    assert [g["id"] for g in got] == ["C1", 2, "C3", None, None, "C6"]
    assert [g["rows"] for g in got] == [[i] for i in range(len(ROWS))]
    # What each row was placed on: its rating when it has one, else its text alone (said).
    assert [g["placed_on"] for g in got] == [
        "text+behavior", "text+behavior", None, "text", "text", None,
    ]  # fmt: skip
    assert [g["behavior"] for g in got] == [
        {"rating": 5.0}, {"rating": 1.0}, {"rating": 3.0}, {"rating": None}, {"rating": None},
        {"rating": 4.0},
    ]  # fmt: skip
    for g in got:
        if g["placed_on"] == "text":
            assert len(g["warnings"]) == 1 and "placed on text alone" in g["warnings"][0]
            assert "rating" in g["warnings"][0]
        else:
            assert g["warnings"] == []
        assert g["value_tier"] is None and g["customer_id"] is None
    assert [g["status"] for g in got] == ["ok", "ok", "empty_text", "ok", "ok", "empty_text"]
    names = {s["id"]: s["name"] for s in fitted.segments_}
    for g in got:
        if g["status"] == "ok":
            assert g["segment_name"] == names[g["segment_id"]]
            assert g["sentiment_label"] in {"negative", "neutral", "positive"}
            assert 0 <= g["segment_probability"] <= 1
        else:
            assert g["sentiment_label"] is None and g["sentiment_score"] is None


def test_score_matches_segmenter(client: httpx.Client, fitted: Segmenter) -> None:
    texts = ["Sản phẩm tốt quá 👍", "  ", None, "awful service, slow delivery", "ok"]
    r = client.post("/v1/score", json={"texts": texts})
    assert r.status_code == 200, r.text
    got = r.json()["results"]
    want = frame_records(fitted.predict(texts)[list(SCORE_COLUMNS)])
    assert got == want
    assert [g["status"] for g in got] == ["ok", "empty_text", "empty_text", "ok", "ok"]
    for g in got:
        if g["status"] == "ok":
            assert -1 <= g["sentiment_score"] <= 1 and 0 <= g["sentiment_confidence"] <= 1


def test_docs_page_works_offline(client: httpx.Client) -> None:
    """/docs loads Swagger UI from the service itself, never from a CDN."""
    import re

    page = client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(u.startswith("/") for u in sources), sources
    for url in sources:
        if url.endswith((".js", ".css")):
            asset = client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 10_000, url
    assert "cdn." not in page.text


def test_metrics_count_requests_and_batches(client: httpx.Client) -> None:
    client.post("/v1/score", json={"texts": ["good phone"]})
    text = client.get("/metrics").text
    assert 'nlpseg_http_requests_total{endpoint="/v1/score",method="POST",status="200"}' in text
    assert 'nlpseg_http_request_duration_seconds_bucket{endpoint="/v1/score"' in text
    assert 'nlpseg_batch_texts_count{kind="score"}' in text
    assert 'nlpseg_model_call_duration_seconds_count{kind="assign"}' in text


# ----------------------------------------------------------------------------- limits and bad input


def test_too_many_texts_and_rows(client: httpx.Client) -> None:
    err = assert_error(
        client.post("/v1/score", json={"texts": ["ok"] * 9}), 422, "invalid_request", "at most 8"
    )
    assert err["details"][0]["loc"] == "body.texts"
    assert_error(
        client.post("/v1/assign", json={"rows": [{"text": "ok"}] * 9}),
        422,
        "invalid_request",
        "at most 8",
    )
    assert_error(client.post("/v1/score", json={"texts": []}), 422, "invalid_request", "at least")


def test_text_too_long(client: httpx.Client) -> None:
    long = "a" * 301
    err = assert_error(
        client.post("/v1/score", json={"texts": ["ok", long]}), 422, "invalid_request", "300"
    )
    assert err["details"][0]["loc"] == "body.texts.1"
    assert long not in json.dumps(err)  # the input is never echoed back
    assert_error(
        client.post("/v1/assign", json={"rows": [{"text": long}]}), 422, "invalid_request", "300"
    )
    # exactly at the limit is fine
    assert client.post("/v1/score", json={"texts": ["a" * 300]}).status_code == 200


def test_body_too_large(client: httpx.Client) -> None:
    body = json.dumps({"texts": ["x" * 250] * 100}).encode()
    assert len(body) > LIMITS["max_body_bytes"]
    assert_error(
        client.post("/v1/score", content=body, headers={"content-type": "application/json"}),
        413,
        "payload_too_large",
        "20000 bytes",
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    with httpx.Client(base_url=str(client.base_url), timeout=30) as fresh:
        r = fresh.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large")
    # the server still answers afterwards
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("path", "payload", "needle"),
    [
        ("/v1/score", b'{"texts": ["ok"', "json"),
        ("/v1/score", b"", "body"),
        ("/v1/score", b"not json at all", "json"),
        ("/v1/score", b'\xff\xfe{"texts": ["ok"]}', "utf-8"),
        ("/v1/score", b'{"texts": "just a string"}', "list"),
        ("/v1/score", b'{"texts": [1, 2]}', "string"),
        ("/v1/score", b'{"texts": ["ok"], "extra": 1}', "extra"),
        ("/v1/score", b"[]", "object"),
        ("/v1/assign", b'{"rows": [{"text": 5}]}', "string"),
        ("/v1/assign", b'{"rows": [{"text": "ok", "behavior": {"rating": "5"}}]}', "number"),
        ("/v1/assign", b'{"rows": [{"text": "ok", "behavior": {"spend": 5}}]}', "extra"),
        ("/v1/assign", b'{"rows": [{"text": "ok", "behavior": {"rating": NaN}}]}', "finite"),
        ("/v1/assign", b'{"rows": [{"text": "ok", "id": [1]}]}', "rows.0.id"),
        ("/v1/assign", b'{"rows": {"text": "ok"}}', "list"),
    ],
)
def test_bad_json_and_wrong_types_are_422(
    client: httpx.Client, path: str, payload: bytes, needle: str
) -> None:
    r = client.post(path, content=payload, headers={"content-type": "application/json"})
    err = assert_error(r, 422, "invalid_request")
    assert needle.lower() in json.dumps(err).lower(), err


def test_unknown_path_and_method_are_json_errors(client: httpx.Client) -> None:
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.get("/v1/score"), 405, "method_not_allowed")
    assert_error(client.post("/healthz"), 405, "method_not_allowed")


def raw_request(url: str, head: bytes, timeout: float = 30) -> bytes:
    """Send ``head`` (a request line and headers, unaltered) on a raw socket; the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_paths_never_reach_the_filesystem(fitted: Segmenter, tmp_path: Path) -> None:
    """Request targets sent byte for byte (a raw socket: no client normalises ``../``) reach
    the app as sent, and none is answered with a file: a planted secret beside the server's
    working directory and /etc/passwd stay unread, whatever the encoding of the dots."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT", encoding="utf-8")
    app = create_app(fitted, ServiceSettings(**LIMITS, warmup=False))
    seen: list[bytes] = []

    async def recorder(scope: dict, receive: object, send: object) -> None:
        if scope["type"] == "http":
            seen.append(scope["raw_path"])
        await app(scope, receive, send)  # type: ignore[arg-type]

    rel = os.path.relpath(secret, "/")
    targets = [
        b"/../../etc/passwd",
        b"/v1/segments/../../../etc/passwd",
        b"/%2e%2e/%2e%2e/etc/passwd",
        b"/..%2f..%2f..%2fetc%2fpasswd",
        b"/v1/..%5c..%5c..%5cetc%5cpasswd",
        b"//etc/passwd",
        ("/" + "../" * 12 + rel).encode(),
        ("/v1/segments/" + "..%2f" * 12 + rel.replace("/", "%2f")).encode(),
        str(secret).encode(),
    ]
    with running(recorder, app.state.settings) as url:
        for target in targets:
            answer = raw_request(
                url, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            status = answer.split(b" ", 2)[1]
            assert status == b"404", (target, answer[:200])
            assert b"root:" not in answer and b"TOP-SECRET" not in answer, target
            assert b'"code": "not_found"' in answer or b'"code":"not_found"' in answer
    # the server got each target as sent, not a normalised one (after running's /readyz)
    assert [t for t in seen if t != b"/readyz"] == targets


def test_idle_keep_alive_connection_is_closed(fitted: Segmenter) -> None:
    """An answered connection left idle is closed after ``keep_alive_s`` (here 1 s; the header
    deadline is set far beyond, so it is the keep-alive limit that closes it), not held."""
    settings = ServiceSettings(keep_alive_s=1, header_timeout_s=120, warmup=False)
    with running(create_app(fitted, settings)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while not answer.endswith(b'{"status":"ok"}'):
                chunk = sock.recv(65536)
                assert chunk, answer
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            assert b"connection: close" not in answer.lower()  # kept alive, then
            answered = time.monotonic()
            assert sock.recv(65536) == b""  # closed by the server (recv times out otherwise)
            idle = time.monotonic() - answered
    assert 0.9 <= idle < 60, idle


# ----------------------------------------------------------------------------- auth


@pytest.fixture(scope="module")
def secured_url(fitted: Segmenter) -> Iterator[str]:
    settings = ServiceSettings(**LIMITS, api_key=API_KEY, warmup=False)
    with running(create_app(fitted, settings)) as url:
        yield url


def test_api_key(secured_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with httpx.Client(base_url=secured_url, timeout=60) as c:
        for path in ("/healthz", "/readyz"):
            assert c.get(path).status_code == 200
        assert_error(c.post("/v1/score", json={"texts": ["ok"]}), 401, "unauthorized", "missing")
        for method, path in (
            ("GET", "/v1/segments"),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
        ):
            r = c.request(method, path)
            assert_error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
        wrong = [{"X-API-Key": "nope"}, {"Authorization": f"Bearer {API_KEY}x"}, {"X-API-Key": ""}]
        for headers in wrong:
            assert_error(c.get("/v1/segments", headers=headers), 401, "unauthorized", "invalid")
        # Auth is checked before the body is even read: an over-limit body with a wrong key
        # is a 401 (a 413 would mean the body limit ran first), with the right key a 413.
        over = b'{"texts": ["' + b"x" * (LIMITS["max_body_bytes"] + 10) + b'"]}'
        json_type = {"content-type": "application/json"}
        for headers in ({"X-API-Key": "nope"}, {}):
            r = c.post("/v1/score", content=over, headers={**json_type, **headers})
            assert_error(r, 401, "unauthorized")
        r = c.post("/v1/score", content=iter([over]), headers={**json_type, "X-API-Key": "nope"})
        assert_error(r, 401, "unauthorized")  # chunked, no Content-Length: the same
        r = c.post("/v1/score", content=over, headers={**json_type, "X-API-Key": API_KEY})
        assert_error(r, 413, "payload_too_large")
        for headers in ({"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}):
            assert c.get("/v1/segments", headers=headers).status_code == 200
            r = c.post("/v1/score", json={"texts": ["good"]}, headers=headers)
            assert r.status_code == 200, r.text
    # the key comes from NLPSEG_API_KEY by default
    monkeypatch.setenv("NLPSEG_API_KEY", "from-env")
    assert ServiceSettings.from_env().api_key == "from-env"
    monkeypatch.delenv("NLPSEG_API_KEY")
    assert ServiceSettings.from_env().api_key is None


# ----------------------------------------------------------------------------- load


def test_concurrent_load_shares_model_calls(load_url: str, fitted: Segmenter) -> None:
    """50 clients for ~3 s: no failed request, every answer right, and requests batched."""
    base_url = load_url
    texts = [r["text"] or "fine" for r in ROWS] + ["love it", "slow delivery", "ok phone"]
    sequential: dict[str, dict] = {}
    with httpx.Client(base_url=base_url, timeout=60) as c:
        for t in texts:
            sequential[t] = c.post("/v1/assign", json={"rows": [{"text": t}]}).json()["results"][0]

    def batches_total() -> tuple[float, float]:
        metrics = httpx.get(f"{base_url}/metrics").text
        values = {}
        for line in metrics.splitlines():
            for key in (
                'nlpseg_batch_requests_count{kind="assign"}',
                'nlpseg_batch_requests_sum{kind="assign"}',
            ):
                if line.startswith(key):
                    values[key] = float(line.split()[-1])
        return tuple(values.values())  # type: ignore[return-value]

    calls_before, requests_before = batches_total()
    failures: list[str] = []
    answered = 0

    async def one_client(ac: httpx.AsyncClient, i: int, stop: float) -> None:
        nonlocal answered
        k = i
        while True:  # at least one request each, then until the clock runs out
            text = texts[k % len(texts)]
            k += 50
            r = await ac.post("/v1/assign", json={"rows": [{"id": k, "text": text}]})
            if r.status_code != 200:
                failures.append(f"{r.status_code} {r.text[:200]}")
            else:
                got = r.json()["results"][0]
                want = sequential[text]
                if (
                    got["id"] != k
                    or got["segment_id"] != want["segment_id"]
                    or not math.isclose(
                        got["sentiment_score"], want["sentiment_score"], abs_tol=1e-5
                    )
                ):
                    failures.append(f"{text!r}: {got} != {want}")
                answered += 1
            if time.monotonic() >= stop:
                return

    async def main() -> None:
        # 50 concurrent connections (one per simulated client) from one connection pool
        # (each idle connection kept below the server's keep-alive, as a client should)
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=50, keepalive_expiry=60)
        async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as ac:
            stop = time.monotonic() + 3.0
            await asyncio.gather(*(one_client(ac, i, stop) for i in range(50)))

    asyncio.run(main())
    assert not failures, failures[:5]
    assert answered >= 50
    calls_after, requests_after = batches_total()
    calls, requests = calls_after - calls_before, requests_after - requests_before
    assert requests == answered
    assert calls < requests / 2, f"{requests} requests took {calls} model calls: no batching"


def test_full_queue_is_503_not_500(fitted: Segmenter) -> None:
    """With room for one waiting request, a burst gets 503 + Retry-After for the overflow and
    200 for the rest; nothing fails otherwise, and the server recovers."""
    settings = ServiceSettings(max_queue_texts=1, max_batch_texts=1, max_wait_ms=0, warmup=False)
    with running(create_app(fitted, settings)) as url:

        async def burst() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=40)
            async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as ac:
                body = {"texts": ["good phone, fast delivery " * 20]}
                return await asyncio.gather(*(ac.post("/v1/score", json=body) for _ in range(40)))

        responses = asyncio.run(burst())
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 503}, codes
        assert codes.count(200) >= 1 and codes.count(503) >= 1, codes
        busy = next(r for r in responses if r.status_code == 503)
        assert_error(busy, 503, "overloaded", "queue is full")
        assert busy.headers["retry-after"] == "1"
        assert httpx.post(f"{url}/v1/score", json={"texts": ["ok"]}).status_code == 200


# ----------------------------------------------------------------------------- fuzz


def test_fuzz_schema_finds_no_server_error(base_url: str) -> None:
    """Schemathesis reads /openapi.json and sends requests that fit the schema (positive) and
    that break it (negative) to every operation: none may get a 5xx, and every answer must
    conform to the spec (documented status codes, content types, response schemas). Bounded:
    at most 25 examples per operation and mode, derandomized so CI runs the same cases."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/score", "POST /v1/assign"}
    ran = 0
    for op in operations:
        modes = [GenerationMode.POSITIVE]
        if op.method.upper() == "POST":  # only a body can break the schema
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=25,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: object) -> None:
                nonlocal ran
                ran += 1
                response = case.call(base_url=base_url)  # type: ignore[attr-defined]
                if response.status_code == 413:
                    # A generated body over max_body_bytes is refused before it is read: the
                    # documented answer to any case, not a schema-violating one accepted.
                    assert response.json()["error"]["code"] == "payload_too_large"
                    return
                case.validate_response(response)  # type: ignore[attr-defined]

            check()
    assert ran >= 50


# ----------------------------------------------------------------------------- nlpseg serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_cli_bad_model_folder(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nlp_seg", "serve", "--model", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.fixture(scope="module")
def saved_model(fitted: Segmenter, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("service_model") / "model"
    fitted.save(str(folder))
    return folder


def test_serve_cli_workers_auth_and_same_answers_as_assign(
    saved_model: Path, tmp_path: Path
) -> None:
    """``nlpseg serve --workers 2`` with a key from NLPSEG_API_KEY answers exactly what
    ``nlpseg assign`` writes for the same rows."""
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i}" for i in range(len(ROWS))],
            "review": [r["text"] for r in ROWS],
            "rating": [(r.get("behavior") or {}).get("rating") for r in ROWS],
        }
    )
    frame.to_csv(tmp_path / "new.csv", index=False)
    proc = subprocess.run(
        [sys.executable, "-m", "nlp_seg", "-q", "assign", str(tmp_path / "new.csv")]
        + ["--model", str(saved_model), "--out", str(tmp_path / "out"), "--no-cache"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    written = pd.read_parquet(tmp_path / "out" / "assignments.parquet")

    port = free_port()
    env = {**os.environ, "NLPSEG_API_KEY": API_KEY}
    server = subprocess.Popen(
        [sys.executable, "-m", "nlp_seg", "-q", "serve", "--model", str(saved_model)]
        + ["--port", str(port), "--workers", "2", "--max-texts", "10"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, "nlpseg serve never became ready"
            time.sleep(0.5)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        body = {
            "rows": [
                {"id": cid, "text": row["text"], "behavior": {} if pd.isna(x) else {"rating": x}}
                for cid, row, x in zip(frame["customer_id"], ROWS, frame["rating"], strict=True)
            ]
        }
        assert httpx.post(f"{url}/v1/assign", json=body).status_code == 401
        got = []
        for _ in range(4):  # several requests, so both workers are likely to answer
            r = httpx.post(f"{url}/v1/assign", json=body, headers=headers, timeout=120)
            assert r.status_code == 200, r.text
            got.append(r.json()["results"])
        assert all(g == got[0] for g in got)
        too_many = {"texts": ["ok"] * 11}
        r = httpx.post(f"{url}/v1/score", json=too_many, headers=headers)
        assert r.status_code == 422  # the CLI's limit reached the workers
    finally:
        server.terminate()
        server.wait(60)
    want = frame_records(written[list(ASSIGNMENT_COLUMNS)])
    for g, w, cid in zip(assignment_fields(got[0]), want, frame["customer_id"], strict=True):
        assert g.pop("id") == cid
        assert g == w
