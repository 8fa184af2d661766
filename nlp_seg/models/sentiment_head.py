"""The sentiment head: a small classifier on the shared text embedding (the bundled profile).

Why a head and not a second transformer: the bundled encoder (multilingual-e5-small) already
reads every text once for clustering; a linear or one-hidden-layer classifier on that same
embedding adds microseconds per text, so sentiment costs no second encoder pass.

The head is sklearn-style (settings in ``__init__``, learned state in ``*_`` attributes,
``fit`` / ``predict_proba``). It is stored as ``head.safetensors`` (plain float arrays) plus
``config.json`` (label order, feature spec, the embedding model it was trained for, training
data, metrics) and ``emoji_lexicon.json``: nothing is pickled, so loading a head folder from
someone else cannot run code. Applying it is pure numpy and deterministic; training uses
scikit-learn.

Optional emoji features: emoji and emoticons carry much of the sentiment in short reviews and
tweets, and a 4-bit small encoder sees them only as rare pieces. The head can append a few
features from the Emoji Sentiment Ranking lexicon (Kralj Novak et al. 2015, CC BY-SA 4.0) and a
short emoticon list to the embedding.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlp_seg.errors import InputError, ModelUnavailableError

LABELS = ("negative", "neutral", "positive")
FORMAT = "nlpseg-sentiment-head"
FORMAT_VERSION = 1
WEIGHTS_FILE = "head.safetensors"
CONFIG_FILE = "config.json"
LEXICON_FILE = "emoji_lexicon.json"

# Emoticons typed as ASCII (and the Vietnamese/Asian ones common in reviews). Matched on
# token boundaries so "http://" or "a:b" do not count.
_POS_EMOTICONS = (
    r":-?\)+",
    r":-?D+",
    r"=\)+",
    r";-?\)+",
    r":-?[pP]",
    r"\^[_.-]?\^",
    r"<3+",
    r"xD+",
    r"=D",
)
_NEG_EMOTICONS = (r":-?\(+", r":'-?\(+", r"[tT]_[tT]", r"-_-+", r">:-?\(", r":-?\|", r"=\(+")
_POS_RE = re.compile(r"(?<!\S)(?:" + "|".join(_POS_EMOTICONS) + r")(?!\S)")
_NEG_RE = re.compile(r"(?<!\S)(?:" + "|".join(_NEG_EMOTICONS) + r")(?!\S)")
# Hidden states the shipped head reads: the last layer and three below it (12, 10, 8, 6 of the
# bundled 12-layer encoder). Measured on the dev splits, they lift UMSAB over the sentence
# embedding alone and are about even elsewhere (models/sentiment_head/README.md).
BUNDLED_INPUT_LAYERS = (-1, -3, -5, -7)
EMOJI_FEATURES = (
    "log1p_emoji_count",
    "emoji_mean_score",
    "emoji_mean_negative",
    "emoji_mean_positive",
    "log1p_positive_emoticons",
    "log1p_negative_emoticons",
)
_SKIP = {"\ufe0f", "\ufe0e", "\u200d"} | {chr(c) for c in range(0x1F3FB, 0x1F400)}


def emoji_features(texts: Sequence[str], lexicon: Mapping[str, Sequence[float]]) -> np.ndarray:
    """``(n, 6)`` emoji / emoticon polarity features (see :data:`EMOJI_FEATURES`).

    ``lexicon`` maps one emoji character to its ``[p_negative, p_neutral, p_positive]``.
    Texts without emoji get zeros, so the embedding alone decides for them.
    """
    out = np.zeros((len(texts), len(EMOJI_FEATURES)), dtype=np.float64)
    for i, text in enumerate(texts):
        text = text or ""
        hits = [lexicon[ch] for ch in text if ch not in _SKIP and ch in lexicon]
        if hits:
            arr = np.asarray(hits, dtype=np.float64)
            out[i, 0] = math.log1p(len(hits))
            out[i, 1] = float((arr[:, 2] - arr[:, 0]).mean())
            out[i, 2] = float(arr[:, 0].mean())
            out[i, 3] = float(arr[:, 2].mean())
        out[i, 4] = math.log1p(len(_POS_RE.findall(text)))
        out[i, 5] = math.log1p(len(_NEG_RE.findall(text)))
    return out


def bundled_lexicon() -> dict[str, list[float]]:
    """The emoji lexicon shipped with the bundled head (so user-trained heads reuse it)."""
    from nlp_seg.models.registry import bundled_head_path

    path = bundled_head_path() / LEXICON_FILE
    if not path.exists():
        return {}
    return _read_lexicon(path)


def _read_lexicon(path: Path) -> dict[str, list[float]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    table = data.get("emoji", data) if isinstance(data, dict) else {}
    return {str(k): [float(x) for x in v] for k, v in table.items() if len(v) == 3}


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def balanced_weights(
    labels: np.ndarray, groups: Sequence[str] | None = None, power: float = 1.0
) -> np.ndarray:
    """Sample weights giving every group (source corpus) and every class within it equal pull.

    ``power`` < 1 tempers the correction (0 = plain counts), useful when a class is so rare
    (UIT-VSFC's 4% neutral) that full balancing trades too much precision for recall.
    """
    labels = np.asarray(labels)
    groups_arr = np.asarray(groups if groups is not None else ["all"] * len(labels), dtype=object)
    w = np.zeros(len(labels), dtype=np.float64)
    uniq_groups = list(dict.fromkeys(groups_arr.tolist()))
    for g in uniq_groups:
        gm = groups_arr == g
        classes, counts = np.unique(labels[gm], return_counts=True)
        for c, k in zip(classes, counts, strict=True):
            cm = gm & (labels == c)
            # equal share per group, then per class within the group (tempered)
            w[cm] = (1.0 / len(uniq_groups)) * ((gm.sum() / (len(classes) * k)) ** power) / gm.sum()
    return w * (len(labels) / w.sum())


class SentimentHead:
    """Negative / neutral / positive from a text embedding (+ optional emoji features).

    Parameters
    ----------
    kind:
        ``"logreg"`` (multinomial logistic regression) or ``"mlp"`` (one hidden ReLU layer).
    C:
        Inverse L2 strength for ``logreg``; for ``mlp`` the L2 penalty is ``alpha = 1 / C``.
    hidden:
        Hidden width for ``mlp``.
    ensemble:
        For ``mlp``: fit this many networks from consecutive seeds and average their logits.
        One MLP's dev scores move by several points between seeds (early stopping on a random
        10%); the average is steadier. It is stored as one MLP of width ``hidden * ensemble``
        (concatenated hidden units, output weights divided by ``ensemble``): the same logits,
        the same file format.
    use_emoji:
        Append :func:`emoji_features` (needs ``lexicon``).
    calibrate:
        Fit a softmax temperature on a seeded 10% of the training rows (then refit on all), so
        ``sentiment_confidence`` means what it says.
    seed:
        Makes the fit reproducible.
    input_layers:
        What the "embedding" input is: empty for the sentence embedding itself, or the encoder
        hidden-state indices whose mean-pooled, L2-normalised vectors are concatenated (see
        :meth:`~nlp_seg.models.embedding.SentenceTransformerEmbedder.embed_with_layers`).
        Recorded in
        ``config.json`` so the pipeline feeds the head what it was trained on.
    """

    def __init__(
        self,
        kind: str = "logreg",
        C: float = 1.0,
        hidden: int = 256,
        ensemble: int = 1,
        use_emoji: bool = True,
        lexicon: Mapping[str, Sequence[float]] | None = None,
        calibrate: bool = True,
        max_iter: int = 300,
        seed: int = 0,
        input_layers: Sequence[int] = (),
    ) -> None:
        self.kind = kind
        self.C = C
        self.hidden = hidden
        self.ensemble = ensemble
        self.use_emoji = use_emoji
        self.lexicon = lexicon
        self.calibrate = calibrate
        self.max_iter = max_iter
        self.seed = seed
        self.input_layers = tuple(int(i) for i in input_layers)

    # ------------------------------------------------------------------ features
    def _features(self, embeddings: np.ndarray, texts: Sequence[str] | None) -> np.ndarray:
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"embeddings must be 2-D, got shape {x.shape}")
        if not self.use_emoji:
            return x
        if texts is None or len(texts) != len(x):
            raise ValueError("this head uses emoji features: pass the texts with the embeddings")
        return np.hstack([x, emoji_features(list(texts), self.lexicon or {})])

    # ------------------------------------------------------------------ training
    def fit(
        self,
        embeddings: np.ndarray,
        texts: Sequence[str] | None,
        labels: Sequence[int],
        sample_weight: np.ndarray | None = None,
    ) -> SentimentHead:
        """Fit on embeddings with labels 0 negative, 1 neutral, 2 positive."""
        y = np.asarray(labels, dtype=np.int64)
        x = self._features(embeddings, texts)
        if len(x) != len(y):
            raise ValueError("embeddings and labels differ in length")
        if set(np.unique(y).tolist()) - {0, 1, 2}:
            raise ValueError("labels must be 0 (negative), 1 (neutral) or 2 (positive)")
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        self.temperature_ = 1.0
        if self.calibrate and len(y) >= 200:
            rng = np.random.default_rng(self.seed)
            hold = np.zeros(len(y), dtype=bool)
            hold[rng.permutation(len(y))[: max(20, len(y) // 10)]] = True
            if len(np.unique(y[~hold])) == len(np.unique(y)):
                self._fit_core(x[~hold], y[~hold], w[~hold])
                self.temperature_ = _fit_temperature(self._logits(x[hold]), y[hold], w[hold])
        self._fit_core(x, y, w)
        return self

    def _fit_core(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> None:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-8] = 1.0
        z = (x - mean) / scale
        present = np.unique(y)
        if self.kind == "logreg":
            from sklearn.linear_model import LogisticRegression

            clf = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=1e-5)
            clf.fit(z, y, sample_weight=w)
            coef, intercept = clf.coef_, clf.intercept_
            if len(present) == 2:  # sklearn keeps one row for two classes
                coef = np.vstack([-coef[0] / 2, coef[0] / 2])
                intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
            layers = [(_expand(coef.T, present, axis=1), _expand(intercept, present, axis=0))]
        elif self.kind == "mlp":
            from sklearn.neural_network import MLPClassifier

            members = []
            for k in range(max(1, int(self.ensemble))):
                clf = MLPClassifier(
                    hidden_layer_sizes=(self.hidden,),
                    alpha=1.0 / self.C,
                    max_iter=self.max_iter,
                    early_stopping=True,
                    n_iter_no_change=8,
                    random_state=self.seed + k,
                )
                clf.fit(z, y, sample_weight=w)
                w2, b2 = clf.coefs_[1], clf.intercepts_[1]
                if len(present) == 2:  # a single logistic output unit
                    w2 = np.hstack([-w2 / 2, w2 / 2])
                    b2 = np.array([-b2[0] / 2, b2[0] / 2])
                members.append(
                    (
                        clf.coefs_[0],
                        clf.intercepts_[0],
                        _expand(w2, present, axis=1),
                        _expand(b2, present, axis=0),
                    )
                )
            n = len(members)
            layers = [
                (np.hstack([m[0] for m in members]), np.concatenate([m[1] for m in members])),
                (np.vstack([m[2] for m in members]) / n, np.mean([m[3] for m in members], axis=0)),
            ]
        else:
            raise ValueError(f"unknown head kind {self.kind!r}; use 'logreg' or 'mlp'")
        # Parameters are held at float32 precision (what head.safetensors stores), so a saved
        # and reloaded head predicts exactly what the fitted one did.
        self.mean_ = _f32(mean)
        self.scale_ = _f32(scale)
        self.layers_ = [(_f32(a), _f32(b)) for a, b in layers]
        self.classes_seen_ = [int(c) for c in present]

    # ------------------------------------------------------------------ inference
    def _logits(self, x: np.ndarray) -> np.ndarray:
        h = (x - self.mean_) / self.scale_
        for i, (w, b) in enumerate(self.layers_):
            h = h @ w + b
            if i < len(self.layers_) - 1:
                h = np.maximum(h, 0.0)
        return h

    def predict_proba(
        self, embeddings: np.ndarray, texts: Sequence[str] | None = None
    ) -> np.ndarray:
        """``(n, 3)`` probabilities ordered ``[negative, neutral, positive]`` (pure numpy)."""
        if not hasattr(self, "layers_"):
            raise ValueError("the head is not fitted")
        x = self._features(embeddings, texts)
        if x.shape[0] == 0:
            return np.zeros((0, 3))
        if x.shape[1] != self.mean_.shape[0]:
            raise HeadInputError(
                f"the sentiment head expects {self.mean_.shape[0] - self._n_extra()} input "
                f"features per text but the encoder gave {x.shape[1] - self._n_extra()}: it was "
                "trained on another encoder or other layers; pass its --embedding-model"
            )
        if x.shape[1] != self.mean_.shape[0]:
            raise ValueError(
                f"the head expects {self.mean_.shape[0] - self._n_extra()}-dim embeddings, got "
                f"{np.asarray(embeddings).shape[1]}: was it trained for another encoder?"
            )
        return _softmax(self._logits(x) / self.temperature_)

    def predict(self, embeddings: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
        """Class ids (0 negative, 1 neutral, 2 positive)."""
        return self.predict_proba(embeddings, texts).argmax(axis=1)

    def _n_extra(self) -> int:
        return len(EMOJI_FEATURES) if self.use_emoji else 0

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, extra_config: Mapping[str, Any] | None = None) -> Path:
        """Write ``head.safetensors``, ``config.json`` and ``emoji_lexicon.json`` to ``path``."""
        from safetensors.numpy import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {"scaler.mean": self.mean_, "scaler.scale": self.scale_}
        for i, (w, b) in enumerate(self.layers_):
            tensors[f"layer{i}.weight"] = np.ascontiguousarray(w)
            tensors[f"layer{i}.bias"] = np.ascontiguousarray(b)
        save_file({k: v.astype(np.float32) for k, v in tensors.items()}, str(out / WEIGHTS_FILE))
        cfg: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "labels": list(LABELS),
            "kind": self.kind,
            "n_layers": len(self.layers_),
            "activation": "relu",
            "temperature": float(self.temperature_),
            "classes_seen": self.classes_seen_,
            "features": {
                "embedding_dim": int(self.mean_.shape[0] - self._n_extra()),
                "input_layers": list(self.input_layers),
                "emoji": bool(self.use_emoji),
                "emoji_features": list(EMOJI_FEATURES) if self.use_emoji else [],
                "text_normalization": "nlp_seg.normalize.normalize_texts",
            },
            "hyperparameters": {
                "C": self.C,
                "hidden": self.hidden,
                "ensemble": self.ensemble,
                "seed": self.seed,
            },
            "embedding_model": "bundled:multilingual-e5-small",
            "prefix": "query: ",
        }
        cfg.update(dict(extra_config or {}))
        (out / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
        if self.use_emoji:
            lex = {
                "source": "Emoji Sentiment Ranking v1.0 (Kralj Novak et al. 2015), CC BY-SA 4.0",
                "columns": ["p_negative", "p_neutral", "p_positive"],
                "emoji": {
                    k: [round(float(x), 4) for x in v] for k, v in (self.lexicon or {}).items()
                },
            }
            (out / LEXICON_FILE).write_text(json.dumps(lex, ensure_ascii=False) + "\n")
        self.config_ = cfg
        return out

    @classmethod
    def load(cls, path: str | Path) -> SentimentHead:
        """Read a head folder written by :meth:`save` (no pickle, no code execution)."""
        from safetensors.numpy import load_file

        folder = Path(path)
        cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        if not cfg_path.exists() or not w_path.exists():
            raise ModelUnavailableError(
                f"{folder} is not a sentiment-head folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})"
            )
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            tensors = load_file(str(w_path))
        except Exception as exc:  # noqa: BLE001 - corrupt file -> one clear line
            raise ModelUnavailableError(f"cannot read sentiment head in {folder}: {exc}") from exc
        if cfg.get("format") != FORMAT or list(cfg.get("labels", [])) != list(LABELS):
            raise ModelUnavailableError(f"{folder} is not an nlpseg sentiment head (format/labels)")
        feats = cfg.get("features", {})
        use_emoji = bool(feats.get("emoji", False))
        lexicon = _read_lexicon(folder / LEXICON_FILE) if use_emoji else None
        if use_emoji and not lexicon:
            raise ModelUnavailableError(f"{folder} uses emoji features but has no {LEXICON_FILE}")
        hp = cfg.get("hyperparameters", {})
        head = cls(
            kind=cfg.get("kind", "logreg"),
            C=float(hp.get("C", 1.0)),
            hidden=int(hp.get("hidden", 256)),
            ensemble=int(hp.get("ensemble", 1)),
            use_emoji=use_emoji,
            lexicon=lexicon,
            seed=int(hp.get("seed", 0)),
            input_layers=[int(i) for i in feats.get("input_layers", [])],
        )
        _check_arrays(folder, cfg, tensors, head._n_extra())
        head.mean_ = tensors["scaler.mean"].astype(np.float64)
        head.scale_ = tensors["scaler.scale"].astype(np.float64)
        head.layers_ = [
            (
                tensors[f"layer{i}.weight"].astype(np.float64),
                tensors[f"layer{i}.bias"].astype(np.float64),
            )
            for i in range(int(cfg.get("n_layers", 1)))
        ]
        head.temperature_ = float(cfg.get("temperature", 1.0))
        head.classes_seen_ = [int(c) for c in cfg.get("classes_seen", [0, 1, 2])]
        head.config_ = cfg
        return head


class HeadInputError(ModelUnavailableError, ValueError):
    """Features of the wrong width for a head (another encoder or other layers)."""


def _check_arrays(
    folder: Path, cfg: Mapping[str, Any], tensors: Mapping[str, np.ndarray], n_extra: int
) -> None:
    """The config and the arrays describe one network: every layer the config names is there,
    with shapes that chain from the input features to the classes seen."""
    n_layers = int(cfg.get("n_layers", 1))
    wanted = ["scaler.mean", "scaler.scale"] + [
        f"layer{i}.{part}" for i in range(n_layers) for part in ("weight", "bias")
    ]
    missing = [k for k in wanted if k not in tensors]
    extra = sorted(set(tensors) - set(wanted))
    if missing or extra:
        raise ModelUnavailableError(
            f"sentiment head in {folder}: config and {WEIGHTS_FILE} disagree (n_layers="
            f"{n_layers}; missing {missing or 'none'}, unexpected {extra or 'none'})"
        )
    dim = tensors["scaler.mean"].shape
    declared = cfg.get("features", {}).get("embedding_dim")
    width = dim[0] if len(dim) == 1 else -1
    if tensors["scaler.scale"].shape != dim or (
        declared is not None and int(declared) + n_extra != width
    ):
        raise ModelUnavailableError(
            f"sentiment head in {folder}: its input width {width} does not match the config "
            f"(embedding_dim {declared} + {n_extra} emoji features)"
        )
    for i in range(n_layers):
        w, b = tensors[f"layer{i}.weight"], tensors[f"layer{i}.bias"]
        if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
            raise ModelUnavailableError(
                f"sentiment head in {folder}: layer {i} has shape {w.shape} after a layer of "
                f"width {width}"
            )
        width = w.shape[1]
    classes = cfg.get("classes_seen", [0, 1, 2])
    if width not in (len(classes), len(LABELS)) or len(classes) > len(LABELS):
        raise ModelUnavailableError(
            f"sentiment head in {folder}: {width} outputs for {len(classes)} classes seen"
        )


def _expand(arr: np.ndarray, present: np.ndarray, axis: int) -> np.ndarray:
    """Widen per-class weights to all three classes; an unseen class gets a very low bias."""
    if len(present) == 3:
        return arr
    shape = list(arr.shape)
    shape[axis] = 3
    full = np.zeros(shape) if arr.ndim == 2 else np.full(3, -30.0)
    for j, c in enumerate(present):
        if arr.ndim == 2:
            full[:, c] = arr[:, j]
        else:
            full[c] = arr[j]
    return full


def _f32(arr: np.ndarray) -> np.ndarray:
    return np.asarray(arr, dtype=np.float32).astype(np.float64)


def _fit_temperature(logits: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """The softmax temperature minimising weighted log-loss on held-out rows."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        p = _softmax(logits / math.exp(log_t))
        return float(-(w * np.log(p[np.arange(len(y)), y] + 1e-12)).sum() / w.sum())

    res = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(math.exp(res.x))


