"""The ``aspects`` output column (``aspect:polarity;...``), read back.

It lives in ``io`` because readers of the written outputs (audiences by aspect) need it without
reaching into the stage that writes it (``stages.aspects.format_aspects``).
"""

from __future__ import annotations


def parse_aspects(cell: object) -> dict[str, str]:
    """The inverse of ``format_aspects`` (empty or missing cell -> no aspects)."""
    if not isinstance(cell, str) or not cell:
        return {}
    out = {}
    for part in cell.split(";"):
        name, _, pol = part.rpartition(":")
        if name:
            out[name] = pol
    return out
