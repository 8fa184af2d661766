"""Reading files and detecting columns: formats, encodings and every kind of bad input."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pandas as pd
import pytest

from nlp_seg.errors import InputError
from nlp_seg.io.read import detect_columns, read_table
from nlp_seg.normalize import normalize_text

ROWS = pd.DataFrame(
    {
        "customer_id": ["007", "008", "009"],
        "comment": ["Sản phẩm tốt 😍", "hàng tệ quá", "ok"],
        "orders": [3, 1, 7],
    }
)


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_csv_any_delimiter_with_bom(tmp_path: Path, sep: str) -> None:
    p = tmp_path / "r.csv"
    p.write_bytes(ROWS.to_csv(index=False, sep=sep).encode("utf-8-sig"))
    df = read_table(p)
    assert list(df.columns) == ["customer_id", "comment", "orders"]
    assert df["customer_id"].tolist() == ["007", "008", "009"]  # leading zeros kept
    assert df["comment"].iloc[0] == "Sản phẩm tốt 😍"
    assert df["orders"].tolist() == [3, 1, 7]


def test_parquet_jsonl_tsv(tmp_path: Path) -> None:
    ROWS.to_parquet(tmp_path / "r.parquet")
    ROWS.to_json(tmp_path / "r.jsonl", orient="records", lines=True, force_ascii=False)
    ROWS.to_csv(tmp_path / "r.tsv", sep="\t", index=False)
    for name in ("r.parquet", "r.jsonl", "r.tsv"):
        df = read_table(tmp_path / name)
        assert df["comment"].tolist() == ROWS["comment"].tolist(), name


LATIN_TEXTS = ["Produto ótimo, recomendação é certa", "Não gostei"] * 20
VI_TEXTS = ["Sản phẩm tốt, giao hàng nhanh 😍", "Hàng tệ quá, thất vọng"] * 20


def _encoded_csv(path: Path, texts: list[str], encoding: str) -> Path:
    body = "id,comment\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts))
    path.write_bytes(body.encode(encoding))
    return path


def test_non_utf8_named_encoding_and_wrong_encoding(tmp_path: Path) -> None:
    p = _encoded_csv(tmp_path / "latin.csv", LATIN_TEXTS, "cp1252")
    assert read_table(p, encoding="cp1252")["comment"].tolist() == LATIN_TEXTS
    with pytest.raises(InputError, match="not valid utf-8|encoding"):
        read_table(p, encoding="utf-8")


@pytest.mark.parametrize(
    ("texts", "encoding"),
    [
        (VI_TEXTS, "utf-16"),  # with its BOM, as Excel's "Unicode text" writes it
        (LATIN_TEXTS, "cp1252"),  # ties with cp1250: the Western code page wins
        (["Café était froid", "résumé parfait"], "cp1252"),  # short: not mac_latin2's "Cafť"
        (["Przesyłka dotarła szybko", "żółw"], "cp1250"),  # not cp1252's "Przesy³ka"
    ],
)
def test_non_utf8_is_detected(tmp_path: Path, texts: list[str], encoding: str) -> None:
    """The detected encoding decodes every cell to the text that was written, not just the
    right number of rows."""
    p = _encoded_csv(tmp_path / "in.csv", texts, encoding)
    got = read_table(p)
    assert got["comment"].tolist() == texts
    assert got["id"].astype(int).tolist() == list(range(len(texts)))


@pytest.mark.parametrize(("texts", "encoding"), [(VI_TEXTS, "utf-16"), (LATIN_TEXTS, "cp1252")])
def test_batch_input_encoding_is_detected(tmp_path: Path, texts: list[str], encoding: str) -> None:
    """``nlpseg batch`` streams inputs with its own reader: it must decode them the same way."""
    import pyarrow as pa

    from nlp_seg.runs.batch_work import iter_chunks, plan_inputs

    p = _encoded_csv(tmp_path / "in.csv", texts, encoding)
    plan = plan_inputs([p])
    table = pa.concat_tables(list(iter_chunks(plan, 7)))
    assert table.column("comment").to_pylist() == texts


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), (b"", "empty"), (b"\n\n", "empty|no rows")],
)
def test_missing_and_empty_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    p = tmp_path / "x.csv"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_table(p)


def test_column_detection_and_unknown_columns() -> None:
    spec = detect_columns(ROWS)
    assert (spec.text, spec.id, spec.behavior) == ("comment", "customer_id", ("orders",))
    with pytest.raises(InputError, match="unknown text column 'nope'"):
        detect_columns(ROWS, text_col="nope")
    with pytest.raises(InputError, match="unknown behaviour column"):
        detect_columns(ROWS, behavior_cols=["spend"])
    no_text = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    with pytest.raises(InputError, match="no text column found"):
        detect_columns(no_text)


def test_text_column_guessed_from_content() -> None:
    df = pd.DataFrame({"x": ["a", "b"], "opinions here": ["the phone is great", "bad service"]})
    assert detect_columns(df).text == "opinions here"


def test_normalisation_composes_vietnamese_and_masks_pii() -> None:
    composed = "Điện thoại pin trâu, mong shop cải thiện"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert normalize_text(decomposed).text == composed
    t = normalize_text("  see https://x.vn/a?b=1 or mail me@x.com @shop123 😍\u200b ").text
    assert t == "see http or mail @email @user 😍"
    assert normalize_text(None).status == "empty_text"
    assert normalize_text("   ").status == "empty_text"
    assert normalize_text(float("nan")).status == "empty_text"
    assert normalize_text("x" * 5000, max_chars=100).text == "x" * 100


def test_literal_escapes_become_characters_and_lone_surrogates_are_dropped() -> None:
    from nlp_seg.normalize import normalize_text

    got = normalize_text(r"love it \ud83d\ude0d, don\u2019t \ud83d stop")
    assert got.status == "ok"
    assert got.text == "love it 😍, don’t stop"
    got.text.encode("utf-8")  # a lone surrogate would raise here
