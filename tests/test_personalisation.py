"""Personalisation: next_best_action, message drafts, recommended_items, the e-mail export.

One real run (the bundled multilingual model) on the bundled example with orders that name
products, at the customer unit, with plain contacts allowed and the model saved; plumbing
runs on the tiny random models for the other cases.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pandas as pd
import pytest
from test_cli import assert_one_line_error, nlpseg, tiny_args

from nlp_seg.behavior.recommend import recommend_items
from nlp_seg.behavior.tables import read_orders
from nlp_seg.errors import InputError
from nlp_seg.stages.personalise import check_template, load_personalisation, render

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK = json.loads((REPO / "nlp_seg" / "playbook.json").read_text(encoding="utf-8"))
VOCABULARY = set(PLAYBOOK["next_best_action"]["vocabulary"])


def _inputs(root: Path) -> tuple[Path, Path]:
    """The bundled reviews with e-mails and first names, and the bundled orders with a
    product id per order (a fixed function of the order id)."""
    reviews = pd.read_csv(REPO / "examples" / "reviews.csv", dtype=str)
    reviews["email"] = [f" {c}.Mail@Example.com " for c in reviews["customer_id"]]
    reviews["first_name"] = [f"Name{c[-3:]}" for c in reviews["customer_id"]]
    orders = pd.read_csv(REPO / "examples" / "orders.csv", dtype=str)
    orders["product_id"] = [f"SKU{zlib.crc32(o.encode()) % 23:02d}" for o in orders["order_id"]]
    reviews.to_csv(root / "reviews.csv", index=False)
    orders.to_csv(root / "orders.csv", index=False)
    return root / "reviews.csv", root / "orders.csv"


@pytest.fixture(scope="module")
def bundled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pers")
    reviews, orders = _inputs(root)
    proc = nlpseg(
        "-q", "analyze", str(reviews), "--out", str(root / "out"),
        "--orders", str(orders), "--unit", "customer", "--audience-plain", "--no-report",
        "--recommend-n", "5", "--save-model", str(root / "model"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return root


def _bought(orders: Path) -> dict[str, set[str]]:
    frame, _, _ = read_orders(orders)
    lines = frame.loc[frame["purchase"]]
    return lines.groupby("customer_key")["item_id"].agg(set).to_dict()


def _items(cell: object) -> list[str]:
    return [i for i in str(cell).split(";") if i] if isinstance(cell, str) else []


def test_next_best_action_follows_the_rules(bundled_run: Path) -> None:
    out = bundled_run / "out"
    table = pd.read_csv(out / "assignments.csv", encoding="utf-8-sig", dtype={"customer_id": str})
    segments = json.loads((out / "segments.json").read_text())["segments"]
    base = {s["id"]: s["base_name"] for s in segments}
    table["base"] = table["segment_id"].map(base)
    assert set(table["next_best_action"]) <= VOCABULARY
    assert table["next_best_action"].nunique() >= 3  # the rules tell customers apart
    at_risk = table["loyalty_tier"] == "at-risk"
    disappointed = table["base"] == "disappointed"
    assert (table.loc[at_risk, "next_best_action"] == "win_back_offer").all()
    assert (table.loc[disappointed & ~at_risk, "next_best_action"] == "care_call").all()
    happy = (table["base"] == "satisfied") & ~at_risk
    upsell = happy & ((table["value_tier"] == "VIP") | (table["loyalty_tier"] == "loyal"))
    assert (table.loc[upsell, "next_best_action"] == "upsell").all()
    assert (table.loc[happy & ~upsell, "next_best_action"] == "review_request").all()
    assert disappointed.any() and at_risk.any() and happy.any()
    assert all(s["next_best_action"] in VOCABULARY for s in segments)


def test_drafts_in_both_languages_name_the_segments_topic(bundled_run: Path) -> None:
    out = bundled_run / "out"
    segments = json.loads((out / "segments.json").read_text())["segments"]
    for s in segments:
        en, vi = s["message"]["en"], s["message"]["vi"]
        assert en["subject"] and en["body"] and vi["subject"] and vi["body"]
        assert en["body"] != vi["body"]
        if s["keywords"]:
            assert s["keywords"][0] in en["body"] and s["keywords"][0] in vi["body"]
        for text in (en["body"], vi["body"], en["subject"]):
            assert "{top_topic}" not in text and "{offer}" not in text
        assert "{first_name}" in en["body"]  # filled per customer, in the e-mail export
    messages = pd.read_csv(out / "messages.csv", encoding="utf-8-sig")
    assert len(messages) == 2 * len(segments)
    assert set(messages["lang"]) == {"en", "vi"}
    first = segments[0]
    row = messages[(messages["segment_id"] == first["id"]) & (messages["lang"] == "vi")]
    assert row["body"].iloc[0] == first["message"]["vi"]["body"]


def test_recommended_items_are_new_to_the_customer(bundled_run: Path) -> None:
    table = pd.read_csv(
        bundled_run / "out" / "assignments.csv", encoding="utf-8-sig", dtype={"customer_id": str}
    )
    bought = _bought(bundled_run / "orders.csv")
    lists = {
        c: _items(v) for c, v in zip(table["customer_id"], table["recommended_items"], strict=True)
    }
    assert sum(bool(v) for v in lists.values()) >= 0.9 * len(lists)
    for customer, items in lists.items():
        assert len(items) <= 5 and len(set(items)) == len(items)
        assert not set(items) & bought.get(customer, set()), customer
    run = json.loads((bundled_run / "out" / "run.json").read_text())
    assert run["personalisation"]["recommender"] == "als"
    assert run["behavior"]["orders"]["columns"]["item_id"] == "product_id"


def test_email_campaign_export_is_filled_per_customer(bundled_run: Path) -> None:
    out = bundled_run / "out"
    campaign = pd.read_csv(
        out / "audiences" / "email_campaign.csv", encoding="utf-8-sig", dtype=str,
        keep_default_na=False,
    )  # fmt: skip
    assert list(campaign.columns) == [
        "Email Address", "First Name", "Customer ID", "Segment", "Next Best Action",
        "Top Topic", "Recommended Items", "Language", "Subject", "Body",
    ]  # fmt: skip
    table = pd.read_csv(out / "assignments.csv", encoding="utf-8-sig", dtype=str).set_index(
        "customer_id"
    )
    assert campaign["Customer ID"].is_unique and len(campaign) == table["email"].notna().sum()
    for _, row in campaign.iterrows():
        mine = table.loc[row["Customer ID"]]
        assert row["Email Address"] == f"{row['Customer ID']}.mail@example.com".lower()
        assert row["First Name"] == f"Name{row['Customer ID'][-3:]}"
        assert row["Next Best Action"] == mine["next_best_action"]
        assert row["Recommended Items"] == (mine["recommended_items"] or "")
        assert row["Segment"] == mine["segment_name"] and row["Language"] == "en"
        assert row["First Name"] in row["Subject"] + row["Body"]
        assert "{" not in row["Subject"] + row["Body"]
    run = json.loads((out / "run.json").read_text())
    assert run["personalisation"]["email_campaign"]["written"] is True


def test_assign_with_a_saved_model_adds_the_same_columns(bundled_run: Path) -> None:
    root = bundled_run
    proc = nlpseg(
        "-q", "assign", str(root / "reviews.csv"), "--model", str(root / "model"),
        "--out", str(root / "assigned"), "--orders", str(root / "orders.csv"),
        "--recommender", "popularity", "--recommend-n", "3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(root / "assigned" / "assignments.parquet")
    fitted = pd.read_parquet(root / "out" / "assignments.parquet")
    # assign adds behavior_missing last (what each customer had no value for)
    assert list(table.columns[-3:]) == ["next_best_action", "recommended_items", "behavior_missing"]
    assert list(fitted.columns[-2:]) == ["next_best_action", "recommended_items"]
    assert set(table["next_best_action"]) <= VOCABULARY
    bought = _bought(root / "orders.csv")
    for customer, cell in zip(table["customer_id"], table["recommended_items"], strict=True):
        items = _items(cell)
        assert 0 < len(items) <= 3 and not set(items) & bought.get(customer, set())


@pytest.fixture(scope="module")
def tiny_run(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Review unit, orders without item ids, an e-mail column but no --audience-plain, and an
    edited playbook with no action rules (everyone gets its default)."""
    root = tmp_path_factory.mktemp("pers_tiny")
    reviews, _ = _inputs(root)
    edited = json.loads(json.dumps(PLAYBOOK))
    edited["next_best_action"]["rules"] = []
    edited["next_best_action"]["default"] = "review_request"
    (root / "playbook.json").write_text(json.dumps(edited), encoding="utf-8")
    proc = nlpseg(
        "-q", "analyze", str(reviews), "--out", str(root / "out"), *tiny_args(tiny_models),
        "--orders", str(REPO / "examples" / "orders.csv"), "--no-report",
        "--playbook", str(root / "playbook.json"), "--lang", "vi",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return root


def test_no_item_column_leaves_recommended_items_empty_but_present(tiny_run: Path) -> None:
    out = tiny_run / "out"
    table = pd.read_csv(out / "assignments.csv", encoding="utf-8-sig", keep_default_na=False)
    assert "recommended_items" in table and (table["recommended_items"] == "").all()
    assert (table["next_best_action"] == "review_request").all()  # the edited playbook's rule
    run = json.loads((out / "run.json").read_text())
    assert "--orders-item-col" in run["personalisation"]["note"]


def test_email_campaign_only_with_audience_plain(tiny_run: Path) -> None:
    out = tiny_run / "out"
    assert not (out / "audiences" / "email_campaign.csv").exists()
    assert list((out / "audiences").glob("segment_*.csv"))  # hashed audiences still there
    info = json.loads((out / "run.json").read_text())["personalisation"]["email_campaign"]
    assert info["written"] is False and "--audience-plain" in info["reason"]


@pytest.mark.parametrize(
    "template",
    [
        "{first_name.__class__}",
        "{first_name.__init__.__globals__}",
        "{offer[0]}",
        "{0}",
        "{}",
        "{first_name!r}",
        "{first_name:>10}",
        "{offer:{first_name.__class__}}",
        "{unknown_field}",
        "unbalanced {first_name",
    ],
)
def test_hostile_templates_are_refused(template: str) -> None:
    with pytest.raises(InputError, match="playbook"):
        check_template(template, "messages[0].en.body")


def test_templates_fill_only_plain_fields() -> None:
    text = check_template("Hi {first_name}, {offer} ({top_topic})", "x")
    filled = render(text, {"first_name": "{top_topic.__class__}", "offer": "10%"})
    assert filled == "Hi {top_topic.__class__}, 10% ({top_topic})"  # values are not re-read


def test_hostile_playbook_stops_the_run_before_any_output(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    bad = json.loads(json.dumps(PLAYBOOK))
    bad["messages"][0]["vi"]["subject"] = "{first_name.__class__.__mro__}"
    (tmp_path / "bad.json").write_text(json.dumps(bad), encoding="utf-8")
    proc = nlpseg(
        "-q", "analyze", str(REPO / "examples" / "reviews.csv"), "--out", str(tmp_path / "o"),
        *tiny_args(tiny_models), "--playbook", str(tmp_path / "bad.json"),
    )  # fmt: skip
    assert_one_line_error(proc, "messages[0].vi.subject")
    assert not (tmp_path / "o").exists()
    with pytest.raises(InputError, match="not one of"):
        bad = json.loads(json.dumps(PLAYBOOK))
        bad["next_best_action"]["rules"][0]["action"] = "spam_them"
        (tmp_path / "bad2.json").write_text(json.dumps(bad), encoding="utf-8")
        load_personalisation(str(tmp_path / "bad2.json"))


def test_unknown_recommender_is_a_one_line_error(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    proc = nlpseg(
        "-q", "analyze", str(REPO / "examples" / "reviews.csv"), "--out", str(tmp_path / "o"),
        *tiny_args(tiny_models), "--recommender", "magic",
    )  # fmt: skip
    assert_one_line_error(proc, "--recommender")


def test_popularity_ranks_the_segments_own_best_sellers_first() -> None:
    orders = pd.DataFrame(
        {
            "customer_key": ["a", "a", "b", "b", "c", "d", "d", "e"],
            "item_id": ["x", "y", "x", "z", "y", "w", "v", "w"],
            "purchase": [True] * 7 + [False],  # e's order was cancelled: not a purchase
        }
    )
    segment_of = {"a": 0, "b": 0, "c": 0, "d": 1, "e": 1}
    recs = recommend_items(orders, segment_of, method="popularity", n=3)
    assert recs["c"][:2] == ["x", "z"]  # bought in segment 0 by a and b; c has y
    assert recs["e"][:2] == ["v", "w"]  # segment 1's items (ties by id); cancelled w is new
    als = recommend_items(orders, segment_of, method="als", n=3)
    for key, items in als.items():
        own = set(orders.loc[(orders["customer_key"] == key) & orders["purchase"], "item_id"])
        assert items and not set(items) & own


def test_service_assign_answers_the_same_next_best_action(bundled_run: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    from test_service import running

    from nlp_seg.segmenter import load_segmenter
    from nlp_seg.service.app import ServiceSettings, create_app

    root = bundled_run
    written = pd.read_parquet(root / "out" / "assignments.parquet").set_index("customer_id")
    reviews = pd.read_csv(root / "reviews.csv", dtype=str)
    orders = pd.read_csv(root / "orders.csv", dtype=str)
    customers = sorted(set(reviews["customer_id"]))[:6]
    rows = []
    for c in customers:
        mine = reviews[reviews["customer_id"] == c]
        for r in mine.itertuples():
            rows.append({"id": r.review_id, "customer_id": c, "text": r.review})
        rows[-1]["orders"] = [
            {"date": o.order_date, "amount": o.amount, "status": o.status, "channel": o.channel}
            for o in orders[orders["customer_id"] == c].itertuples()
        ]
    seg = load_segmenter(str(root / "model"), cache_dir=None)
    settings = ServiceSettings(max_texts=64, max_wait_ms=5, api_key=None)
    with running(create_app(seg, settings)) as url, httpx.Client(base_url=url, timeout=120) as c:
        r = c.post("/v1/assign", json={"rows": rows})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["customer_id"] for x in results] == customers
    same = 0
    keys = ("segment_id", "value_tier", "loyalty_tier", "sentiment_label")
    for x in results:
        assert x["next_best_action"] in VOCABULARY
        mine = written.loc[x["customer_id"]]
        if all(x[k] == mine[k] for k in keys):  # the same inputs to the rules, the same action
            assert x["next_best_action"] == mine["next_best_action"]
            same += 1
    assert same


def test_text_only_run_gets_actions_from_the_segments_alone(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    proc = nlpseg(
        "-q", "analyze", str(REPO / "examples" / "reviews.csv"), "--out", str(tmp_path / "o"),
        *tiny_args(tiny_models), "--no-report", "--audience-plain",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "o" / "assignments.csv", encoding="utf-8-sig")
    segments = json.loads((tmp_path / "o" / "segments.json").read_text())["segments"]
    base = table["segment_id"].map({s["id"]: s["base_name"] for s in segments})
    assert set(table["next_best_action"]) <= VOCABULARY
    assert (table.loc[base == "disappointed", "next_best_action"] == "care_call").all()
    assert (table.loc[base == "satisfied", "next_best_action"] == "review_request").all()
    assert table["recommended_items"].isna().all()  # present, empty: no orders
    run = json.loads((tmp_path / "o" / "run.json").read_text())["personalisation"]
    assert run["note"] == "recommended_items is empty: no --orders given"
    assert "e-mail column" in run["email_campaign"]["reason"]  # the example has no e-mails


def test_batch_streamed_and_in_memory_add_the_same_columns(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """``nlpseg batch`` without behaviour (parts streamed) and with orders (in-memory finish)."""
    reviews, orders = _inputs(tmp_path)
    for name, extra in (("plain", []), ("orders", ["--orders", str(orders), "--audience-plain"])):
        out = tmp_path / name
        proc = nlpseg(
            "-q", "batch", str(reviews), "--out", str(out), "--chunk-size", "50",
            *tiny_args(tiny_models), "--no-report", *extra,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        table = pd.read_parquet(out / "assignments.parquet")
        assert list(table.columns[-2:]) == ["next_best_action", "recommended_items"]
        assert set(table["next_best_action"]) <= VOCABULARY
        segments = json.loads((out / "segments.json").read_text())["segments"]
        assert all({"en", "vi"} <= set(s["message"]) for s in segments)
        assert len(pd.read_csv(out / "messages.csv", encoding="utf-8-sig")) == 2 * len(segments)
        filled = table["recommended_items"].fillna("") != ""
        assert filled.any() if name == "orders" else not filled.any()
        assert (out / "audiences" / "email_campaign.csv").exists() == (name == "orders")
