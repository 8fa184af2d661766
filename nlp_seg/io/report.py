"""``DIR/report.html``: one self-contained page a CX lead can read without nlpseg.

Everything is inline (plotly.js included once, no CDN, no font to fetch), so the file opens
offline, can be mailed, and shows the same thing in a year. The page has:

* a summary line and a table of segments (size, share, mean sentiment, suggested action);
* a 2-D **map** of the segments: the fit sample's UMAP coordinates (the space HDBSCAN
  clustered), projected to their two principal components with PCA; hovering a point shows
  its text;
* segment **sizes**, **sentiment by segment** (negative / neutral / positive shares) and, when
  the input has a date column, **sentiment over time** (monthly mean score per segment);
* with ``--aspects``, an **aspect x segment heat map**: per segment, the share of its members
  praising and complaining about each aspect (an HTML table with shaded cells, no script);
* one **card per segment**: sentiment mix, behaviour means, what they talk about (benefits when
  the behaviour data has them), keywords, representative quotes and the suggested action.

Emoji come from an embedded subset of Noto Emoji holding only the emoji on the page
(:mod:`nlp_seg.io.emoji_font`), so they are not boxes where the system has no emoji font.

The page's own words come in English or Vietnamese (``lang``); quotes and keywords stay as the
customers wrote them. All customer text is HTML-escaped.
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nlp_seg.errors import NlpsegError
from nlp_seg.io.emoji_font import EMOJI_FIRST, EMOJI_LAST, FONT_LICENSE, font_face_css
from nlp_seg.io.read import parse_dates
from nlp_seg.io.timeline import period_code
from nlp_seg.normalize import mask_contacts

MAX_MAP_POINTS = 5000
QUOTE_CHARS = 240
#: Most aspects (columns) in the heat map: the most talked-about ones; the page says how many
#: it left out.
MAX_HEATMAP_ASPECTS = 15
PLOT_FONT = EMOJI_FIRST + "system-ui,Arial,sans-serif" + EMOJI_LAST

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Customer segments",
        "summary": "{rows} rows, {segments} segments, from {input}",
        "summary_customers": "{rows} customers, {segments} segments, from {input}",
        "map_note_customers": "Each dot is one customer in the fit sample, placed by the "
        "segmenter's UMAP coordinates projected to 2-D (PCA). Dots close together wrote and "
        "bought alike. Hover to read what they wrote.",
        "overview": "Overview",
        "segment": "Segment",
        "size": "Size",
        "members": "members",
        "share": "Share",
        "mean_sentiment": "Mean sentiment",
        "action": "Suggested action",
        "map": "Map of the segments",
        "notes": "What this run left out or assumed",
        "notes_intro": "As the command line and run.json said:",
        "map_missing": "No map: this run kept no 2-D coordinates of its rows (a custom "
        "reducer, or nothing was segmented).",
        "map_note": "Each dot is one review in the fit sample, placed by the segmenter's UMAP "
        "coordinates projected to 2-D (PCA). Dots close together wrote similar things. "
        "Hover to read the text.",
        "sizes": "Segment sizes",
        "sentiment_by_segment": "Sentiment by segment",
        "over_time": "Segments over time",
        "over_time_note": "Mean sentiment score (−1 to +1) per segment and period (periods with "
        "fewer than 3 texts are left out), then the number of texts per segment and period.",
        "negative": "negative",
        "neutral": "neutral",
        "positive": "positive",
        "keywords": "What they talk about",
        "benefits": "Benefits sought",
        "quotes": "In their words",
        "behaviour": "Behaviour (mean)",
        "details": "Segments in detail",
        "month": "Period",
        "rows": "Rows",
        "drift": "What changed since the previous run",
        "drift_note": "Compared with {before}. Kept segments carry their previous id.",
        "drift_status": "Status",
        "drift_kept": "kept",
        "drift_new": "new",
        "drift_gone": "gone",
        "drift_share_before": "Share before",
        "drift_share_after": "Share now",
        "drift_change": "Change",
        "drift_score_before": "Sentiment before",
        "drift_score_after": "Sentiment now",
        "drift_negative_change": "Complaints (change)",
        "drift_complaints": "Complaints on the rise:",
        "drift_novelty": "{share} of the new texts fit no previous segment.",
        "drift_movers": "Customers who moved:",
        "score": "Mean sentiment score",
        "outliers": "flagged as outliers",
        "improvement": "ask for a fix or feature",
        "tiers": "Tiers",
        "footer": "Made by nlpseg {version}. Segment names follow documented rules on the "
        "sentiment mix (README, Naming). Suggested actions come from the playbook.",
        "emoji_credit": "Emoji: {font}.",
        "none": "none",
        "aspects": "What they praise and complain about",
        "aspects_note": "Per segment (row) and aspect (column): the share of the segment's "
        "members with text who praise (+, green) or complain about (−, red) the aspect. Darker "
        "is a larger share; the darkest cell is {max}. A framed cell is the segment's top "
        "complaint.",
        "aspects_left_out": "{n} less talked-about aspects are left out: {names}.",
        "aspects_none": "No aspect was found in any text of this run.",
        "praising": "praising",
        "complaining": "complaining",
    },
    "vi": {
        "title": "Phân khúc khách hàng",
        "summary": "{rows} dòng, {segments} phân khúc, từ {input}",
        "summary_customers": "{rows} khách hàng, {segments} phân khúc, từ {input}",
        "map_note_customers": "Mỗi chấm là một khách hàng trong mẫu huấn luyện, đặt theo toạ độ "
        "UMAP của mô hình chiếu xuống 2 chiều (PCA). Các chấm gần nhau viết và mua tương tự. "
        "Rê chuột để đọc nội dung.",
        "overview": "Tổng quan",
        "segment": "Phân khúc",
        "size": "Số lượng",
        "members": "thành viên",
        "share": "Tỷ lệ",
        "mean_sentiment": "Cảm xúc trung bình",
        "action": "Hành động đề xuất",
        "map": "Bản đồ phân khúc",
        "notes": "Những gì lần chạy này bỏ qua hoặc giả định",
        "notes_intro": "Như dòng lệnh và run.json đã báo:",
        "map_missing": "Không có bản đồ: lần chạy này không lưu toạ độ 2 chiều của các dòng "
        "(bộ giảm chiều tuỳ chỉnh, hoặc không có dòng nào được phân khúc).",
        "map_note": "Mỗi chấm là một đánh giá trong mẫu huấn luyện, đặt theo toạ độ UMAP của "
        "mô hình chiếu xuống 2 chiều (PCA). Các chấm gần nhau viết về điều tương tự. "
        "Rê chuột để đọc nội dung.",
        "sizes": "Quy mô phân khúc",
        "sentiment_by_segment": "Cảm xúc theo phân khúc",
        "over_time": "Phân khúc theo thời gian",
        "over_time_note": "Điểm cảm xúc trung bình (−1 đến +1) của từng phân khúc theo kỳ (bỏ "
        "qua kỳ có dưới 3 đánh giá), rồi số đánh giá của từng phân khúc theo kỳ.",
        "negative": "tiêu cực",
        "neutral": "trung lập",
        "positive": "tích cực",
        "keywords": "Họ nói về điều gì",
        "benefits": "Lợi ích họ tìm kiếm",
        "quotes": "Lời khách hàng",
        "behaviour": "Hành vi (trung bình)",
        "details": "Chi tiết từng phân khúc",
        "month": "Kỳ",
        "rows": "Số dòng",
        "drift": "Thay đổi so với lần chạy trước",
        "drift_note": "So với {before}. Phân khúc được giữ lại mang mã cũ.",
        "drift_status": "Trạng thái",
        "drift_kept": "giữ nguyên",
        "drift_new": "mới",
        "drift_gone": "biến mất",
        "drift_share_before": "Tỷ lệ trước",
        "drift_share_after": "Tỷ lệ hiện tại",
        "drift_change": "Thay đổi",
        "drift_score_before": "Cảm xúc trước",
        "drift_score_after": "Cảm xúc hiện tại",
        "drift_negative_change": "Phàn nàn (thay đổi)",
        "drift_complaints": "Phàn nàn đang tăng:",
        "drift_novelty": "{share} văn bản mới không thuộc phân khúc cũ nào.",
        "drift_movers": "Khách hàng đã chuyển nhóm:",
        "score": "Điểm cảm xúc trung bình",
        "outliers": "là điểm ngoại lai",
        "improvement": "yêu cầu sửa lỗi/tính năng",
        "tiers": "Hạng",
        "footer": "Tạo bởi nlpseg {version}. Tên phân khúc theo quy tắc công khai dựa trên "
        "tỷ lệ cảm xúc (README, Naming). Hành động đề xuất lấy từ playbook.",
        "emoji_credit": "Biểu tượng cảm xúc: {font}.",
        "none": "không có",
        "aspects": "Khách khen và chê điều gì",
        "aspects_note": "Theo phân khúc (hàng) và khía cạnh (cột): tỷ lệ thành viên có viết "
        "đánh giá khen (+, xanh) hoặc chê (−, đỏ) khía cạnh đó. Màu càng đậm, tỷ lệ càng lớn; "
        "ô đậm nhất là {max}. Ô có viền là điều phân khúc chê nhiều nhất.",
        "aspects_left_out": "Bỏ qua {n} khía cạnh ít được nhắc tới: {names}.",
        "aspects_none": "Không tìm thấy khía cạnh nào trong các đánh giá của lần chạy này.",
        "praising": "khen",
        "complaining": "chê",
    },
}

#: Segment base names in the report's language (the names themselves stay as in the data).
BASE_LABELS = {
    "vi": {
        "satisfied": "hài lòng",
        "disappointed": "thất vọng",
        "awaiting-improvement": "chờ cải thiện",
        "neutral": "trung lập",
        "silent": "không viết",
        "outliers": "ngoại lai",
    }
}
BASE_COLOURS = {
    "satisfied": "#1b9e77",
    "disappointed": "#d7301f",
    "awaiting-improvement": "#e6a817",
    "neutral": "#7f7f7f",
    "silent": "#a6bddb",
    "outliers": "#bdbdbd",
}
SENTIMENT_COLOURS = {"negative": "#d7301f", "neutral": "#bdbdbd", "positive": "#1b9e77"}


@functools.cache
def _palette() -> list[str]:
    """Segment colours that stay apart however many segments there are: colorcet's Glasbey
    palette (each colour chosen to be as far as it can be from all before it, in a perceptual
    colour space, and never greyish), less the colours too light to see on white or too dark
    to tell from black. The first 40 differ by a CIEDE2000 distance of 8.7 or more (plotly's
    Dark24 + Light24, used before: 0.7)."""
    import colorcet

    return [c for c in colorcet.palette["glasbey_dark"] if 25 <= _lightness(c) <= 80]


def _lightness(hex_colour: str) -> float:
    """CIE L* of an sRGB colour (0 black .. 100 white)."""
    rgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return 116 * y ** (1 / 3) - 16 if y > 216 / 24389 else y * 24389 / 27


def palette_colour(i: int) -> str:
    """The ``i``-th segment colour (the palette repeats only past ~240 segments)."""
    base = _palette()
    return base[i % len(base)]


CSS = (
    """
