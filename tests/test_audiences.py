"""Remarketing audiences and spreadsheet safety: real files written by a real run, read back
with pandas, hashes compared with a hand-computed hashlib.sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from nlp_seg.io.audiences import (
    AudienceOptions,
    build_audiences,
    detect_contact_columns,
    normalize_email,
    normalize_phone,
    slugify,
)
from nlp_seg.io.write import write_csv

REPO = Path(__file__).resolve().parent.parent


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_email_normalisation() -> None:
    assert normalize_email("  John.Doe+ads@Gmail.COM ") == "john.doe+ads@gmail.com"
    assert normalize_email("John.Doe@gmail.com", gmail_strip_dots=True) == "johndoe@gmail.com"
    assert normalize_email("a.b@example.com", gmail_strip_dots=True) == "a.b@example.com"
    assert normalize_email("not an email") is None
    assert normalize_email(None) is None


def test_phone_normalisation_e164() -> None:
    assert normalize_phone("0901 234 567", "VN") == "+84901234567"
    assert normalize_phone("+84 90-123-4567") == "+84901234567"
    assert normalize_phone("(11) 98765-4321", "BR") == "+5511987654321"
    assert normalize_phone("0901234567") is None  # national number without a country
    assert normalize_phone("12", "VN") is None
    assert normalize_phone(float("nan"), "VN") is None


def test_contact_columns_detected_by_name_and_content() -> None:
    frame = pd.DataFrame(
        {
            "Email": ["a@x.com", "b@y.org", None],
            "SĐT": ["0901234567", "0912345678", ""],
            "mail_opt_in": ["yes", "no", "yes"],  # named like it, but not e-mails
        }
    )
    assert detect_contact_columns(frame) == ("Email", "SĐT")
    assert detect_contact_columns(frame[["mail_opt_in"]]) == (None, None)


def test_slug_is_ascii_and_file_safe() -> None:
    assert slugify("disappointed · VIP (pin, sạc)") == "disappointed-vip-pin-sac"
    assert slugify("电池") == "segment"


def test_build_audiences_dedupes_customers_and_hashes() -> None:
    frame = pd.DataFrame(
        {
            "cid": ["C1", "C1", "C2", None, None],
            "email": [None, " A@X.com", "b@y.org", "c@z.net", "d@z.net"],
            "phone": ["0901234567", None, "bad", None, "+84 912 345 678"],
        }
    )
    assign = pd.DataFrame(
        {
            "segment_id": [0, 0, 1, 1, -1],
            "segment_name": ["a", "a", "b", "b", ""],
            "segment_probability": [0.9, 0.5, 1.0, 0.4, None],
        }
    )
    tables, info = build_audiences(frame, assign, "cid", AudienceOptions(default_country="VN"))
    assert info["email_column"] == "email" and info["phone_column"] == "phone"
    seg0 = tables[0]
    assert seg0["customer_id"].tolist() == ["C1"]  # two rows, one customer
    assert seg0["email_sha256"].iloc[0] == sha("a@x.com")  # first valid contact kept
    assert seg0["phone_e164_sha256"].iloc[0] == sha("+84901234567")
    assert seg0["phone_digits_sha256"].iloc[0] == sha("84901234567")
    seg1 = tables[1]
    assert seg1["customer_id"].tolist() == ["C2", "row 4"]  # a missing id is its own customer
    assert pd.isna(seg1["phone_e164_sha256"].iloc[0])  # invalid phone: empty, customer kept
    assert -1 not in tables  # rows in no segment are in no audience
    assert "email" not in seg0.columns  # plain values only on request


def test_spreadsheet_safe_csv(tmp_path: Path) -> None:
    nasty = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "ok", "a=b"]
    plain = ["-2", "+84901234567"]  # a plain signed number is what was typed: kept as is
    frame = pd.DataFrame({"text": nasty + plain, "n": range(len(nasty) + 2)})
    frame["neg"] = -1.5
    write_csv(frame, tmp_path / "x.csv")
    raw = (tmp_path / "x.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: spreadsheets show Vietnamese correctly
    back = pd.read_csv(
        tmp_path / "x.csv", encoding="utf-8-sig", keep_default_na=False, dtype={"text": str}
    )
    assert back["text"].tolist()[:6] == ["'" + v for v in nasty[:6]]
    assert back["text"].tolist()[6:] == ["ok", "a=b", *plain]
    assert back["neg"].tolist() == [-1.5] * len(frame)  # numbers are not touched


@pytest.fixture(scope="module")
def contact_run(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_cli import nlpseg, tiny_args

    root = tmp_path_factory.mktemp("aud")
    df = pd.read_csv(REPO / "examples" / "reviews.csv", dtype=str)
    n = len(df)
    df["email"] = [f" User.{i}@Example.COM " if i % 5 else "" for i in range(n)]
    df["phone"] = [f"09{i:08d}" if i % 3 else "not a phone" for i in range(n)]
    df.loc[0, "review"] = '=HYPERLINK("http://evil.example","click")'
    df.to_csv(root / "in.csv", index=False)
    proc = nlpseg(
        "-q", "analyze", str(root / "in.csv"), "--out", str(root / "out"),
        *tiny_args(tiny_models), "--default-country", "vn", "--no-report",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return root


def test_audience_csvs_import_cleanly_with_matching_hashes(contact_run: Path) -> None:
    out = contact_run / "out"
    src = pd.read_csv(contact_run / "in.csv", dtype=str, keep_default_na=False)
    index = pd.read_csv(out / "audiences" / "index.csv", encoding="utf-8-sig")
    segments = json.loads((out / "segments.json").read_text())["segments"]
    assert sorted(index["segment_id"]) == sorted(s["id"] for s in segments)
    seen: set[str] = set()
    for _, row in index.iterrows():
        aud = pd.read_csv(out / "audiences" / row["file"], encoding="utf-8-sig", dtype=str)
        assert list(aud.columns[:4]) == [
            "customer_id", "segment_id", "segment_name", "segment_probability"
        ]  # fmt: skip
        assert {"email_sha256", "phone_e164_sha256", "phone_digits_sha256"} <= set(aud.columns)
        assert "email" not in aud.columns and "phone_digits" not in aud.columns
        assert len(aud) == row["customers"] == aud["customer_id"].nunique()
        for _, a in aud.iterrows():
            rows = src[src["customer_id"] == a["customer_id"]]
            emails = {e.strip().lower() for e in rows["email"] if e.strip()}
            if isinstance(a["email_sha256"], str):
                assert a["email_sha256"] in {sha(e) for e in emails}
            phones = {"+84" + p[1:] for p in rows["phone"] if p.startswith("09")}
            if isinstance(a["phone_e164_sha256"], str):
                assert a["phone_e164_sha256"] in {sha(p) for p in phones}
                assert a["phone_digits_sha256"] in {sha(p[1:]) for p in phones}
        seen.update(aud["customer_id"])
    assert seen == set(src["customer_id"])  # every customer is in some audience
    spot = sha("user.1@example.com")
    assert any(
        spot in set(pd.read_csv(p, encoding="utf-8-sig", dtype=str)["email_sha256"])
        for p in (out / "audiences").glob("segment_*.csv")
    )
    # The formula-like review is neutralised in the main CSV too.
    main = pd.read_csv(out / "assignments.csv", encoding="utf-8-sig", dtype=str)
    assert main.loc[0, "review"].startswith("'=HYPERLINK")
    run = json.loads((out / "run.json").read_text())
    assert run["audiences"]["phone_column"] == "phone"
    assert run["audiences"]["default_country"] == "VN"


def test_bad_country_is_a_one_line_error(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from test_cli import assert_one_line_error, nlpseg, tiny_args

    proc = nlpseg(
        "analyze", str(REPO / "examples" / "reviews.csv"), "--out", str(tmp_path),
        *tiny_args(tiny_models), "--default-country", "Narnia",
    )  # fmt: skip
    assert_one_line_error(proc, "--default-country")
