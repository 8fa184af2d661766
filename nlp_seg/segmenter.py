"""The segmenter: the stages composed behind one scikit-learn style estimator.

``Segmenter`` is configured in ``__init__`` (a :class:`SegmenterConfig`, or stage objects in
its slots) and learns in ``fit``; learned state lives in attributes ending in ``_``. The stages,
one module each under :mod:`nlp_seg.stages`: the encoder pass (normalise, dedup, embedding +
sentiment, cache) -> behaviour scaling -> fusion -> UMAP on the seeded fit sample -> HDBSCAN ->
placement of every other row by its nearest fitted rows -> naming and profiling.

Every command goes through the same few entry points: :meth:`Segmenter.fit` /
:meth:`~Segmenter.fit_encoded` (analyze, batch), :meth:`~Segmenter.predict` /
:meth:`~Segmenter.place_encoded` (assign, batch, serve), :meth:`~Segmenter.score` (score), and
:meth:`~Segmenter.save` / :func:`load_segmenter` (JSON + safetensors, no pickle).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nlp_seg.behavior.scaler import BehaviorScaler
from nlp_seg.errors import NlpsegError
from nlp_seg.models.registry import PROFILES
from nlp_seg.models.sentiment import summarize
from nlp_seg.normalize import STATUS_OK, normalize_texts
from nlp_seg.progress import Reporter, SilentReporter, StageTimer
from nlp_seg.stages.base import clone_stage
from nlp_seg.stages.clustering import HdbscanClusterer
from nlp_seg.stages.encoder import TextEncoder
from nlp_seg.stages.fusion import BlockFuser, parse_weights
from nlp_seg.stages.keywords import keyword_embedder
from nlp_seg.stages.matching import match_segments
from nlp_seg.stages.merging import SegmentMerger
from nlp_seg.stages.naming import SegmentNamer, recount_profiles
from nlp_seg.stages.noise import NOISE_SEGMENT_NAME, STATUS_LOW_INFORMATION, NoiseFilter
from nlp_seg.stages.placement import FitNeighbours, fit_sample
from nlp_seg.stages.reduction import UmapReducer

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
    "aspects",
    "sentiment_mixed",
)
SCORE_COLUMNS = ("sentiment_label", "sentiment_score", "sentiment_confidence", "status")


@dataclass
class SegmenterConfig:
    """Every knob of a run, recorded in ``run.json`` and in saved segmenters."""

    profile: str = "bundled"
    embedding_model: str | None = None
    sentiment_model: str | None = None
    device: str = "auto"
    #: encoder precision: auto, fp32, bf16, int8 or fp16 (auto: models.precision.auto_precision)
    precision: str = "auto"
    batch_size: int = 32
    max_seq_length: int | None = 256
    weights: dict[str, float] = field(default_factory=lambda: parse_weights(None))
    min_cluster_size: int | None = None
    min_samples: int | None = None
    n_components: int = 5
    n_neighbors: int = 15
    seed: int = 42
    keep_outliers: bool = False
    #: merge segments whose centres lie within each other's spread (see stages.merging)
    merge_similar: bool = True
    fit_sample_size: int = 50_000
    cache_dir: str | None = None
    playbook: str | None = None
    lang: str = "en"
    max_chars: int = 2000
    #: models read lower-cased text (None: when both models are the bundled ones)
    lowercase: bool | None = None
    #: give Vietnamese typed without diacritics its marks back before the models read it
    restore_diacritics: bool = True
    #: flag texts that are not reviews (mashing, links only, ads) as ``low_information``
    noise_filter: bool = True
    #: aspect taxonomy (stages.aspects): "general", "phones", or a user taxonomy's content
    #: (a file path given here is read in at construction, so saved segmenters keep it)
    aspects: str | dict[str, Any] | None = None

    def __post_init__(self) -> None:
        from nlp_seg.models.precision import check_precision

        check_precision(self.precision)
        if self.aspects is not None:
            from nlp_seg.stages.aspects import taxonomy_state

            self.aspects = taxonomy_state(self.aspects)

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
        encoder: TextEncoder | None = None,
        embedder: Any = None,
        sentiment: Any = None,
        reducer: Any = None,
        clusterer: Any = None,
        reporter: Reporter | None = None,
        previous: Segmenter | None = None,
    ) -> None:
        self.config = config or SegmenterConfig()
        #: a fitted segmenter whose segment ids and names ``fit`` keeps (see :meth:`refresh`)
        self.previous = previous
        self.reporter = reporter or SilentReporter()
        self.encoder = encoder or TextEncoder(
            self.config, embedder=embedder, sentiment=sentiment, reporter=self.reporter
        )
        self.reducer = reducer
        self.clusterer = clusterer

    # ----------------------------------------------------------------- models in use
    @property
    def embedder(self) -> Any:
        """The embedding model in use, or ``None`` until one is needed."""
        return self.encoder.embedder

    @property
    def sentiment(self) -> Any:
        """The sentiment scorer in use, or ``None`` until one is needed."""
        return self.encoder.sentiment

    def set_reporter(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.encoder.reporter = reporter

    # ----------------------------------------------------------------- encoding
    def encode(
        self, texts: Sequence[str], timer: StageTimer | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and sentiment probabilities of clean texts (see :class:`TextEncoder`)."""
        return self.encoder.encode(texts, timer)

    def encode_rows(
        self, texts: Sequence[object], timer: StageTimer | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Normalise and encode raw cells, one output row per input row; texts that are not
        reviews get ``status = "low_information"`` (see :meth:`flag_noise`)."""
        clean, status, emb, probs = self.encoder.encode_rows(texts, timer)
        return clean, self.flag_noise(clean, status, emb, timer), emb, probs

    # ----------------------------------------------------------------- texts that are not reviews
    def get_noise_filter(self) -> NoiseFilter | None:
        """The not-a-review filter (None when ``config.noise_filter`` is off). Its head reads
        the bundled encoder's sentence embeddings; with another embedding model (or another
        casing) only its rules run, as a head means nothing on vectors it was not trained on."""
        if not self.config.noise_filter:
            return None
        if getattr(self, "_noise_filter", None) is None:
            flt = NoiseFilter.load()
            emb_model, _ = self.config.resolved_models()
            self._noise_head_applies = (
                emb_model == flt.trained_for_ and self.encoder.lowercase == flt.lowercase_
            )
            self._noise_filter = flt
        return self._noise_filter

    def noise_mask(self, texts: Sequence[str], embeddings: np.ndarray | None) -> np.ndarray:
        """Which clean texts are not reviews; ``embeddings`` are theirs from :meth:`encode`."""
        flt = self.get_noise_filter()
        if flt is None:
            return np.zeros(len(texts), dtype=bool)
        return flt.predict(texts, embeddings if self._noise_head_applies else None)

    def flag_noise(
        self,
        clean: Sequence[str],
        status: np.ndarray,
        embeddings: np.ndarray | None,
        timer: StageTimer | None = None,
    ) -> np.ndarray:
        """``status`` with the ``ok`` rows that are not reviews set to ``low_information``
        (``embeddings``: one row per input row, as :meth:`encode_rows` returns them)."""
        status = np.asarray(status, dtype=object).copy()
        ok = np.flatnonzero(status == STATUS_OK)
        if not len(ok) or not self.config.noise_filter:
            return status
        with timer("noise") if timer is not None else _nothing():
            emb = None
            if embeddings is not None and np.asarray(embeddings).shape[1:] not in ((), (0,)):
                emb = np.asarray(embeddings)[ok]
            flags = self.noise_mask([clean[i] for i in ok], emb)
        status[ok[flags]] = STATUS_LOW_INFORMATION
        return status

    def score_clean(
        self, texts: Sequence[str], timer: StageTimer | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sentiment probabilities and not-a-review flags of clean texts (``score``, the
        service's ``/score``): the embeddings the filter's head reads come from the same
        encoder pass as the bundled sentiment head's."""
        self.get_noise_filter()
        if self.config.noise_filter and self._noise_head_applies and len(texts):
            emb, probs = self.encoder.encode(texts, timer)
            return probs, self.noise_mask(texts, emb)
        return self.encoder.score_sentiment(texts, timer), self.noise_mask(texts, None)

    def score(self, texts: Sequence[object], timer: StageTimer | None = None) -> pd.DataFrame:
        """Sentiment only (``nlpseg score``): the score columns, one row per raw cell."""
        timer = timer or StageTimer()
        with timer("normalize"):
            norm = normalize_texts(list(texts), max_chars=self.config.max_chars)
        status = np.array([x.status for x in norm], dtype=object)
        ok = status == STATUS_OK
        probs = np.full((len(norm), 3), np.nan)
        if ok.any():
            clean = [x.text for x, k in zip(norm, ok, strict=True) if k]
            probs[ok], noise = self.score_clean(clean, timer)
            status[np.flatnonzero(ok)[noise]] = STATUS_LOW_INFORMATION
        n = len(norm)
        cols = build_assignments(
            np.full(n, -1), np.zeros(n), np.zeros(n, dtype=bool), probs, status, {}
        )
        return cols[list(SCORE_COLUMNS)]

    def score_sentiment(self, texts: Sequence[str], timer: StageTimer | None = None) -> np.ndarray:
        """``(n, 3)`` sentiment probabilities of clean texts."""
        return self.encoder.score_sentiment(texts, timer)

    def aspect_cells(
        self,
        texts: Sequence[str],
        status: np.ndarray,
        embeddings: np.ndarray,
        probs: np.ndarray,
        timer: StageTimer | None = None,
    ) -> np.ndarray | None:
        """The ``aspects`` cell of every row (empty where no text), or ``None`` when no
        taxonomy is configured. Clauses go through this segmenter's encoder."""
        if self._aspect_scorer() is None:
            return None
        ok = np.flatnonzero(np.asarray(status, dtype=object) == STATUS_OK)
        cells = np.full(len(status), "", dtype=object)
        if len(ok):
            timer = timer or StageTimer()
            with timer("aspects"), self.reporter.stage(f"Aspects of {len(ok):,} texts"):
                found = self.aspect_scorer_.analyze(
                    self.encoder,
                    [texts[i] for i in ok],
                    np.asarray(embeddings)[ok],
                    np.nan_to_num(np.asarray(probs)[ok], nan=0.0),
                )
            cells[ok] = [f.cell for f in found]
        return cells

    def _aspect_scorer(self) -> Any:
        """The taxonomy's scorer, loaded once (``None`` without ``aspects``)."""
        if self.config.aspects is None:
            return None
        from nlp_seg.stages.aspects import AspectScorer, load_taxonomy

        if getattr(self, "aspect_scorer_", None) is None:
            self.aspect_scorer_ = AspectScorer(load_taxonomy(self.config.aspects))
            self.aspect_scorer_.check_encoder(self.encoder)
        return self.aspect_scorer_

    def _fuse_blocks(
        self, emb: np.ndarray, probs: np.ndarray, behavior: np.ndarray | None
    ) -> dict[str, np.ndarray | None]:
        score = (probs[:, 2] - probs[:, 0])[:, None]
        aspects = None
        if self.config.weights.get("aspects", 0.0) > 0 and self.config.aspects is not None:
            aspects = self._aspect_scorer().aspect_block(self.encoder, emb, probs)
        return {
            "text": emb,
            "sentiment": np.hstack([probs, score]),
            "behavior": behavior if behavior is not None and behavior.shape[1] else None,
            "aspects": aspects,
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
        :mod:`nlp_seg.runs.behavior_job`).
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
        labels = np.full(n, -1, dtype=int)
        strength = np.zeros(n)
        outlier = np.zeros(n, dtype=bool)
        self.behavior_scaler_: BehaviorScaler | None = None
        seg_rows = np.flatnonzero(seg_mask)
        sample = seg_rows
        if len(seg_rows):
            # The same seeded sample rule as `nlpseg batch` (see stages.placement.fit_sample):
            # scaler, fuser, UMAP and HDBSCAN learn on the sample, the other rows are placed.
            sample = fit_sample(seg_rows, cfg.fit_sample_size, cfg.seed)
            self.fit_sample_size_ = len(sample)
            if behavior is not None and behavior.shape[1] > 0:
                with timer("behavior"):
                    self.behavior_scaler_ = BehaviorScaler(list(behavior.columns)).fit(
                        behavior.iloc[sample]
                    )
            with timer("fusion"):
                self.fuser_ = BlockFuser(cfg.weights)
                fused = self.fuser_.fit_transform(
                    self._fuse_blocks(
                        embeddings[sample],
                        np.nan_to_num(probs[sample], nan=0.0),
                        self._behavior_block(behavior, sample),
                    )
                )
            labels[sample], strength[sample], outlier[sample] = self._fit_cluster(fused, timer)
            self.fit_rows_ = sample
            rest = np.setdiff1d(seg_rows, sample)
            if len(rest):
                with (
                    timer("placement"),
                    self.reporter.stage(f"Placing {len(rest):,} more rows", total=len(rest)) as adv,
                ):
                    for start in range(0, len(rest), 20_000):
                        idx = rest[start : start + 20_000]
                        beh = behavior.iloc[idx] if self.behavior_scaler_ is not None else None
                        lab, st, out = self.place_encoded(
                            embeddings[idx], np.nan_to_num(probs[idx], nan=0.0), beh
                        )
                        labels[idx], strength[idx], outlier[idx] = lab, st, out
                        adv(len(idx))

        aspects = self.aspect_cells(texts, status, embeddings, probs, timer)
        # Named and profiled on the fit sample (all rows when the input fits in it), as the
        # batch engine does; sizes, shares and outlier shares then count every row.
        rows = sample if len(sample) < len(seg_rows) else np.arange(n)
        with timer("naming"), self.reporter.stage("Naming and profiling segments"):
            self.namer_ = SegmentNamer(
                playbook=cfg.playbook, lang=cfg.lang, restore_diacritics=cfg.restore_diacritics
            ).fit(
                [texts[i] for i in rows],
                labels[rows],
                probs[rows],
                embeddings[rows],
                scored=scored[rows],
                segmented=seg_mask[rows],
                outlier=outlier[rows],
                behavior=behavior.iloc[rows].reset_index(drop=True)
                if behavior is not None
                else None,
                row_info=self.row_info_.iloc[rows].reset_index(drop=True)
                if self.row_info_ is not None
                else None,
                aspects=aspects[rows] if aspects is not None else None,
                embed=keyword_embedder(self.encoder),
                aspect_fallback=aspects is None or not self.aspect_scorer_.taxonomy.joint,
            )
            self.segments_ = self.namer_.segments_
            if len(rows) < n:
                self.segments_ = recount_profiles(self.segments_, labels, scored, seg_mask, outlier)
        self.next_segment_id_ = max([s["id"] for s in self.segments_] + [-1]) + 1
        if self.previous is not None and len(seg_rows):
            with timer("matching"), self.reporter.stage("Matching segments to the previous ones"):
                labels = self._keep_previous_ids(labels, embeddings, probs, behavior, seg_rows)
        names = {s["id"]: s["name"] for s in self.segments_}
        self.assignments_ = build_assignments(
            labels, strength, outlier, probs, status, names, segmented=seg_mask, aspects=aspects
        )
        self.labels_ = labels
        self.embeddings_ = embeddings
        self.sentiment_proba_ = probs
        self.timings_ = timer.seconds
        return self

    def refresh(self, texts: Sequence[object], behavior: pd.DataFrame | None = None) -> Segmenter:
        """A new segmenter fitted on new rows with this one's settings and models, whose
        segments keep this one's ids (and names, while their sentiment holds) where they
        share most of their members; ``lineage_`` says which are new and which are gone."""
        return Segmenter(self.config, encoder=self.encoder, previous=self).fit(texts, behavior)

    def _keep_previous_ids(
        self,
        labels: np.ndarray,
        embeddings: np.ndarray,
        probs: np.ndarray,
        behavior: pd.DataFrame | None,
        rows: np.ndarray,
    ) -> np.ndarray:
        """Relabel a fresh fit with the previous segmenter's ids: the previous segmenter
        places the same rows, and segments are matched on shared members (stages.matching).
        Rows the previous segmenter finds novel (far from all its fitted rows) count in
        ``lineage_["novelty_share"]``."""
        prev = self.previous
        assert prev is not None
        beh = behavior.iloc[rows] if behavior is not None else None
        fused = prev.fused_rows(embeddings[rows], np.nan_to_num(probs[rows], nan=0.0), beh)
        old, _, outlier = prev.neighbours_.place(fused, novelty=False)
        novel = prev.neighbours_.novel(fused)
        old = np.where(outlier | novel, -1, old)
        previous_ids = [int(s["id"]) for s in prev.segments_]
        match = match_segments(
            labels[rows], old, previous_ids, next_id=getattr(prev, "next_segment_id_", None)
        )
        new_labels = np.array([match.id_map.get(int(k), -1) for k in labels], dtype=np.int64)
        before = {int(s["id"]): s for s in prev.segments_}
        kept_names = {
            before[match.id_map[int(s["id"])]]["name"]
            for s in self.segments_
            if int(s["id"]) in match.matched
        }
        segments = []
        for s in self.segments_:
            s = dict(s)
            fitted_id = int(s["id"])
            s["id"] = match.id_map.get(fitted_id, fitted_id)
            if fitted_id in match.matched:
                old_seg = before[s["id"]]
                s["lineage"] = "kept"
                s["overlap_with_previous"] = match.overlap.get(s["id"])
                if old_seg.get("base_name") == s.get("base_name"):
                    s["name"] = old_seg["name"]
                else:  # same members, other sentiment: the name follows what they say now
                    s["previous_name"] = old_seg["name"]
            elif s["id"] >= 0:
                s["lineage"] = "new"
                if s["name"] in kept_names:
                    s["name"] = f"{s['name']} · new"
            segments.append(s)
        self.segments_ = sorted(segments, key=lambda x: int(x["id"]))
        self.neighbours_.labels_ = np.array(
            [match.id_map.get(int(k), -1) for k in self.neighbours_.labels_], dtype=np.int64
        )
        self.next_segment_id_ = max(
            [getattr(prev, "next_segment_id_", 0), *[s["id"] + 1 for s in self.segments_]]
        )
        self.lineage_ = {
            "previous_segments": len(previous_ids),
            "kept": sorted(match.matched.values()),
            "new": match.new,
            "gone": match.gone,
            "overlap": {str(k): v for k, v in sorted(match.overlap.items())},
            "novelty_share": round(float(novel.mean()), 4) if len(novel) else 0.0,
            "rows_compared": len(rows),
        }
        return new_labels

    def _behavior_block(
        self, behavior: pd.DataFrame | None, rows: np.ndarray | None = None
    ) -> np.ndarray | None:
        if self.behavior_scaler_ is None or behavior is None:
            return None
        frame = behavior.iloc[rows] if rows is not None else behavior
        return self.behavior_scaler_.transform(frame)

    def _fit_cluster(
        self, fused: np.ndarray, timer: StageTimer
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Reduce and cluster the fit sample's fused vectors; learn the placement of others."""
        cfg = self.config
        backend = "cpu" if cfg.device == "cpu" else "auto"  # cuML's when on a GPU
        self.reducer_ = (
            clone_stage(self.reducer)
            if self.reducer is not None
            else UmapReducer(
                n_components=cfg.n_components,
                n_neighbors=cfg.n_neighbors,
                seed=cfg.seed,
                backend=backend,
            )
        )
        self.clusterer_ = (
            clone_stage(self.clusterer)
            if self.clusterer is not None
            else HdbscanClusterer(
                min_cluster_size=cfg.min_cluster_size,
                min_samples=cfg.min_samples,
                keep_outliers=cfg.keep_outliers,
                backend=backend,
            )
        )
        with timer("reduction"), self.reporter.stage(f"UMAP on {len(fused):,} rows"):
            reduced = self.reducer_.fit_transform(fused)
        # The fit sample's reduced coordinates, for the report's map; fit_rows_ says which
        # input rows they are.
        self.fit_coords_ = np.asarray(reduced, dtype=np.float32)
        with timer("clustering"), self.reporter.stage("HDBSCAN clustering"):
            self.clusterer_.fit(reduced)
        with timer("merging"):
            self.merger_ = SegmentMerger(enabled=cfg.merge_similar).fit(
                fused, self.clusterer_.labels_
            )
            labels = self.merger_.transform(self.clusterer_.labels_)
        outliers = np.asarray(self.clusterer_.outlier_mask_, dtype=bool)
        # Other rows (the rest of a large input, new rows, the batch engine's chunks) are
        # placed by their nearest fitted rows in the fused space: plain arrays, no pickle.
        self.neighbours_ = FitNeighbours(seed=cfg.seed).fit(fused, labels, outliers)
        return labels, np.asarray(self.clusterer_.probabilities_, dtype=float), outliers

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
        aspects = None
        if ok.any():
            clean = [x.text for x, k in zip(norm, ok, strict=True) if k]
            emb, p = (encode or self.encode)(clean)
            noise = self.noise_mask(clean, emb)
            if noise.any():  # not reviews: no sentiment, no segment (see flag_noise)
                status[np.flatnonzero(ok)[noise]] = STATUS_LOW_INFORMATION
                emb, p = emb[~noise], p[~noise]
                clean = [c for c, z in zip(clean, noise, strict=True) if not z]
                ok = status == STATUS_OK
        if ok.any():
            probs[ok] = p
            found = self.aspect_cells(clean, np.full(len(clean), STATUS_OK, dtype=object), emb, p)
            if found is not None:
                aspects = np.full(n, "", dtype=object)
                aspects[ok] = found
            frame = None
            if self.behavior_scaler_ is not None:
                frame = behavior if behavior is not None else pd.DataFrame(index=range(n))
                frame = frame.loc[ok] if len(frame) == n else frame
            lab, st, out = self.place_encoded(emb, p, frame, new_rows=True)
            labels[ok], strength[ok], outlier[ok] = lab, st, out
        names = {s["id"]: s["name"] for s in self.segments_}
        return build_assignments(labels, strength, outlier, probs, status, names, aspects=aspects)

    def place_encoded(
        self,
        embeddings: np.ndarray,
        probs: np.ndarray,
        behavior: pd.DataFrame | None = None,
        new_rows: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labels, strengths and outlier flags of already-encoded rows (all scorable).

        Every row not in the fit sample is placed here, by the distance-weighted vote of its
        nearest fitted rows in the fused space (:class:`~nlp_seg.stages.placement.FitNeighbours`):
        the rest of a large input in :meth:`fit`, the batch engine's chunks, and new rows.
        ``new_rows`` (what :meth:`predict`, ``assign`` and ``serve`` use) also flags rows far
        from every fitted row (``is_outlier``, lowered strength) rather than forcing them in.
        """
        if not hasattr(self, "neighbours_"):
            from nlp_seg.errors import NlpsegError

            raise NlpsegError("this segmenter is not fitted yet; call fit first")
        fused = self.fused_rows(embeddings, probs, behavior)
        labels, strength, outlier = self.neighbours_.place(fused, novelty=new_rows)
        if self.config.keep_outliers:
            labels = np.where(outlier, -1, labels)
        return labels, strength, outlier

    def fused_rows(
        self, embeddings: np.ndarray, probs: np.ndarray, behavior: pd.DataFrame | None = None
    ) -> np.ndarray:
        """Encoded rows in this segmenter's fused space (behaviour scaled as at fit time)."""
        beh = None
        if self.behavior_scaler_ is not None:
            frame = behavior if behavior is not None else pd.DataFrame(index=range(len(probs)))
            beh = self.behavior_scaler_.transform(frame)
        return self.fuser_.transform(
            self._fuse_blocks(np.asarray(embeddings, dtype=np.float32), probs, beh)
        )

    def save(self, path: str | Path) -> str:
        """Save the fitted segmenter to folder ``path`` as JSON + safetensors (no pickle; see
        :mod:`nlp_seg.models.store`); :func:`load_segmenter` reads it back."""
        from nlp_seg.io.write import package_versions
        from nlp_seg.models.store import model_record, write_folder
        from nlp_seg.version import __version__

        if not hasattr(self, "segments_"):
            raise NlpsegError("this segmenter is not fitted yet; call fit before save")
        if not hasattr(self, "fuser_"):
            raise NlpsegError(
                "nothing was segmented (no row had text), so there is nothing to save"
            )
        emb_id, sent_id = self.config.resolved_models()
        params, arrays = self.neighbours_.to_state()
        columns = getattr(self, "columns_", None)
        state = {
            "nlpseg_version": __version__,
            "versions": package_versions(),
            "config": asdict(self.config),
            "models": {
                "embedding": model_record(self.embedder, emb_id),
                "sentiment": model_record(self.sentiment, sent_id),
                **self._taxonomy_record(),
            },
            "columns": _columns_dict(columns),
            "behavior_scaler": self.behavior_scaler_.to_dict() if self.behavior_scaler_ else None,
            "fuser": self.fuser_.to_dict(),
            "neighbours": params,
            "reducer": _describe_stage(getattr(self, "reducer_", None)),
            "clusterer": _describe_stage(getattr(self, "clusterer_", None)),
            "fit": {
                "rows": int(getattr(self, "n_rows_in_", 0)),
                "scored": int(getattr(self, "n_scored_", 0)),
                "fit_sample_size": int(getattr(self, "fit_sample_size_", 0)),
            },
            "segments": self.segments_,
            "next_segment_id": int(getattr(self, "next_segment_id_", 0)),
            "lineage": getattr(self, "lineage_", None),
            # --orders/--events runs: unit, behaviour feature columns, reference date, tier
            # thresholds and CLV parameters, so assign and serve compute the same features.
            "behavior": getattr(self, "behavior_setup_", None),
        }
        return str(write_folder(path, state, arrays))

    def _taxonomy_record(self) -> dict[str, Any]:
        from nlp_seg.stages.aspects import taxonomy_fingerprint

        sha = taxonomy_fingerprint(self.config.aspects)
        return {"aspects": {"id": self.config.aspects, "sha256": sha}} if sha else {}

    def check_models(self) -> None:
        """Load the models and compare their files with the checksums recorded at save time
        (a different encoder would silently move every row to other segments)."""
        from nlp_seg.models.store import ModelFolderError, folder_fingerprint, slot_folder

        saved = getattr(self, "model_info_", None) or {}
        for kind, get in (
            ("embedding", self.encoder.get_embedder),
            ("sentiment", self.encoder.get_sentiment),
        ):
            expected = saved.get(kind, {}).get("sha256")
            slot = get()
            if not expected:
                continue  # a hub model read from the Hugging Face cache: only its id is recorded
            if hasattr(slot, "load"):
                slot.load()
            folder = slot_folder(slot)
            if folder is None:
                raise ModelFolderError(
                    f"the {kind} model {saved[kind]['id']!r} this segmenter was fitted with is "
                    "not a local folder here; install or prepare it first (nlpseg models prepare)"
                )
            actual = folder_fingerprint(folder)
            if actual != expected and folder_fingerprint(folder, legacy=True) != expected:
                raise ModelFolderError(
                    f"the {kind} model at {folder} differs from the one this segmenter was "
                    f"fitted with (checksum {actual[:12]}... vs {expected[:12]}...); its segments "
                    "would not mean the same, so re-fit (nlpseg analyze --save-model) with this "
                    "model"
                )
        expected = saved.get("aspects", {}).get("sha256")
        if expected:
            from nlp_seg.stages.aspects import taxonomy_fingerprint

            actual = taxonomy_fingerprint(self.config.aspects) or ""
            if actual != expected:
                raise ModelFolderError(
                    f"the {self.config.aspects!r} aspect taxonomy differs from the one this "
                    f"segmenter was fitted with (checksum {actual[:12]}... vs {expected[:12]}...):"
                    " its aspects shape the segments, so re-fit (nlpseg analyze --save-model)"
                )

    def describe(self) -> dict[str, Any]:
        """What this segmenter used: models, parameters, learned sizes (for ``run.json``)."""
        info: dict[str, Any] = {"config": asdict(self.config), **self.encoder.describe()}
        reducer = getattr(self, "reducer_", None)
        clusterer = getattr(self, "clusterer_", None)
        if reducer is not None and hasattr(reducer, "describe"):
            info["reduction"] = reducer.describe()
        if clusterer is not None and hasattr(clusterer, "describe"):
            info["clustering"] = clusterer.describe()
        if hasattr(self, "fuser_"):
            info["fusion"] = {"blocks": self.fuser_.blocks_, "dims": self.fuser_.dims_}
        if getattr(self, "_noise_filter", None) is not None:
            info["noise_filter"] = {
                **self._noise_filter.describe(),
                "head_used": bool(self._noise_head_applies),
            }
        if getattr(self, "aspect_scorer_", None) is not None:
            info["aspects"] = self.aspect_scorer_.describe()
        if hasattr(self, "neighbours_"):
            info["placement"] = {
                "method": "fused-space nearest fitted rows",
                "k": self.neighbours_.k,
            }
        keywords = getattr(getattr(self, "namer_", None), "keywords_info_", None)
        if keywords is not None:
            info["keywords"] = keywords
        note = self._segments_note()
        if note is not None:
            info["segments_note"] = note
        return info

    def _segments_note(self) -> dict[str, Any] | None:
        """Why this fit has few segments (:mod:`nlp_seg.stages.segments_note`), if it has."""
        from nlp_seg.stages.segments_note import segments_note

        clusterer = getattr(self, "clusterer_", None)
        raw = getattr(clusterer, "raw_labels_", None)
        if raw is None or not hasattr(self, "segments_"):
            return None
        return segments_note(
            n_texts=int(getattr(self, "n_scored_", len(raw))),
            n_segments=sum(int(s["id"]) >= 0 for s in self.segments_),
            min_cluster_size=int(getattr(clusterer, "min_cluster_size_", 0)),
            default_min_cluster_size=self.config.min_cluster_size is None,
            raw_labels=raw,
            merges=len(getattr(getattr(self, "merger_", None), "merges_", [])),
            clusterer_note=getattr(clusterer, "note_", None),
        )

    @property
    def note_(self) -> str | None:
        """HDBSCAN's note about the fit (e.g. no dense group found), if any."""
        clusterer = getattr(self, "clusterer_", None)
        if clusterer is not None and hasattr(clusterer, "describe"):
            return clusterer.describe().get("note")
        return (getattr(self, "saved_state_", {}).get("clusterer") or {}).get("note")


def _describe_stage(stage: Any) -> dict[str, Any] | None:
    if stage is None:
        return None
    info = stage.describe() if hasattr(stage, "describe") else {}
    return {"class": f"{type(stage).__module__}.{type(stage).__qualname__}", **info}


def _columns_dict(columns: Any) -> dict[str, Any] | None:
    if columns is None:
        return None
    d = asdict(columns)
    d["behavior"] = list(d.get("behavior") or ())
    return d


def build_assignments(
    labels: np.ndarray,
    strength: np.ndarray,
    outlier: np.ndarray,
    probs: np.ndarray,
    status: np.ndarray,
    names: dict[int, str],
    segmented: np.ndarray | None = None,
    aspects: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The per-row output columns (the README's contract), in input order; ``aspects`` (one
    ``aspect:polarity;...`` cell per row, see :meth:`Segmenter.aspect_cells`) also gives
    ``sentiment_mixed``. Without it both columns are empty/false."""
    from nlp_seg.stages.aspects import is_mixed, parse_aspects

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
    seg_name[status == STATUS_LOW_INFORMATION] = NOISE_SEGMENT_NAME
    cells = ["" if a is None else str(a) for a in aspects] if aspects is not None else [""] * n
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
            "aspects": pd.array(cells, dtype="string"),
            "sentiment_mixed": np.array([is_mixed(parse_aspects(c)) for c in cells], dtype=bool),
        }
    )


def load_segmenter(
    path: str | Path,
    *,
    device: str | None = None,
    batch_size: int | None = None,
    cache_dir: str | None = None,
    verify_models: bool = True,
    precision: str | None = None,
    reporter: Reporter | None = None,
) -> Segmenter:
    """A fitted :class:`Segmenter` from a folder written by :meth:`Segmenter.save`.

    The folder's files are checked against ``manifest.json`` and only JSON and safetensors
    are read (nothing in it can run code). With ``verify_models`` the embedding and sentiment
    models are loaded now and compared with the checksums recorded at save time.
    ``device`` / ``precision`` / ``batch_size`` / ``cache_dir`` override the saved run settings,
    which describe the machine it was fitted on, not this one.
    """
    from nlp_seg.io.read import ColumnSpec
    from nlp_seg.models.store import ModelFolderError, read_folder

    state, arrays = read_folder(path)
    try:
        known = {f.name for f in fields(SegmenterConfig)}
        cfg = SegmenterConfig(**{k: v for k, v in state["config"].items() if k in known})
        # Saved before the not-a-review filter existed: label new rows as it was fitted.
        cfg.noise_filter = bool(state["config"].get("noise_filter", False))
        if device is not None:
            cfg.device = device
        if precision is not None:
            from nlp_seg.models.precision import check_precision

            cfg.precision = check_precision(precision)
        if batch_size is not None:
            cfg.batch_size = batch_size
        cfg.cache_dir = cache_dir
        # Pin the exact models the segmenter was fitted with, whatever the profile means today.
        cfg.embedding_model = state["models"]["embedding"]["id"]
        cfg.sentiment_model = state["models"]["sentiment"]["id"]
        seg = Segmenter(cfg, reporter=reporter)
        seg.fuser_ = BlockFuser.from_dict(state["fuser"])
        scaler = state.get("behavior_scaler")
        seg.behavior_scaler_ = BehaviorScaler.from_dict(scaler) if scaler else None
        seg.neighbours_ = FitNeighbours.from_state(state["neighbours"], arrays)
        seg.segments_ = list(state["segments"])
        seg.next_segment_id_ = int(
            state.get("next_segment_id") or max([int(s["id"]) for s in seg.segments_] + [-1]) + 1
        )
        columns = state.get("columns")
        if columns:
            kw = {k: v for k, v in columns.items() if k in {f.name for f in fields(ColumnSpec)}}
            kw["behavior"] = tuple(kw.get("behavior") or ())
            seg.columns_ = ColumnSpec(**kw)
        else:
            seg.columns_ = None
        seg.behavior_setup_ = state.get("behavior")
        seg.model_info_ = state["models"]
        seg.saved_state_ = {
            k: state[k] for k in ("nlpseg_version", "versions", "fit", "clusterer") if k in state
        }
        seg.fit_sample_size_ = int(state.get("fit", {}).get("fit_sample_size", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFolderError(f"{path} holds an incomplete segmenter state ({exc})") from exc
    if verify_models:
        seg.check_models()
    return seg


def _nothing() -> Any:
    from contextlib import nullcontext

    return nullcontext()