# --------------------------------------------------------------------------- user retraining

LABEL_COLUMN_NAMES = ("label", "labels", "sentiment", "polarity", "stars", "star", "rating")
_NAMED = {
    "negative": 0,
    "neg": 0,
    "neutral": 1,
    "neu": 1,
    "positive": 2,
    "pos": 2,
    "tiêu cực": 0,
    "trung tính": 1,
    "tích cực": 2,
}
MIN_ROWS = 30
# Chosen on the dev splits for the bundled head (see its model card); logreg is the default
# for user data, which is usually small, where the MLP overfits more easily.
DEFAULT_C = {"logreg": 0.03, "mlp": 3.0}
MIN_PER_CLASS = 5


def parse_labels(values: Sequence[Any]) -> tuple[np.ndarray, str]:
    """Map a label column onto 0 negative / 1 neutral / 2 positive; say which scheme was read.

    Accepted: names (negative/neutral/positive, neg/neu/pos), ``0/1/2`` (any column holding a
    0), or ``1-5`` stars (1-2 negative, 3 neutral, 4-5 positive). Anything else is an error
    naming the offending values, so a typo never silently becomes a class.
    """
    raw = ["" if v is None or (isinstance(v, float) and v != v) else str(v).strip() for v in values]
    if any(r == "" for r in raw):
        raise InputError(f"{sum(r == '' for r in raw)} rows have no label; fill or remove them")
    lowered = [r.lower() for r in raw]
    if all(r in _NAMED for r in lowered):
        return np.array([_NAMED[r] for r in lowered]), "names"
    if any(r in _NAMED for r in lowered):  # a named scheme with typos: name only the typos
        odd = [r for r, lo in zip(raw, lowered, strict=True) if lo not in _NAMED]
        shown = ", ".join(repr(b) for b in list(dict.fromkeys(odd))[:5])
        raise InputError(
            f"unknown sentiment labels {shown}; use negative/neutral/positive, 0/1/2 or 1-5 stars"
        )
    nums: list[int] = []
    bad: list[str] = []
    for r in raw:
        try:
            f = float(r)
        except ValueError:
            bad.append(r)
            continue
        if f != int(f):
            bad.append(r)
        else:
            nums.append(int(f))
    if bad:
        shown = ", ".join(repr(b) for b in list(dict.fromkeys(bad))[:5])
        raise InputError(
            f"unknown sentiment labels {shown}; use negative/neutral/positive, 0/1/2 or 1-5 stars"
        )
    uniq = set(nums)
    if 0 in uniq and uniq <= {0, 1, 2}:
        return np.array(nums), "0/1/2"
    if uniq <= {1, 2, 3, 4, 5} and 0 not in uniq:
        arr = np.array(nums)
        return np.where(arr <= 2, 0, np.where(arr == 3, 1, 2)), "1-5 stars"
    raise InputError(f"numeric labels {sorted(uniq)[:8]} are neither 0/1/2 nor 1-5 stars")


def check_label_counts(labels: np.ndarray) -> None:
    """Refuse data too small to learn from, with a message that says what is missing."""
    if len(labels) < MIN_ROWS:
        raise InputError(f"too few labelled rows to train a head: {len(labels)} (need {MIN_ROWS})")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise InputError(f"every row has the label {LABELS[int(classes[0])]!r}; need two classes")
    few = [
        f"{LABELS[int(c)]} ({int(k)})"
        for c, k in zip(classes, counts, strict=True)
        if k < MIN_PER_CLASS
    ]
    if few:
        raise InputError(
            f"too few rows for {', '.join(few)}: need at least {MIN_PER_CLASS} per class present"
        )
