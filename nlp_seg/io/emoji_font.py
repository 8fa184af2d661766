"""Emoji in ``report.html`` on machines without an emoji font.

A report is read wherever it is mailed to: a Linux desktop or a locked-down server often has
no emoji font, and the customers' 😡 and 👍 then show as empty boxes. The report therefore
carries its own emoji: a subset of Noto Emoji (Google, SIL Open Font License 1.1, shipped on
PyPI by ``manimgx-fonts``) holding only the emoji the page contains, cut with fontTools,
instanced at regular weight and inlined as a base64 WOFF ``@font-face``. A few dozen emoji
cost a few kB (about 0.5 kB each).

The face comes *first* in the page's font stacks, limited by ``unicode-range`` to those emoji,
so every other character falls through to the text fonts and the emoji look the same on every
machine. Listed after the text fonts (as a fallback behind system emoji fonts) it is not
reliable: in probe pages Chromium 150 left the first emoji that needed the late-listed web font
as a box, not redrawn once the face had loaded. System colour emoji fonts stay at the end of
the stacks, for emoji newer than Noto Emoji.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from pathlib import Path

from nlp_seg.errors import NlpsegError

#: The ``font-family`` name of the embedded face (the report's font stacks end with it).
FAMILY = "nlpseg-emoji"
FONT_FILE = "NotoEmoji[wght].ttf"
FONT_LICENSE = "Noto Emoji, SIL Open Font License 1.1"
#: Put before the page's text fonts (the embedded face only covers the page's emoji).
EMOJI_FIRST = f'"{FAMILY}",'
#: Put after them: system colour emoji fonts, for emoji the embedded face lacks.
EMOJI_LAST = ',"Apple Color Emoji","Segoe UI Emoji","Noto Color Emoji"'


def emoji_codepoints(texts: Iterable[str]) -> set[int]:
    """Every code point of every emoji in ``texts`` (ZWJ, variation selectors and skin tones
    included, so sequences shape as one glyph); ASCII (the digits of keycap emoji) is left to
    the text font."""
    import emoji

    out: set[int] = set()
    for text in texts:
        if not text:
            continue
        for match in emoji.emoji_list(str(text)):
            out.update(ord(c) for c in match["emoji"] if ord(c) >= 0x80)
    return out


def font_path() -> Path:
    """The Noto Emoji file shipped by ``manimgx-fonts``."""
    try:
        import manimgx_fonts
    except ImportError as exc:  # pragma: no cover - a main dependency
        raise NlpsegError(
            "the report's emoji font needs manimgx-fonts: pip install manimgx-fonts"
        ) from exc
    path = Path(manimgx_fonts.__file__).resolve().parent / FONT_FILE
    if not path.is_file():  # pragma: no cover - a broken install
        raise NlpsegError(f"{path} is missing: pip install --force-reinstall manimgx-fonts")
    return path


def subset_font(codepoints: Iterable[int]) -> tuple[bytes, list[int]]:
    """``(woff, covered)``: a WOFF font holding only ``codepoints`` (with the ligatures of
    their sequences), and the code points it covers (an emoji newer than the font is left to
    the system)."""
    from fontTools import subset
    from fontTools.ttLib import TTFont
    from fontTools.varLib import instancer

    wanted = set(codepoints)
    font = TTFont(font_path())
    covered = sorted(wanted & set(font.getBestCmap()))
    if not covered:
        return b"", []
    opts = subset.Options()
    opts.layout_features = ["*"]  # ZWJ / skin-tone sequences are GSUB ligatures
    opts.hinting = False
    opts.name_IDs = [0, 1, 2, 3, 4, 5, 6, 13, 14]  # keep copyright and licence records
    opts.notdef_outline = False
    sub = subset.Subsetter(opts)
    sub.populate(unicodes=covered)
    sub.subset(font)
    if "fvar" in font:  # variable (wght): one static instance, no variation tables
        font = instancer.instantiateVariableFont(font, {"wght": 400})
    font.flavor = "woff"  # zlib, in the standard library (WOFF2 would need brotli)
    buf = io.BytesIO()
    font.save(buf)
    return buf.getvalue(), covered


def _unicode_range(codepoints: list[int]) -> str:
    """``U+1F44D,U+1F600-1F60F,...``: consecutive code points as ranges."""
    parts: list[str] = []
    start = prev = None
    for cp in sorted(codepoints):
        if prev is not None and cp == prev + 1:
            prev = cp
            continue
        if start is not None:
            parts.append(f"U+{start:X}" if start == prev else f"U+{start:X}-{prev:X}")
        start = prev = cp
    if start is not None:
        parts.append(f"U+{start:X}" if start == prev else f"U+{start:X}-{prev:X}")
    return ",".join(parts)


def font_face_css(texts: Iterable[str]) -> str:
    """The ``@font-face`` rule embedding the emoji of ``texts``; ``""`` when they hold none
    (or none the font has)."""
    woff, covered = subset_font(emoji_codepoints(texts))
    if not woff:
        return ""
    data = base64.b64encode(woff).decode("ascii")
    return (
        f'@font-face{{font-family:"{FAMILY}";'
        f'src:url(data:font/woff;base64,{data}) format("woff");'
        f"unicode-range:{_unicode_range(covered)};font-display:block}}"
    )