body{font-family:"""
    + EMOJI_FIRST
    + """system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",Arial,sans-serif"""
    + EMOJI_LAST
    + """;
margin:0;background:#f6f7f9;color:#1d2433;line-height:1.45}
header{background:#1d2433;color:#fff;padding:20px 32px}
header h1{margin:0 0 4px;font-size:26px} header p{margin:0;opacity:.85}
main{max-width:1180px;margin:0 auto;padding:16px 24px 48px}
section{background:#fff;border-radius:10px;padding:16px 20px;margin:16px 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:19px;margin:0 0 8px} .note{color:#5b6475;font-size:13px;margin:0 0 8px}
.warning{background:#fff4e5;border-left:4px solid #e8590c;padding:6px 10px;margin:6px 0}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e8eaef;vertical-align:top}
th{background:#f0f2f5} td.num{text-align:right;white-space:nowrap}
.swatch{display:inline-block;width:11px;height:11px;border-radius:3px;margin-right:6px;
vertical-align:baseline}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
@media (max-width:900px){.grid{grid-template-columns:1fr}}
.card{border-left:6px solid #999;padding-left:16px}
.card h3{margin:0 0 2px;font-size:18px} .meta{color:#5b6475;font-size:13px;margin-bottom:8px}
.bar{display:flex;height:14px;border-radius:7px;overflow:hidden;margin:6px 0 10px;max-width:420px}
.bar span{display:block;height:100%}
.chips span{display:inline-block;background:#eef1f6;border-radius:12px;padding:2px 10px;
margin:2px 4px 2px 0;font-size:13px}
blockquote{margin:4px 0;padding:4px 10px;border-left:3px solid #d0d5dd;background:#fafbfc;
font-size:14px}
.action{background:#fff7e0;border:1px solid #f0d58a;border-radius:8px;padding:8px 12px;
margin-top:10px} .action b{display:block;font-size:12px;text-transform:uppercase;
letter-spacing:.04em;color:#8a6d1a}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:12px}
@media (max-width:900px){.cols{grid-template-columns:1fr}}
h4{margin:8px 0 4px;font-size:14px;color:#3b4456}
footer{color:#5b6475;font-size:12px;text-align:center;margin-top:24px}
.heat{overflow-x:auto} .heat table{width:auto;font-size:13px}
.heat th.aspect{text-align:center;white-space:nowrap;border-left:2px solid #fff}
.heat th.pol{text-align:center;font-weight:normal;color:#5b6475;padding:2px 4px}
.heat td.cell{text-align:center;min-width:38px;padding:4px 4px;white-space:nowrap}
.heat td.pos{border-left:2px solid #fff} .heat td.top{outline:2px solid #1d2433;
outline-offset:-2px} .heat td.seg{white-space:nowrap}
"""
)


