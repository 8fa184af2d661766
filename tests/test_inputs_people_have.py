"""Files people really have: Excel/OpenDocument workbooks, CSVs with an unquoted comma,
duplicate headers, NUL bytes, UTF-16 without BOM, and files whose name lies about their content.

Every input here is a real file written the way the tool that makes it would write it (a
workbook by openpyxl, a ragged CSV by ``printf``), read through ``read_table`` and, for the
Excel and ragged cases, through the ``nlpseg`` command end to end.
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import pandas as pd
import pytest

from nlp_seg.errors import InputError
from nlp_seg.io.read import read_table, sheet_of, sniff_kind

openpyxl = pytest.importorskip("openpyxl")

REVIEWS = [
    ("007", "Sản phẩm tốt, giao nhanh", 3, 12.5, dt.datetime(2024, 5, 1), 7),
    ("008", "hàng tệ quá, pin yếu", 1, 4.0, dt.date(2024, 5, 2), 8),
    ("010", "great phone, fast delivery", 2, None, None, 10),
]


def write_xlsx(path: Path) -> Path:
    """A workbook as a CX tool exports it: ids typed as text, a zero-padded number format,
    a formula without a cached value, an empty row, a hidden helper sheet and a second sheet."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Reviews"
    ws.append(["customer_id", "review", "orders", "spend", "date", "zip"])
    for row in REVIEWS:
        ws.append(list(row))
    for r in range(2, 2 + len(REVIEWS)):
        ws.cell(row=r, column=6).number_format = "00000"
    ws.append([None] * 6)  # a blank row left at the end
    ws.append(["011", '=CONCAT("a","b")', 5, 1.1, None, None])  # no cached value
    other = wb.create_sheet("Chats")
    other.append(["customer_id", "message"])
    other.append(["A1", "when will my order arrive"])
    other.append(["A2", "thanks, all good"])
    wb.save(path)
    return path


