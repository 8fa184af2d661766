"""``nlpseg serve`` with a segmenter saved from a behaviour run (``--orders``, ``--unit customer``).

A real uvicorn server on localhost serves a customer-unit model fitted on the bundled example
(reviews + orders) with the tiny local models. Rows that carry their customer's orders are
placed with behaviour, pooled per customer, and get the segment ``nlpseg assign --orders``
writes for that customer; rows without behaviour are placed on text alone and say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from test_service import assert_error, running  # noqa: E402

from nlp_seg.segmenter import load_segmenter  # noqa: E402
from nlp_seg.service.app import ServiceSettings, create_app  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
#: Customers with several reviews and orders, and one whose orders the request will not send.
WITH_ORDERS = ("C0003", "C0070", "C0010")
WITHOUT = "C0002"


def nlpseg(*args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nlp_seg", "-q", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def customer_model(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """A customer-unit model saved by ``analyze --orders --unit customer --save-model`` and
    what ``nlpseg assign --orders`` writes for the same reviews and orders."""
    root = tmp_path_factory.mktemp("service_behavior")
    model, reviews, orders = (
        root / "model",
        str(EXAMPLES / "reviews.csv"),
        str(EXAMPLES / "orders.csv"),
    )
    nlpseg(
        "analyze", reviews, "--orders", orders, "--unit", "customer", "--out", str(root / "fit"),
        "--save-model", str(model), "--no-report", "--no-audiences", "--no-cache",
        "--behavior-cols", "rating",  # a rating is behaviour only when named
        "--embedding-model", str(tiny_models["embedding"]),
        "--sentiment-model", str(tiny_models["sentiment"]),
    )  # fmt: skip
    nlpseg(
        "assign", reviews, "--model", str(model), "--orders", orders, "--out",
        str(root / "assign"), "--no-cache",
    )  # fmt: skip
    written = pd.read_parquet(root / "assign" / "assignments.parquet").set_index("customer_id")
    return model, written


@pytest.fixture(scope="module")
def client(customer_model: tuple[Path, pd.DataFrame]) -> Iterator[httpx.Client]:
    seg = load_segmenter(str(customer_model[0]), cache_dir=None)
    settings = ServiceSettings(max_texts=16, max_wait_ms=5, api_key=None)
    with running(create_app(seg, settings)) as url, httpx.Client(base_url=url, timeout=120) as c:
        yield c


def orders_of(customer: str) -> list[dict[str, Any]]:
    """The customer's orders as a request carries them (the strings of the CSV file)."""
    orders = pd.read_csv(EXAMPLES / "orders.csv", dtype=str)
    mine = orders[orders["customer_id"] == customer]
    return [
        {
            "date": o.order_date,
            "amount": o.amount,
            "status": o.status,
            "channel": o.channel,
            "items": float(o.items),
        }
        for o in mine.itertuples()
    ]


def review_rows(customer: str, *, with_orders: bool) -> list[dict[str, Any]]:
    reviews = pd.read_csv(EXAMPLES / "reviews.csv")
    mine = reviews[reviews["customer_id"] == customer]
    rows: list[dict[str, Any]] = [
        {
            "id": r.review_id,
            "customer_id": customer,
            "text": r.review,
            "behavior": {"rating": float(r.rating)},
        }
        for r in mine.itertuples()
    ]
    if with_orders:
        rows[-1]["orders"] = orders_of(customer)  # a customer's list may sit on any row
    return rows