def _t(lang: str) -> dict[str, str]:
    if lang not in STRINGS:
        raise NlpsegError(f"unknown report language {lang!r}; choose one of {', '.join(STRINGS)}")
    return STRINGS[lang]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def segment_colours(segments: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """A stable colour per segment id (palette order by id)."""
    ids = sorted(int(s["id"]) for s in segments)
    return {sid: palette_colour(i) if sid >= 0 else "#bdbdbd" for i, sid in enumerate(ids)}


def map_coordinates(seg: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rows, xy)``: input rows of the fit sample and their 2-D map positions, or ``None``
    when the segmenter kept no coordinates (a custom reducer slot, or nothing segmented)."""
    coords = getattr(seg, "fit_coords_", None)
    rows = getattr(seg, "fit_rows_", None)
    if coords is None or rows is None or len(coords) != len(rows) or len(coords) == 0:
        return None
    x = np.asarray(coords, dtype=np.float64)
    if x.shape[1] >= 2 and len(x) >= 3:
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=0).fit_transform(x)
    elif x.shape[1] >= 2:
        xy = x[:, :2]
    else:
        xy = np.hstack([x[:, :1], np.zeros((len(x), 1))])
    return np.asarray(rows), xy


def _figure_html(fig: Any) -> str:
    """A figure's ``div`` and script, without plotly.js (the page carries it once, in its
    head)."""
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        config={"displaylogo": False, "responsive": True},
    )


def _plotlyjs() -> str:
    """plotly.js inline, as plotly's own ``include_plotlyjs=True`` writes it."""
    from plotly.offline import get_plotlyjs

    return (
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        f"<script>{get_plotlyjs()}</script>"
    )


