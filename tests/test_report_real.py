"""report.html of a real run (bundled encoder and sentiment head, ``--aspects general``) in
headless Chromium, with the network cut off and no emoji font on the "system".

Emoji: the page embeds a subset of Noto Emoji holding exactly the emoji it shows; with
fontconfig limited to one text font, the customers' emoji are drawn as glyphs, where the same
page without the embedded face draws boxes. Aspects: the aspect x segment heat map shows the
share praising / complaining per aspect per segment, as segments.json has it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from offline_browser import BROWSER_ARGS, CHROMIUM, open_offline, playwright_or_skip

from nlp_seg.segmenter import SegmenterConfig

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "reviews.csv"
#: One plain text font stands for "a system without an emoji font".
TEXT_FONTS = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
]
FACE = re.compile(r"@font-face\{[^}]*\}")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from nlp_seg.runs.jobs import analyze_file

    root = tmp_path_factory.mktemp("real_report")
    out = root / "out"
    analyze_file(EXAMPLE, out, SegmenterConfig(aspects="general", seed=42), audiences=False)
    html = (out / "report.html").read_text(encoding="utf-8")
    segments = json.loads((out / "segments.json").read_text(encoding="utf-8"))["segments"]
    return {"root": root, "out": out, "html": html, "segments": segments}


def _font(html: str):
    from fontTools.ttLib import TTFont

    faces = FACE.findall(html)
    assert len(faces) == 1, faces
    data = re.search(r"base64,([A-Za-z0-9+/=]+)\)", faces[0]).group(1)
    raw = base64.b64decode(data)
    return TTFont(io.BytesIO(raw)), raw


def _emoji(texts: list[str]) -> set[int]:
    import emoji

    return {
        ord(c) for t in texts for m in emoji.emoji_list(str(t)) for c in m["emoji"] if ord(c) >= 128
    }


def test_the_font_holds_the_reports_emoji_and_no_others(run: dict) -> None:
    from nlp_seg.io.emoji_font import font_path

    font, raw = _font(run["html"])
    cmap = set(font.getBestCmap())
    from fontTools.ttLib import TTFont

    noto = set(TTFont(font_path()).getBestCmap())
    shown = [q for s in run["segments"] for q in s["examples"] + s["keywords"] + [s["name"]]]
    assert _emoji(shown), "the real run's quotes carry no emoji (examples/reviews.csv has many)"
    assert _emoji(shown) & noto <= cmap  # every emoji quoted or in a keyword is in the font
    texts = pd.read_csv(EXAMPLE)["review"].tolist()  # the map's hover texts: every row
    assert cmap <= _emoji(texts + shown)  # and nothing the report does not contain
    assert len(raw) <= 2048 + 1024 * len(cmap)  # a subset, not the 2 MB font
    assert "Noto Emoji, SIL Open Font License 1.1" in run["html"]  # credited in the footer
    name = {r.nameID: str(r) for r in font["name"].names}
    assert "Open Font License" in name[13]  # the licence travels with the subset
    assert "fvar" not in font  # one static instance


def _fontconfig(root: Path) -> dict[str, str]:
    """Environment for Chromium whose fontconfig knows one text font only."""
    src = next((Path(p) for p in TEXT_FONTS if Path(p).is_file()), None)
    if src is None:
        if os.environ.get("CI"):
            pytest.fail(f"none of {TEXT_FONTS} is installed (Debian: fonts-dejavu-core)")
        pytest.skip(f"none of {TEXT_FONTS} is installed (Debian: fonts-dejavu-core)")
    fonts = root / "fonts"
    fonts.mkdir(exist_ok=True)
    shutil.copy(src, fonts / src.name)
    conf = root / "fonts.conf"
    conf.write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
        f"<dir>{fonts}</dir><cachedir>{root / 'fccache'}</cachedir></fontconfig>",
        encoding="utf-8",
    )
    return {**os.environ, "FONTCONFIG_FILE": str(conf)}


PROBE = """(wanted) => {
  const out = {};
  const walk = document.createTreeWalker(document.querySelector('main'), NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    for (const e of wanted) {
      const i = n.data.indexOf(e);
      if (out[e] || i < 0 || !n.parentElement.closest('section.segment')) continue;
      const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + e.length);
      const b = r.getBoundingClientRect();
      out[e] = {x: b.left + scrollX, y: b.top + scrollY, width: b.width, height: b.height};
    }
  }
  return out;
}"""


def open_page(path: Path, env: dict[str, str], wanted: list[str]) -> dict:
    sync_api = playwright_or_skip()
    errors: list[str] = []
    external: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, env=env)
        try:
            page = open_offline(
                browser,
                path,
                errors,
                external,
                viewport={"width": 1280, "height": 900},
                device_scale_factor=3,
            )
            page.evaluate("document.fonts.ready.then(() => true)")
            rects = page.evaluate(PROBE, wanted)
            result = {
                "errors": errors,
                "external": external,
                "fonts": page.evaluate("[...document.fonts].map(f => [f.family, f.status])"),
                "glyphs": {
                    e: page.screenshot(clip=r, full_page=True) for e, r in rects.items() if r
                },
                "legend_font": page.evaluate(
                    "(document.querySelector('.legendtext') || {style: {}}).style.fontFamily"
                ),
                "heat": page.evaluate(
                    """() => [...document.querySelectorAll('#aspects td.cell')].map(td => ({
                        sid: +td.closest('tr').dataset.segmentId, aspect: td.dataset.aspect,
                        kind: td.dataset.kind, share: +td.dataset.share,
                        top: td.classList.contains('top'),
                        bg: getComputedStyle(td).backgroundColor}))"""
                ),
                "heat_rows": page.eval_on_selector_all(
                    "#aspects tbody tr", "els => els.map(e => +e.dataset.segmentId)"
                ),
                "heat_png": page.locator("#aspects").screenshot()
                if page.locator("#aspects").count()
                else b"",
            }
        finally:
            browser.close()
    return result


def _ink(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float) < 150


def is_box(png: bytes) -> bool:
    """A hollow rectangle (the "missing glyph" box): the inked pixels' bounding box has ink
    on all four edges and (almost) none in its middle."""
    ink = _ink(png)
    ys, xs = np.nonzero(ink)
    if len(xs) == 0:
        return False
    g = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = g.shape
    if h < 6 or w < 4:
        return False
    edges = [g[0].mean(), g[-1].mean(), g[:, 0].mean(), g[:, -1].mean()]
    middle = g[h // 4 : h - h // 4, w // 4 : w - w // 4]
    return min(edges) > 0.6 and middle.mean() < 0.03


def test_emoji_render_without_an_emoji_font(run: dict) -> None:
    from fontTools.ttLib import TTFont

    env = _fontconfig(run["root"])
    conf_fonts = [TTFont(p) for p in (run["root"] / "fonts").iterdir()]
    system = set().union(*(set(f.getBestCmap()) for f in conf_fonts))
    font, _ = _font(run["html"])
    cmap = set(font.getBestCmap())
    # emoji in the quotes that the "system" font lacks: boxes unless the page brings its own
    quotes = [q for s in run["segments"] for q in s["examples"]]
    import emoji

    wanted = sorted(
        {
            m["emoji"]
            for q in quotes
            for m in emoji.emoji_list(q)
            if {ord(c) for c in m["emoji"]} <= cmap and not {ord(c) for c in m["emoji"]} & system
        }
    )[:6]
    assert wanted, "no quoted emoji that the text font lacks"

    page = open_page(run["out"] / "report.html", env, wanted)
    assert page["errors"] == [] and page["external"] == []
    assert ["nlpseg-emoji", "loaded"] in page["fonts"]
    assert "nlpseg-emoji" in page["legend_font"]  # the charts' text uses the face too

    stripped = run["root"] / "no-emoji-font.html"
    stripped.write_text(FACE.sub("", run["html"]), encoding="utf-8")
    bare = open_page(stripped, env, wanted)
    assert bare["errors"] == []
    found = sorted(page["glyphs"])
    assert found and found == sorted(bare["glyphs"])
    for e in found:
        assert is_box(bare["glyphs"][e]), f"{e} is not a box without the font: check is_box"
        assert not is_box(page["glyphs"][e]), f"{e} is still a box with the embedded font"
        assert _ink(page["glyphs"][e]).mean() > 0.03, f"{e} drew nothing"
    if len(found) > 1:  # glyphs, not one shape repeated
        a, b = (_ink(page["glyphs"][e]) for e in found[:2])
        h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
        assert (a[:h, :w] != b[:h, :w]).mean() > 0.05


def test_aspect_heat_map(run: dict) -> None:
    segments = {s["id"]: s for s in run["segments"]}
    assert all("aspects" in s for s in segments.values())
    assert '<section id="aspects">' in run["html"]
    page = open_page(run["out"] / "report.html", _fontconfig(run["root"]), [])
    assert page["errors"] == []
    by_size = sorted(segments.values(), key=lambda s: -s["size"])
    assert page["heat_rows"] == [s["id"] for s in by_size]  # every segment, as in the table
    talked = {a for s in segments.values() for a in s["aspects"]}
    shown = {c["aspect"] for c in page["heat"]}
    assert shown == talked  # general has 11 aspects, under the 15-column cap
    assert len(page["heat"]) == len(segments) * len(shown) * 2
    for c in page["heat"]:
        mix = segments[c["sid"]]["aspects"].get(c["aspect"], {})
        assert c["share"] == pytest.approx(mix.get(c["kind"], 0.0), abs=1e-4)
        r, g, _, alpha = ([float(x) for x in re.findall(r"[\d.]+", c["bg"])] + [1.0])[:4]
        if c["share"] > 0:
            assert alpha > 0.1, c
            assert (g > r) if c["kind"] == "praising" else (r > g), c
        else:
            assert alpha == 0, c
        assert c["top"] == (
            c["kind"] == "complaining" and segments[c["sid"]]["top_complaint"] == c["aspect"]
        )
    assert any(c["share"] > 0 and c["kind"] == "praising" for c in page["heat"])
    assert any(c["share"] > 0 and c["kind"] == "complaining" for c in page["heat"])
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(page["heat_png"])).convert("RGB"), dtype=int)
    green = (rgb[..., 1] - rgb[..., 0] > 60).mean()
    red = (rgb[..., 0] - rgb[..., 1] > 60).mean()
    assert green > 0.002 and red > 0.002  # the cells are painted, both colours


# --------------------------------------------------------------------------- no model, no browser
def _segment(sid: int, examples: list[str], **extra: object) -> dict:
    return {
        "id": sid,
        "name": f"satisfied #{sid}",
        "base_name": "satisfied",
        "size": 2,
        "share": 0.5,
        "sentiment": {"negative": 0.0, "neutral": 0.0, "positive": 1.0, "mean_score": 0.9},
        "keywords": ["pin"],
        "examples": examples,
        "action": "",
        **extra,
    }


def _frame(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"review": texts, "sentiment_score": [0.9] * len(texts), "segment_id": [0] * len(texts)}
    )


def test_no_emoji_no_font_and_no_aspects_no_heat_map() -> None:
    from nlp_seg.io.report import build_report

    page = build_report(_frame(["good", "fine"]), [_segment(0, ["good"])], text_col="review")
    assert "@font-face" not in page and "Open Font License" not in page
    assert 'id="aspects"' not in page and "praise and complain" not in page


def test_zwj_sequence_and_chart_text_reach_the_font() -> None:
    from nlp_seg.io.report import build_report

    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # man ZWJ woman ZWJ girl
    texts = [f"gift for the {family}", "battery \U0001f50b"]  # 🔋 only in a map hover text
    xy = (np.array([0, 1]), np.array([[0.0, 0.0], [1.0, 1.0]]))
    page = build_report(_frame(texts), [_segment(0, [texts[0]])], text_col="review", coords=xy)
    font, _ = _font(page)
    cmap = set(font.getBestCmap())
    assert {0x1F468, 0x200D, 0x1F469, 0x1F467, 0x1F50B} <= cmap
    ligatures = {  # first glyph + components -> one glyph: the family, not three people
        (first, *lig.Component)
        for lookup in font["GSUB"].table.LookupList.Lookup
        for sub in lookup.SubTable
        for first, ligs in getattr(sub, "ligatures", {}).items()
        for lig in ligs
    }
    names = font.getBestCmap()
    assert tuple(names[ord(c)] for c in family) in ligatures


def test_heat_map_says_what_it_leaves_out() -> None:
    from nlp_seg.io.report import MAX_HEATMAP_ASPECTS, build_report

    names = [f"a{i:02d}" for i in range(MAX_HEATMAP_ASPECTS + 3)]
    mix = {a: {"praising": 0.5 - i / 100, "complaining": 0.0} for i, a in enumerate(names)}
    seg = _segment(0, ["ok"], aspects=mix, top_complaint=None)
    page = build_report(_frame(["ok", "ok"]), [seg], text_col="review")
    heat = re.search(r'<section id="aspects">.*?</section>', page, re.S).group(0)
    assert heat.count('data-kind="praising"') == MAX_HEATMAP_ASPECTS
    assert "3 less talked-about aspects are left out: a15, a16, a17" in heat
    empty = _segment(0, ["ok"], aspects={}, top_complaint=None)
    page = build_report(_frame(["ok", "ok"]), [empty], text_col="review")
    assert "No aspect was found in any text of this run." in page
