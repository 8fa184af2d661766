"""The segmenter: the stages wired together behind a scikit-learn style estimator.

``Segmenter`` is configured in ``__init__`` and learns in ``fit``; learned state lives in
attributes ending in ``_``. Each stage is a swappable slot (BERTopic style): an embedder, a
sentiment scorer, a fuser, a reducer and a clusterer, each with a tiny interface. Data flows one
way: normalise -> encode (one pass: embedding + sentiment) -> behaviour -> fuse -> reduce ->
cluster -> name and profile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nlp_seg.behavior import BehaviorScaler
from nlp_seg.clustering import HdbscanClusterer
from nlp_seg.fusion import BlockFuser, parse_weights
from nlp_seg.model_registry import PROFILES
from nlp_seg.naming import (
    SILENT_TEXT_SHARE,
    asks_improvement,
    base_name,
    class_tfidf_keywords,
    disambiguate,
    load_playbook,
    qualified_name,
    representative_examples,
    segment_qualifiers,
    suggest_action,
)
from nlp_seg.normalize import STATUS_OK, normalize_texts
from nlp_seg.progress import Reporter, SilentReporter, StageTimer
from nlp_seg.reduction import UmapReducer
from nlp_seg.sentiment import LABELS, make_sentiment_scorer, summarize

log = logging.getLogger(__name__)

ASSIGNMENT_COLUMNS = (
    "sentiment_label",
    "sentiment_score",
    "sentiment_confidence",
    "segment_id",
    "segment_name",
    "segment_probability",
    "is_outlier",
    "status",
)
SCORE_COLUMNS = ("sentiment_label", "sentiment_score", "sentiment_confidence", "status")


# Texts encoded per call when the sentiment head reads hidden states (bounds their memory).
LAYER_SLICE = 8192


@dataclass
class SegmenterConfig:
    """Every knob of a run, recorded in ``run.json`` and in saved segmenters."""

    profile: str = "bundled"
    embedding_model: str | None = None
    sentiment_model: str | None = None
    device: str = "auto"
    batch_size: int = 32
    max_seq_length: int | None = 256
    weights: dict[str, float] = field(default_factory=lambda: parse_weights(None))
    min_cluster_size: int | None = None
    min_samples: int | None = None
    n_components: int = 5
    n_neighbors: int = 15
    seed: int = 42
    keep_outliers: bool = False
    fit_sample_size: int = 50_000
    cache_dir: str | None = None
    playbook: str | None = None
    lang: str = "en"
    max_chars: int = 2000

    def resolved_models(self) -> tuple[str, str]:
        from nlp_seg.errors import NlpsegError

        if self.profile not in PROFILES:
            raise NlpsegError(
                f"unknown --profile {self.profile!r}; choose one of {', '.join(PROFILES)}"
            )
        prof = PROFILES[self.profile]
        return (
            self.embedding_model or prof.embedding_model,
            self.sentiment_model or prof.sentiment_model,
        )


def _same_model(a: str, b: str) -> bool:
    """Two model ids name the same model: equal strings, or the same local folder."""
    from pathlib import Path

    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.is_dir() and pb.is_dir() and pa.resolve() == pb.resolve()


def _check_head_encoder(scorer: Any, embedder: Any) -> None:
    """A sentiment head only means something on the embedding it was trained on: refuse to
    apply it to another encoder's vectors (same size or not) before any text is embedded."""
    from nlp_seg.errors import NlpsegError

    trained_for = getattr(scorer, "trained_for", None)
    encoder = getattr(embedder, "model_id", None)
    if not trained_for or not encoder or _same_model(str(trained_for), str(encoder)):
        return
    if not str(encoder).startswith("bundled:"):
        from nlp_seg.model_registry import resolve_local

        resolve_local(str(encoder))  # a missing folder is the clearer error: say that first
    raise NlpsegError(
        f"sentiment head {getattr(scorer, 'model_id', '?')!r} was trained on embedding model "
        f"{trained_for!r} but the encoder in use is {encoder!r}; pass --embedding-model "
        f"{trained_for}, a transformer --sentiment-model, or train a head for this encoder "
        "with `nlpseg train-sentiment`"
    )