_JSON_ESCAPES = re.compile(r"(?:\\u[0-9a-fA-F]{4})+")


def _shown_text(page: str) -> str:
    """The page's text with the ``\\uXXXX`` escapes of the charts' JSON (hover texts, legend
    names) decoded, so their emoji are seen too."""
    decoded = []
    for run in _JSON_ESCAPES.findall(page):
        try:
            decoded.append(json.loads(f'"{run}"'))
        except ValueError:  # pragma: no cover - the regex only takes whole escapes
            continue
    return page + "\n" + "\n".join(decoded)


def build_report(
    frame: pd.DataFrame,
    segments: Sequence[Mapping[str, Any]],
    *,
    text_col: str,
    date_col: str | None = None,
    coords: tuple[np.ndarray, np.ndarray] | None = None,
    lang: str = "en",
    input_name: str = "",
    seed: int | None = None,
    period: str | None = None,
    reference_date: pd.Timestamp | None = None,
    drift: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    unit: str = "review",
) -> str:
    """The report as one HTML string. ``frame`` is the merged output (input columns plus the
    contract columns), one row per input row. ``period`` (``week``/``month``/``quarter``,
    default from the span) buckets the time charts; ``reference_date`` anchors relative dates
    (``2 tuần trước``); ``drift`` (a refresh's or compare's ``drift.json``) adds its section.
    ``notes`` (the run's warnings: rows left out, customers without orders, ...) are shown
    under the summary, so a reader of the page learns what the terminal said. ``unit``
    (``review`` or ``customer``) is what a row of ``frame`` is."""
    try:
        import plotly.graph_objects as go
    except ImportError as exc:  # pragma: no cover - plotly is a main dependency
        raise NlpsegError("the HTML report needs plotly: pip install plotly") from exc
    from nlp_seg.version import __version__

    t = _t(lang)
    colours = segment_colours(segments)
    segs = sorted(segments, key=lambda s: -int(s["size"]))
    base_label = BASE_LABELS.get(lang, {})
    figs: list[str] = []

    def add(fig: Any) -> str:
        fig.update_layout(
            margin={"l": 10, "r": 10, "t": 30, "b": 10},
            paper_bgcolor="white",
            plot_bgcolor="white",
            font={"family": PLOT_FONT, "size": 13},
        )
        out = _figure_html(fig)
        figs.append(out)
        return out

    # -- map
    map_html = ""
    if coords is not None:
        rows, xy = coords
        if len(rows) > MAX_MAP_POINTS:
            keep = np.sort(
                np.random.default_rng(seed or 0).choice(len(rows), MAX_MAP_POINTS, False)
            )
            rows, xy = rows[keep], xy[keep]
        texts = frame[text_col].astype("string").fillna("").to_numpy()[rows]
        texts = np.array([mask_contacts(str(t)) for t in texts], dtype=object)  # no contacts
        sids = frame["segment_id"].to_numpy()[rows]
        fig = go.Figure()
        for s in sorted(segments, key=lambda s: int(s["id"])):
            m = sids == s["id"]
            if not m.any():
                continue
            hover = [_e(x[:160] + ("…" if len(x) > 160 else "")) for x in texts[m]]
            fig.add_trace(
                go.Scatter(  # SVG, not WebGL: opens on machines without a GPU or WebGL
                    x=xy[m, 0],
                    y=xy[m, 1],
                    mode="markers",
                    name=f"{s['id']}: {s['name']}",
                    marker={"size": 7, "color": colours[int(s["id"])], "opacity": 0.75},
                    text=hover,
                    hovertemplate="<b>" + _e(s["name"]) + "</b><br>%{text}<extra></extra>",
                )
            )
        # Fit the axes to the bulk of the points (1st-99th percentile, padded), so a few far
        # rows do not shrink the map into a corner of white space.
        for axis, col in ((fig.update_xaxes, 0), (fig.update_yaxes, 1)):
            lo, hi = (
                np.percentile(xy[:, col], [1, 99])
                if len(xy) >= 20
                else (
                    xy[:, col].min(),
                    xy[:, col].max(),
                )
            )
            pad = 0.08 * (hi - lo or 1.0)
            axis(visible=False, range=[float(lo - pad), float(hi + pad)])
        fig.update_layout(height=560, legend={"orientation": "h", "y": -0.02, "yanchor": "top"})
        map_html = add(fig)

    # -- sizes and sentiment mix
    names = [f"{s['id']}: {s['name']}" for s in segs]
    fig = go.Figure(
        go.Bar(
            y=names,
            x=[s["size"] for s in segs],
            orientation="h",
            marker={"color": [colours[int(s["id"])] for s in segs]},
            text=[f"{s['size']:,} ({s['share']:.0%})" for s in segs],
            textposition="auto",
            hovertemplate="%{y}: %{x:,}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=max(260, 34 * len(segs) + 60), showlegend=False)
    sizes_html = add(fig)

    fig = go.Figure()
    for lab in ("negative", "neutral", "positive"):
        fig.add_trace(
            go.Bar(
                y=names,
                x=[s["sentiment"].get(lab, 0.0) for s in segs],
                orientation="h",
                name=t[lab],
                marker={"color": SENTIMENT_COLOURS[lab]},
                hovertemplate="%{y}: %{x:.0%} " + t[lab] + "<extra></extra>",
            )
        )
    fig.update_xaxes(tickformat=".0%", range=[0, 1])
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        barmode="stack",
        height=max(260, 34 * len(segs) + 80),
        legend={"orientation": "h", "y": -0.15},
    )
    sentiment_html = add(fig)

    # -- sentiment over time
    time_html = ""
    if date_col and date_col in frame.columns:
        dates = parse_dates(frame[date_col], reference_date)
        ok = dates.notna() & frame["sentiment_score"].notna() & (frame["segment_id"] >= 0)
        freq = period_code(period, dates[ok]) if ok.sum() >= 3 else "M"
        if ok.sum() >= 3 and dates[ok].dt.to_period(freq).nunique() >= 2:
            d = pd.DataFrame(
                {
                    "month": dates[ok].dt.to_period(freq).dt.start_time,
                    "sid": frame.loc[ok, "segment_id"].to_numpy(),
                    "score": frame.loc[ok, "sentiment_score"].to_numpy(),
                }
            )
            g = d.groupby(["sid", "month"])["score"].agg(["mean", "size"]).reset_index()
            g = g[g["size"] >= 3]
            fig = go.Figure()
            for s in sorted(segments, key=lambda s: int(s["id"])):
                gs = g[g["sid"] == s["id"]].sort_values("month")
                if len(gs) < 1:
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=gs["month"],
                        y=gs["mean"],
                        mode="lines+markers",
                        name=f"{s['id']}: {s['name']}",
                        line={"color": colours[int(s["id"])]},
                        customdata=gs["size"],
                        hovertemplate="%{x|%Y-%m-%d}: %{y:+.2f} (n=%{customdata})<extra></extra>",
                    )
                )
            fig.update_yaxes(range=[-1.05, 1.05], title=t["score"], zeroline=True)
            fig.update_xaxes(title=t["month"])
            fig.update_layout(height=420)
            if fig.data:
                time_html = add(fig)
            volume = d.groupby(["sid", "month"]).size().reset_index(name="rows")
            fig = go.Figure()
            for s in sorted(segments, key=lambda s: int(s["id"])):
                vs = volume[volume["sid"] == s["id"]].sort_values("month")
                if len(vs):
                    fig.add_trace(
                        go.Bar(
                            x=vs["month"],
                            y=vs["rows"],
                            name=f"{s['id']}: {s['name']}",
                            marker={"color": colours[int(s["id"])]},
                            hovertemplate="%{x|%Y-%m-%d}: %{y} rows<extra></extra>",
                        )
                    )
            fig.update_layout(barmode="stack", height=380, showlegend=False)
            fig.update_yaxes(title=t["rows"])
            fig.update_xaxes(title=t["month"])
            if fig.data:
                time_html += add(fig)

    # -- overview table and cards
    rows_html = []
    for s in segs:
        rows_html.append(
            "<tr>"
            f'<td><span class="swatch" style="background:{colours[int(s["id"])]}"></span>'
            f"<b>{_e(s['id'])}: {_e(s['name'])}</b></td>"
            f'<td class="num">{s["size"]:,}</td><td class="num">{s["share"]:.1%}</td>'
            f'<td class="num">{_signed(s["sentiment"].get("mean_score"))}</td>'
            f"<td>{_e(s.get('action') or '')}</td></tr>"
        )
    table = (
        f"<table><thead><tr><th>{t['segment']}</th><th>{t['size']}</th><th>{t['share']}</th>"
        f"<th>{t['mean_sentiment']}</th><th>{t['action']}</th></tr></thead>"
        f"<tbody>{''.join(rows_html)}</tbody></table>"
    )
    cards = [_card(s, t, colours[int(s["id"])], base_label) for s in segs]
    aspects_html = _aspect_heatmap(segs, t, colours)

    n_rows = len(frame)
    per_customer = unit == "customer"
    summary = t["summary_customers" if per_customer else "summary"].format(
        rows=f"{n_rows:,}", segments=sum(1 for s in segments if s["id"] >= 0), input=input_name
    )
    head = [
        "<!DOCTYPE html>",
        f'<html lang="{lang}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(t['title'])} · {_e(input_name)}</title>",
    ]
    parts = [f"<header><h1>{_e(t['title'])}</h1><p>{_e(summary)}</p></header><main>"]
    if notes:
        shown = "".join(f'<p class="warning">{_e(mask_contacts(str(n)))}</p>' for n in notes)
        parts.append(
            f'<section id="notes"><h2>{t["notes"]}</h2><p class="note">{t["notes_intro"]}</p>'
            f"{shown}</section>"
        )
    parts.append(f'<section id="overview"><h2>{t["overview"]}</h2>{table}</section>')
    if map_html:
        parts.append(
            f'<section id="map"><h2>{t["map"]}</h2>'
            f'<p class="note">{t["map_note_customers" if per_customer else "map_note"]}</p>'
            f"{map_html}</section>"
        )
    else:  # say what is left out and why, rather than a silently missing chart
        parts.append(
            f'<section id="map"><h2>{t["map"]}</h2><p class="note">{t["map_missing"]}</p></section>'
        )
    parts.append(
        f'<div class="grid"><section id="sizes"><h2>{t["sizes"]}</h2>{sizes_html}</section>'
        f'<section id="sentiment"><h2>{t["sentiment_by_segment"]}</h2>{sentiment_html}'
        "</section></div>"
    )
    if aspects_html:
        parts.append(aspects_html)
    if time_html:
        parts.append(
            f'<section id="over-time"><h2>{t["over_time"]}</h2>'
            f'<p class="note">{t["over_time_note"]}</p>{time_html}</section>'
        )
    if drift:
        parts.append(_drift_section(drift, t))
    parts.append(f'<h2 style="margin-top:24px">{t["details"]}</h2>')
    parts.extend(cards)
    body = "\n".join(parts)
    # The emoji the page shows (its text and the charts' data), and only those, in the font
    # (the <title> is drawn by the browser's own UI, not with the page's fonts).
    face = font_face_css([_shown_text(body)])
    footer = t["footer"].format(version=__version__)
    if face:
        footer += " " + t["emoji_credit"].format(font=FONT_LICENSE)
    head.append(f"<style>{face}\n{CSS}</style>")
    if figs:
        head.append(_plotlyjs())
    head.append("</head><body>")
    return "\n".join([*head, body, f"<footer>{_e(footer)}</footer></main></body></html>"])


