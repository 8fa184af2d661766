"""Remarketing audiences: one CSV per segment (or aspect), ready for ad-platform and CRM import.

``DIR/audiences/segment_<id>_<slug>.csv`` holds one row per customer of the segment (the
customer id column, or the input row number when there is none) and, when the input has e-mail
or phone columns, their values normalised and SHA-256 hashed the way customer-match uploads
expect (Google Ads Customer Match, Meta custom audiences):

* **e-mail**: trimmed and lower-cased (``" John.Doe@Gmail.com "`` -> ``john.doe@gmail.com``);
  with ``gmail_strip_dots`` the dots before ``@gmail.com`` / ``@googlemail.com`` are removed
  too, which Google recommends and Meta does not ask for;
* **phone**: parsed with ``phonenumbers`` (national numbers need ``default_country``, e.g.
  ``VN``), kept only when valid, then written as E.164 (``+84901234567``, hashed into
  ``phone_e164_sha256``: Google's format) and as country code + number digits
  (``84901234567``, hashed into ``phone_digits_sha256``: Meta's format).

With ``--audience-by aspect`` (and ``--aspects``), ``DIR/audiences/aspect/<aspect>-<polarity>.csv``
holds everyone whose text praises or complains about one aspect (``delivery-negative.csv``:
everyone unhappy about delivery), whatever their segment, hashed the same way.

Plain (unhashed) contacts are written only with ``include_plain`` (``--audience-plain``), as
``email`` and ``phone_digits`` (digits, because a cell starting with ``+`` is neutralised in
spreadsheet-safe CSVs). An invalid or missing contact leaves its cells empty; the customer stays.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nlp_seg.errors import InputError

EMAIL_NAMES = ("email", "e_mail", "mail", "email_address", "correo", "thu_dien_tu")
PHONE_NAMES = (
    "phone",
    "phone_number",
    "mobile",
    "mobile_phone",
    "cell",
    "tel",
    "telephone",
    "telefone",
    "telefono",
    "celular",
    "whatsapp",
    "sdt",
    "so_dien_thoai",
    "dien_thoai",
)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
GMAIL_DOMAINS = ("gmail.com", "googlemail.com")


@dataclass
class AudienceOptions:
    """How audiences are written; every field has a CLI flag on ``nlpseg analyze``."""

    email_col: str | None = None
    phone_col: str | None = None
    default_country: str | None = None
    include_plain: bool = False
    gmail_strip_dots: bool = False
    #: also write ``audiences/aspect/<aspect>-<polarity>.csv`` (``--audience-by aspect``)
    by_aspect: bool = False


def norm_column_name(name: str) -> str:
    from nlp_seg.normalize import strip_accents

    return re.sub(r"[^a-z0-9]+", "_", strip_accents(str(name)).lower()).strip("_")


def detect_contact_columns(
    frame: pd.DataFrame, email_col: str | None = None, phone_col: str | None = None
) -> tuple[str | None, str | None]:
    """The e-mail and phone columns: the ones named, else found by name (``email``,
    ``phone``, ``sdt``, ``telefone``, ...) and confirmed by content (at least half of the
    filled cells look like an e-mail, or contain 7+ digits)."""
    for given in (email_col, phone_col):
        if given is not None and given not in frame.columns:
            raise InputError(f"contact column {given!r} not found; columns: {', '.join(frame)}")

    def find(names: Sequence[str], looks_right: Any) -> str | None:
        for col in frame.columns:
            if norm_column_name(col) in names:
                filled = frame[col].dropna().astype(str).str.strip()
                filled = filled[filled != ""]
                if len(filled) and looks_right(filled).mean() >= 0.5:
                    return str(col)
        return None

    email = email_col or find(EMAIL_NAMES, lambda s: s.str.match(EMAIL_RE))
    phone = phone_col or find(PHONE_NAMES, lambda s: s.str.count(r"\d") >= 7)
    return email, phone


def check_country(code: str | None) -> str | None:
    """An upper-case ISO country code that ``phonenumbers`` knows (``vn`` -> ``VN``), or an
    :class:`InputError` naming the option, before any work is done."""
    if code is None:
        return None
    import phonenumbers

    up = code.strip().upper()
    if up not in phonenumbers.SUPPORTED_REGIONS:
        raise InputError(f"unknown --default-country {code!r}; use a two-letter code such as VN")
    return up


def normalize_email(value: object, gmail_strip_dots: bool = False) -> str | None:
    """Trimmed, lower-cased e-mail, or ``None`` when it is not an e-mail address."""
    if not isinstance(value, str):
        return None
    email = unicodedata.normalize("NFC", value).strip().lower()
    if not EMAIL_RE.match(email):
        return None
    if gmail_strip_dots:
        local, _, domain = email.rpartition("@")
        if domain in GMAIL_DOMAINS:
            email = f"{local.replace('.', '')}@{domain}"
    return email


def normalize_phone(value: object, default_country: str | None = None) -> str | None:
    """E.164 (``+84901234567``) of a valid phone number, or ``None``.

    A number without ``+country`` needs ``default_country`` (ISO code such as ``VN``).
    """
    import phonenumbers

    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))  # a phone column read as numbers
    if not text:
        return None
    try:
        num = phonenumbers.parse(text, default_country.upper() if default_country else None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def sha256_hex(value: str | None) -> str | None:
    """Lower-case hex SHA-256 of the UTF-8 value (what customer-match uploads take)."""
    return None if value is None else hashlib.sha256(value.encode("utf-8")).hexdigest()


def slugify(text: str, max_len: int = 60) -> str:
    """File-name-safe ASCII slug, ``"disappointed · VIP (pin, sạc)"`` ->
    ``disappointed-vip-pin-sac`` (ad tools and some file systems choke on accents, spaces)."""
    from nlp_seg.normalize import strip_accents

    slug = re.sub(r"[^a-z0-9]+", "-", strip_accents(text).lower()).strip("-")
    return slug[:max_len].rstrip("-") or "segment"


def audience_filename(segment_id: int, name: str) -> str:
    return (
        f"segment_{segment_id:02d}_{slugify(name)}.csv"
        if segment_id >= 0
        else (f"segment_outliers_{slugify(name)}.csv")
    )


def customer_contacts(
    frame: pd.DataFrame, id_col: str | None, options: AudienceOptions | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per input row: ``customer_id`` (the id, or ``row N`` when there is none) and
    the normalised, hashed contacts; plus what was detected (for run.json). Shared by the
    segment and the aspect audiences, so both hash alike and parse each phone once."""
    opts = options or AudienceOptions()
    email_col, phone_col = detect_contact_columns(frame, opts.email_col, opts.phone_col)
    n = len(frame)
    rows = pd.Series([f"row {i + 1}" for i in range(n)], dtype="string")
    ids = rows
    if id_col:
        # A row without an id is its own customer ("row 17"), never merged with others.
        given = frame[id_col].astype("string").str.strip().reset_index(drop=True)
        ids = given.mask(given.isna() | (given == ""), rows)
    table = pd.DataFrame({"customer_id": ids})
    info: dict[str, Any] = {
        "id_column": id_col,
        "email_column": email_col,
        "phone_column": phone_col,
        "default_country": opts.default_country,
        "plain_values": opts.include_plain,
        "gmail_strip_dots": opts.gmail_strip_dots,
    }
    if email_col:
        emails = [normalize_email(v, opts.gmail_strip_dots) for v in frame[email_col].tolist()]
        table["email_sha256"] = [sha256_hex(e) for e in emails]
        if opts.include_plain:
            table["email"] = emails
        info["valid_emails"] = sum(e is not None for e in emails)
    if phone_col:
        phones = [normalize_phone(v, opts.default_country) for v in frame[phone_col].tolist()]
        digits = [p[1:] if p else None for p in phones]
        table["phone_e164_sha256"] = [sha256_hex(p) for p in phones]
        table["phone_digits_sha256"] = [sha256_hex(d) for d in digits]
        if opts.include_plain:
            table["phone_digits"] = digits
        info["valid_phones"] = sum(p is not None for p in phones)
    return table, info


