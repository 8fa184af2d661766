"""Benchmark nlpseg on real text: seconds per stage, rows/s and peak memory, beside BERTopic.

    python scripts/bench.py --sizes 1000,10000 --out docs/benchmarks.md

For each size it runs, each step in its own process (so peak RSS is that step's own, from
``os.wait4``):

* ``analyze, cold``: ``nlpseg analyze`` with an empty embedding cache and an empty numba cache
  (everything a first run on a new machine pays, except converting the bundled model once);
* ``analyze, new clustering``: the same file again with another ``--min-cluster-size``: the
  embeddings come from the cache and UMAP's machine code from the numba cache;
* ``batch``: ``nlpseg batch`` (chunks of a quarter of the rows) on the warm cache, to show its
  overhead and its bounded memory;
* ``clustering vs BERTopic``: in one process, on the same (cached) embeddings and texts, the
  time nlpseg needs after encoding (fusion, UMAP, HDBSCAN, naming) against BERTopic's
  ``fit_transform`` with the same UMAP and HDBSCAN settings, and the agreement (ARI) of the two
  labelings (nlpseg also with ``--weights sentiment=0``, i.e. on the text embedding alone).

On the smallest size (or ``--ablation-size``) it also times the encoder levers: tokenisation
alone, encoding with ``max_seq_length`` 256 and 128, and the two-model path (the embedding model
plus a separate sentiment transformer of the same size, run through
:class:`~nlp_seg.models.sentiment.TransformerSentimentScorer`) against the one-pass path (one
encoder,
the sentiment head on its output).

Texts: UIT-ViSFD reviews first, then the other corpora in ``shared/data`` (AIVIVN reviews,
MARC Amazon reviews, UIT-VSFC, VLSP 2016, UMSAB tweets); a size beyond the distinct texts
available repeats texts with a distinct suffix, and the table says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("NLPSEG_DATA_DIR", REPO.parent / "shared" / "data"))
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
WARM_ROWS = 4_200  # > 4,096: the size at which UMAP starts using NN-descent


# --------------------------------------------------------------------------- data
def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]


def text_pool(data: Path) -> list[tuple[str, str]]:
    """``(corpus, text)`` pairs, reviews first, each text once."""
    parts: list[tuple[str, list[str]]] = []
    visfd = data / "reviews" / "uit-visfd"
    parts.append(
        (
            "uit-visfd",
            [
                t
                for f in ("Train.csv", "Dev.csv")
                if (visfd / f).exists()
                for t in pd.read_csv(visfd / f)["comment"].dropna().astype(str)
            ],
        )
    )
    s = data / "sentiment"
    if (s / "aivivn-2019" / "train.csv").exists():
        parts.append(
            ("aivivn", pd.read_csv(s / "aivivn-2019" / "train.csv")["text"].dropna().astype(str))
        )
    marc = sorted((s / "marc-amazon-multi").glob("*.csv"))
    parts.append(
        ("marc", [t for f in marc for t in pd.read_csv(f, header=None)[1].dropna().astype(str)])
    )
    vsfc = s / "uit-vsfc" / "train" / "sents.txt"
    if vsfc.exists():
        parts.append(("uit-vsfc", _lines(vsfc)))
    vlsp = s / "vlsp2016-sa" / "SA-2016.train"
    if vlsp.exists():
        parts.append(("vlsp2016", [ln.rsplit("\t", 1)[0] for ln in _lines(vlsp)]))
    parts.append(
        (
            "umsab",
            [t for f in sorted((s / "umsab-xlmt").glob("*/train_text.txt")) for t in _lines(f)],
        )
    )
    seen: set[str] = set()
    pool = []
    for name, texts in parts:
        for t in texts:
            t = " ".join(str(t).split())
            if t and t not in seen:
                seen.add(t)
                pool.append((name, t))
    return pool


def make_data(n: int, pool: list[tuple[str, str]], path: Path) -> str:
    """Write ``n`` rows to ``path``; return a note on where they came from."""
    rows = []
    rep = 0
    while len(rows) < n:
        suffix = f" (#{rep + 1})" if rep else ""
        rows.extend((c, t + suffix) for c, t in pool[: n - len(rows)])
        rep += 1
    df = pd.DataFrame(rows, columns=["corpus", "review"])
    df.insert(0, "row_id", range(n))
    df.to_csv(path, index=False)
    counts = df["corpus"].value_counts().to_dict()
    note = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    if rep > 1:
        note += f"; {len(pool):,} distinct texts repeated {rep}x with a distinct suffix"
    return note


# --------------------------------------------------------------------------- processes
def _popen_wait4(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``cmd``: wall seconds, output, and its own peak RSS (MiB), reaped with ``wait4``."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd[:6])}... failed:\n{err.read().decode()[-3000:]}")
        return {"wall": wall, "rss_mib": usage.ru_maxrss / 1024, "stdout": out.read().decode()}


def nlpseg(*args: str) -> list[str]:
    return [sys.executable, "-m", "nlp_seg", "-q", *args]


# --------------------------------------------------------------------------- workers
def worker_compare(a: argparse.Namespace) -> dict[str, Any]:
    """nlpseg's post-encoding stages vs BERTopic.fit_transform on the same embeddings."""
    from sklearn.metrics import adjusted_rand_score

    from nlp_seg.normalize import STATUS_OK, normalize_texts
    from nlp_seg.runs.warmup import warm_up
    from nlp_seg.segmenter import Segmenter, SegmenterConfig
    from nlp_seg.stages.fusion import parse_weights

    warm_up()
    cfg = SegmenterConfig(**json.loads(a.config))
    raw = pd.read_csv(a.data)["review"].tolist()
    norm = normalize_texts(raw, max_chars=cfg.max_chars)
    texts = [x.text for x in norm if x.status == STATUS_OK]
    seg = Segmenter(cfg)
    emb, probs = seg.encode(texts)  # from the cache filled by the analyze runs
    status = np.full(len(texts), STATUS_OK, dtype=object)
    res: dict[str, Any] = {"rows": len(texts)}
    # Untimed, as BERTopic's below: loads this process's numba code for the real dtypes. Above
    # 4,096 rows UMAP switches to pynndescent's NN-descent, whose core numba cannot cache on
    # disk (it compiles in every process); the warm-up covers that path too, so neither timed
    # fit pays a compilation the other then reuses.
    warm = min(len(texts), WARM_ROWS)
    Segmenter(cfg).fit_encoded(texts[:warm], status[:warm], emb[:warm], probs[:warm])
    t0 = time.perf_counter()
    seg.fit_encoded(texts, status, emb, probs)
    res["nlpseg_seconds"] = time.perf_counter() - t0
    res["nlpseg_segments"] = len(set(seg.labels_.tolist()))
    mcs = seg.clusterer_.describe()["min_cluster_size"]
    text_only = Segmenter(
        SegmenterConfig(**{**json.loads(a.config), "weights": parse_weights("sentiment=0")})
    )
    t0 = time.perf_counter()
    text_only.fit_encoded(texts, status, emb, probs)
    res["nlpseg_text_only_seconds"] = time.perf_counter() - t0
    if a.skip_bertopic:
        return res
    from bertopic import BERTopic
    from hdbscan import HDBSCAN
    from umap import UMAP

    def bertopic() -> Any:
        return BERTopic(
            umap_model=UMAP(
                n_components=cfg.n_components,
                n_neighbors=cfg.n_neighbors,
                min_dist=0.0,
                random_state=cfg.seed,
                low_memory=True,
            ),
            hdbscan_model=HDBSCAN(min_cluster_size=mcs, prediction_data=True),
        )

    bertopic().fit_transform(texts[:warm], embeddings=emb[:warm])  # imports and JIT, untimed
    t0 = time.perf_counter()
    topics, _ = bertopic().fit_transform(texts, embeddings=emb)
    res["bertopic_seconds"] = time.perf_counter() - t0
    topics = np.asarray(topics)
    res["bertopic_topics"] = len(set(topics.tolist()) - {-1})
    res["bertopic_outlier_share"] = float((topics < 0).mean())
    res["ari"] = adjusted_rand_score(topics, seg.labels_)
    res["ari_text_only"] = adjusted_rand_score(topics, text_only.labels_)
    keep = topics >= 0
    res["ari_text_only_no_outliers"] = adjusted_rand_score(topics[keep], text_only.labels_[keep])
    return res


