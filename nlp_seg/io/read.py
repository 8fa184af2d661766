"""Input: read a table of texts and find its text, id and behaviour columns.

Reading is forgiving about *format* (CSV with any common delimiter, TSV, Parquet, JSON Lines,
Excel and OpenDocument spreadsheets; UTF-8 with or without BOM, UTF-16 with or without BOM,
other encodings detected or named) and strict about *meaning*: an unknown column or a file with
no usable text stops the run with a one-line error instead of silently guessing wrong. A file is
recognised by its content, not only its name: a workbook saved as ``.csv`` is read as the
workbook it is, and a binary file is named for what it is instead of blamed on its encoding.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import math
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlp_seg.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

TEXT_COLUMN_NAMES = (
    "review",
    "reviews",
    "review_text",
    "review_body",
    "comment",
    "comments",
    "text",
    "content",
    "message",
    "messages",
    "body",
    "feedback",
    "opinion",
    "sentence",
    "sents",
    "noi_dung",
    "nội dung",
    "binh_luan",
    "bình luận",
    "danh_gia",
    "đánh giá",
    "comentario",
    "comentário",
    "avaliacao",
    "avaliação",
    "texto",
    "mensagem",
)
ID_COLUMN_NAMES = (
    "customer_id",
    "customerid",
    "customer",
    "user_id",
    "userid",
    "user",
    "client_id",
    "clientid",
    "member_id",
    "account_id",
    "buyer_id",
    "id",
    "review_id",
    "reviewid",
)
#: Names that make a numeric column a behaviour feature when none are named. A star rating
#: is not one (it says what the text says, and a saved segmenter would place rows without it
#: elsewhere): it checks the sentiment instead (run.json ``rating_check``), and is used as
#: behaviour only when named with ``--behavior-cols``.
BEHAVIOUR_NAME_HINTS = (
    "order",
    "spend",
    "spent",
    "amount",
    "revenue",
    "recency",
    "frequency",
    "monetary",
    "visit",
    "session",
    "clv",
    "ltv",
    "value",
    "days_since",
    "tenure",
    "aov",
    "open",
    "click",
    "purchase",
    "basket",
    "cart",
    "engagement",
    "loyalty",
    "points",
)
CSV_DELIMITERS = ",;\t|"
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
SUPPORTED_SUFFIXES = (
    ".csv",
    ".tsv",
    ".txt",
    ".parquet",
    ".pq",
    ".jsonl",
    ".ndjson",
    ".json",
    *SPREADSHEET_SUFFIXES,
)
# What a spreadsheet kind is called in messages, and the suffix it is normally saved with.
SPREADSHEET_KINDS = {
    "xlsx": ("an Excel workbook", ".xlsx"),
    "xlsb": ("a binary Excel workbook", ".xlsb"),
    "xls": ("an Excel 97-2003 workbook", ".xls"),
    "ods": ("an OpenDocument spreadsheet", ".ods"),
}


#: Names of a texts' date column (``--time-col`` names another).
TIME_COLUMN_NAMES = (
    "date",
    "review_date",
    "created_at",
    "created",
    "date_time",
    "datetime",
    "timestamp",
    "time",
    "review_time",
    "posted_at",
    "published_at",
    "submitted_at",
    "review_creation_date",
    "ngày",
    "ngay",
    "thời_gian",
    "thoi_gian",
    "ngày_đánh_giá",
    "ngay_danh_gia",
    "data",
    "fecha",
    "tanggal",
)


@dataclass(frozen=True)
class ColumnSpec:
    """Which input columns play which role; recorded in ``run.json``."""

    text: str
    id: str | None = None
    behavior: tuple[str, ...] = field(default_factory=tuple)
    date: str | None = None


_SHEETS: dict[Path, str] = {}


@contextmanager
def sheet_of(path: str | Path, sheet: str | None) -> Iterator[None]:
    """While inside, :func:`read_table` reads ``path`` from ``sheet`` (``--sheet NAME``).

    The commands name the sheet of their main input this way, so the runs (and any other
    file they read, such as ``--orders``) need not carry it: only that one file is affected.
    """
    if sheet is None:
        yield
        return
    key = Path(path).expanduser().resolve()
    _SHEETS[key] = sheet
    try:
        yield
    finally:
        _SHEETS.pop(key, None)


def read_table(
    path: str | Path,
    encoding: str | None = None,
    typed: bool = True,
    sheet: str | None = None,
) -> pd.DataFrame:
    """Read ``path`` into a DataFrame with every column kept as it was in the file.

    CSV and spreadsheet cells are read as strings (ids such as ``00123`` keep their zeros; a
    spreadsheet cell is the text the sheet shows: ``3`` not ``3.0``, a date as ``2024-05-01``,
    a number formatted ``00000`` with its zeros); with ``typed`` columns that are entirely
    numeric are then converted (:func:`restore_numeric`). The runs read ``typed=False`` and
    detect column roles on a typed copy, so an input column comes out as the text the user
    typed (``+84901234567`` keeps its ``+``, ``4.50`` its zero). Parquet and JSON keep their
    own types either way. ``sheet`` names the sheet of a workbook (default: the first one).
    A database URL (``duckdb:///shop.duckdb?table=reviews``, see :mod:`nlp_seg.io.database`)
    is read in the database's own types.
    """
    import pandas as pd

    from nlp_seg.io.database import is_database_url

    if is_database_url(path):  # a database table or query (nlp_seg.io.database)
        from nlp_seg.io.database import read_database

        if sheet is not None:
            raise InputError("--sheet is for spreadsheets, not for a database source")
        return read_database(str(path))
    p = Path(path)
    if not p.exists():
        raise InputError(f"input file not found: {p}")
    if p.is_dir():
        raise InputError(f"input is a folder, not a file: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"input file is empty: {p}")
    suffix = p.suffix.lower()
    if sheet is None:
        sheet = _SHEETS.get(p.expanduser().resolve())
    kind = sniff_kind(p)
    try:
        if kind in SPREADSHEET_KINDS or suffix in SPREADSHEET_SUFFIXES:
            df = _read_spreadsheet(p, kind, sheet)
            if typed:
                df = restore_numeric(df)
        elif sheet is not None:
            raise InputError(
                f"--sheet is for spreadsheets (.xlsx, .xls, .ods); {p.name} is not one"
            )
        elif kind == "parquet" or suffix in (".parquet", ".pq"):
            if suffix not in (".parquet", ".pq"):
                log.warning("%s is a Parquet file, not text; reading it as Parquet", p.name)
            df = pd.read_parquet(p)
        elif kind is not None:
            raise InputError(_not_text_message(p, kind))
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(io.StringIO(_decode(p, encoding)), lines=True, dtype=False)
        elif suffix == ".json":
            text = _decode(p, encoding)
            lines = text.lstrip().startswith("{")
            df = pd.read_json(io.StringIO(text), lines=lines, dtype=False)
        else:
            df = _read_delimited(p, encoding, tab=suffix == ".tsv")
            if typed:
                df = restore_numeric(df)
    except InputError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {p.name}: {first}") from exc
    if df.shape[1] == 0 or len(df) == 0:
        raise InputError(f"input file has no rows: {p}")
    df.columns = [str(c).strip() for c in df.columns]
    return df


# Binary formats recognised by their first bytes (zip archives are looked into).
_MAGIC = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "xls"),  # OLE2 compound file: Excel 97-2003
    (b"PAR1", "parquet"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"%PDF", "pdf"),
    (b"SQLite format 3\x00", "sqlite"),
    (b"\x89PNG", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x7fELF", "program"),  # Linux
    (b"\xcf\xfa\xed\xfe", "program"),  # macOS (Mach-O, 64-bit)
    (b"\xfe\xed\xfa\xcf", "program"),
)
_NOT_TEXT = {  # kind: (what it is, what to do)
    "parquet": ("a Parquet file", "give it a .parquet name"),
    "gzip": ("gzip-compressed", "unpack it first (gunzip)"),
    "bzip2": ("bzip2-compressed", "unpack it first"),
    "xz": ("xz-compressed", "unpack it first"),
    "7z": ("a 7-Zip archive", "unpack it first"),
    "zip": ("a zip archive", "unpack it first"),
    "pdf": ("a PDF document", "export its table to CSV"),
    "sqlite": ("an SQLite database", "export the table to CSV"),
    "png": ("an image", ""),
    "jpeg": ("an image", ""),
    "binary": ("binary data", ""),
    "program": ("a program (an executable file)", ""),
}


def sniff_kind(path: str | Path) -> str | None:
    """What a file is by its content: a spreadsheet kind (``xlsx``, ``xlsb``, ``xls``,
    ``ods``), ``parquet``, an archive or other binary kind, or ``None`` for text."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(1 << 16)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(p) as z:
                names = set(z.namelist())
                if "xl/workbook.xml" in names:
                    return "xlsx"
                if "xl/workbook.bin" in names:
                    return "xlsb"
                if "mimetype" in names and b"spreadsheet" in z.read("mimetype"):
                    return "ods"
                if "content.xml" in names and "META-INF/manifest.xml" in names:
                    return "ods"
        except (zipfile.BadZipFile, OSError, KeyError):
            pass
        return "zip"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head.startswith(b"MZ") and b"PE\x00\x00" in head[:1024]:
        return "program"  # Windows
    if _utf16_without_bom(head) or head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    if head.startswith(b"\xef\xbb\xbf"):
        return None
    # Control bytes other than NUL (handled as stray padding), TAB, LF, CR, FF and ESC are
    # rare in text in any encoding and common in binary data.
    control = sum(1 for b in head if 0 < b < 9 or 13 < b < 32 and b != 27)
    if head and (control > 0.05 * len(head) or head.count(0) > 0.3 * len(head)):
        return "binary"  # (UTF-16, whose NULs are half its bytes, was recognised above)
    return None


def _not_text_message(p: Path, kind: str) -> str:
    what, todo = _NOT_TEXT.get(kind, ("not a text file", ""))
    return (
        f"{p.name} is {what}, not CSV/TSV/JSON text"
        + (f"; {todo}" if todo else "")
        + " (nlpseg reads CSV, TSV, JSON Lines, Parquet and .xlsx/.xls/.ods spreadsheets)"
    )


def _utf16_without_bom(head: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when ``head`` looks like UTF-16 text without a BOM.

    Text is mostly ASCII letters, digits, spaces and punctuation (Vietnamese too: its
    letters sit around them), whose UTF-16 high byte is zero: one of the two byte lanes is
    largely NUL and the other hardly ever. The guess must then decode cleanly.
    """
    sample = head[: len(head) - len(head) % 2][:65536]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    even_nul = even.count(0) / len(even)
    odd_nul = odd.count(0) / len(odd)
    if odd_nul > 0.3 and even_nul < 0.02:
        guess = "utf-16-le"
    elif even_nul > 0.3 and odd_nul < 0.02:
        guess = "utf-16-be"
    else:
        return None
    try:
        sample.decode(guess)
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # only a character cut at the end of the sample
            return None
    return guess


def _decode(p: Path, encoding: str | None) -> str:
    """Decode a text file: the named encoding, else by its BOM (UTF-8, UTF-16, UTF-32), else
    UTF-16 without BOM when it looks like it, else UTF-8, else a detected encoding."""
    raw = p.read_bytes()
    if encoding:
        try:
            return raw.decode(encoding)
        except LookupError as exc:
            raise InputError(f"unknown encoding {encoding!r}") from exc
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{p.name} is not valid {encoding} (byte {exc.start}); try another --encoding"
            ) from exc
    for bom, codec in (
        (b"\xff\xfe\x00\x00", "utf-32"),
        (b"\x00\x00\xfe\xff", "utf-32"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    ):
        if raw.startswith(bom):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{p.name} starts like {codec.upper()} but is not valid {codec.upper()} "
                    f"(byte {exc.start}); pass the right --encoding"
                ) from exc
    utf16 = _utf16_without_bom(raw[:65536])
    if utf16 is not None:
        try:
            text = raw.decode(utf16)
        except UnicodeDecodeError:
            pass
        else:
            log.info("%s read as %s (no byte-order mark)", p.name, utf16)
            return text
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    best_encoding = detect_encoding(raw[: 1 << 20], p.name)
    try:
        text = raw.decode(best_encoding)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{p.name} is not UTF-8 (looks like {best_encoding}); pass --encoding"
        ) from exc
    log.warning(
        "%s is not UTF-8; decoded as %s (use --encoding to override)", p.name, best_encoding
    )
    return text


def _read_spreadsheet(p: Path, kind: str | None, sheet: str | None) -> pd.DataFrame:
    """The first (or the named) sheet of a workbook as text cells, like a CSV read."""
    import pandas as pd

    suffix = p.suffix.lower()
    if kind not in SPREADSHEET_KINDS:
        if kind is not None:
            what = "; ".join(filter(None, _NOT_TEXT.get(kind, ("something else", ""))))
        elif p.read_bytes()[:512].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
            what = "an HTML/XML page; open it in a spreadsheet and save it as .xlsx or CSV"
        else:
            what = "text; give it a .csv (or .tsv) name"
        raise InputError(f"{p.name} is named like a spreadsheet but is {what}")
    what, usual = SPREADSHEET_KINDS[kind]
    if suffix not in SPREADSHEET_SUFFIXES:
        log.warning(
            "%s is %s, not %s text; reading it as a spreadsheet", p.name, what, suffix or "CSV"
        )
    if kind == "xlsx":
        name, rows = _xlsx_rows(p, sheet)
    else:
        name, rows = _calamine_rows(p, sheet)
    header, body = _sheet_table(rows, p.name, name)
    df = pd.DataFrame(body, columns=header, dtype=object)
    return df.where(df.notna(), None).astype(object)


def _pick_sheet(names: list[str], visible: list[bool], sheet: str | None, p: Path) -> str:
    if sheet is None:
        shown = [n for n, v in zip(names, visible, strict=True) if v] or names
        if not shown:
            raise InputError(f"{p.name} has no sheets")
        if len(names) > 1:
            log.info(
                "%s has %d sheets; reading %r (--sheet picks another)", p.name, len(names), shown[0]
            )
        return shown[0]
    if sheet in names:
        return sheet
    by_lower = {n.strip().lower(): n for n in names}
    if sheet.strip().lower() in by_lower:
        return by_lower[sheet.strip().lower()]
    if sheet.strip().isdigit() and 1 <= int(sheet) <= len(names):
        return names[int(sheet) - 1]
    raise InputError(
        f"{p.name} has no sheet {sheet!r}; its sheets: " + ", ".join(repr(n) for n in names)
    )


def _xlsx_rows(p: Path, sheet: str | None) -> tuple[str, list[list[str | None]]]:
    """Rows of an .xlsx/.xlsm sheet through openpyxl, each cell the text the sheet shows."""
    try:
        import openpyxl
    except ImportError as exc:  # a dependency; only a broken install lacks it
        raise InputError("reading .xlsx needs openpyxl: pip install openpyxl") from exc
    import warnings

    # A file object, not the path: openpyxl refuses names that do not end in .xlsx/.xlsm.
    with open(p, "rb") as fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "no default style", unknown extensions, ...
                wb = openpyxl.load_workbook(fh, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged or encrypted workbook
            raise InputError(
                f"cannot read {p.name} as an Excel workbook: {_first_line(exc)}"
            ) from exc
        try:
            sheets = [ws for ws in wb.worksheets if hasattr(ws, "iter_rows")]
            names = [ws.title for ws in sheets]
            visible = [getattr(ws, "sheet_state", "visible") == "visible" for ws in sheets]
            name = _pick_sheet(names, visible, sheet, p)
            ws = wb[name]
            if hasattr(ws, "reset_dimensions"):
                ws.reset_dimensions()  # exporters often write a wrong <dimension>
            rows = [
                [_cell_text(c.value, getattr(c, "number_format", None)) for c in row]
                for row in ws.iter_rows()
            ]
        finally:
            wb.close()
    return name, rows


def _calamine_rows(p: Path, sheet: str | None) -> tuple[str, list[list[str | None]]]:
    """Rows of an .xls/.xlsb/.ods sheet through python-calamine, cells as shown text."""
    try:
        from python_calamine import CalamineWorkbook
    except ImportError as exc:  # a dependency; only a broken install lacks it
        raise InputError(
            f"reading {p.suffix or 'this spreadsheet'} needs python-calamine: "
            "pip install python-calamine"
        ) from exc
    try:
        wb = CalamineWorkbook.from_path(str(p))
        meta = list(wb.sheets_metadata)
        names = [m.name for m in meta]
        visible = ["Visible" in str(m.visible) for m in meta]
        name = _pick_sheet(names, visible, sheet, p)
        values = wb.get_sheet_by_name(name).to_python(skip_empty_area=False)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - calamine raises its own error types
        raise InputError(f"cannot read {p.name} as a spreadsheet: {_first_line(exc)}") from exc
    return name, [[_cell_text(v) for v in row] for row in values]


_ZERO_PADDED = re.compile(r"0+")


def _cell_text(value: object, number_format: str | None = None) -> str | None:
    """A cell as the text a spreadsheet shows for it (``None`` when empty).

    Whole numbers lose the ``.0`` the file stores (``3``, ``84901234567``), other numbers keep
    15 significant digits (Excel's precision, so ``0.1+0.2`` is ``0.3``), a number formatted
    ``00000`` keeps its leading zeros, dates are ISO (``2024-05-01``, with the time only when
    it is not midnight), booleans ``TRUE``/``FALSE`` as Excel writes them.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if float(value).is_integer() and abs(value) < 1e15:
            digits = str(int(value))
            if number_format and _ZERO_PADDED.fullmatch(number_format) and value >= 0:
                return digits.zfill(len(number_format))
            return digits
        return f"{value:.15g}"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _sheet_table(
    rows: list[list[str | None]], name: str, sheet: str
) -> tuple[list[str], list[list[str | None]]]:
    """Header and body of a sheet: blank rows skipped, the first non-blank row the header,
    columns without a header name and without data dropped, every row as wide as the header."""
    rows = [r for r in rows if any(c is not None and c.strip() for c in r)]
    if not rows:
        raise InputError(f"input file has no rows: {name} (sheet {sheet!r} is empty)")
    width = max(
        max((i + 1 for i, c in enumerate(r) if c is not None and c.strip()), default=0)
        for r in rows
    )
    rows = [(r + [None] * width)[:width] for r in rows]
    header_cells, body = rows[0], rows[1:]
    header = [(h or "").strip() or f"column_{i + 1}" for i, h in enumerate(header_cells)]
    if not body:
        raise InputError(f"input file has no rows: {name} (sheet {sheet!r} has only a header)")
    return _unique_header(header, name), body


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: Tie-break between code pages charset_normalizer scores equally (lower wins).
_ENCODING_PREFERENCE = {"cp1252": 0, "cp1258": 1, "latin_1": 2, "cp1250": 3}
#: How much more "mess" (charset_normalizer's chaos, 0..1) a common code page may show than a
#: rare one that won and still be taken.
COMMON_CODEPAGE_SLACK = 0.15


def _likelier(match: Any) -> tuple[int, int]:
    """Tie-break between code pages charset_normalizer scores alike: the one that reads fewer
    symbols where letters belong (Polish "Przesyłka" in cp1252 reads "Przesy³ka"), then the
    common Western and Vietnamese pages first."""
    odd = sum(1 for ch in str(match) if ord(ch) > 127 and not ch.isalpha())
    return odd, _ENCODING_PREFERENCE.get(match.encoding, 99)


def detect_encoding(head: bytes, name: str) -> str:
    """The encoding of a file that is not UTF-8, from its first bytes (charset_normalizer).

    Single-byte code pages often decode a file equally well (cp1250 and cp1252 read
    Portuguese "ã" as "ă" and "ã" with the same score): among the tied best, the one with
    fewer symbols among letters wins, then the common Western and Vietnamese ones
    (:func:`_likelier`). A short text may even read best in a rare page ("Café était" as
    mac_latin2 "Cafť ťtait"): a common page (cp1252, cp1258, Latin-1, cp1250) that reads it
    within :data:`COMMON_CODEPAGE_SLACK` of the best is taken instead. Used by every reader
    (analyze's and the batch engine's), so a file decodes the same way in every command.
    """
    from charset_normalizer import from_bytes

    matches = from_bytes(head)
    best = matches.best()
    if best is not None:
        tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
        best = min(tied, key=_likelier)
        # A short text reads as well in a rare code page ("Café était" as mac_latin2
        # "Cafť ťtait"): a common one that reads it nearly as well is the likelier truth.
        common = from_bytes(head, cp_isolation=list(_ENCODING_PREFERENCE))
        usual = common.best()
        if usual is not None and usual.chaos <= best.chaos + COMMON_CODEPAGE_SLACK:
            tied = [m for m in common if (m.chaos, m.coherence) == (usual.chaos, usual.coherence)]
            best = min(tied, key=_likelier)
    if best is None or best.encoding in ("utf_8", "ascii"):
        raise InputError(
            f"{name} is not UTF-8 and its encoding could not be detected; "
            "pass it with --encoding (e.g. --encoding cp1258)"
        )
    return str(best.encoding)


def sniff_delimiter(sample: str, default: str = ",") -> str:
    """Pick the delimiter among ``, ; TAB |`` that splits the header consistently."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        header = sample.splitlines()[0] if sample else ""
        counts = {d: header.count(d) for d in CSV_DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] > 0 else default


def _read_delimited(p: Path, encoding: str | None, tab: bool) -> pd.DataFrame:
    import pandas as pd

    text = _decode(p, encoding)
    if "\x00" in text:
        log.warning("%s holds NUL bytes; they were removed", p.name)
        text = text.replace("\x00", "")
    if not text.strip():
        raise InputError(f"input file is empty: {p}")
    sep = "\t" if tab else sniff_delimiter(text[:65536])
    header, rows = _split_rows(text, sep, p.name)
    df = pd.DataFrame(rows, columns=header, dtype=object)
    return df.where(df.notna() & (df != ""), None).astype(object)


def _split_rows(text: str, sep: str, name: str) -> tuple[list[str], list[list[str | None]]]:
    """Header and rows of a delimited text, each row exactly as wide as the header.

    A row with more fields than the header is never shifted silently: when the last column
    is the text column, the extra fields are rejoined into it (an unquoted comma inside a
    review) with a warning naming the lines; otherwise it is an error naming the line. A quote
    left open, which would swallow the rows after it into one cell, is read as typed on its
    own line and the rows after it as rows, with a warning naming the line
    (:func:`runaway_quote`). Short rows are padded with empty cells; blank lines are skipped.
    """
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(iter(lines), delimiter=sep)
    try:
        header = next(reader)
    except StopIteration as exc:
        raise InputError(f"input file has no rows: {name}") from exc
    except csv.Error as exc:
        raise InputError(f"cannot read {name}: {exc}") from exc
    header = _unique_header([h.strip() for h in header], name)
    width = len(header)
    last_is_text = norm_column_name(header[-1]) in {norm_column_name(c) for c in TEXT_COLUMN_NAMES}
    rows: list[list[str | None]] = []
    joined: list[int] = []
    reopened: list[tuple[int, int]] = []
    first_shapes: set[str] = set()
    base, consumed = 0, reader.line_num  # lines before the reader's start; lines read
    try:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            start, consumed = consumed + 1, base + reader.line_num
            if consumed > start and width > 1:
                span = lines[start - 1 : consumed]
                if runaway_quote(row, sep, width, first_shapes, partial(_closes_badly, span, sep)):
                    reopened.append((start, consumed))
                    row = _opening_line(lines[start - 1], sep, width)
                    base = consumed = start
                    rest = iter(lines)
                    rest.__setstate__(start)  # on from the next line, without copying the list
                    reader = csv.reader(rest, delimiter=sep)
            elif row and len(first_shapes) < 64:
                first_shapes.add(value_shape(row[0]))
            if not row or (len(row) == 1 and not row[0].strip() and width > 1):
                continue
            if len(row) > width:
                if not last_is_text:
                    raise InputError(
                        f"{name} line {consumed}: {len(row)} fields but the header has "
                        f"{width}; quote cells that contain {sep!r} (or name the right "
                        "delimiter by saving the file as TSV)"
                    )
                row = row[: width - 1] + [sep.join(row[width - 1 :])]
                joined.append(consumed)
            elif len(row) < width:
                row = row + [None] * (width - len(row))  # type: ignore[list-item]
            rows.append(row)  # type: ignore[arg-type]
    except csv.Error as exc:
        raise InputError(f"cannot read {name} (line {consumed}): {exc}") from exc
    if joined:
        shown = ", ".join(map(str, joined[:5])) + (" ..." if len(joined) > 5 else "")
        log.warning(
            "%d row(s) of %s have more fields than its header (lines %s): the extra %r were "
            "kept as part of the last column, %r; quote such texts to be sure",
            len(joined),
            name,
            shown,
            sep,
            header[-1],
        )
    for opened, closed in reopened[:5]:
        log.warning(
            "%s line %d opens a quote that runs on to line %d, over lines that look like rows "
            "of their own: they were read as separate rows; close the quote on line %d to be "
            "sure",
            name,
            opened,
            closed,
            opened,
        )
    if len(reopened) > 5:
        log.warning("%s: %d more lines open a quote that swallows rows", name, len(reopened) - 5)
    if not rows:
        raise InputError(f"input file has no rows: {name}")
    return header, rows


def _opening_line(line: str, sep: str, width: int) -> list[str]:
    """The fields of the line that opens a quote it never closes, the quote read as typed."""
    line = line.rstrip("\r\n")
    row = next(csv.reader([line], delimiter=sep), [])
    if len(row) < width:  # the open quote swallowed the rest of the line: split it plainly
        plain = next(csv.reader([line], delimiter=sep, quoting=csv.QUOTE_NONE), [])
        if len(plain) == width:
            row = [f.strip('"') if f.count('"') == 1 else f for f in plain]
    return row


_NEWLINE_RE = re.compile(r"\r\n|\r|\n")


def value_shape(value: str) -> str:
    """A cell's shape: runs of letters read ``a``, runs of digits ``9`` (``A-17`` -> ``a-9``)."""
    return re.sub(r"\d+", "9", re.sub(r"[^\W\d_]+", "a", value.strip()))


def _closes_badly(span: list[str], sep: str) -> bool:
    """Whether the quote of a row read over ``span`` never closes, or closes with text after
    it (``5,"nice" screen``): what a quoted text that merely has line breaks never does."""
    try:
        for _ in csv.reader(span, delimiter=sep, strict=True):
            pass
    except csv.Error:
        return True
    return False


def runaway_quote(
    row: list[str], sep: str, width: int, first_shapes: set[str], closes_badly: Callable[[], bool]
) -> bool:
    """Whether a row read over several lines holds a quote left open rather than a text that
    has line breaks.

    Inside such a cell the next rows sit one per line: a line splits into as many fields as
    the header (the last one into at most as many, where the quote finally closes) and starts
    with a value shaped like the first column's (``2``, ``A-17``, a date). A quote that
    ``closes_badly()`` (:func:`_closes_badly`; asked only when a line inside looks like a row)
    over one such line is taken as left open; a quote
    that closes cleanly only when every line inside is such a row and two or more start with
    digits (ids, dates): a review with line breaks hardly ever reads like that.
    """
    for j, cell in enumerate(row):
        inner = _NEWLINE_RE.split(cell)[1:]
        if not inner:
            continue
        shapes = first_shapes | ({value_shape(row[0])} if j > 0 else set())
        hits = digits = 0
        every = True
        for k, line in enumerate(inner):
            fields = next(csv.reader([line], delimiter=sep), [])
            last = k == len(inner) - 1
            fits = len(fields) == width or (last and 2 <= len(fields) <= width)
            shape = value_shape(fields[0]) if fits and fields[0].strip() else None
            if shape is not None and shape in shapes:
                hits += 1
                digits += "9" in shape
            elif not last:
                every = False
        if (every and digits >= 2) or (hits and closes_badly()):
            return True
    return False


def _unique_header(header: list[str], name: str) -> list[str]:
    """Column names made unique (``name``, ``name.1``, ...) with a warning, as pandas does."""
    seen: dict[str, int] = {}
    out = []
    for h in header:
        if h in seen:
            seen[h] += 1
            new = f"{h}.{seen[h]}"
            log.warning("%s has the column name %r more than once; read as %r", name, h, new)
            out.append(new)
        else:
            seen[h] = 0
            out.append(h)
    return out


def restore_numeric(df: pd.DataFrame) -> pd.DataFrame:
    """Turn columns that are entirely numeric back into numbers, unless they look like ids."""
    import pandas as pd

    for col in df.columns:
        s = df[col]
        if s.isna().all() or not (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)):
            continue  # already typed (Parquet, a database): nothing to restore
        non_null = s.dropna()
        if not non_null.map(lambda v: isinstance(v, str)).all():
            continue
        if non_null.str.match(r"^0\d").any():  # leading zeros: an identifier, keep as text
            continue
        num = pd.to_numeric(non_null, errors="coerce")
        if num.notna().all():
            df[col] = pd.to_numeric(s, errors="coerce")
    return df


def norm_column_name(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def find_by_name(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    by_norm = {norm_column_name(c): c for c in columns}
    for cand in candidates:
        if norm_column_name(cand) in by_norm:
            return by_norm[norm_column_name(cand)]
    return None


def require_column(df: pd.DataFrame, col: str, role: str) -> str:
    if col in df.columns:
        return col
    lower = {c.lower(): c for c in df.columns}
    if col.lower() in lower:
        return lower[col.lower()]
    raise InputError(
        f"unknown {role} column {col!r}; the file has: {', '.join(map(str, df.columns))}"
    )


def detect_columns(
    df: pd.DataFrame,
    text_col: str | None = None,
    id_col: str | None = None,
    behavior_cols: list[str] | None = None,
    date_col: str | None = None,
) -> ColumnSpec:
    """Find the text, id, behaviour and date columns, honouring any the user named."""
    import pandas as pd

    columns = list(map(str, df.columns))
    if text_col:
        text = require_column(df, text_col, "text")
    else:
        text = find_by_name(columns, TEXT_COLUMN_NAMES) or _guess_text_column(df)
        if text is None:
            raise InputError(
                f"no text column found; name it with --text-col (columns: {', '.join(columns)})"
            )
    ident = require_column(df, id_col, "id") if id_col else find_by_name(columns, ID_COLUMN_NAMES)
    if ident == text:
        ident = None
    if behavior_cols is not None:
        behavior = tuple(require_column(df, c, "behaviour") for c in behavior_cols)
        for c in behavior:
            if not pd.api.types.is_numeric_dtype(df[c]):
                converted = pd.to_numeric(df[c], errors="coerce")
                if converted.notna().sum() == 0:
                    raise InputError(f"behaviour column {c!r} has no numeric values")
    else:
        behavior = tuple(
            c
            for c in columns
            if c not in (text, ident)
            and pd.api.types.is_numeric_dtype(df[c])
            and any(h in norm_column_name(c) for h in BEHAVIOUR_NAME_HINTS)
            and df[c].notna().any()
        )
    if date_col:
        date = require_column(df, date_col, "date")
    else:
        date = find_by_name(columns, TIME_COLUMN_NAMES)
    return ColumnSpec(text=text, id=ident, behavior=behavior, date=date)


def _guess_text_column(df: pd.DataFrame) -> str | None:
    """The string column with the longest typical value, if it looks like prose."""
    import pandas as pd

    best, best_len = None, 0.0
    for col in df.columns:
        s = df[col]
        if not (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)):
            continue
        lengths = s.dropna().astype(str).str.len()
        if lengths.empty:
            continue
        med = float(lengths.median())
        spaces = float(s.dropna().astype(str).str.count(" ").median())
        if med > best_len and med >= 12 and spaces >= 1:
            best, best_len = str(col), med
    return best


def parse_dates(values: pd.Series, reference: pd.Timestamp | None = None) -> pd.Series:
    """Dates in ISO 8601, ``dd/mm/yyyy`` (day first, as written in Vietnam, Brazil and Europe,
    with or without a time) or Unix epoch (seconds or milliseconds) -> naive UTC timestamps.

    The one date parser of every reader (orders, events, the texts' date column, the report,
    service requests). Relative dates as review sites print them (``2 tuần trước``, ``hôm
    qua``, ``3 days ago``, ``há 2 meses``) count back from ``reference`` (default: today, UTC)
    through ``dateparser``. Unparseable cells become ``NaT``; the caller counts and reports
    them.
    """
    import pandas as pd

    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    if values.empty:
        return out
    if pd.api.types.is_datetime64_any_dtype(values):
        s = pd.to_datetime(values, utc=True)
        return s.dt.tz_convert(None).astype("datetime64[ns]")
    if pd.api.types.is_numeric_dtype(values):
        return _epoch(pd.to_numeric(values, errors="coerce")).astype("datetime64[ns]")
    s = values.astype("string").str.strip()
    s = s.mask(s == "")
    todo = s.notna()
    iso = pd.to_datetime(s[todo], format="ISO8601", errors="coerce", utc=True)
    out.loc[iso.index] = iso.dt.tz_convert(None).astype("datetime64[ns]")
    todo = s.notna() & out.isna()
    if todo.any():
        num = pd.to_numeric(s[todo], errors="coerce")
        num = num[num.notna()]
        if len(num):
            out.loc[num.index] = _epoch(num).astype("datetime64[ns]")
    todo = s.notna() & out.isna()
    if todo.any():
        rest = s[todo].str.replace(r"[.\-]", "/", regex=True)
        for fmt in ("%d/%m/%Y", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%y"):
            parsed = pd.to_datetime(rest, format=fmt, errors="coerce")
            ok = parsed.notna() & out.loc[rest.index].isna()
            out.loc[ok[ok].index] = parsed[ok].astype("datetime64[ns]")
    todo = s.notna() & out.isna()
    if todo.any():
        parsed = pd.to_datetime(s[todo], format="mixed", dayfirst=True, errors="coerce", utc=True)
        parsed = parsed[parsed.notna()]
        if len(parsed):
            out.loc[parsed.index] = parsed.dt.tz_convert(None).astype("datetime64[ns]")
    todo = s.notna() & out.isna()
    if todo.any():
        relative = _relative_dates(s[todo], reference)
        out.loc[relative.index] = relative
    return out


#: Languages tried for relative dates (``dateparser`` codes): those of the bundled corpora.
RELATIVE_DATE_LANGUAGES = ("vi", "en", "pt", "es", "id")
#: At most this many distinct unparsed strings go through ``dateparser`` (ms each).
RELATIVE_DATE_LIMIT = 5000
_RELATIVE_HINT = re.compile(
    r"\d|hôm|qua|nay|trước|ago|yesterday|today|ontem|hoje|ayer|hoy|kemarin|lalu", re.I
)


def today_utc() -> pd.Timestamp:
    """Midnight today in UTC: the default reference of relative dates (run.json records it)."""
    import pandas as pd

    return pd.Timestamp.now(tz="UTC").tz_convert(None).normalize()


def _relative_dates(values: pd.Series, reference: pd.Timestamp | None) -> pd.Series:
    """``2 tuần trước`` -> ``reference`` minus 2 weeks; other strings are left out."""
    import pandas as pd

    uniques = [
        u for u in pd.unique(values.astype(str)) if len(u) <= 40 and _RELATIVE_HINT.search(u)
    ][:RELATIVE_DATE_LIMIT]
    if not uniques:
        return pd.Series(dtype="datetime64[ns]")
    import dateparser

    ref = (reference if reference is not None else today_utc()).to_pydatetime()
    settings = {"RELATIVE_BASE": ref, "DATE_ORDER": "DMY", "PREFER_DATES_FROM": "past"}
    found: dict[str, pd.Timestamp] = {}
    for u in uniques:
        when = dateparser.parse(u, languages=list(RELATIVE_DATE_LANGUAGES), settings=settings)
        if when is not None:
            found[u] = pd.Timestamp(when).tz_localize(None) if when.tzinfo else pd.Timestamp(when)
    mapped = values.astype(str).map(found)
    return mapped[mapped.notna()].astype("datetime64[ns]")


def _epoch(num: pd.Series) -> pd.Series:
    """Epoch seconds, or milliseconds when the values are too large to be seconds."""
    import pandas as pd

    x = num.astype(float)
    unit_ms = x.abs() > 1e11
    out = pd.Series(pd.NaT, index=x.index, dtype="datetime64[ns]")
    plausible = x.notna() & (x.abs() < 1e14)
    sec = plausible & ~unit_ms
    if sec.any():
        out.loc[sec] = pd.to_datetime(x[sec], unit="s", errors="coerce")
    ms = plausible & unit_ms
    if ms.any():
        out.loc[ms] = pd.to_datetime(x[ms], unit="ms", errors="coerce")
    return out