def _per_customer(group: pd.DataFrame, first: Sequence[str], best: Sequence[str]) -> pd.DataFrame:
    """One row per customer of ``group``: the first non-null of ``first``, the max of
    ``best``, customers in order of first appearance."""
    agg: dict[str, Any] = {c: "first" for c in first}
    agg.update({c: "max" for c in best})
    return group.groupby("customer_id", sort=False, dropna=False).agg(agg).reset_index()


def build_audiences(
    frame: pd.DataFrame,
    assignments: pd.DataFrame,
    id_col: str | None,
    options: AudienceOptions | None = None,
    contacts: tuple[pd.DataFrame, dict[str, Any]] | None = None,
) -> tuple[dict[int, pd.DataFrame], dict[str, Any]]:
    """Per segment id, the audience table; plus what was detected (for run.json).

    Rows not in any segment (``segment_id`` -1 because their text was empty) are left out.
    A customer with several rows in one segment appears once, with their first valid contacts.
    ``contacts`` is :func:`customer_contacts`'s result when the caller already has it.
    """
    people, info = contacts or customer_contacts(frame, id_col, options)
    contact_cols = [c for c in people.columns if c != "customer_id"]
    table = pd.DataFrame(
        {
            "customer_id": people["customer_id"].to_numpy(),
            "segment_id": assignments["segment_id"].to_numpy(),
            "segment_name": assignments["segment_name"].to_numpy(),
            "segment_probability": assignments["segment_probability"].to_numpy(),
        }
    )
    table["customer_id"] = table["customer_id"].astype("string")
    for c in contact_cols:
        table[c] = people[c].to_numpy()
    table = table[table["segment_id"] >= 0]
    out: dict[int, pd.DataFrame] = {}
    for sid, group in table.groupby("segment_id", sort=True):
        first = ["segment_id", "segment_name", *contact_cols]  # first non-null per customer
        merged = _per_customer(group, first, ["segment_probability"])
        out[int(sid)] = merged[
            ["customer_id", "segment_id", "segment_name", "segment_probability", *contact_cols]
        ]
    return out, info