def _aspect_heatmap(
    segs: Sequence[Mapping[str, Any]], t: dict[str, str], colours: Mapping[int, str]
) -> str:
    """The aspect x segment heat map (segments.json's per-segment aspect mix): one row per
    segment, two shaded cells per aspect (share praising, share complaining). ``""`` when
    the run has no aspects (no segment carries an ``aspects`` mix)."""
    if not any(isinstance(s.get("aspects"), Mapping) for s in segs):
        return ""
    mixes = {int(s["id"]): dict(s.get("aspects") or {}) for s in segs}
    talk: dict[str, float] = {}
    for s in segs:
        for aspect, shares in mixes[int(s["id"])].items():
            talk[aspect] = talk.get(aspect, 0.0) + float(s["size"]) * (
                float(shares.get("praising", 0)) + float(shares.get("complaining", 0))
            )
    title = f'<section id="aspects"><h2>{_e(t["aspects"])}</h2>'
    if not talk:
        return f'{title}<p class="note">{_e(t["aspects_none"])}</p></section>'
    order = sorted(talk, key=lambda a: (-talk[a], a))
    shown, left_out = order[:MAX_HEATMAP_ASPECTS], order[MAX_HEATMAP_ASPECTS:]
    top = max(
        float(mixes[int(s["id"])].get(a, {}).get(k, 0))
        for s in segs
        for a in shown
        for k in ("praising", "complaining")
    )
    scale = top or 1.0
    rgb = {"praising": (27, 158, 119), "complaining": (215, 48, 31)}
    head1 = f'<th rowspan="2">{_e(t["segment"])}</th>' + "".join(
        f'<th class="aspect" colspan="2">{_e(a.replace("_", " "))}</th>' for a in shown
    )
    head2 = "".join(
        f'<th class="pol" title="{_e(t["praising"])}">+</th>'
        f'<th class="pol" title="{_e(t["complaining"])}">−</th>'
        for _ in shown
    )
    rows = []
    for s in segs:
        sid = int(s["id"])
        mix = mixes[sid]
        cells = []
        for a in shown:
            for kind, css in (("praising", "pos"), ("complaining", "neg")):
                share = float(mix.get(a, {}).get(kind, 0.0))
                alpha = 0.0 if share <= 0 else 0.12 + 0.88 * min(share / scale, 1.0)
                r, g, b = rgb[kind]
                ink = "#fff" if alpha > 0.55 else "#1d2433"
                extra = " top" if kind == "complaining" and s.get("top_complaint") == a else ""
                tip = f"{s['id']}: {s['name']} · {a}: {share:.0%} {t[kind]}"
                cells.append(
                    f'<td class="cell {css}{extra}" data-aspect="{_e(a)}" data-kind="{kind}"'
                    f' data-share="{share:.4f}" title="{_e(tip)}"'
                    f' style="background:rgba({r},{g},{b},{alpha:.3f});color:{ink}">'
                    f"{f'{share:.0%}' if share > 0 else ''}</td>"
                )
        rows.append(
            f'<tr data-segment-id="{sid}"><td class="seg"><span class="swatch" '
            f'style="background:{colours[sid]}"></span>{_e(s["id"])}: {_e(s["name"])}</td>'
            f"{''.join(cells)}</tr>"
        )
    note = t["aspects_note"].format(max=f"{top:.0%}")
    if left_out:
        note += " " + t["aspects_left_out"].format(n=len(left_out), names=", ".join(left_out))
    return (
        f'{title}<p class="note">{_e(note)}</p><div class="heat"><table>'
        f"<thead><tr>{head1}</tr><tr>{head2}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _pct(x: object, signed: bool = False) -> str:
    if x is None:
        return ""
    return f"{float(x):+.1%}" if signed else f"{float(x):.1%}"


def _drift_section(drift: Mapping[str, Any], t: dict[str, str]) -> str:
    """What changed since the previous run: shares and sentiment before/after, new and gone
    segments, rising complaint terms, novelty and the refit warning."""
    rows = []
    for r in drift.get("segments", []):
        before, after, change = r.get("before") or {}, r.get("after") or {}, r.get("change") or {}
        rows.append(
            f"<tr><td><b>{_e(r['id'])}: {_e(r.get('name') or '')}</b></td>"
            f"<td>{_e(t['drift_' + r['status']])}</td>"
            f'<td class="num">{_pct(before.get("share"))}</td>'
            f'<td class="num">{_pct(after.get("share"))}</td>'
            f'<td class="num">{_pct(change.get("share"), signed=True)}</td>'
            f'<td class="num">{_fmt(before.get("mean_score"))}</td>'
            f'<td class="num">{_fmt(after.get("mean_score"))}</td>'
            f'<td class="num">{_pct(change.get("negative_share"), signed=True)}</td></tr>'
        )
    head = "".join(
        f"<th>{t[k]}</th>"
        for k in (
            "segment",
            "drift_status",
            "drift_share_before",
            "drift_share_after",
            "drift_change",
            "drift_score_before",
            "drift_score_after",
            "drift_negative_change",
        )
    )
    warn = "".join(f'<p class="warning">{_e(w)}</p>' for w in drift.get("warnings", []))
    terms = drift.get("complaints_rising") or []
    terms_html = (
        f"<p><b>{t['drift_complaints']}</b> "
        + ", ".join(f"{_e(x['term'])} ({_pct(x['change'], signed=True)})" for x in terms)
        + "</p>"
        if terms
        else ""
    )
    novelty = drift.get("novelty_share")
    novelty_html = (
        f"<p>{_e(t['drift_novelty'].format(share=_pct(novelty)))}</p>"
        if novelty is not None
        else ""
    )
    movers = (drift.get("movers") or {}).get("by_move") or {}
    movers_html = (
        f"<p><b>{t['drift_movers']}</b> "
        + ", ".join(f"{_e(k)}: {v:,}" for k, v in movers.items())
        + "</p>"
        if movers
        else ""
    )
    return (
        f'<section id="drift"><h2>{t["drift"]}</h2>'
        f'<p class="note">{_e(t["drift_note"].format(before=drift.get("before", "")))}</p>'
        f"{warn}<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"{terms_html}{novelty_html}{movers_html}</section>"
    )


def _card(s: Mapping[str, Any], t: dict[str, str], colour: str, base_label: dict) -> str:
    sent = s["sentiment"]
    bar = "".join(
        f'<span style="width:{100 * sent.get(lab, 0):.1f}%;background:{SENTIMENT_COLOURS[lab]}"'
        f' title="{t[lab]} {sent.get(lab, 0):.0%}"></span>'
        for lab in ("negative", "neutral", "positive")
    )
    mix = " · ".join(
        f"{sent.get(lab, 0):.0%} {t[lab]}" for lab in ("negative", "neutral", "positive")
    )
    base = str(s.get("base_name", ""))
    meta = [
        f"{s['size']:,} {t['members']} ({s['share']:.1%})",
        f"{t['mean_sentiment'].lower()} {_signed(sent.get('mean_score'))}",
    ]
    if base in base_label:
        meta.insert(0, base_label[base])
    if s.get("improvement_request_share"):
        meta.append(f"{s['improvement_request_share']:.0%} {t['improvement']}")
    if s.get("outlier_share"):
        meta.append(f"{s['outlier_share']:.0%} {t['outliers']}")
    tiers = [str(s[k]) for k in ("value_tier", "loyalty_tier") if s.get(k)]
    if tiers:
        meta.append(f"{t['tiers'].lower()}: {' / '.join(tiers)}")
    kw = s.get("keywords") or []
    chips = "".join(f"<span>{_e(k)}</span>" for k in kw[:10]) or _e(t["none"])
    quotes = "".join(
        f'<blockquote title="{_e(q)}">{_e(_shorten(q))}</blockquote>'
        for q in (s.get("examples") or [])[:5]
    )
    left = f'<h4>{t["keywords"]}</h4><div class="chips">{chips}</div>'
    benefits = s.get("benefits")
    if isinstance(benefits, Mapping) and benefits:
        top = sorted(benefits.items(), key=lambda kv: -float(kv[1] or 0))[:6]
        left += (
            f'<h4>{t["benefits"]}</h4><div class="chips">'
            + "".join(f"<span>{_e(k)} {float(v):.0%}</span>" for k, v in top)
            + "</div>"
        )
    behaviour = s.get("behavior") or {}
    if behaviour:
        items = "".join(
            f'<tr><td>{_e(k)}</td><td class="num">{_fmt(v)}</td></tr>' for k, v in behaviour.items()
        )
        left += f"<h4>{t['behaviour']}</h4><table>{items}</table>"
    right = f"<h4>{t['quotes']}</h4>{quotes or _e(t['none'])}"
    action = s.get("action") or ""
    action_html = f'<div class="action"><b>{t["action"]}</b>{_e(action)}</div>' if action else ""
    return (
        f'<section class="card segment" id="segment-{_e(s["id"])}" data-segment-id="{_e(s["id"])}"'
        f' style="border-left-color:{colour}">'
        f'<h3>{_e(s["id"])}: {_e(s["name"])}</h3><div class="meta">{_e(" · ".join(meta))}</div>'
        f'<div class="bar" title="{_e(mix)}">{bar}</div><div class="note">{_e(mix)}</div>'
        f'<div class="cols"><div>{left}</div><div>{right}</div></div>{action_html}</section>'
    )


def _shorten(text: str, limit: int = QUOTE_CHARS) -> str:
    """A long review cut at a word boundary near ``limit`` (the full text is the tooltip)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip(" ,.;:") + " …"


def _signed(x: float | None) -> str:
    """A mean sentiment: ``+0.42``, or ``–`` for a segment that wrote nothing."""
    return "–" if x is None else f"{x:+.2f}"


def _fmt(v: object) -> str:
    if v is None:
        return "–"
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return _e(v)
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"


def write_report(path: str | Path, html_text: str) -> Path:
    """Write the report atomically (readers never see half a page)."""
    from nlp_seg.io.write import atomic_write

    p = Path(path)
    atomic_write(p, lambda tmp: Path(tmp).write_text(html_text, encoding="utf-8"))
    return p