def write_ods(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    """A minimal but valid OpenDocument spreadsheet (what LibreOffice saves), by hand."""

    def cell(v: object) -> str:
        if v is None:
            return "<table:table-cell/>"
        if isinstance(v, (int, float)):
            return (
                f'<table:table-cell office:value-type="float" office:value="{v}">'
                f"<text:p>{v}</text:p></table:table-cell>"
            )
        return (
            f'<table:table-cell office:value-type="string"><text:p>{escape(str(v))}</text:p>'
            "</table:table-cell>"
        )

    tables = "".join(
        f'<table:table table:name="{escape(name)}">'
        + "".join(
            "<table:table-row>" + "".join(cell(v) for v in row) + "</table:table-row>"
            for row in rows
        )
        + "</table:table>"
        for name, rows in sheets.items()
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        f"<office:body><office:spreadsheet>{tables}</office:spreadsheet></office:body>"
        "</office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest '
        'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
        'manifest:version="1.2"><manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            zipfile.ZipInfo("mimetype"),
            "application/vnd.oasis.opendocument.spreadsheet",
            compress_type=zipfile.ZIP_STORED,
        )
        z.writestr("META-INF/manifest.xml", manifest)
        z.writestr("content.xml", content)
    return path


# --- spreadsheets --------------------------------------------------------------------------


def test_xlsx_first_sheet_as_the_text_it_shows(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "export.xlsx")
    raw = read_table(path, typed=False)
    assert list(raw.columns) == ["customer_id", "review", "orders", "spend", "date", "zip"]
    assert len(raw) == 4  # the blank row is skipped, as a blank CSV line is
    assert raw["customer_id"].tolist() == ["007", "008", "010", "011"]  # zeros kept
    assert raw["review"].tolist()[:3] == [r[1] for r in REVIEWS]
    assert raw["orders"].tolist() == ["3", "1", "2", "5"]  # not 3.0
    assert raw["spend"].tolist() == ["12.5", "4", None, "1.1"]
    assert raw["date"].tolist() == ["2024-05-01", "2024-05-02", None, None]
    assert raw["zip"].tolist() == ["00007", "00008", "00010", None]  # number format 00000
    assert raw.loc[3, "review"] is None  # a formula without a cached value is empty
    typed = read_table(path)
    assert typed["orders"].tolist() == [3, 1, 2, 5]
    assert typed["customer_id"].tolist() == ["007", "008", "010", "011"]


def test_sheet_by_name_and_unknown_sheet(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "export.xlsx")
    chats = read_table(path, sheet="Chats")
    assert chats["message"].tolist() == ["when will my order arrive", "thanks, all good"]
    assert read_table(path, sheet="chats").shape == (2, 2)  # case-insensitive
    with sheet_of(path, "Chats"):  # how the commands pass --sheet down
        assert list(read_table(path).columns) == ["customer_id", "message"]
    assert "review" in read_table(path).columns  # only while inside
    with pytest.raises(InputError, match=r"no sheet 'Nope'; its sheets: 'Reviews', 'Chats'"):
        read_table(path, sheet="Nope")
    csv = tmp_path / "plain.csv"
    csv.write_text("text\nhello there\n")
    with pytest.raises(InputError, match="--sheet is for spreadsheets"):
        read_table(csv, sheet="Reviews")


def test_ods_is_read_through_calamine(tmp_path: Path) -> None:
    pytest.importorskip("python_calamine")
    path = write_ods(
        tmp_path / "lo.ods",
        {
            "Feedback": [
                ["customer_id", "comment", "orders"],
                ["007", "Sản phẩm tốt 😍", 3],
                ["008", "hàng tệ", 1.5],
            ],
            "Notes": [["text"], ["second sheet"]],
        },
    )
    df = read_table(path, typed=False)
    assert df["customer_id"].tolist() == ["007", "008"]
    assert df["comment"].tolist() == ["Sản phẩm tốt 😍", "hàng tệ"]
    assert df["orders"].tolist() == ["3", "1.5"]
    assert read_table(path, sheet="Notes")["text"].tolist() == ["second sheet"]


def test_workbook_with_a_csv_name_is_read_as_the_workbook(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_xlsx(tmp_path / "export.csv")  # saved with the wrong name
    assert sniff_kind(path) == "xlsx"
    with caplog.at_level(logging.WARNING, logger="nlp_seg.io.read"):
        df = read_table(path, encoding="cp1258")  # even with an --encoding it cannot apply to
    assert df["customer_id"].tolist()[:2] == ["007", "008"]
    assert "is an Excel workbook, not .csv text" in caplog.text
    assert "encoding" not in caplog.text
    caplog.clear()
    bare = write_xlsx(tmp_path / "export")  # no extension at all
    with caplog.at_level(logging.WARNING, logger="nlp_seg.io.read"):
        assert len(read_table(bare)) == len(df)
    assert "is an Excel workbook, not CSV text" in caplog.text


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("report.xls", b"<html><body><table><tr><td>x</td></tr></table></body></html>", "HTML"),
        ("rows.xlsx", b"text\nhello there\n", "give it a .csv"),
        ("reviews.csv", gzip.compress(b"text\nhello there\n" * 50), "gzip-compressed"),
        ("reviews.csv", bytes(range(1, 32)) * 200, "binary data"),
        ("reviews.csv", Path(sys.executable).resolve().read_bytes()[:70000], "a program"),
        ("reviews.csv", b"MZ\x90\x00" + b"\x00" * 60 + b"PE\x00\x00" + b"\x00" * 900, "program"),
        ("reviews.csv", b"%PDF-1.7\n" + bytes(range(256)) * 10, "PDF"),
    ],
)
def test_what_a_file_is_not_blamed_on_its_encoding(
    tmp_path: Path, name: str, data: bytes, needle: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        read_table(path)
    message = str(err.value)
    assert needle in message
    assert "--encoding" not in message and "cp1258" not in message


# --- UTF-16 without BOM --------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-16"])
def test_utf16_with_or_without_bom(tmp_path: Path, codec: str) -> None:
    text = "customer_id,comment\n007,Điện thoại pin trâu\n008,mong shop cải thiện 😍\n"
    path = tmp_path / "excel-unicode.csv"
    path.write_bytes(text.encode(codec))  # "-le"/"-be" write no BOM; "utf-16" writes one
    df = read_table(path)
    assert df["customer_id"].tolist() == ["007", "008"]
    assert df["comment"].tolist() == ["Điện thoại pin trâu", "mong shop cải thiện 😍"]


# --- CSV dialect problems ------------------------------------------------------------------


def printf(path: Path, fmt: str) -> Path:
    """Write ``path`` with the shell's printf, as the issue's reproduction does."""
    with open(path, "wb") as f:
        subprocess.run(["printf", fmt], stdout=f, check=True)
    return path


def test_unquoted_comma_in_the_last_text_column_is_rejoined_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = printf(tmp_path / "f.csv", "id,review\\n1,good phone, fast\\n2,bad\\n")
    with caplog.at_level(logging.WARNING, logger="nlp_seg.io.read"):
        df = read_table(path, typed=False)
    assert list(df.columns) == ["id", "review"]
    assert df["id"].tolist() == ["1", "2"]  # not taken as the index
    assert df["review"].tolist() == ["good phone, fast", "bad"]
    assert "1 row(s) of f.csv have more fields than its header (lines 2)" in caplog.text


def test_extra_field_when_the_last_column_is_not_text_names_the_line(tmp_path: Path) -> None:
    path = printf(tmp_path / "g.csv", "id,review,orders\\n1,great,3\\n2,good phone, fast,4\\n")
    with pytest.raises(InputError, match=r"g\.csv line 3: 4 fields but the header has 3"):
        read_table(path)


UNCLOSED = 'id,review\\n1,"good phone\\n2,bad\\n3,ok\\n4,fine\\n5,"nice" screen\\n'


def test_a_quote_left_open_does_not_swallow_the_rows_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = printf(tmp_path / "q.csv", UNCLOSED)
    with caplog.at_level(logging.WARNING, logger="nlp_seg.io.read"):
        df = read_table(path, typed=False)
    assert df["id"].tolist() == ["1", "2", "3", "4", "5"]
    assert df["review"].tolist() == ["good phone", "bad", "ok", "fine", "nice screen"]
    assert "q.csv line 2 opens a quote that runs on to line 6" in caplog.text
    # open to the end of the file, and in a middle column whose row keeps its last field
    eof = printf(tmp_path / "e.csv", 'id,review,orders\\n1,"good phone,3\\n2,bad,1\\n3,ok,2\\n')
    df = read_table(eof, typed=False)
    assert df.values.tolist() == [["1", "good phone", "3"], ["2", "bad", "1"], ["3", "ok", "2"]]


def test_a_quoted_review_over_several_lines_stays_one_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = (
        'user,review\\nalice,"Good phone.\\nBattery, though, weak"\\n'
        'bob,"Great\\nThanks, all good"\\n'
        'carol,"Nice phone.\\nHowever, battery weak.\\nOverall, ok."\\ndan,ok\\n'
    )
    path = printf(tmp_path / "m.csv", text)
    with caplog.at_level(logging.WARNING, logger="nlp_seg.io.read"):
        df = read_table(path, typed=False)
        ids = read_table(
            printf(tmp_path / "n.csv", 'id,review\\n1,"Fast.\\n10, would buy again"\\n')
        )
    assert ids["review"].tolist() == ["Fast.\n10, would buy again"]
    assert df["user"].tolist() == ["alice", "bob", "carol", "dan"]
    assert df["review"].tolist()[:2] == [
        "Good phone.\nBattery, though, weak",
        "Great\nThanks, all good",
    ]
    assert "opens a quote" not in caplog.text


def test_batch_stops_on_a_quote_left_open(tmp_path: Path, tiny_models) -> None:
    path = printf(tmp_path / "q.csv", UNCLOSED)
    proc = nlpseg("batch", str(path), "--out", str(tmp_path / "b"), *tiny(tiny_models))
    assert proc.returncode != 0
    last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("error: q.csv row 1: a quote opened in its 'review' cell"), proc.stderr
    assert "Traceback" not in proc.stderr
    # Open to the end of the file: the same message, not pandas' "EOF inside string".
    eof = printf(tmp_path / "e.csv", 'id,review\\n1,ok\\n2,"good phone\\n3,bad\\n')
    proc = nlpseg("batch", str(eof), "--out", str(tmp_path / "e"), *tiny(tiny_models))
    last = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1]
    assert proc.returncode != 0 and "a quote opened runs on over lines" in last, proc.stderr
    # The quote closed as told, the same command runs: the failed start kept nothing to refuse.
    printf(tmp_path / "q.csv", UNCLOSED.replace('1,"good', "1,good"))
    again = nlpseg("-q", "batch", str(path), "--out", str(tmp_path / "b"), *tiny(tiny_models))
    assert again.returncode == 0, again.stderr
    assert len(pd.read_parquet(tmp_path / "b" / "assignments.parquet")) == 5


