"""``nlpseg train-sentiment``: fit a sentiment head on a user's own labelled reviews.

Training lives apart from the model it trains (:mod:`nlp_seg.models.sentiment_head`): the head
only knows how to fit, predict, save and load; this job reads the table, encodes the texts
exactly as ``nlpseg analyze`` does and writes the head's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nlp_seg.errors import InputError
from nlp_seg.models.sentiment_head import (
    BUNDLED_INPUT_LAYERS,
    DEFAULT_C,
    LABEL_COLUMN_NAMES,
    LABELS,
    SentimentHead,
    balanced_weights,
    bundled_lexicon,
    check_label_counts,
    parse_labels,
)


def train_from_table(
    input: str | Path,
    out: str | Path,
    *,
    text_col: str | None = None,
    label_col: str | None = None,
    encoding: str | None = None,
    embedding_model: str | None = None,
    kind: str = "logreg",
    C: float | None = None,
    use_emoji: bool = True,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 32,
    max_seq_length: int | None = 256,
    cache_dir: str | None = None,
    seed: int = 0,
    reporter: Any = None,
) -> dict[str, Any]:
    """Fit a head on one's own labelled reviews and write a folder for ``--sentiment-model``.

    Texts are normalised and embedded exactly as ``nlpseg analyze`` does (same encoder, same
    prefix, same normalisation), so the head sees at prediction time what it saw in training.
    A seeded 20% is held out to report macro-F1, then the head is refitted on every row.
    Returns a summary (rows used, label scheme, class counts, held-out macro-F1, output path).
    """
    from sklearn.metrics import f1_score

    from nlp_seg.io.read import detect_columns, find_by_name, read_table, require_column
    from nlp_seg.models.registry import BUNDLED_ENCODER
    from nlp_seg.normalize import STATUS_OK, normalize_texts
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    df = read_table(input, encoding=encoding)
    columns = list(map(str, df.columns))
    if label_col:
        label = require_column(df, label_col, "label")
    else:
        label = find_by_name(columns, LABEL_COLUMN_NAMES)
        if label is None:
            raise InputError(
                f"no label column found; name it with --label-col (columns: {', '.join(columns)})"
            )
    text = detect_columns(df.drop(columns=[label]), text_col=text_col).text
    norm = normalize_texts(df[text].tolist())
    keep = np.array([n.status == STATUS_OK for n in norm], dtype=bool)
    labels, scheme = parse_labels(df.loc[keep, label].tolist())
    texts = [n.text for n, k in zip(norm, keep, strict=True) if k]
    check_label_counts(labels)

    if embedding_model and Path(embedding_model).expanduser().is_dir():
        # record a folder absolutely, so the pipeline can match it from any working directory
        embedding_model = str(Path(embedding_model).expanduser().resolve())
    if kind == "branch" and (embedding_model or BUNDLED_ENCODER) != BUNDLED_ENCODER:
        raise InputError(
            "--kind branch fine-tunes the bundled encoder's sentiment branch: leave out "
            "--embedding-model, or use --kind logreg/mlp for another encoder"
        )
    cfg = SegmenterConfig(
        embedding_model=embedding_model or BUNDLED_ENCODER,
        device=device,
        precision=precision,
        batch_size=batch_size,
        max_seq_length=max_seq_length,
        cache_dir=cache_dir,
    )
    seg = Segmenter(cfg, reporter=reporter) if reporter is not None else Segmenter(cfg)
    embedder = seg.encoder.get_embedder()
    # On the bundled encoder, read the same hidden states as the shipped head (better than the
    # sentence embedding alone); on any other encoder, its sentence embedding.
    layers = BUNDLED_INPUT_LAYERS if cfg.embedding_model == BUNDLED_ENCODER else ()
    if kind == "branch":
        return _train_branch_from(
            texts,
            labels,
            out,
            embedder,
            seed,
            reporter,
            summary_base={
                "input": str(input),
                "text_column": text,
                "label_column": label,
                "label_scheme": scheme,
                "rows_skipped_empty_text": int((~keep).sum()),
            },
        )

    def features(progress: Any = None) -> np.ndarray:
        if layers:
            return embedder.embed_with_layers(texts, layers, progress=progress)[1]
        return embedder.embed(texts, progress=progress)

    if reporter is not None:
        with reporter.stage(f"Embedding {len(texts):,} texts", total=len(texts)) as advance:
            emb = features(advance)
    else:
        emb = features()
    lexicon = bundled_lexicon() if use_emoji else None
    use_emoji = bool(use_emoji and lexicon)
    c_value = float(C if C is not None else DEFAULT_C.get(kind, 1.0))
    weights = balanced_weights(labels, power=1.0)

    def make() -> SentimentHead:
        return SentimentHead(
            kind=kind,
            C=c_value,
            use_emoji=use_emoji,
            lexicon=lexicon,
            seed=seed,
            input_layers=layers,
        )

    rng = np.random.default_rng(seed)
    hold = np.zeros(len(labels), dtype=bool)
    hold[rng.permutation(len(labels))[: len(labels) // 5]] = True
    heldout_f1 = None
    if len(np.unique(labels[~hold])) == len(np.unique(labels)) and hold.sum() >= 10:
        probe = make().fit(emb[~hold], _sub(texts, ~hold), labels[~hold], weights[~hold])
        pred = probe.predict(emb[hold], _sub(texts, hold))
        heldout_f1 = float(f1_score(labels[hold], pred, labels=np.unique(labels), average="macro"))
    head = make().fit(emb, texts, labels, weights)
    classes, counts = np.unique(labels, return_counts=True)
    summary = {
        "input": str(input),
        "text_column": text,
        "label_column": label,
        "label_scheme": scheme,
        "rows_used": int(len(labels)),
        "rows_skipped_empty_text": int((~keep).sum()),
        "class_counts": {LABELS[int(c)]: int(k) for c, k in zip(classes, counts, strict=True)},
        "heldout_macro_f1": heldout_f1,
        "out": str(out),
    }
    head.save(
        out,
        extra_config={
            "embedding_model": cfg.embedding_model,
            "prefix": "query: " if cfg.embedding_model == BUNDLED_ENCODER else "",
            "training": {"source": "nlpseg train-sentiment", **summary},
            "metrics": {"heldout_20pct_macro_f1": heldout_f1},
        },
    )
    return summary


def _sub(texts: list[str], mask: np.ndarray) -> list[str]:
    return [t for t, m in zip(texts, mask, strict=True) if m]


def fine_tune_branch(
    texts: list[str],
    labels: np.ndarray,
    out: str | Path,
    *,
    embedder: Any,
    start_from: str | Path,
    epochs: float = 3.0,
    seed: int = 0,
    hold: np.ndarray | None = None,
    progress: Any = None,
) -> tuple[float | None, dict[str, Any]]:
    """Fine-tune the shipped branch (and its linear head) on a user's labelled texts.

    The encoder's lower layers run once (their states are cached in memory); only the branch
    trains. When ``hold`` marks held-out rows, a first run on the rest reports their macro-F1,
    then the branch is trained afresh on every row. Returns (held-out macro-F1, record).
    """
    from sklearn.metrics import f1_score

    from nlp_seg.models.branch_fit import (
        BranchClassifier,
        feature_statistics,
        fit_branch,
        lower_states,
        predict_logits,
        save_branch_head,
    )
    from nlp_seg.models.sentiment_branch import SentimentBranch
    from nlp_seg.models.sentiment_head import SentimentHead, emoji_features

    start = Path(start_from)
    base = SentimentHead.load(start)
    entry = base.config_["branch"]
    st = embedder.load()
    model_texts = [t.lower() for t in texts]
    states, pooled = lower_states(
        st,
        model_texts,
        int(entry["from_layer"]),
        progress=progress,
        pooled_layers=base.input_layers,
    )
    lexicon = base.lexicon or {}
    extra = np.hstack([pooled, emoji_features(model_texts, lexicon)]).astype(np.float32)
    weights = balanced_weights(labels, power=1.0)

    def fresh(rows: np.ndarray) -> BranchClassifier:
        # the shipped branch's weights, a new linear layer over [frozen layers, branch, emoji]
        branch = SentimentBranch.load(start, entry)
        n_frozen = pooled.shape[1]
        mean, scale = feature_statistics(branch, states, rows, extra, n_frozen, seed=seed)
        return BranchClassifier(branch, mean, scale, frozen_layers=base.input_layers)

    def train(rows: np.ndarray) -> tuple[BranchClassifier, dict[str, Any]]:
        model = fresh(rows)
        # a new linear layer needs a few hundred steps; small files get more epochs (<= 10)
        n_epochs = max(epochs, min(10.0, 200 * 16 / max(len(rows), 1)))
        rec = fit_branch(
            model,
            states,
            rows,
            labels[rows],
            weights[rows],
            extra[rows],
            epochs=n_epochs,
            batch_size=16,
            lr=3e-5,
            head_lr=3e-3,
            seed=seed,
            log=lambda _m: None,
        )
        return model, rec

    heldout = None
    all_rows = np.arange(len(labels))
    if hold is not None and hold.any():
        model, _ = train(all_rows[~hold])
        probs = predict_logits(model, states, all_rows[hold], extra)
        present = np.unique(labels)
        heldout = float(
            f1_score(labels[hold], probs.argmax(axis=1), labels=present, average="macro")
        )
    model, record = train(all_rows)
    save_branch_head(
        model,
        out,
        temperature=1.0,
        lexicon=lexicon or None,
        extra_config={"fine_tuned_from": str(start), "prefix": "query: "},
    )
    return heldout, record


def _train_branch_from(
    texts: list[str],
    labels: np.ndarray,
    out: str | Path,
    embedder: Any,
    seed: int,
    reporter: Any,
    summary_base: dict[str, Any],
) -> dict[str, Any]:
    """``--kind branch``: fine-tune the shipped branch; same hold-out and summary as a head."""
    from nlp_seg.models.registry import branch_head_path

    start = branch_head_path()
    rng = np.random.default_rng(seed)
    hold = np.zeros(len(labels), dtype=bool)
    hold[rng.permutation(len(labels))[: len(labels) // 5]] = True
    if len(np.unique(labels[~hold])) != len(np.unique(labels)) or hold.sum() < 10:
        hold[:] = False
    if reporter is not None:
        with reporter.stage(f"Fine-tuning on {len(texts):,} texts", total=len(texts)) as advance:
            heldout, record = fine_tune_branch(
                texts,
                labels,
                out,
                embedder=embedder,
                start_from=start,
                seed=seed,
                hold=hold,
                progress=advance,
            )
    else:
        heldout, record = fine_tune_branch(
            texts, labels, out, embedder=embedder, start_from=start, seed=seed, hold=hold
        )
    classes, counts = np.unique(labels, return_counts=True)
    return {
        **summary_base,
        "rows_used": int(len(labels)),
        "class_counts": {LABELS[int(c)]: int(k) for c, k in zip(classes, counts, strict=True)},
        "heldout_macro_f1": heldout,
        "kind": "branch",
        "steps": record.get("steps"),
        "out": str(out),
    }