class Segmenter:
    """Texts (+ optional behaviour) in, named segments out.

    >>> seg = Segmenter(SegmenterConfig(seed=7))
    >>> labels = seg.fit_predict(texts)           # doctest: +SKIP
    >>> seg.segments_[0]["name"]                  # doctest: +SKIP
    'satisfied (pin, camera)'
    """

    def __init__(
        self,
        config: SegmenterConfig | None = None,
        *,
        embedder: Any = None,
        sentiment: Any = None,
        reducer: Any = None,
        clusterer: Any = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.config = config or SegmenterConfig()
        self.embedder = embedder
        self.sentiment = sentiment
        self.reducer = reducer
        self.clusterer = clusterer
        self.reporter = reporter or SilentReporter()

    # ----------------------------------------------------------------- slots
    def _embedder(self) -> Any:
        if self.embedder is None:
            from nlp_seg.embedding import SentenceTransformerEmbedder

            emb_model, _ = self.config.resolved_models()
            self.embedder = SentenceTransformerEmbedder(
                emb_model,
                device=self.config.device,
                batch_size=self.config.batch_size,
                max_seq_length=self.config.max_seq_length,
                cache_dir=self.config.cache_dir,
            )
        return self.embedder

    def _sentiment(self) -> Any:
        if self.sentiment is None:
            _, sent_model = self.config.resolved_models()
            self.sentiment = make_sentiment_scorer(
                sent_model, device=self.config.device, batch_size=self.config.batch_size
            )
        return self.sentiment

    # ----------------------------------------------------------------- stages
    def encode(
        self, texts: Sequence[str], timer: StageTimer | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and ``(n, 3)`` sentiment probabilities of clean texts, one encoder pass
        when the sentiment scorer reads embeddings (the bundled profile)."""
        timer = timer or StageTimer()
        texts = list(texts)
        uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        uniq_list = [str(t) for t in uniq]
        scorer = self._sentiment()
        if scorer.needs_embeddings:
            _check_head_encoder(scorer, self._embedder())
        layers = tuple(getattr(scorer, "input_layers", ())) if scorer.needs_embeddings else ()
        with (
            timer("embedding"),
            self.reporter.stage(
                f"Embedding {len(uniq_list):,} distinct texts", total=len(uniq_list)
            ) as advance,
        ):
            if layers:  # the head's probabilities come out of the same pass
                emb, probs = self._encode_for_layer_head(scorer, uniq_list, layers, advance)
                return emb[inverse], probs[inverse]
            emb = self._embedder().embed(uniq_list, progress=advance)
        with (
            timer("sentiment"),
            self.reporter.stage("Scoring sentiment", total=len(uniq_list)) as advance,
        ):
            if scorer.needs_embeddings:
                probs = scorer.predict_proba(uniq_list, embeddings=emb, progress=advance)
            else:
                probs = self._cached_proba(scorer, uniq_list, advance)
        return emb[inverse], np.asarray(probs, dtype=np.float64)[inverse]

    def _encode_for_layer_head(
        self, scorer: Any, texts: list[str], layers: tuple[int, ...], advance: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and probabilities for a head that reads hidden states (the bundled one).

        One encoder pass gives both. The head's probabilities are cached (keyed by the head's
        weights and the encoder settings) next to the embeddings, so a re-run with other
        clustering settings needs neither the encoder nor the layer features.
        """
        from pathlib import Path

        from nlp_seg.cache import cached_rows
        from nlp_seg.errors import NlpsegError

        embedder = self._embedder()
        if not hasattr(embedder, "embed_with_layers"):
            raise NlpsegError(
                f"sentiment head {scorer.model_id!r} reads the encoder's hidden states, which "
                f"the embedder {getattr(embedder, 'model_id', '?')!r} does not provide"
            )
        # Allocated on first use: its width is only known once vectors arrive, and asking the
        # embedder up front would load the encoder even when every row comes from the cache.
        emb: np.ndarray | None = None
        filled = np.zeros(len(texts), dtype=bool)
        position = {t: i for i, t in enumerate(texts)}

        def put(idx: Any, vecs: np.ndarray) -> None:
            nonlocal emb
            if emb is None:
                emb = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
            emb[idx] = vecs
            filled[idx] = True

        def compute(batch: list[str]) -> np.ndarray:
            # In slices: the layer features are len(layers) times the embedding's size and
            # are dropped as soon as the head has read them.
            out = []
            for start in range(0, len(batch), LAYER_SLICE):
                part = batch[start : start + LAYER_SLICE]
                vecs, feats = embedder.embed_with_layers(part, layers, progress=advance)
                put([position[t] for t in part], vecs)
                out.append(scorer.predict_proba(part, embeddings=feats))
            return np.concatenate(out)

        folder = Path(self.config.cache_dir) / "sentiment" if self.config.cache_dir else None
        namespace = f"head|{scorer.cache_key}|{embedder.cache_namespace}|layers={layers}"
        probs, hits, computed = cached_rows(folder, namespace, texts, compute)
        stats = getattr(self, "sentiment_cache_", {"hits": 0, "computed": 0})
        self.sentiment_cache_ = {
            "hits": stats["hits"] + hits,
            "computed": stats["computed"] + computed,
        }
        rest = np.flatnonzero(~filled)
        if len(rest):  # probabilities came from the cache: the embeddings should too
            put(rest, embedder.embed([texts[i] for i in rest], progress=advance))
        assert emb is not None
        return emb, probs

    def _cached_proba(self, scorer: Any, texts: list[str], advance: Any) -> np.ndarray:
        """A separate sentiment transformer's probabilities through the on-disk cache (it costs
        as much as the embedding to recompute); counts land in ``sentiment_cache_``."""
        from pathlib import Path

        from nlp_seg.cache import cached_rows

        folder = Path(self.config.cache_dir) / "sentiment" if self.config.cache_dir else None
        namespace = f"tf|{scorer.model_id}|{getattr(scorer, 'max_length', None)}"
        probs, hits, computed = cached_rows(
            folder, namespace, texts, lambda t: scorer.predict_proba(t, progress=advance)
        )
        stats = getattr(self, "sentiment_cache_", {"hits": 0, "computed": 0})
        self.sentiment_cache_ = {
            "hits": stats["hits"] + hits,
            "computed": stats["computed"] + computed,
        }
        return probs

    def encode_rows(
        self, texts: Sequence[object], timer: StageTimer | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Normalise and encode raw cells: clean texts, statuses, embeddings (zeros where no
        text) and sentiment probabilities (NaN where no text), one row per input row, so that
        rows without text are kept rather than dropped."""
        timer = timer or StageTimer()
        with timer("normalize"):
            norm = normalize_texts(list(texts), max_chars=self.config.max_chars)
        status = np.array([n.status for n in norm], dtype=object)
        clean = [n.text for n in norm]
        ok = status == STATUS_OK
        emb = np.zeros((len(clean), 0), np.float32)
        probs = np.full((len(clean), 3), np.nan)
        if ok.any():
            emb_ok, probs_ok = self.encode([c for c, k in zip(clean, ok, strict=True) if k], timer)
            emb = np.zeros((len(clean), emb_ok.shape[1]), np.float32)
            emb[ok], probs[ok] = emb_ok, probs_ok
        return clean, status, emb, probs

    def score_sentiment(self, texts: Sequence[str], timer: StageTimer | None = None) -> np.ndarray:
        """``(n, 3)`` sentiment probabilities of clean texts; embeds only if the scorer reads
        embeddings (so ``nlpseg score`` with a transformer model never loads an encoder)."""
        scorer = self._sentiment()
        if scorer.needs_embeddings:
            return self.encode(texts, timer)[1]
        timer = timer or StageTimer()
        texts = list(texts)
        uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        with (
            timer("sentiment"),
            self.reporter.stage("Scoring sentiment", total=len(uniq)) as advance,
        ):
            probs = self._cached_proba(scorer, [str(t) for t in uniq], advance)
        return np.asarray(probs, dtype=np.float64)[inverse]

    def _fuse_blocks(
        self, emb: np.ndarray, probs: np.ndarray, behavior: np.ndarray | None
    ) -> dict[str, np.ndarray | None]:
        score = (probs[:, 2] - probs[:, 0])[:, None]
        return {
            "text": emb,
            "sentiment": np.hstack([probs, score]),
            "behavior": behavior if behavior is not None and behavior.shape[1] else None,
        }

    # ----------------------------------------------------------------- fit
    def fit(
        self,
        texts: Sequence[object],
        behavior: pd.DataFrame | None = None,
    ) -> Segmenter:
        """Learn segments from raw texts (one per row) and optional behaviour columns."""
        timer = StageTimer()
        t0 = time.perf_counter()
        clean, status, emb, probs = self.encode_rows(texts, timer)
        self.fit_encoded(clean, status, emb, probs, behavior, timer=timer)
        self.timings_["total"] = round(time.perf_counter() - t0, 3)
        return self

    def fit_encoded(
        self,
        texts: list[str],
        status: np.ndarray,
        embeddings: np.ndarray,
        probs: np.ndarray,
        behavior: pd.DataFrame | None = None,
        segmentable: np.ndarray | None = None,
        timer: StageTimer | None = None,
        row_info: pd.DataFrame | None = None,
    ) -> Segmenter:
        """Fit from already-encoded rows (all arrays have one row per input row).

        ``segmentable`` says which rows take part in clustering; by default those whose
        ``status`` is ``ok``. Callers that segment rows without text (customers known only by
        their behaviour) mark them segmentable and pass imputed embedding/sentiment rows;
        their sentiment columns stay empty in the outputs because their status is not ``ok``.
        ``row_info`` (one row per input row; optional columns ``value_tier``, ``loyalty_tier``,
        ``benefit_sought``) qualifies segment names with tiers and profiles with benefits (see
        :mod:`nlp_seg.customer_job`).
        """
        self.row_info_ = row_info.reset_index(drop=True) if row_info is not None else None
        cfg = self.config
        timer = timer or StageTimer()
        status = np.asarray(status, dtype=object)
        scored = status == STATUS_OK
        seg_mask = scored.copy() if segmentable is None else np.asarray(segmentable, dtype=bool)
        n = len(texts)
        self.n_rows_in_ = n
        self.n_scored_ = int(scored.sum())
        emb_s = embeddings[seg_mask]
        probs_s = np.nan_to_num(probs[seg_mask], nan=0.0)
        beh_s = None
        self.behavior_scaler_: BehaviorScaler | None = None
        if behavior is not None and behavior.shape[1] > 0:
            with timer("behavior"):
                self.behavior_scaler_ = BehaviorScaler(list(behavior.columns)).fit(
                    behavior.loc[seg_mask]
                )
                beh_s = self.behavior_scaler_.transform(behavior.loc[seg_mask])

        labels = np.full(n, -1, dtype=int)
        strength = np.zeros(n)
        outlier = np.zeros(n, dtype=bool)
        if seg_mask.any():
            with timer("fusion"):
                self.fuser_ = BlockFuser(cfg.weights)
                fused = self.fuser_.fit_transform(self._fuse_blocks(emb_s, probs_s, beh_s))
            labels[seg_mask], strength[seg_mask], outlier[seg_mask] = self._fit_cluster(
                fused, timer
            )
            self.fit_rows_ = np.flatnonzero(seg_mask)[self.fit_sample_]

        with timer("naming"), self.reporter.stage("Naming and profiling segments"):
            self.segments_ = self._profile(
                texts, scored, seg_mask, labels, probs, embeddings, behavior, outlier
            )
        names = {s["id"]: s["name"] for s in self.segments_}
        self.assignments_ = build_assignments(
            labels, strength, outlier, probs, status, names, segmented=seg_mask
        )
        self.labels_ = labels
        self.embeddings_ = embeddings
        self.sentiment_proba_ = probs
        self.timings_ = timer.seconds
        return self

    def _fit_cluster(
        self, fused: np.ndarray, timer: StageTimer
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.config
        n = len(fused)
        rng = np.random.default_rng(cfg.seed)
        sample = (
            np.sort(rng.choice(n, size=cfg.fit_sample_size, replace=False))
            if n > cfg.fit_sample_size
            else np.arange(n)
        )
        self.fit_sample_size_ = len(sample)
        if self.reducer is None:
            self.reducer = UmapReducer(
                n_components=cfg.n_components,
                n_neighbors=cfg.n_neighbors,
                seed=cfg.seed,
                backend="cpu" if cfg.device == "cpu" else "auto",  # cuML's when on a GPU
            )
        if self.clusterer is None:
            self.clusterer = HdbscanClusterer(
                min_cluster_size=cfg.min_cluster_size,
                min_samples=cfg.min_samples,
                keep_outliers=cfg.keep_outliers,
                backend="cpu" if cfg.device == "cpu" else "auto",
            )
        with timer("reduction"), self.reporter.stage(f"UMAP on {len(sample):,} rows"):
            reduced_sample = self.reducer.fit_transform(fused[sample])
        # The fit sample's reduced coordinates (positions among the clustered rows), for the
        # report's map; fit_rows_ (set by fit_encoded) says which input rows they are.
        self.fit_sample_ = sample
        self.fit_coords_ = np.asarray(reduced_sample, dtype=np.float32)
        with timer("clustering"), self.reporter.stage("HDBSCAN clustering"):
            self.clusterer.fit(reduced_sample)
        from nlp_seg.novelty import FitNeighbours

        # Kept so predict() places new rows by their fitted neighbours and flags rows unlike
        # anything fitted (see nlp_seg.novelty).
        self.neighbours_: FitNeighbours | None = FitNeighbours(seed=cfg.seed).fit(
            fused[sample], self.clusterer.labels_, self.clusterer.outlier_mask_
        )
        labels = np.zeros(n, dtype=int)
        strength = np.zeros(n)
        outlier = np.zeros(n, dtype=bool)
        labels[sample] = self.clusterer.labels_
        strength[sample] = self.clusterer.probabilities_
        outlier[sample] = self.clusterer.outlier_mask_
        rest = np.setdiff1d(np.arange(n), sample)
        if len(rest):
            with (
                timer("placement"),
                self.reporter.stage(f"Placing {len(rest):,} more rows", total=len(rest)) as advance,
            ):
                for start in range(0, len(rest), 20_000):
                    idx = rest[start : start + 20_000]
                    lab, st, out = self.clusterer.predict(self.reducer.transform(fused[idx]))
                    labels[idx], strength[idx], outlier[idx] = lab, st, out
                    advance(len(idx))
        return labels, strength, outlier

    def _profile(
        self,
        texts: list[str],
        scored: np.ndarray,
        seg_mask: np.ndarray,
        labels: np.ndarray,
        probs: np.ndarray,
        embeddings: np.ndarray,
        behavior: pd.DataFrame | None,
        outlier: np.ndarray,
    ) -> list[dict[str, Any]]:
        """Size, sentiment mix, behaviour, keywords, quotes and a name for every segment.

        Text statistics use the rows that have text (``scored``); sizes and behaviour use
        every segmented row.
        """
        cfg = self.config
        seg_ids = sorted(set(labels[seg_mask].tolist()))
        if not seg_ids:
            return []
        idx_txt = np.flatnonzero(scored & seg_mask)
        texts_txt = [texts[i] for i in idx_txt]
        lab_txt = labels[idx_txt]
        requests = asks_improvement(texts_txt)
        keywords = class_tfidf_keywords(texts_txt, lab_txt, top_n=10) if len(idx_txt) else {}
        playbook = load_playbook(cfg.playbook)
        total = int(seg_mask.sum())
        profiles: list[dict[str, Any]] = []
        base: dict[int, str] = {}
        for sid in seg_ids:
            members = seg_mask & (labels == sid)
            m = lab_txt == sid
            p = probs[idx_txt[m]]
            if len(p):
                _, score, _ = summarize(p)
                shares = {
                    lab: float(np.mean(p.argmax(axis=1) == i)) for i, lab in enumerate(LABELS)
                }
                mean_score = float(score.mean())
                req = float(requests[m].mean())
            else:
                shares = {lab: 0.0 for lab in LABELS}
                mean_score, req = 0.0, 0.0
            b = base_name(mean_score, shares, req) if sid >= 0 else "outliers"
            if sid >= 0 and m.sum() < SILENT_TEXT_SHARE * members.sum():
                b = "silent"  # grouped on behaviour alone: too few members wrote anything
            base[sid] = b
            prof: dict[str, Any] = {
                "id": int(sid),
                "name": b,
                "base_name": b,
                "size": int(members.sum()),
                "share": round(float(members.sum()) / total, 4),
                "with_text": int(m.sum()),
                "sentiment": {
                    **{k: round(v, 4) for k, v in shares.items()},
                    "mean_score": round(mean_score, 4),
                },
                "improvement_request_share": round(req, 4),
                "outlier_share": round(float(outlier[members].mean()), 4),
                "keywords": keywords.get(sid, []),
                "examples": representative_examples(
                    [t for t, k in zip(texts_txt, m, strict=True) if k],
                    embeddings[idx_txt[m]],
                    k=5,
                ),
            }
            if behavior is not None and behavior.shape[1] > 0:
                sub = behavior.loc[members]
                prof["behavior"] = {
                    c: _finite_or_none(pd.to_numeric(sub[c], errors="coerce").mean())
                    for c in behavior.columns
                }
            profiles.append(prof)
        info = getattr(self, "row_info_", None)
        qual = segment_qualifiers(info, labels, seg_mask, seg_ids) if info is not None else {}
        names = disambiguate(
            {
                s: qualified_name(base[s], *qual.get(s, {}).get("tiers", ("", "")))
                for s in seg_ids
                if s >= 0
            },
            {s: keywords.get(s, []) for s in seg_ids},
        )
        for prof in profiles:
            if prof["id"] >= 0:
                prof["name"] = names[prof["id"]]
            q = qual.get(prof["id"], {})
            prof.update(q.get("fields", {}))
            key = {"base": prof["base_name"], **q.get("fields", {})}
            prof["action"] = suggest_action(playbook, key, lang=cfg.lang)
        return profiles

    def fit_predict(
        self, texts: Sequence[object], behavior: pd.DataFrame | None = None
    ) -> np.ndarray:
        return self.fit(texts, behavior).labels_

    # ----------------------------------------------------------------- predict
    def predict(
        self,
        texts: Sequence[object],
        behavior: pd.DataFrame | None = None,
        *,
        encode: Callable[[list[str]], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> pd.DataFrame:
        """Label new rows with the learned segments; returns the assignment columns.

        ``encode`` replaces :meth:`encode` (clean texts -> embeddings, sentiment
        probabilities): the HTTP service encodes a micro-batch of requests once and then
        places each request through this same method.
        """
        if not hasattr(self, "segments_"):
            from nlp_seg.errors import NlpsegError

            raise NlpsegError("this segmenter is not fitted yet; call fit first")
        norm = normalize_texts(list(texts), max_chars=self.config.max_chars)
        status = np.array([n.status for n in norm], dtype=object)
        ok = status == STATUS_OK
        n = len(norm)
        labels = np.full(n, -1, dtype=int)
        strength = np.zeros(n)
        outlier = np.zeros(n, dtype=bool)
        probs = np.full((n, 3), np.nan)
        if ok.any():
            emb, p = (encode or self.encode)([x.text for x, k in zip(norm, ok, strict=True) if k])
            probs[ok] = p
            frame = None
            if self.behavior_scaler_ is not None:
                frame = behavior if behavior is not None else pd.DataFrame(index=range(n))
                frame = frame.loc[ok] if len(frame) == n else frame
            lab, st, out = self.place_encoded(emb, p, frame, new_rows=True)
            labels[ok], strength[ok], outlier[ok] = lab, st, out
        names = {s["id"]: s["name"] for s in self.segments_}
        return build_assignments(labels, strength, outlier, probs, status, names)

    def place_encoded(
        self,
        embeddings: np.ndarray,
        probs: np.ndarray,
        behavior: pd.DataFrame | None = None,
        new_rows: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labels, strengths and outlier flags of already-encoded rows (all scorable).

        The placement half of :meth:`predict`, apart so that ``nlpseg batch`` can place
        millions of stored rows chunk by chunk with the fitted fuser, reducer and clusterer.
        ``new_rows`` (what :meth:`predict` uses) places rows by the vote of their nearest
        fitted rows in the fused space instead, and flags rows far from every fitted row
        (``is_outlier``, lowered strength) rather than forcing them in; see
        :mod:`nlp_seg.novelty`.
        """
        beh = None
        if self.behavior_scaler_ is not None:
            frame = behavior if behavior is not None else pd.DataFrame(index=range(len(probs)))
            beh = self.behavior_scaler_.transform(frame)
        fused = self.fuser_.transform(self._fuse_blocks(embeddings, probs, beh))
        neighbours = getattr(self, "neighbours_", None)
        if new_rows and neighbours is not None:
            labels, strength, outlier = neighbours.place(fused)
            if not self.config.keep_outliers:
                return labels, strength, outlier
            return np.where(outlier, -1, labels), strength, outlier
        return self.clusterer.predict(self.reducer.transform(fused))

    def save(self, path: str) -> str:
        """Save the fitted segmenter to folder ``path`` (see :mod:`nlp_seg.persistence`);
        :func:`load_segmenter` reads it back to label new rows the same way."""
        from nlp_seg.persistence import save_segmenter

        return str(save_segmenter(self, path, columns=getattr(self, "columns_", None)))

    def describe(self) -> dict[str, Any]:
        """What this segmenter used: models, parameters, learned sizes (for ``run.json``)."""
        info: dict[str, Any] = {"config": asdict(self.config)}
        if self.embedder is not None:
            info["embedding"] = self.embedder.describe()
        if self.sentiment is not None:
            info["sentiment"] = self.sentiment.describe()
            if hasattr(self, "sentiment_cache_"):
                info["sentiment"]["cache"] = dict(self.sentiment_cache_)
        if self.reducer is not None and hasattr(self.reducer, "describe"):
            info["reduction"] = self.reducer.describe()
        if self.clusterer is not None and hasattr(self.clusterer, "describe"):
            info["clustering"] = self.clusterer.describe()
        if hasattr(self, "fuser_"):
            info["fusion"] = {"blocks": self.fuser_.blocks_, "dims": self.fuser_.dims_}
        return info


def _finite_or_none(x: float) -> float | None:
    return round(float(x), 4) if x is not None and np.isfinite(x) else None


def build_assignments(
    labels: np.ndarray,
    strength: np.ndarray,
    outlier: np.ndarray,
    probs: np.ndarray,
    status: np.ndarray,
    names: dict[int, str],
    segmented: np.ndarray | None = None,
) -> pd.DataFrame:
    """The per-row output columns (the README's contract), in input order."""
    n = len(labels)
    ok = status == STATUS_OK
    seg = ok if segmented is None else np.asarray(segmented, dtype=bool)
    lab_text, score, conf = summarize(np.nan_to_num(probs[ok])) if ok.any() else ([], [], [])
    sentiment_label = np.full(n, None, dtype=object)
    sentiment_score = np.full(n, np.nan)
    sentiment_conf = np.full(n, np.nan)
    sentiment_label[ok] = lab_text
    sentiment_score[ok] = score
    sentiment_conf[ok] = conf
    seg_name = np.array([names.get(int(k), "" if k < 0 else str(k)) for k in labels], dtype=object)
    seg_name[(labels < 0) & seg] = "outlier"
    return pd.DataFrame(
        {
            "sentiment_label": pd.array(sentiment_label, dtype="string"),
            "sentiment_score": sentiment_score.round(6),
            "sentiment_confidence": sentiment_conf.round(6),
            "segment_id": labels.astype("int64"),
            "segment_name": pd.array(seg_name, dtype="string"),
            "segment_probability": np.where(seg, np.clip(strength, 0, 1), np.nan).round(6),
            "is_outlier": outlier.astype(bool),
            "status": pd.array(status, dtype="string"),
        }
    )


def load_segmenter(path: str) -> Segmenter:
    """Load a segmenter saved with ``Segmenter.save`` (see :mod:`nlp_seg.persistence`)."""
    from nlp_seg.persistence import load_segmenter as _load

    return _load(path)
