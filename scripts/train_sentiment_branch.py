"""Train the bundled sentiment *branch* (issue 14) on ``../shared/data/sentiment``.

Three steps, each resumable::

    python scripts/train_sentiment_branch.py cache            # lower layers once, to disk
    python scripts/train_sentiment_branch.py train --k 2      # fine-tune the branch (checkpoints)
    python scripts/train_sentiment_branch.py write --k 2      # calibrate, save models/sentiment_branch

``cache`` runs the bundled encoder's embeddings and lower layers over every train and dev text
(normalised and lower-cased as the pipeline does, ``"query: "`` prefix, at most
``--max-tokens`` tokens) and keeps hidden states ``12 - k`` for the ``k`` given, float16, in
``--work`` (default ``/tmp/nlpseg-branch``). Vietnamese train texts also get a copy with the
diacritics stripped (a seeded ``--strip-share`` of each part), since people type without them.
``train`` then trains only the branch and its linear head on the cached states.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentiment_data import load_all, prepared_texts, seeded_order  # noqa: E402

VI_GROUPS = ("uit-vsfc", "vlsp2016", "aivivn")


def group_of(part) -> str:
    return part.dataset if part.dataset in VI_GROUPS else f"{part.dataset}-{part.lang}"


def corpus_rows(strip_share: float) -> list[dict]:
    """Every row to cache: text (as the model reads it), label, split, group, part key."""
    from nlp_seg.normalize import strip_diacritics

    rows = []
    for part in load_all():
        texts, keep = prepared_texts(part)
        for i in np.flatnonzero(keep):
            rows.append(
                {
                    "text": texts[i].lower(),
                    "label": int(part.labels[i]),
                    "split": part.split,
                    "group": group_of(part),
                    "part": part.key,
                    "variant": "original",
                }
            )
        if part.split == "train" and part.lang == "vi" and strip_share > 0:
            order = seeded_order(part, seed=1)
            order = order[keep[order]][: int(round(keep.sum() * strip_share))]
            for i in order:
                stripped = strip_diacritics(texts[i].lower())
                if stripped != texts[i].lower():
                    rows.append(
                        {
                            "text": stripped,
                            "label": int(part.labels[i]),
                            "split": "train",
                            "group": group_of(part),
                            "part": part.key,
                            "variant": "stripped",
                        }
                    )
    return rows


def cmd_cache(args) -> None:
    import torch

    from nlp_seg.models.embedding import SentenceTransformerEmbedder

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = corpus_rows(args.strip_share)
    meta_path = work / "rows.jsonl"
    if not meta_path.exists():
        with meta_path.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    layers = sorted({12 - k for k in args.k})
    st = SentenceTransformerEmbedder(device="cpu").load()
    bert = st[0].auto_model
    tok = st.tokenizer
    texts = ["query: " + r["text"] for r in rows]
    lengths = np.array(
        [min(len(ids), args.max_tokens) for ids in tok(texts, truncation=True, max_length=args.max_tokens)["input_ids"]]
    )
    np.save(work / "lengths.npy", lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    np.save(work / "offsets.npy", offsets)
    total = int(offsets[-1])
    print(f"{len(rows):,} texts, {total:,} tokens, mean {lengths.mean():.1f}", flush=True)
    stores = {}
    for layer in layers:
        path = work / f"hidden{layer}.f16"
        mode = "r+" if path.exists() else "w+"
        stores[layer] = np.memmap(path, dtype=np.float16, mode=mode, shape=(total, 384))
    done_path = work / "done.json"
    done = set(json.loads(done_path.read_text())) if done_path.exists() else set()
    order = np.argsort(lengths, kind="stable")
    chunks = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]
    t0 = time.time()
    n_done = 0
    torch.set_num_threads(args.threads)
    with torch.inference_mode():
        for c, idx in enumerate(chunks):
            if c in done:
                continue
            enc = tok(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=args.max_tokens,
                return_tensors="pt",
            )
            out = bert(**enc, output_hidden_states=True)
            for layer in layers:
                h = out.hidden_states[layer].to(torch.float16).numpy()
                for j, i in enumerate(idx):
                    stores[layer][offsets[i] : offsets[i + 1]] = h[j, : lengths[i]]
            done.add(c)
            n_done += len(idx)
            if c % 100 == 0 or c == len(chunks) - 1:
                for s in stores.values():
                    s.flush()
                done_path.write_text(json.dumps(sorted(done)))
                rate = n_done / max(time.time() - t0, 1e-9)
                print(f"chunk {c + 1}/{len(chunks)}  {rate:.0f} texts/s", flush=True)
    for s in stores.values():
        s.flush()
    done_path.write_text(json.dumps(sorted(done)))
    (work / "cache.json").write_text(
        json.dumps(
            {
                "layers": layers,
                "max_tokens": args.max_tokens,
                "strip_share": args.strip_share,
                "rows": len(rows),
                "tokens": total,
                "seconds": round(time.time() - t0, 1),
            }
        )
    )
    print(f"cached in {time.time() - t0:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--k", type=int, nargs="+", default=[2, 4])
    c.add_argument("--max-tokens", type=int, default=128)
    c.add_argument("--strip-share", type=float, default=0.3)
    c.add_argument("--batch", type=int, default=64)
    c.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    for p in (c,):
        p.add_argument("--work", default="/tmp/nlpseg-branch")
    args = ap.parse_args(argv)
    if args.cmd == "cache":
        cmd_cache(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