#: Polarities an aspect audience is written for, in file-name order.
ASPECT_POLARITIES = ("negative", "positive", "neutral")


def aspect_groups(cells: Sequence[object]) -> dict[tuple[str, str], list[int]]:
    """Row positions per ``(aspect, polarity)`` named in ``aspects`` cells
    (``battery:negative;design:positive``), most rows first."""
    from nlp_seg.io.aspect_cells import parse_aspects

    groups: dict[tuple[str, str], list[int]] = {}
    for i, cell in enumerate(cells):
        for aspect, pol in parse_aspects(cell).items():
            groups.setdefault((aspect, pol), []).append(i)
    order = sorted(
        groups,
        key=lambda k: (
            -len(groups[k]),
            k[0],
            ASPECT_POLARITIES.index(k[1]) if k[1] in ASPECT_POLARITIES else 9,
        ),
    )
    return {k: groups[k] for k in order}


def write_aspect_audiences(
    assignments: pd.DataFrame,
    folder: str | Path,
    contacts: tuple[pd.DataFrame, dict[str, Any]],
) -> list[Path]:
    """``folder/<aspect>-<polarity>.csv`` (``delivery-negative.csv``: everyone whose text
    complains about delivery), one row per customer, columns ``customer_id``, ``audience``
    (``delivery:negative``), ``aspect``, ``polarity``, ``rows`` (their texts that say so) and
    the contact hashes of the segment audiences; plus ``index.csv``. Needs the ``aspects``
    column (``--aspects``). Stale CSVs in ``folder`` are removed first."""
    from nlp_seg.io.write import write_csv

    if "aspects" not in assignments.columns:
        raise InputError("--audience-by aspect needs aspect-level sentiment: add --aspects")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    people, _ = contacts
    contact_cols = [c for c in people.columns if c != "customer_id"]
    groups = aspect_groups(assignments["aspects"].tolist())
    files: list[Path] = []
    index_rows = []
    used: set[str] = set()
    for (aspect, pol), rows in groups.items():
        sub = people.iloc[rows].copy()
        sub["customer_id"] = sub["customer_id"].astype("string")
        sub["rows"] = 1
        table = _per_customer(sub, contact_cols, [])
        counts = sub.groupby("customer_id", sort=False, dropna=False)["rows"].sum()
        table.insert(1, "audience", f"{aspect}:{pol}")
        table.insert(2, "aspect", aspect)
        table.insert(3, "polarity", pol)
        table.insert(4, "rows", counts.reindex(table["customer_id"]).to_numpy())
        name = f"{slugify(aspect, 50)}-{pol}"
        while name in used:  # two aspects with one slug ("Pin" and "pin")
            name += "-x"
        used.add(name)
        path = folder / f"{name}.csv"
        write_csv(table, path)
        files.append(path)
        row: dict[str, Any] = {
            "aspect": aspect,
            "polarity": pol,
            "file": path.name,
            "customers": len(table),
        }
        for col in ("email_sha256", "phone_e164_sha256"):
            if col in table:
                row[f"with_{col.split('_')[0]}"] = int(table[col].notna().sum())
        index_rows.append(row)
    index = folder / "index.csv"
    cols = ["aspect", "polarity", "file", "customers"]
    write_csv(pd.DataFrame(index_rows, columns=cols if not index_rows else None), index)
    files.append(index)
    return files


