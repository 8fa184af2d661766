"""Train the bundled sentiment *branch* (issue 14) on ``../shared/data/sentiment``.

Three steps, each resumable::

    python scripts/train_sentiment_branch.py cache            # lower layers once, to disk
    python scripts/train_sentiment_branch.py train --k 2      # fine-tune the branch (checkpoints)
    python scripts/train_sentiment_branch.py write --k 2      # calibrate, save the head folder

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
        [
            min(len(ids), args.max_tokens)
            for ids in tok(texts, truncation=True, max_length=args.max_tokens)["input_ids"]
        ]
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


# --------------------------------------------------------------------------- training


def load_cache(work: Path, from_layer: int):
    from nlp_seg.models.branch_fit import TokenStates

    rows = [json.loads(line) for line in (work / "rows.jsonl").open(encoding="utf-8")]
    offsets = np.load(work / "offsets.npy")
    flat = np.memmap(
        work / f"hidden{from_layer}.f16", dtype=np.float16, mode="r", shape=(int(offsets[-1]), 384)
    )
    return rows, TokenStates(flat=flat, offsets=offsets)


def pooled_states(work: Path, layer: int, offsets: np.ndarray) -> np.ndarray:
    """Mean-pooled, L2-normalised cached states of ``layer`` per text (cached to disk)."""
    path = work / f"pooled{layer}.npy"
    if path.exists():
        return np.load(path)
    flat = np.memmap(work / f"hidden{layer}.f16", dtype=np.float16, mode="r")
    flat = flat.reshape(-1, 384)
    out = np.zeros((len(offsets) - 1, 384), dtype=np.float32)
    step = 4096
    for s in range(0, len(out), step):
        a, b = offsets[s], offsets[min(s + step, len(out))]
        block = np.asarray(flat[a:b], dtype=np.float32)
        sums = np.add.reduceat(block, offsets[s : min(s + step, len(out))] - a, axis=0)
        out[s : s + len(sums)] = sums / np.diff(offsets[s : s + len(sums) + 1])[:, None]
    out /= np.linalg.norm(out, axis=1, keepdims=True).clip(1e-9)
    np.save(path, out)
    return out


def macro_f1_table(rows: list[dict], dev: np.ndarray, probs: np.ndarray) -> dict:
    """Per part and per dataset dev macro-F1 (AIVIVN binary), as scripts/eval_sentiment.py."""
    from sklearn.metrics import f1_score

    parts: dict[str, list[int]] = {}
    for j, i in enumerate(dev):
        parts.setdefault(rows[i]["part"], []).append(j)
    out_parts = {}
    for key, js in parts.items():
        y = np.array([rows[dev[j]]["label"] for j in js])
        p = probs[js]
        if key.startswith("aivivn"):
            pred = np.where(p[:, 0] > p[:, 2], 0, 2)
            f1 = f1_score(y, pred, labels=[0, 2], average="macro")
        else:
            f1 = f1_score(y, p.argmax(axis=1), labels=[0, 1, 2], average="macro")
        out_parts[key] = {"n": len(js), "macro_f1": round(float(f1), 4)}
    datasets: dict[str, list[float]] = {}
    for key, r in out_parts.items():
        datasets.setdefault(
            key.split("-")[0] if not key.startswith("uit-vsfc") else "uit-vsfc", []
        ).append(r["macro_f1"])
    summary = {d: round(float(np.mean(v)), 4) for d, v in datasets.items()}
    score = float(np.mean([summary[d] for d in ("umsab", "uit-vsfc", "aivivn", "marc")]))
    return {"parts": out_parts, "datasets": summary, "score": round(score, 4)}


def setup(args):
    from nlp_seg.models.branch_fit import BranchClassifier, feature_statistics
    from nlp_seg.models.embedding import SentenceTransformerEmbedder
    from nlp_seg.models.sentiment_branch import SentimentBranch
    from nlp_seg.models.sentiment_head import balanced_weights, bundled_lexicon, emoji_features

    work = Path(args.work)
    rows, states = load_cache(work, 12 - args.k)
    lexicon = bundled_lexicon()
    extra = emoji_features([r["text"] for r in rows], lexicon).astype(np.float32)
    # Frozen layers' pooled states beside the branch (what the frozen head read): free at
    # inference, since the encoder computes them in the same pass.
    frozen = tuple(args.frozen)
    if frozen:
        pools = [pooled_states(work, 13 + i, states.offsets) for i in frozen]
        extra = np.hstack([*pools, extra]).astype(np.float32)
    split = np.array([r["split"] for r in rows])
    train_all = np.flatnonzero(split == "train")
    rng = np.random.default_rng(args.seed)
    calib = np.zeros(len(rows), dtype=bool)
    calib[rng.choice(train_all, size=int(len(train_all) * 0.04), replace=False)] = True
    train = np.flatnonzero((split == "train") & ~calib)
    if args.max_train:
        train = np.sort(rng.choice(train, size=min(args.max_train, len(train)), replace=False))
    dev = np.flatnonzero(split == "dev")
    labels = np.array([r["label"] for r in rows])
    groups = [rows[i]["group"] for i in train]
    w = np.zeros(len(rows), dtype=np.float32)
    w[train] = balanced_weights(labels[train], groups, power=args.power)
    w[calib] = balanced_weights(labels[calib], [rows[i]["group"] for i in np.flatnonzero(calib)])
    bert = SentenceTransformerEmbedder(device="cpu").load()[0].auto_model
    branch = SentimentBranch.from_encoder(bert, args.k)
    mean, scale = feature_statistics(branch, states, train, extra, 384 * len(frozen))
    model = BranchClassifier(branch, mean, scale, frozen_layers=frozen)
    return work, rows, states, extra, labels, w, train, np.flatnonzero(calib), dev, model, lexicon


def cmd_train(args) -> None:
    import torch

    from nlp_seg.models.branch_fit import fit_branch, predict_logits
    from nlp_seg.models.sentiment_head import _softmax  # noqa: PLC2701 - script-side reuse

    torch.set_num_threads(args.threads)
    work, rows, states, extra, labels, w, train, calib, dev, model, _ = setup(args)
    tag = f"k{args.k}{args.tag}"
    print(f"train {len(train):,} rows, dev {len(dev):,}, calibration {len(calib):,}", flush=True)
    history = []

    def evaluate(m) -> float:
        res = macro_f1_table(
            rows, dev, _softmax(predict_logits(m, states, dev, extra, bf16=args.bf16))
        )
        history.append(res)
        print(json.dumps(res["datasets"]), res["score"], flush=True)
        return res["score"]

    record = fit_branch(
        model,
        states,
        train,
        labels[train],
        w[train],
        extra[train],
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        seed=args.seed,
        bf16=args.bf16,
        checkpoint=work / f"ckpt-{tag}.safetensors",
        every=100,
        evaluate=evaluate,
        eval_every=args.eval_every,
    )
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in model.state().items()}, str(work / f"best-{tag}.safetensors")
    )
    (work / f"result-{tag}.json").write_text(
        json.dumps({"args": vars(args), "record": record, "history": history}, indent=1)
    )
    print(
        f"best {record.get('best_score')} after {record['steps']} steps, {record['seconds']:.0f} s"
    )


def cmd_write(args) -> None:
    from safetensors.torch import load_file

    from nlp_seg.models.branch_fit import predict_logits, save_branch_head
    from nlp_seg.models.sentiment_head import _fit_temperature, _softmax  # noqa: PLC2701

    work, rows, states, extra, labels, w, train, calib, dev, model, lexicon = setup(args)
    tag = f"k{args.k}{args.tag}"
    model.load_state(load_file(str(work / f"best-{tag}.safetensors")))
    logits = predict_logits(model, states, calib, extra)
    temperature = _fit_temperature(
        logits.astype(np.float64), labels[calib], w[calib].astype(np.float64)
    )
    dev_res = macro_f1_table(
        rows, dev, _softmax(predict_logits(model, states, dev, extra) / temperature)
    )
    result = json.loads((work / f"result-{tag}.json").read_text())
    counts: dict[str, int] = {}
    for i in train:
        key = rows[i]["part"] + ("+stripped" if rows[i]["variant"] == "stripped" else "")
        counts[key] = counts.get(key, 0) + 1
    out = save_branch_head(
        model,
        args.out,
        temperature=temperature,
        lexicon=lexicon,
        extra_config={
            "version": 4,
            "training": {
                "script": "scripts/train_sentiment_branch.py",
                "rows": counts,
                "max_tokens": json.loads((work / "cache.json").read_text())["max_tokens"],
                "epochs": result["args"]["epochs"],
                "lr": result["args"]["lr"],
                "batch": result["args"]["batch"],
                "balancing_power": result["args"]["power"],
                "seconds": round(result["record"]["seconds"]),
                "evaluations": result["record"]["evaluations"],
            },
            "dev": dev_res,
        },
    )
    print(f"wrote {out}: T={temperature:.3f}", json.dumps(dev_res["datasets"]), dev_res["score"])


def branch_and_top_features(model, states, rows, bert, batch: int = 128) -> np.ndarray:
    """Per row: the original top layers' pooled, L2-normalised output (hidden state 12, what the
    sentence embedding pools) and the fine-tuned branch's pooled output, from the cached
    states at the branch's attachment point."""
    import torch

    from nlp_seg.models.sentiment_branch import SentimentBranch

    top = SentimentBranch(
        model.branch.from_layer, bert.encoder.layer[model.branch.from_layer :], model.branch.spec
    )
    out = np.zeros((len(rows), 2 * 384), dtype=np.float32)
    order = np.argsort(states.length(rows), kind="stable")
    model.train(False)
    with torch.inference_mode():
        for s in range(0, len(order), batch):
            j = order[s : s + batch]
            h, m = states.batch(rows[j])
            a = torch.nn.functional.normalize(top.pool(h, m).float(), dim=1)
            out[j] = torch.cat([a, model.branch.pool(h, m).float()], dim=1).numpy()
            if s % (batch * 50) == 0:
                print(f"features {s}/{len(rows)}", flush=True)
    return out


