"""report.html in a real headless browser (Debian's Chromium driven by Playwright).

The page must open from disk with the network cut off, log no console error, render its
charts and show a card for every segment; customer text must be shown, never run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from offline_browser import BROWSER_ARGS, CHROMIUM, open_offline, playwright_or_skip

from nlp_seg.segmenter import SegmenterConfig

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def reports(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    from nlp_seg.runs.jobs import analyze_file

    root = tmp_path_factory.mktemp("report")
    df = pd.read_csv(REPO / "examples" / "reviews.csv", dtype=str)
    df.loc[1, "review"] = "<script>window.__pwned = 1</script><img src=x onerror=alert(1)> tệ"
    df.to_csv(root / "in.csv", index=False)
    out = {}
    for lang in ("en", "vi"):
        cfg = SegmenterConfig(
            embedding_model=str(tiny_models["embedding"]),
            sentiment_model=str(tiny_models["sentiment"]),
            lang=lang,
        )
        analyze_file(root / "in.csv", root / lang, cfg, audiences=False)
        out[lang] = root / lang
    return out


def open_in_chromium(path: Path) -> dict:
    sync_api = playwright_or_skip()
    errors: list[str] = []
    external: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = open_offline(
                browser, path, errors, external, viewport={"width": 1280, "height": 900}
            )
            result = {
                "errors": errors,
                "external": external,
                "cards": page.eval_on_selector_all(
                    "section.segment", "els => els.map(e => e.dataset.segmentId)"
                ),
                "titles": page.eval_on_selector_all(
                    "section.segment h3", "els => els.map(e => e.innerText)"
                ),
                "plots": page.locator(".js-plotly-plot").count(),
                "text": page.inner_text("body"),
                "pwned": page.evaluate("window.__pwned === 1"),
                "lang": page.get_attribute("html", "lang"),
                "map_points": page.evaluate(
                    "() => { const m = document.querySelector('#map .js-plotly-plot');"
                    " return m ? m.querySelectorAll('.scatterlayer path.point').length : -1; }"
                ),
                "map_png": page.locator("#map .js-plotly-plot").first.screenshot()
                if page.locator("#map .js-plotly-plot").count()
                else b"",
            }
        finally:
            browser.close()
    return result


@pytest.mark.parametrize("lang", ["en", "vi"])
def test_report_opens_offline_and_shows_every_segment(reports: dict, lang: str) -> None:
    out = reports[lang]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script src=" not in html and "<link " not in html  # everything inline
    assert 'id="aspects"' not in html  # no --aspects: no heat map, not even an empty section
    assert html.count("@font-face") == 1  # the example's emoji, embedded (tests/test_report_real)
    segments = json.loads((out / "segments.json").read_text())["segments"]
    page = open_in_chromium(out / "report.html")
    assert page["errors"] == []
    assert page["external"] == []
    assert sorted(map(int, page["cards"])) == sorted(s["id"] for s in segments)
    for s in segments:
        assert any(s["name"] in title for title in page["titles"]), s["name"]
        if s["action"]:
            assert s["action"] in page["text"]
    assert page["plots"] >= 4  # map, sizes, sentiment by segment, sentiment over time (dates)
    assert not page["pwned"]  # the injected review is shown as text, never run
    assert page["lang"] == lang
    # the map is drawn in SVG (WebGL is off in this browser) and fills its box
    assert page["map_points"] > 50
    assert _inked_share(page["map_png"]) > 0.01
    assert _inked_columns(page["map_png"]) > 0.5
    assert "praise and complain" not in page["text"] and "khen và chê" not in page["text"]
    words = {"en": ["Map of the segments", "Suggested action"], "vi": ["Bản đồ phân khúc"]}
    for w in words[lang]:
        assert w in page["text"]


def _pixels(png: bytes):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)


def _inked_share(png: bytes) -> float:
    """Share of the image's pixels that are not (near-)white."""
    return float((_pixels(png) < 235).mean())


def _inked_columns(png: bytes) -> float:
    """Share of the image's columns holding any ink: points spread across the box, not
    squeezed into a corner."""
    return float(((_pixels(png) < 200).sum(axis=0) > 0).mean())


def test_palette_stays_distinct_for_many_segments() -> None:
    """40 segments: every two colours, and each against the outlier and silent greys, are
    told apart at a glance (CIEDE2000 >= 8; plotly's Dark24 + Light24 had two at 0.7), and
    every one shows on a white page."""
    import itertools

    from coloraide import Color

    from nlp_seg.io.report import BASE_COLOURS, segment_colours

    colours = [Color(c) for c in segment_colours([{"id": i} for i in range(40)]).values()]
    assert len({c.to_string(hex=True) for c in colours}) == 40
    closest = min(a.delta_e(b, method="2000") for a, b in itertools.combinations(colours, 2))
    assert closest >= 8, closest
    for grey in (BASE_COLOURS["outliers"], BASE_COLOURS["silent"]):
        assert min(c.delta_e(Color(grey), method="2000") for c in colours) >= 8
    assert all(25 <= c.convert("lab-d65")["lightness"] <= 80 for c in colours)


def test_time_chart_period_follows_the_span() -> None:
    from nlp_seg.io.timeline import time_period

    def span(days: int) -> pd.Series:
        start = pd.to_datetime(["2025-01-01", "2025-01-01"])
        return pd.Series(start + pd.to_timedelta([0, days], unit="D"))

    assert time_period(span(30)) == "W"
    assert time_period(span(400)) == "M"
    assert time_period(span(2000)) == "Q"


def test_report_html_escapes_customer_text(reports: dict) -> None:
    from nlp_seg.io.report import build_report

    frame = pd.DataFrame(
        {
            "review": ["<b>bold</b> & co", "ok"],
            "sentiment_score": [0.5, -0.5],
            "segment_id": [0, 0],
        }
    )
    seg = {
        "id": 0,
        "name": "satisfied (<i>x</i>)",
        "base_name": "satisfied",
        "size": 2,
        "share": 1.0,
        "sentiment": {"negative": 0.5, "neutral": 0.0, "positive": 0.5, "mean_score": 0.0},
        "keywords": ["<k>"],
        "examples": ["<b>bold</b> & co"],
        "action": "call <them>",
    }
    page = build_report(frame, [seg], text_col="review", lang="en", input_name="<f>.csv")
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page
    assert 'id="notes"' not in page  # nothing left out: no notes section
    # What the run left out is on the page, escaped and with contacts masked.
    noted = build_report(
        frame,
        [seg],
        text_col="review",
        notes=["2 of 120 customers in <r>.csv have no rows in the orders (ann@example.com)"],
    )
    section = noted[noted.index('id="notes"') : noted.index('id="overview"')]
    assert "What this run left out or assumed" in section
    assert "2 of 120 customers in &lt;r&gt;.csv have no rows in the orders" in section
    assert "ann@example.com" not in noted
    assert "satisfied (&lt;i&gt;x&lt;/i&gt;)" in page and "call &lt;them&gt;" in page