def write_audiences(
    frame: pd.DataFrame,
    assignments: pd.DataFrame,
    segments: Sequence[dict[str, Any]],
    out_dir: str | Path,
    id_col: str | None,
    options: AudienceOptions | None = None,
) -> tuple[list[Path], dict[str, Any]]:
    """Write ``out_dir/audiences/*.csv`` (one per segment) and ``index.csv``; the files and
    what was detected. Stale CSVs from an earlier run in that folder are removed first."""
    from nlp_seg.io.write import write_csv

    folder = Path(out_dir) / "audiences"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("segment_*.csv"):
        old.unlink()
    contacts = customer_contacts(frame, id_col, options)
    tables, info = build_audiences(frame, assignments, id_col, options, contacts=contacts)
    names = {int(s["id"]): str(s["name"]) for s in segments}
    files: list[Path] = []
    index_rows = []
    for sid, table in tables.items():
        name = names.get(sid, str(sid))
        path = folder / audience_filename(sid, name)
        write_csv(table, path)
        files.append(path)
        row = {"segment_id": sid, "segment_name": name, "file": path.name, "customers": len(table)}
        for col in ("email_sha256", "phone_e164_sha256"):
            if col in table:
                row[f"with_{col.split('_')[0]}"] = int(table[col].notna().sum())
        index_rows.append(row)
    index = folder / "index.csv"
    write_csv(pd.DataFrame(index_rows), index)
    files.append(index)
    if options is not None and options.by_aspect:
        aspect_files = write_aspect_audiences(assignments, folder / "aspect", contacts)
        files.extend(aspect_files)
        info["by_aspect"] = {"folder": "audiences/aspect", "files": len(aspect_files) - 1}
    else:  # an earlier run's aspect audiences would read as this run's
        for old in (folder / "aspect").glob("*.csv"):
            old.unlink()
    return files, info


def write_group_audiences(
    table: pd.DataFrame,
    id_col: str,
    groups: dict[str, list[str]],
    folder: str | Path,
    options: AudienceOptions | None = None,
) -> list[Path]:
    """One audience CSV per named group of customer ids (``folder/<slug>.csv``, e.g. the
    movers of a refresh: ``became-at-risk.csv``), hashed the same way as segment audiences;
    ``table`` holds the id and contact columns. Stale CSVs in ``folder`` are removed first."""
    from nlp_seg.io.write import write_csv

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    ids = table[id_col].astype("string").str.strip()
    files: list[Path] = []
    for name, members in sorted(groups.items()):
        rows = table[ids.isin(set(members)).to_numpy()].reset_index(drop=True)
        if rows.empty:
            continue
        labels = pd.DataFrame(
            {"segment_id": 0, "segment_name": name, "segment_probability": 1.0},
            index=rows.index,
        )
        tables, _ = build_audiences(rows, labels, id_col, options)
        audience = tables[0].drop(columns=["segment_id", "segment_probability"])
        path = folder / f"{slugify(name)}.csv"
        write_csv(audience.rename(columns={"segment_name": "audience"}), path)
        files.append(path)
    return files