def worker_ablation(a: argparse.Namespace) -> dict[str, Any]:
    """Encoder levers on one machine, no cache: tokenisation, max_seq_length, two models."""
    import torch

    from nlp_seg.models.embedding import SentenceTransformerEmbedder
    from nlp_seg.models.sentiment import TransformerSentimentScorer, make_sentiment_scorer
    from nlp_seg.normalize import STATUS_OK, normalize_texts
    from nlp_seg.segmenter import SegmenterConfig

    cfg = SegmenterConfig(**json.loads(a.config))
    emb_model, sent_model = cfg.resolved_models()
    raw = pd.read_csv(a.data)["review"].tolist()
    texts = sorted({x.text for x in normalize_texts(raw) if x.status == STATUS_OK})
    res: dict[str, Any] = {"distinct_texts": len(texts), "torch_threads": torch.get_num_threads()}
    out: dict[int, np.ndarray] = {}
    feats: dict[int, np.ndarray] = {}
    head = make_sentiment_scorer(sent_model)
    # The one pass as the pipeline runs it: a head reading hidden states gets them from the
    # same forward pass as the embedding (embed_with_layers).
    layers = tuple(getattr(head, "input_layers", ())) if head.needs_embeddings else ()
    res["head_input_layers"] = list(layers)
    for msl in (256, 128):
        e = SentenceTransformerEmbedder(emb_model, device=cfg.device, max_seq_length=msl)
        t0 = time.perf_counter()
        st = e.load()
        res[f"load_{msl}"] = time.perf_counter() - t0
        if msl == 256:
            tok = st.tokenizer
            t0 = time.perf_counter()
            lens = []
            for i in range(0, len(texts), 256):
                enc = tok(texts[i : i + 256], truncation=False, padding=False)
                lens.extend(len(ids) for ids in enc["input_ids"])
            res["tokenize_seconds"] = time.perf_counter() - t0
            lens_a = np.asarray(lens)
            res["share_over_128_tokens"] = float((lens_a > 128).mean())
            res["share_over_256_tokens"] = float((lens_a > 256).mean())
            res["median_tokens"] = float(np.median(lens_a))
            res["model_path"] = str(e._path)
        t0 = time.perf_counter()
        if layers:
            emb_msl, feats[msl] = e.embed_with_layers(texts, layers)
        else:
            emb_msl = feats[msl] = e.embed(texts)
        out[msl] = emb_msl
        res[f"encode_{msl}"] = time.perf_counter() - t0
    cos = np.sum(out[256] * out[128], axis=1)
    res["cosine_128_vs_256_mean"] = float(cos.mean())
    res["cosine_128_vs_256_min"] = float(cos.min())
    res["head_seconds"] = 0.0
    if head.needs_embeddings:
        t0 = time.perf_counter()
        p256 = head.predict_proba(texts, embeddings=feats[256])
        res["head_seconds"] = time.perf_counter() - t0
        p128 = head.predict_proba(texts, embeddings=feats[128])
        res["label_agreement_128_vs_256"] = float((p256.argmax(1) == p128.argmax(1)).mean())
    else:
        res["head_missing"] = f"{sent_model} is not a head on the embedding"
    # The two-model path: a separate sentiment transformer the size of the encoder (the
    # encoder's weights under a fresh classification head: timing only, not accuracy).
    second = TransformerSentimentScorer(res["model_path"], device=cfg.device, max_length=256)
    t0 = time.perf_counter()
    second.load()
    res["second_model_load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    second.predict_proba(texts)
    res["second_model_seconds"] = time.perf_counter() - t0
    return res


UMAP_SNIPPET = """
import sys, time
t0 = time.perf_counter()
if sys.argv[1] == "nlpseg":
    from nlp_seg.stages.reduction import configure_numba_cache
    configure_numba_cache()
import numpy as np
import umap
x = np.random.default_rng(0).normal(size=(500, 32)).astype("float32")
umap.UMAP(random_state=42).fit(x)
print(time.perf_counter() - t0)
"""


def cold_start(tmp: Path) -> dict[str, Any]:
    """Seconds of ``import umap; UMAP().fit(500 x 32)`` in fresh processes, with and without
    nlpseg's numba cache (each variant starts from an empty cache folder), and ``nlpseg --help``.
    """
    res: dict[str, Any] = {}
    for variant in ("plain", "nlpseg"):
        cache = tmp / f"numba_cold_{variant}"
        env = {"NUMBA_CACHE_DIR": str(cache)}  # pynndescent's cache=True functions use it too
        times = []
        for _ in range(2):
            r = _popen_wait4([sys.executable, "-c", UMAP_SNIPPET, variant], env)
            times.append(float(r["stdout"].strip().splitlines()[-1]))
        res[variant] = times
    helps = []
    for _ in range(3):
        t0 = time.perf_counter()
        _popen_wait4([sys.executable, "-m", "nlp_seg", "--help"], {})
        helps.append(time.perf_counter() - t0)
    res["help"] = helps
    return res


def cold_start_lines(c: dict[str, Any]) -> list[str]:
    p, n = c["plain"], c["nlpseg"]
    return [
        "Cold start (`import umap; UMAP(random_state=42).fit(500 x 32)` in a fresh process, "
        "from an empty numba cache; seconds):",
        "",
        "| | 1st process | 2nd process |",
        "| --- | ---: | ---: |",
        f"| umap-learn as shipped (no numba cache for umap's own functions) | {p[0]:.1f} | "
        f"{p[1]:.1f} |",
        f"| with nlpseg's numba cache (`NLPSEG_HOME/numba`) | {n[0]:.1f} | {n[1]:.1f} |",
        "",
        f"`nlpseg --help` (a fresh process, heavy imports lazy): {min(c['help']):.2f} s best of "
        f"3 ({', '.join(f'{h:.2f}' for h in c['help'])}).",
    ]


# --------------------------------------------------------------------------- orchestration
def hardware() -> list[str]:
    cpu = "unknown CPU"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024**2:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    from importlib import metadata

    vers = []
    for pkg in ("torch", "sentence-transformers", "umap-learn", "hdbscan", "bertopic", "numba"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            vers.append(f"{pkg} {metadata.version(pkg)}")
    load = os.getloadavg()
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores{mem}; no GPU",
        f"- Python {platform.python_version()}; {', '.join(vers)}",
        f"- load average when the benchmark started: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
        " (the machine is shared; timings are wall-clock)",
    ]


def speed_note(ratio: float) -> str:
    """``ratio`` = BERTopic seconds / nlpseg seconds, in words that read right either way."""
    if ratio >= 1:
        return f"nlpseg {ratio:.2f}x faster"
    return f"nlpseg {1 / ratio:.2f}x slower"


def fmt(x: float | None, digits: int = 1) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


def bench_size(
    n: int, pool: list[tuple[str, str]], tmp: Path, args: argparse.Namespace, rows: list[list[str]]
) -> dict[str, Any]:
    data = tmp / f"data_{n}.csv"
    note = make_data(n, pool, data)
    cache = tmp / f"cache_{n}"
    numba = tmp / f"numba_{n}"  # empty: the cold run compiles UMAP's code
    model = list(args.model_args)
    res: dict[str, Any] = {"rows": n, "note": note}

    cold = _popen_wait4(
        nlpseg("analyze", str(data), "--out", str(tmp / f"cold_{n}"), "--cache-dir", str(cache))
        + model,
        {"NUMBA_CACHE_DIR": str(numba)},
    )
    run = json.loads((tmp / f"cold_{n}" / "run.json").read_text())
    res["cold"] = {**cold, "seconds": run["seconds"]}
    sec = run["seconds"]
    stages = ", ".join(
        f"{k.removeprefix('pipeline.')} {v:.1f}"
        for k, v in sec.items()
        if k not in ("total",) and v >= 0.05
    )
    rows.append(
        [
            f"{n:,}",
            "analyze, cold (empty caches)",
            fmt(cold["wall"]),
            fmt(n / cold["wall"], 0),
            fmt(cold["rss_mib"], 0),
            stages,
        ]
    )
    mcs = max(5, round(0.01 * n))
    warm = _popen_wait4(
        nlpseg(
            "analyze",
            str(data),
            "--out",
            str(tmp / f"warm_{n}"),
            "--cache-dir",
            str(cache),
            "--min-cluster-size",
            str(mcs),
        )
        + model,
        {"NUMBA_CACHE_DIR": str(numba)},
    )
    wsec = json.loads((tmp / f"warm_{n}" / "run.json").read_text())["seconds"]
    res["warm"] = {**warm, "seconds": wsec}
    rows.append(
        [
            f"{n:,}",
            f"analyze, new clustering (--min-cluster-size {mcs}; caches warm)",
            fmt(warm["wall"]),
            fmt(n / warm["wall"], 0),
            fmt(warm["rss_mib"], 0),
            ", ".join(
                f"{k.removeprefix('pipeline.')} {v:.1f}"
                for k, v in wsec.items()
                if k != "total" and v >= 0.05
            ),
        ]
    )
    chunk = max(100, n // 4)
    bt = _popen_wait4(
        nlpseg(
            "batch",
            str(data),
            "--out",
            str(tmp / f"batch_{n}"),
            "--cache-dir",
            str(cache),
            "--chunk-size",
            str(chunk),
        )
        + model,
        {"NUMBA_CACHE_DIR": str(numba)},
    )
    bsec = json.loads((tmp / f"batch_{n}" / "run.json").read_text())["seconds"]
    res["batch"] = {**bt, "seconds": bsec}
    rows.append(
        [
            f"{n:,}",
            f"batch, --chunk-size {chunk:,} (caches warm)",
            fmt(bt["wall"]),
            fmt(n / bt["wall"], 0),
            fmt(bt["rss_mib"], 0),
            ", ".join(
                f"{k} {v:.1f}"
                for k, v in bsec.items()
                if k in ("encode", "fit", "save_fit", "place", "write")
            ),
        ]
    )
    cmp_cmd = [sys.executable, __file__, "--worker", "compare", "--data", str(data)]
    cmp_cmd += ["--config", json.dumps({**args.config, "cache_dir": str(cache)})]
    if args.skip_bertopic:
        cmp_cmd.append("--skip-bertopic")
    cmp_run = _popen_wait4(cmp_cmd, {"NUMBA_CACHE_DIR": str(numba)})
    cmp = json.loads(cmp_run["stdout"].strip().splitlines()[-1])
    res["compare"] = cmp
    rows.append(
        [
            f"{n:,}",
            "nlpseg after encoding: fusion+UMAP+HDBSCAN+naming (in process)",
            fmt(cmp["nlpseg_seconds"]),
            fmt(cmp["rows"] / cmp["nlpseg_seconds"], 0),
            "",
            f"{cmp['nlpseg_segments']} segments; text-only weights: "
            f"{cmp['nlpseg_text_only_seconds']:.1f} s",
        ]
    )
    if not args.skip_bertopic:
        rows.append(
            [
                f"{n:,}",
                "BERTopic fit_transform, same embeddings, same UMAP/HDBSCAN settings",
                fmt(cmp["bertopic_seconds"]),
                fmt(cmp["rows"] / cmp["bertopic_seconds"], 0),
                fmt(cmp_run["rss_mib"], 0) + " (both)",
                f"{cmp['bertopic_topics']} topics, {cmp['bertopic_outlier_share']:.0%} outliers; "
                f"{speed_note(cmp['bertopic_seconds'] / cmp['nlpseg_seconds'])}; "
                f"ARI vs nlpseg {cmp['ari']:.2f} (text-only nlpseg {cmp['ari_text_only']:.2f}, "
                f"{cmp['ari_text_only_no_outliers']:.2f} without BERTopic's outliers)",
            ]
        )
    return res


def ablation(n: int, pool: list[tuple[str, str]], tmp: Path, args: argparse.Namespace) -> dict:
    data = tmp / f"abl_{n}.csv"
    make_data(n, pool, data)
    cmd = [sys.executable, __file__, "--worker", "ablation", "--data", str(data)]
    cmd += ["--config", json.dumps({**args.config, "cache_dir": None})]
    r = _popen_wait4(cmd, {})
    res = json.loads(r["stdout"].strip().splitlines()[-1])
    res["rss_mib"] = r["rss_mib"]
    return res


def ablation_lines(a: dict[str, Any]) -> list[str]:
    n = a["distinct_texts"]
    e256, e128 = a["encode_256"], a["encode_128"]
    lines = [
        f"Encoder levers on {n:,} distinct texts, no cache, {a['torch_threads']} torch threads "
        f"(peak RSS {a['rss_mib']:,.0f} MiB):",
        "",
        "| what | seconds | texts/s | note |",
        "| --- | ---: | ---: | --- |",
        f"| load the encoder | {a['load_256']:.1f} | | |",
        f"| tokenise only (fast tokenizer, no padding) | {a['tokenize_seconds']:.2f} | "
        f"{n / a['tokenize_seconds']:,.0f} | "
        f"{a['tokenize_seconds'] / e256:.1%} of encoding at 256; "
        f"median {a['median_tokens']:.0f} tokens, {a['share_over_128_tokens']:.1%} of texts over "
        f"128, {a['share_over_256_tokens']:.1%} over 256 |",
        f"| encode, max_seq_length 256 (default) | {e256:.1f} | {n / e256:,.1f} | length-sorted "
        "batches of 32 |",
        f"| encode, max_seq_length 128 | {e128:.1f} | {n / e128:,.1f} | {e256 / e128:.2f}x faster; "
        f"cosine to 256: mean {a['cosine_128_vs_256_mean']:.4f}, min "
        f"{a['cosine_128_vs_256_min']:.3f}"
        + (
            f"; sentiment label unchanged for {a['label_agreement_128_vs_256']:.1%}"
            if "label_agreement_128_vs_256" in a
            else ""
        )
        + " |",
    ]
    if "second_model_seconds" in a:
        one = e256 + a["head_seconds"]
        two = e256 + a["second_model_seconds"]
        lines += [
            f"| one-pass path: encoder + sentiment head | {one:.1f} | {n / one:,.1f} | "
            + (
                f"head {a['head_seconds']:.2f} s |"
                if "head_missing" not in a
                else "encoder only: the sentiment head was not available to this run |"
            ),
            f"| two-model path: encoder + separate sentiment transformer of the same size | "
            f"{two:.1f} | {n / two:,.1f} | second model {a['second_model_seconds']:.1f} s "
            f"(+{a['second_model_load']:.1f} s load); one pass is {two / one:.2f}x faster |",
        ]
    return lines


def render(
    args: argparse.Namespace,
    rows: list[list[str]],
    abl: dict | None,
    notes: list[str],
    cold: dict | None = None,
) -> str:
    out = [
        START,
        f"_Generated by `python scripts/bench.py {' '.join(args.argv)}` on "
        f"{time.strftime('%Y-%m-%d %H:%M')}._",
        "",
        "Hardware:",
        "",
        *hardware(),
        "- GPU figures: not measured (no GPU was lent to this session)",
        "",
        "| rows | step | wall s | rows/s | peak RSS MiB | stages (s) / notes |",
        "| ---: | --- | ---: | ---: | ---: | --- |",
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
        "Data: " + "; ".join(notes),
        "",
    ]
    if abl:
        out += ablation_lines(abl) + [""]
    if cold:
        out += cold_start_lines(cold) + [""]
    out.append(END)
    return "\n".join(out) + "\n"


def write_out(path: Path, block: str) -> None:
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if START in text and END in text:
            head, rest = text.split(START, 1)
            tail = rest.split(END, 1)[1]
            path.write_text(head + block.rstrip("\n") + tail, encoding="utf-8")
            return
        path.write_text(text.rstrip("\n") + "\n\n" + block, encoding="utf-8")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# nlpseg benchmarks\n\n" + block, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000", help="Comma-separated row counts.")
    p.add_argument("--skip-bertopic", action="store_true")
    p.add_argument("--skip-ablation", action="store_true")
    p.add_argument("--skip-coldstart", action="store_true")
    p.add_argument("--ablation-size", type=int, default=None, help="Default: smallest size.")
    p.add_argument("--out", type=Path, default=None, help="Markdown file to write/update.")
    p.add_argument("--profile", default="bundled")
    p.add_argument("--embedding-model", default=None)
    p.add_argument("--sentiment-model", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", type=Path, default=DATA)
    p.add_argument("--keep", type=Path, default=None, help="Keep the work files here.")
    p.add_argument("--worker", choices=["compare", "ablation"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.worker:
        fn = worker_compare if args.worker == "compare" else worker_ablation
        print(json.dumps(fn(args), default=float))
        return
    if not args.data_dir.is_dir():
        sys.exit(f"data folder not found: {args.data_dir} (set NLPSEG_DATA_DIR)")
    args.config = {"profile": args.profile, "device": args.device}
    args.model_args = ["--profile", args.profile, "--device", args.device]
    if args.embedding_model:
        args.config["embedding_model"] = args.embedding_model
        args.model_args += ["--embedding-model", args.embedding_model]
    if args.sentiment_model:
        args.config["sentiment_model"] = args.sentiment_model
        args.model_args += ["--sentiment-model", args.sentiment_model]
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    pool = text_pool(args.data_dir)
    tmp_ctx = tempfile.TemporaryDirectory(prefix="nlpseg-bench-")
    tmp = args.keep or Path(tmp_ctx.name)
    tmp.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    notes: list[str] = []
    results: dict[str, Any] = {}
    abl = cold = None
    if not args.skip_coldstart:
        print("cold start ...", file=sys.stderr, flush=True)
        cold = results["cold_start"] = cold_start(tmp)
    if not args.skip_ablation:
        n_abl = args.ablation_size or min(sizes)
        print(f"ablation on {n_abl:,} rows ...", file=sys.stderr, flush=True)
        abl = ablation(n_abl, pool, tmp, args)
        results["ablation"] = abl
    for n in sizes:
        print(f"{n:,} rows ...", file=sys.stderr, flush=True)
        r = bench_size(n, pool, tmp, args, rows)
        results[str(n)] = r
        notes.append(f"{n:,} rows = {r['note']}")
        print(render(args, rows, abl, notes, cold), file=sys.stderr, flush=True)
    block = render(args, rows, abl, notes, cold)
    print(block)
    (tmp / "results.json").write_text(json.dumps(results, indent=2, default=float))
    if args.out:
        write_out(args.out, block)
    tmp_ctx.cleanup()


if __name__ == "__main__":
    main()