def post(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/assign", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_rows_with_orders_get_the_segment_assign_gives(
    client: httpx.Client, customer_model: tuple[Path, pd.DataFrame]
) -> None:
    written = customer_model[1]
    rows = [row for c in WITH_ORDERS for row in review_rows(c, with_orders=True)]
    bare = review_rows(WITHOUT, with_orders=False)[0]
    del bare["behavior"]  # no orders and no rating: text alone
    rows.append(bare)
    answer = post(client, {"rows": rows})
    assert answer["unit"] == "customer"
    spec = client.get("/openapi.json").json()
    assert "orders" in json.dumps(spec["components"]["schemas"]["AssignRow"])

    # One result per customer, in order of first appearance, naming the rows it pooled.
    results = answer["results"]
    assert [r["customer_id"] for r in results] == [*WITH_ORDERS, WITHOUT]
    positions = [i for r in results for i in r["rows"]]
    assert sorted(positions) == list(range(len(rows)))
    for res in results:
        assert all(rows[i]["customer_id"] == res["customer_id"] for i in res["rows"])
        assert res["id"] is None and res["status"] == "ok"

    for res in results[:-1]:
        want = written.loc[res["customer_id"]]
        assert res["placed_on"] == "text+behavior", res
        assert res["warnings"] == [], res["warnings"]
        assert res["segment_id"] == want["segment_id"], (res, want.to_dict())
        assert res["segment_name"] == want["segment_name"]
        for col in ("frequency", "monetary", "recency_days", "clv", "avg_rating"):
            np.testing.assert_allclose(res["behavior"][col], want[col], rtol=1e-6, err_msg=col)
        assert res["value_tier"] == want["value_tier"]
        assert res["loyalty_tier"] == want["loyalty_tier"]

    none = results[-1]
    assert none["placed_on"] == "text"
    assert len(none["warnings"]) == 1
    warning = none["warnings"][0]
    assert "placed on text alone" in warning and "orders" in warning
    for col in ("frequency", "clv", "avg_rating"):
        assert col in warning
        assert none["behavior"][col] is None
    assert none["value_tier"] == "unknown" and none["loyalty_tier"] == "unknown"
    saved = json.loads((customer_model[0] / "segmenter.json").read_text(encoding="utf-8"))
    assert answer["reference_date"] == saved["behavior"]["reference_date"]


def test_lists_once_or_repeated_and_known_empty(client: httpx.Client) -> None:
    customer = WITH_ORDERS[0]
    once = post(client, {"rows": review_rows(customer, with_orders=True)})["results"]
    repeated = review_rows(customer, with_orders=True)
    for row in repeated:
        row["orders"] = orders_of(customer)
    assert post(client, {"rows": repeated})["results"] == once

    # An empty list: a customer known to have bought nothing (not an unknown one).
    row = {"customer_id": "NEW1", "text": "great camera, fast delivery", "orders": []}
    res = post(client, {"rows": [row]})["results"][0]
    assert res["behavior"]["frequency"] == 0 and res["behavior"]["clv"] == 0
    assert res["value_tier"] == "no-orders"
    assert res["placed_on"] == "text+behavior"
    assert any("recency_days" in w for w in res["warnings"])  # no purchase: no recency


def test_reference_date_and_behavior_values(client: httpx.Client) -> None:
    customer = WITH_ORDERS[0]
    rows = review_rows(customer, with_orders=True)
    default = post(client, {"rows": rows})
    later = pd.Timestamp(default["reference_date"]) + pd.Timedelta(days=30)
    moved = post(client, {"rows": rows, "reference_date": str(later.date())})
    assert moved["reference_date"] == str(later.date())
    np.testing.assert_allclose(
        moved["results"][0]["behavior"]["recency_days"],
        default["results"][0]["behavior"]["recency_days"] + 30,
    )
    # Values sent in behavior fill the features no list gives.
    row = {"customer_id": "NEW2", "text": "ok", "behavior": {"frequency": 4, "clv": 900000}}
    res = post(client, {"rows": [row]})["results"][0]
    assert res["placed_on"] == "text+behavior"
    assert res["behavior"]["frequency"] == 4 and res["behavior"]["clv"] == 900000


