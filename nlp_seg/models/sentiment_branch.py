"""The fine-tuned sentiment branch: a copy of the encoder's top layers trained for sentiment.

Why: a head on frozen hidden states has flattened (models/sentiment_head/README.md), and
fine-tuning is what closes most of the gap to fine-tuned models. Fine-tuning the whole encoder
would change the sentence embeddings the segments are built on, and a second encoder would
double the cost. So the encoder's lower layers run once, as today; its own top layers go on to
the sentence embedding (segments keep their meaning) and a *copy* of the top ``K`` layers,
fine-tuned for sentiment, reads the same intermediate hidden states and feeds the linear head.
The branch costs ``K / 12`` of an encoder pass.

The branch is stored as ``branch.safetensors`` (float16 tensors named as in
``transformers``' ``BertLayer``) next to the head's ``config.json``, whose ``branch`` entry
says where it attaches (``from_layer``: the index into ``hidden_states``) and the layer shape.
Nothing is pickled.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nlp_seg.errors import ModelUnavailableError

BRANCH_FILE = "branch.safetensors"
# BertConfig fields a branch layer needs; stored in the head config so a branch loads without
# the encoder folder at hand.
LAYER_CONFIG_KEYS = (
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "layer_norm_eps",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
)


def layer_config(bert_config: Any) -> dict[str, Any]:
    """The part of an encoder's config that shapes one of its layers."""
    return {k: getattr(bert_config, k) for k in LAYER_CONFIG_KEYS}


def _bert_config(spec: Mapping[str, Any]) -> Any:
    from transformers import BertConfig

    cfg = BertConfig(**{k: spec[k] for k in LAYER_CONFIG_KEYS if k in spec})
    cfg._attn_implementation = "sdpa"
    return cfg


class SentimentBranch:
    """``K`` transformer layers on top of hidden state ``from_layer``, mean-pooled.

    Built from an encoder (:meth:`from_encoder`, for training) or read from a head folder
    (:meth:`load`). :meth:`pool` is what inference calls, inside the encoder pass.
    """

    def __init__(self, from_layer: int, layers: Any, spec: Mapping[str, Any]) -> None:
        self.from_layer = int(from_layer)
        self.layers = layers  # torch.nn.ModuleList of BertLayer
        self.spec = dict(spec)
        self._config = _bert_config(self.spec)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @classmethod
    def from_encoder(cls, bert: Any, k: int) -> SentimentBranch:
        """A trainable copy of the top ``k`` layers of a ``BertModel``."""
        n = len(bert.encoder.layer)
        if not 1 <= k < n:
            raise ValueError(f"the branch needs 1 to {n - 1} layers, not {k}")
        import torch

        layers = torch.nn.ModuleList(copy.deepcopy(bert.encoder.layer[n - k :])).float()
        return cls(n - k, layers, layer_config(bert.config))

    def to(self, device: Any) -> SentimentBranch:
        self.layers.to(device)
        return self

    def pool(self, hidden: Any, attention_mask: Any) -> Any:
        """Run the branch on ``hidden`` (batch, tokens, d) and mean-pool over the mask."""
        from transformers.masking_utils import create_bidirectional_mask

        h = hidden.to(next(self.layers.parameters()).dtype)
        mask = create_bidirectional_mask(
            config=self._config, inputs_embeds=h, attention_mask=attention_mask
        )
        for layer in self.layers:
            out = layer(h, mask)
            h = out[0] if isinstance(out, tuple) else out
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)

    # ------------------------------------------------------------------ persistence
    def state_arrays(self) -> dict[str, np.ndarray]:
        return {
            f"layer.{i}.{name}": t.detach().float().cpu().numpy().astype(np.float16)
            for i, layer in enumerate(self.layers)
            for name, t in layer.state_dict().items()
        }

    def save(self, folder: str | Path) -> dict[str, Any]:
        """Write ``branch.safetensors`` (float16); returns the config entry describing it."""
        from safetensors.numpy import save_file

        path = Path(folder) / BRANCH_FILE
        save_file(self.state_arrays(), str(path))
        return {
            "file": BRANCH_FILE,
            "from_layer": self.from_layer,
            "layers": self.n_layers,
            "pooling": "mean",
            "dtype": "float16",
            **self.spec,
        }

    @classmethod
    def load(cls, folder: str | Path, entry: Mapping[str, Any]) -> SentimentBranch:
        """Read a branch saved by :meth:`save`; a missing or mismatched file is one clear line."""
        import torch
        from safetensors.numpy import load_file
        from transformers.models.bert.modeling_bert import BertLayer

        path = Path(folder) / str(entry.get("file", BRANCH_FILE))
        if path.name != BRANCH_FILE or not path.is_file():
            raise ModelUnavailableError(
                f"sentiment head in {folder} names a branch but has no {BRANCH_FILE}"
            )
        try:
            k = int(entry["layers"])
            from_layer = int(entry["from_layer"])
            config = _bert_config(entry)
            tensors = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - a corrupt file or config -> one line
            raise ModelUnavailableError(
                f"cannot read the sentiment branch in {folder}: {exc}"
            ) from exc
        layers = torch.nn.ModuleList([BertLayer(config) for _ in range(k)])
        expected = {
            f"layer.{i}.{name}": tuple(t.shape)
            for i, layer in enumerate(layers)
            for name, t in layer.state_dict().items()
        }
        got = {name: tuple(a.shape) for name, a in tensors.items()}
        if got != expected:
            wrong = sorted(set(got.items()) ^ set(expected.items()))[:3]
            raise ModelUnavailableError(
                f"sentiment branch in {folder}: {BRANCH_FILE} does not match its config "
                f"({k} layers; first differences {wrong})"
            )
        for i, layer in enumerate(layers):
            prefix = f"layer.{i}."
            layer.load_state_dict(
                {
                    n[len(prefix) :]: torch.from_numpy(a.astype(np.float32))
                    for n, a in tensors.items()
                    if n.startswith(prefix)
                }
            )
        layers.eval()
        return cls(from_layer, layers, {k_: entry[k_] for k_ in LAYER_CONFIG_KEYS if k_ in entry})