def cmd_mlp(args) -> None:
    """A head in the frozen head's style (MLP ensemble) on the frozen layers *and* the trained
    branch: the fine-tuned branch gives new evidence, the MLP combines it non-linearly."""
    import torch
    from safetensors.torch import load_file

    from nlp_seg.models.embedding import SentenceTransformerEmbedder
    from nlp_seg.models.sentiment_head import SentimentHead

    torch.set_num_threads(args.threads)
    work, rows, states, extra, labels, w, train, calib, dev, model, lexicon = setup(args)
    tag = f"k{args.k}{args.tag}"
    model.load_state(load_file(str(work / f"best-{tag}.safetensors")))
    bert = SentenceTransformerEmbedder(device="cpu").load()[0].auto_model
    every = np.concatenate([train, calib, dev])
    feats = np.zeros((len(rows), 768), dtype=np.float32)
    feats[every] = branch_and_top_features(model, states, every, bert)
    p10 = pooled_states(work, 10, states.offsets)
    p8 = pooled_states(work, 8, states.offsets)
    # the pipeline's order: input layers (-1, -3, -5) pooled, then the branch; emoji appended
    x = np.hstack([feats[:, :384], p10, p8, feats[:, 384:]])
    texts = [r["text"] for r in rows]
    fit_rows = np.concatenate([train, calib])
    groups = [rows[i]["group"] for i in fit_rows]
    from nlp_seg.models.sentiment_head import balanced_weights

    head = SentimentHead(
        kind="mlp",
        C=args.C,
        hidden=256,
        ensemble=3,
        use_emoji=True,
        lexicon=lexicon,
        input_layers=(-1, -3, -5),
        seed=args.seed,
    )
    t0 = time.time()
    head.fit(
        x[fit_rows],
        [texts[i] for i in fit_rows],
        labels[fit_rows],
        balanced_weights(labels[fit_rows], groups, power=args.power),
    )
    print(f"MLP fitted in {time.time() - t0:.0f} s", flush=True)
    probs = head.predict_proba(x[dev], [texts[i] for i in dev])
    dev_res = macro_f1_table(rows, dev, probs)
    print(json.dumps(dev_res["datasets"]), dev_res["score"], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    entry = model.branch.save(out)
    result = json.loads((work / f"result-{tag}.json").read_text())
    head.save(
        out,
        extra_config={
            "version": 4,
            "branch": entry,
            "lowercase": True,
            "training": {
                "script": "scripts/train_sentiment_branch.py (train, then mlp)",
                "train_rows": int(len(fit_rows)),
                "stripped_vi_rows": int(sum(rows[i]["variant"] == "stripped" for i in fit_rows)),
                "max_tokens": json.loads((work / "cache.json").read_text())["max_tokens"],
                "branch_epochs": result["args"]["epochs"],
                "branch_lr": result["args"]["lr"],
                "branch_seconds": round(result["record"]["seconds"]),
                "branch_evaluations": result["record"]["evaluations"],
                "mlp_seconds": round(time.time() - t0),
                "balancing_power": args.power,
            },
            "dev_cached_states": dev_res,
        },
    )
    for f in out.iterdir():
        f.chmod(0o644)
    print(f"wrote {out}")


def cmd_reference(args) -> None:
    """Record the shipped head's probabilities on bundled example texts through the pipeline
    (tests/test_sentiment_branch.py checks the shipped files still give them)."""
    import pandas as pd

    from nlp_seg.normalize import normalize_texts
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    repo = Path(__file__).resolve().parent.parent
    df = pd.read_csv(repo / "examples" / "reviews.csv")
    texts = [n.text for n in normalize_texts(df["review"].dropna().astype(str).tolist()[:16])]
    texts += ["tốt cái gì mà tốt", "Đã nhận hàng.", "great phone", "GREAT PHONE"]
    seg = Segmenter(SegmenterConfig(sentiment_model="bundled:sentiment-branch"))
    probs = seg.encoder.encode(texts)[1]
    out = repo / "tests" / "data" / "branch_reference.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"texts": texts, "probabilities": np.round(probs, 5).tolist()},
            ensure_ascii=False,
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--k", type=int, nargs="+", default=[2, 4])
    c.add_argument("--max-tokens", type=int, default=128)
    c.add_argument("--strip-share", type=float, default=0.3)
    c.add_argument("--batch", type=int, default=64)
    c.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    t = sub.add_parser("train")
    w = sub.add_parser("write")
    mlp = sub.add_parser("mlp")
    sub.add_parser("reference")
    mlp.add_argument("--C", type=float, default=3.0)
    for p in (t, w, mlp):
        p.add_argument("--k", type=int, default=2)
        p.add_argument("--epochs", type=float, default=2.0)
        p.add_argument("--batch", type=int, default=32)
        p.add_argument("--lr", type=float, default=5e-5)
        p.add_argument("--power", type=float, default=1.0)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--max-train", type=int, default=0)
        p.add_argument("--eval-every", type=int, default=0)
        p.add_argument("--bf16", action="store_true")
        p.add_argument("--frozen", type=int, nargs="*", default=[], help="e.g. -3 -5")
        p.add_argument("--tag", default="")
        p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    for p in (w, mlp):
        p.add_argument(
            "--out",
            default=str(Path(__file__).resolve().parent.parent / "models" / "sentiment_branch"),
        )
    for p in (c, t, w, mlp):
        p.add_argument("--work", default="/tmp/nlpseg-branch")
    args = ap.parse_args(argv)
    {
        "cache": cmd_cache,
        "train": cmd_train,
        "write": cmd_write,
        "mlp": cmd_mlp,
        "reference": cmd_reference,
    }[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