@pytest.mark.parametrize(
    ("rows", "extra", "loc", "needle"),
    [
        ([{"text": "ok", "orders": []}], {}, "body.rows.0.customer_id", "customer_id"),
        (
            [
                {"customer_id": "A", "text": "ok", "orders": []},
                {"customer_id": "A", "text": "ok", "orders": [{"date": "2025-01-01", "amount": 1}]},
            ],
            {},
            "body.rows.1.orders",
            "different orders",
        ),
        (
            [{"customer_id": "A", "text": "ok", "orders": [{"date": "soon", "amount": 1}]}],
            {},
            "body.rows.0.orders.0.date",
            "date",
        ),
        (
            [{"customer_id": "A", "text": "ok", "orders": [{"date": "2025-01-01", "amount": "x"}]}],
            {},
            "body.rows.0.orders.0.amount",
            "amount",
        ),
        (
            [{"customer_id": "A", "text": "ok", "orders": [{"date": "2025-06-01", "amount": 1}]}],
            {"reference_date": "2025-01-01"},
            "body.reference_date",
            "before",
        ),
        ([{"customer_id": "A", "text": "ok", "events": []}], {}, "body.rows.0.events", "extra"),
        ([{"customer_id": "A", "orders": [{"date": "2025-01-01"}]}], {}, "amount", "required"),
    ],
)
def test_bad_behaviour_is_422(
    client: httpx.Client, rows: list[dict], extra: dict, loc: str, needle: str
) -> None:
    err = assert_error(
        client.post("/v1/assign", json={"rows": rows, **extra}), 422, "invalid_request"
    )
    assert any(loc in d["loc"] for d in err["details"]), err
    assert needle.lower() in json.dumps(err).lower(), err


def test_review_unit_model_labels_each_row_with_its_customers_behaviour(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """A review-unit model: one result per row; every row of a customer gets that customer's
    features (its list may sit on one row) and the segment ``nlpseg assign --orders`` gives."""
    model, reviews, orders = (
        tmp_path / "model",
        str(EXAMPLES / "reviews.csv"),
        str(EXAMPLES / "orders.csv"),
    )
    nlpseg(
        "analyze", reviews, "--orders", orders, "--unit", "review", "--out", str(tmp_path / "fit"),
        "--save-model", str(model), "--no-report", "--no-audiences", "--no-cache",
        "--behavior-cols", "rating",  # a rating is behaviour only when named
        "--embedding-model", str(tiny_models["embedding"]),
        "--sentiment-model", str(tiny_models["sentiment"]),
    )  # fmt: skip
    nlpseg(
        "assign", reviews, "--model", str(model), "--orders", orders, "--out",
        str(tmp_path / "assign"), "--no-cache",
    )  # fmt: skip
    written = pd.read_parquet(tmp_path / "assign" / "assignments.parquet").set_index("review_id")
    rows = review_rows(WITH_ORDERS[0], with_orders=True) + [
        {"id": "R-new", "text": "terrible battery, the screen is bad", "behavior": {"rating": 1}}
    ]
    seg = load_segmenter(str(model), cache_dir=None)
    with running(create_app(seg, ServiceSettings(api_key=None))) as url:
        answer = httpx.post(f"{url}/v1/assign", json={"rows": rows}, timeout=120).json()
    assert answer["unit"] == "review"
    results = answer["results"]
    assert [r["id"] for r in rows] == [r["id"] for r in results]
    assert [r["rows"] for r in results] == [[i] for i in range(len(rows))]
    for res in results[:-1]:
        want = written.loc[res["id"]]
        assert res["placed_on"] == "text+behavior" and res["warnings"] == []
        assert res["segment_id"] == want["segment_id"], (res, want.to_dict())
        for col in ("frequency", "monetary", "recency_days", "clv", "rating"):
            # input columns come out as typed (the rating as its text): compare as numbers
            expected = float(pd.to_numeric(pd.Series([want[col]])).iloc[0])
            np.testing.assert_allclose(res["behavior"][col], expected, rtol=1e-6, err_msg=col)
        assert res["value_tier"] == want["value_tier"]
    alone = results[-1]
    assert alone["customer_id"] is None and alone["placed_on"] == "text+behavior"
    assert alone["behavior"]["rating"] == 1 and alone["behavior"]["frequency"] is None
    assert alone["value_tier"] == "unknown"
    assert len(alone["warnings"]) == 1 and "frequency" in alone["warnings"][0]
