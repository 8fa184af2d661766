"""The encoder pass: normalise, deduplicate, embed and score sentiment, with a cache.

Every command reaches the models through this one stage, so a text is cleaned and encoded the
same way in ``analyze``, ``assign``, ``score``, ``batch`` and ``serve``. Equal texts are
encoded once; when the sentiment scorer reads the encoder's own vectors or hidden states (the
bundled profile) embedding and sentiment come out of one encoder pass; embeddings and
probabilities are cached on disk keyed by model and text hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nlp_seg.models.sentiment import make_sentiment_scorer
from nlp_seg.normalize import STATUS_OK, normalize_texts
from nlp_seg.progress import Reporter, SilentReporter, StageTimer

# Texts encoded per call when the sentiment head reads hidden states (bounds their memory).
LAYER_SLICE = 8192


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
        from nlp_seg.models.registry import resolve_local

        resolve_local(str(encoder))  # a missing folder is the clearer error: say that first
    raise NlpsegError(
        f"sentiment head {getattr(scorer, 'model_id', '?')!r} was trained on embedding model "
        f"{trained_for!r} but the encoder in use is {encoder!r}; pass --embedding-model "
        f"{trained_for}, a transformer --sentiment-model, or train a head for this encoder "
        "with `nlpseg train-sentiment`"
    )


def _stored_precision(emb: np.ndarray) -> np.ndarray:
    """Embeddings rounded to float16 (and widened back to float32): the precision the batch
    engine stores, so every command segments the very same vectors. It also absorbs the
    ~1e-7 jitter between encoding a text alone or in another batch (padding), which UMAP would
    otherwise amplify into other segment numbers."""
    return np.asarray(emb, dtype=np.float16).astype(np.float32)


def _weights_fingerprint(model: str) -> str:
    from nlp_seg.models.registry import local_model_folder, quick_fingerprint

    folder = local_model_folder(model)
    return quick_fingerprint(folder) if folder is not None else "hub"


class TextEncoder:
    """Clean texts in, embeddings and ``(n, 3)`` sentiment probabilities out.

    ``embedder`` / ``sentiment`` are the model slots (any object with the embedder's
    ``embed`` or the scorer's ``predict_proba``); left ``None`` they are built from the
    config's models on first use, so nothing heavy loads until a text needs it.
    """

    def __init__(
        self,
        config: Any,
        *,
        embedder: Any = None,
        sentiment: Any = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.sentiment = sentiment
        self.reporter = reporter or SilentReporter()

    def get_embedder(self) -> Any:
        """The embedder in use (built from the config on first call)."""
        if self.embedder is None:
            from nlp_seg.models.embedding import SentenceTransformerEmbedder

            emb_model, _ = self.config.resolved_models()
            self.embedder = SentenceTransformerEmbedder(
                emb_model,
                device=self.config.device,
                batch_size=self.config.batch_size,
                max_seq_length=self.config.max_seq_length,
                cache_dir=self.config.cache_dir,
                precision=self.config.precision,
            )
        return self.embedder

    def get_sentiment(self) -> Any:
        """The sentiment scorer in use (built from the config on first call)."""
        if self.sentiment is None:
            _, sent_model = self.config.resolved_models()
            self.sentiment = make_sentiment_scorer(
                sent_model, device=self.config.device, batch_size=self.config.batch_size
            )
        return self.sentiment

    @property
    def lowercase(self) -> bool:
        """Whether the models read lower-cased text: ``config.lowercase``, or by default when
        both models are the bundled ones (measured: labels no longer depend on case, and
        dev macro-F1 does not drop; docs/benchmarks.md)."""
        if self.config.lowercase is not None:
            return bool(self.config.lowercase)
        from nlp_seg.models.registry import (
            BUNDLED_ENCODER,
            BUNDLED_SENTIMENT,
            BUNDLED_SENTIMENT_BRANCH,
        )

        models = self.config.resolved_models()
        if models[0] == BUNDLED_ENCODER and models[1] in (
            BUNDLED_SENTIMENT,
            BUNDLED_SENTIMENT_BRANCH,
        ):
            return True
        # a head trained on lower-cased text (a fine-tuned branch) says so in its config
        return models[0] == BUNDLED_ENCODER and bool(
            getattr(self.get_sentiment(), "reads_lowercase", False)
        )

    def model_texts(self, texts: Sequence[str]) -> list[str]:
        """What the models read: the clean texts, Vietnamese typed without diacritics given
        them back (``config.restore_diacritics``, :mod:`nlp_seg.models.diacritics`), then
        lower-cased when :attr:`lowercase`."""
        return self._model_texts(texts)[0]

    def _model_texts(self, texts: Sequence[str]) -> tuple[list[str], int]:
        texts, restored = list(texts), 0
        if getattr(self.config, "restore_diacritics", False):
            from nlp_seg.models.diacritics import restore_texts

            texts, restored = restore_texts(texts)
        return ([t.lower() for t in texts] if self.lowercase else texts), restored

    def _distinct_model_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The distinct texts the models read and each input's index among them (equal
        texts are restored and encoded once)."""
        raw, raw_inverse = np.unique(np.asarray(list(texts), dtype=object), return_inverse=True)
        model, restored = self._model_texts([str(t) for t in raw])
        self.diacritics_restored_ = getattr(self, "diacritics_restored_", 0) + restored
        uniq, inverse = np.unique(np.asarray(model, dtype=object), return_inverse=True)
        return uniq, inverse[raw_inverse]

    def check_compatible(self) -> None:
        """Refuse a sentiment head trained on another encoder, before any text is embedded."""
        scorer = self.get_sentiment()
        if scorer.needs_embeddings:
            _check_head_encoder(scorer, self.get_embedder())

    def embed_plain(self, texts: list[str]) -> np.ndarray:
        """Sentence embeddings only (benefit tags, aspect descriptions)."""
        return self.get_embedder().embed(texts)

    def encode(
        self, texts: Sequence[str], timer: StageTimer | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and ``(n, 3)`` sentiment probabilities of clean texts, one encoder pass
        when the sentiment scorer reads embeddings (the bundled profile)."""
        timer = timer or StageTimer()
        uniq, inverse = self._distinct_model_texts(texts)
        uniq_list = [str(t) for t in uniq]
        scorer = self.get_sentiment()
        if scorer.needs_embeddings:
            _check_head_encoder(scorer, self.get_embedder())
        layers = tuple(getattr(scorer, "input_layers", ())) if scorer.needs_embeddings else ()
        branch = getattr(scorer, "branch", None) if scorer.needs_embeddings else None
        with (
            timer("embedding"),
            self.reporter.stage(
                f"Embedding {len(uniq_list):,} distinct text"
                + ("" if len(uniq_list) == 1 else "s"),
                total=len(uniq_list),
            ) as advance,
        ):
            if layers or branch is not None:  # the head's probabilities: the same pass
                emb, probs = self._encode_for_layer_head(scorer, uniq_list, layers, advance, branch)
                return _stored_precision(emb)[inverse], probs[inverse]
            emb = self.get_embedder().embed(uniq_list, progress=advance)
        with (
            timer("sentiment"),
            self.reporter.stage("Scoring sentiment", total=len(uniq_list)) as advance,
        ):
            if scorer.needs_embeddings:
                probs = scorer.predict_proba(uniq_list, embeddings=emb, progress=advance)
            else:
                probs = self._cached_proba(scorer, uniq_list, advance)
        return _stored_precision(emb)[inverse], np.asarray(probs, dtype=np.float64)[inverse]

    def _encode_for_layer_head(
        self,
        scorer: Any,
        texts: list[str],
        layers: tuple[int, ...],
        advance: Any,
        branch: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and probabilities for a head that reads hidden states (the bundled one).

        One encoder pass gives both. The head's probabilities are cached (keyed by the head's
        weights and the encoder settings) next to the embeddings, so a re-run with other
        clustering settings needs neither the encoder nor the layer features.
        """
        from pathlib import Path

        from nlp_seg.errors import NlpsegError
        from nlp_seg.models.cache import cached_rows

        embedder = self.get_embedder()
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
                if branch is None:
                    vecs, feats = embedder.embed_with_layers(part, layers, progress=advance)
                else:
                    vecs, feats = embedder.embed_with_layers(
                        part, layers, progress=advance, branch=branch
                    )
                put([position[t] for t in part], vecs)
                out.append(scorer.predict_proba(part, embeddings=feats))
            return np.concatenate(out)

        folder = Path(self.config.cache_dir) / "sentiment" if self.config.cache_dir else None
        namespace = f"head|{scorer.cache_key}|{embedder.cache_namespace}|layers={layers}"
        if branch is not None:
            namespace += f"|branch={branch.from_layer}+{branch.n_layers}"
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

        from nlp_seg.models.cache import cached_rows

        folder = Path(self.config.cache_dir) / "sentiment" if self.config.cache_dir else None
        namespace = (
            f"tf|{scorer.model_id}|{getattr(scorer, 'max_length', None)}"
            f"|{_weights_fingerprint(scorer.model_id)}"
        )
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
        scorer = self.get_sentiment()
        if scorer.needs_embeddings:
            return self.encode(texts, timer)[1]
        timer = timer or StageTimer()
        uniq, inverse = self._distinct_model_texts(texts)
        with (
            timer("sentiment"),
            self.reporter.stage("Scoring sentiment", total=len(uniq)) as advance,
        ):
            probs = self._cached_proba(scorer, [str(t) for t in uniq], advance)
        return np.asarray(probs, dtype=np.float64)[inverse]

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        if self.embedder is not None:
            info["embedding"] = self.embedder.describe()
        if self.sentiment is not None:
            info["sentiment"] = self.sentiment.describe()
            if hasattr(self, "sentiment_cache_"):
                info["sentiment"]["cache"] = dict(self.sentiment_cache_)
        if getattr(self.config, "restore_diacritics", False):
            from nlp_seg.models.diacritics import load_restorer

            info["diacritics"] = {
                "restore": True,
                "model": "models/diacritics_vi",
                "vocabulary": len(load_restorer().vocab),
                # distinct texts per encoder call (aspect clauses included), summed
                "texts_restored": int(getattr(self, "diacritics_restored_", 0)),
            }
        else:
            info["diacritics"] = {"restore": False}
        return info
