"""Input: read a table of texts and find its text, id and behaviour columns.

Reading is forgiving about *format* (CSV with any common delimiter, TSV, Parquet, JSON Lines;
UTF-8 with or without BOM; other encodings detected or named) and strict about *meaning*: an
unknown column or a file with no usable text stops the run with a one-line error instead of
silently guessing wrong.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

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
BEHAVIOUR_NAME_HINTS = (
    "order",
    "spend",
    "spent",
    "amount",
    "revenue",
    "recency",
#: Names that make a numeric column a behaviour feature when none are named. A star rating
#: is not one (it says what the text says, and a saved segmenter would place rows without it
#: elsewhere): it checks the sentiment instead (run.json ``rating_check``), and is used as
#: behaviour only when named with ``--behavior-cols``.
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
SUPPORTED_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class ColumnSpec:
    """Which input columns play which role; recorded in ``run.json``."""

    text: str
    id: str | None = None
    behavior: tuple[str, ...] = field(default_factory=tuple)
    date: str | None = None


def read_table(path: str | Path, encoding: str | None = None, typed: bool = True) -> pd.DataFrame:
    """Read ``path`` into a DataFrame with every column kept as it was in the file.

    CSV cells are read as strings (ids such as ``00123`` keep their zeros); with ``typed``
    columns that are entirely numeric are then converted (:func:`restore_numeric`). The runs
    read ``typed=False`` and detect column roles on a typed copy, so an input column comes out
    as the text the user typed (``+84901234567`` keeps its ``+``, ``4.50`` its zero).
    Parquet and JSON keep their own types either way.
    """
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise InputError(f"input file not found: {p}")
    if p.is_dir():
        raise InputError(f"input is a folder, not a file: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"input file is empty: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p)
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


def _decode(p: Path, encoding: str | None) -> str:
    """Decode a text file: the named encoding, else UTF-8 (BOM stripped), else a detected one."""
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
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(raw[: 1 << 20]).best()
    if best is None or best.encoding in ("utf_8", "ascii"):
        raise InputError(
            f"{p.name} is not UTF-8 and its encoding could not be detected; "
            "pass it with --encoding (e.g. --encoding cp1258)"
        )
    try:
        text = raw.decode(best.encoding)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{p.name} is not UTF-8 (looks like {best.encoding}); pass --encoding"
        ) from exc
    log.warning(
        "%s is not UTF-8; decoded as %s (use --encoding to override)", p.name, best.encoding
    )
    return text


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
    review) with a warning naming the lines; otherwise it is an error naming the line.
    Short rows are padded with empty cells; blank lines are skipped.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        header = next(reader)
    except StopIteration as exc:
        raise InputError(f"input file has no rows: {name}") from exc
    except csv.Error as exc:
        raise InputError(f"cannot read {name}: {exc}") from exc
    header = _unique_header([h.strip() for h in header], name)
    width = len(header)
    last_is_text = _norm_name(header[-1]) in {_norm_name(c) for c in TEXT_COLUMN_NAMES}
    rows: list[list[str | None]] = []
    joined: list[int] = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip() and width > 1):
                continue
            if len(row) > width:
                if not last_is_text:
                    raise InputError(
                        f"{name} line {reader.line_num}: {len(row)} fields but the header has "
                        f"{width}; quote cells that contain {sep!r} (or name the right "
                        "delimiter by saving the file as TSV)"
                    )
                row = row[: width - 1] + [sep.join(row[width - 1 :])]
                joined.append(reader.line_num)
            elif len(row) < width:
                row = row + [None] * (width - len(row))  # type: ignore[list-item]
            rows.append(row)  # type: ignore[arg-type]
    except csv.Error as exc:
        raise InputError(f"cannot read {name} (line {reader.line_num}): {exc}") from exc
    if joined:
        shown = ", ".join(map(str, joined[:5])) + (" ..." if len(joined) > 5 else "")
        log.warning(
            "%d rows of %s have more fields than its header (lines %s): the extra %r were "
            "kept as part of the last column, %r; quote such texts to be sure",
            len(joined),
            name,
            shown,
            sep,
            header[-1],
        )
    if not rows:
        raise InputError(f"input file has no rows: {name}")
    return header, rows


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
        if s.isna().all():
            continue
        non_null = s.dropna()
        if non_null.str.match(r"^0\d").any():  # leading zeros: an identifier, keep as text
            continue
        num = pd.to_numeric(non_null, errors="coerce")
        if num.notna().all():
            df[col] = pd.to_numeric(s, errors="coerce")
    return df


def _norm_name(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _find_by_name(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    by_norm = {_norm_name(c): c for c in columns}
    for cand in candidates:
        if _norm_name(cand) in by_norm:
            return by_norm[_norm_name(cand)]
    return None


def _require(df: pd.DataFrame, col: str, role: str) -> str:
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
        text = _require(df, text_col, "text")
    else:
        text = _find_by_name(columns, TEXT_COLUMN_NAMES) or _guess_text_column(df)
        if text is None:
            raise InputError(
                f"no text column found; name it with --text-col (columns: {', '.join(columns)})"
            )
    ident = _require(df, id_col, "id") if id_col else _find_by_name(columns, ID_COLUMN_NAMES)
    if ident == text:
        ident = None
    if behavior_cols is not None:
        behavior = tuple(_require(df, c, "behaviour") for c in behavior_cols)
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
            and any(h in _norm_name(c) for h in BEHAVIOUR_NAME_HINTS)
            and df[c].notna().any()
        )
    if date_col:
        date = _require(df, date_col, "date")
    else:
        date = _find_by_name(
            columns, ("date", "review_date", "created_at", "date_time", "timestamp", "time")
        )
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