def test_duplicate_headers_and_nul_bytes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dup = printf(tmp_path / "dup.csv", "id,review,review\\n1,good,fast\\n2,bad,slow\\n")
    nul = printf(tmp_path / "nul.csv", "id,review\\n1,go\\000od\\n2,bad\\000\\n")
    with caplog.at_level(logging.WARNING, logger="nlp_seg.io.read"):
        d = read_table(dup)
        n = read_table(nul)
    assert list(d.columns) == ["id", "review", "review.1"]
    assert d["review.1"].tolist() == ["fast", "slow"]
    assert "column name 'review' more than once" in caplog.text
    assert n["review"].tolist() == ["good", "bad"]
    assert "NUL bytes" in caplog.text


# --- end to end ----------------------------------------------------------------------------


def nlpseg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nlp_seg", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )


def tiny(tiny_models: dict[str, Path]) -> list[str]:
    return [
        "--embedding-model",
        str(tiny_models["embedding"]),
        "--sentiment-model",
        str(tiny_models["sentiment"]),
    ]


def test_analyze_an_xlsx_sheet_end_to_end(tmp_path: Path, tiny_models) -> None:
    path = write_xlsx(tmp_path / "export.xlsx")
    out = tmp_path / "out"
    proc = nlpseg(
        "analyze", str(path), "--sheet", "Reviews", "--out", str(out), "-q", *tiny(tiny_models)
    )
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(out / "assignments.csv", dtype=str, keep_default_na=False)
    assert got["customer_id"].tolist() == ["007", "008", "010", "011"]
    assert got["zip"].tolist() == ["00007", "00008", "00010", ""]
    assert got["review"].tolist()[:3] == [r[1] for r in REVIEWS]
    assert got["status"].tolist() == ["ok", "ok", "ok", "empty_text"]
    chats = nlpseg(
        "score",
        str(path),
        "--sheet",
        "Chats",
        "--out",
        str(tmp_path / "s.csv"),
        "--quiet",
        *tiny(tiny_models),
    )
    assert chats.returncode == 0, chats.stderr
    scored = pd.read_csv(tmp_path / "s.csv", dtype=str)
    assert scored["customer_id"].tolist() == ["A1", "A2"]
    assert len(scored["sentiment_label"].dropna()) == 2


def test_ragged_csv_through_the_command(tmp_path: Path, tiny_models) -> None:
    path = printf(tmp_path / "f.csv", "id,review\\n1,good phone, fast\\n2,bad\\n")
    out = tmp_path / "scores.csv"
    proc = nlpseg("score", str(path), "--out", str(out), "--quiet", *tiny(tiny_models))
    assert proc.returncode == 0, proc.stderr
    assert "more fields than its header (lines 2)" in proc.stderr
    got = pd.read_csv(out, dtype=str)
    assert got["id"].tolist() == ["1", "2"]
    assert got["review"].tolist() == ["good phone, fast", "bad"]
    bad = printf(tmp_path / "g.csv", "id,review,orders\\n1,good phone, fast,3\\n")
    refused = nlpseg("score", str(bad), "--out", str(out), *tiny(tiny_models))
    assert refused.returncode != 0
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: g.csv line 2: 4 fields"), refused.stderr
    assert "Traceback" not in refused.stderr


def test_batch_refuses_excel_with_a_one_line_hint(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "export.xlsx")
    proc = nlpseg("batch", str(path), "--out", str(tmp_path / "b"))
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "export.xlsx" in lines[0] and "Parquet" in lines[0]
