"""Fine-tuning the sentiment branch on cached lower-layer hidden states.

Why cached states: the encoder's lower layers are frozen, so their output for a text never
changes between epochs. Computing it once (float16, about 0.8 KB per token) turns every epoch
into ``K`` layers of forward and backward work instead of twelve, which is what makes
fine-tuning fit a 2-core CPU. The same code trains on a GPU (``device="cuda"``).

:class:`BranchClassifier` is the branch plus a linear layer over its mean-pooled output and the
head's emoji features; after training it is written as an ordinary head folder
(:func:`save_branch_head`): the linear layer becomes a one-layer ``SentimentHead`` and the
layers ``branch.safetensors``. Checkpoints are safetensors + JSON (no pickle), so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nlp_seg.models.sentiment_branch import SentimentBranch


@dataclass
class TokenStates:
    """Hidden states of many texts in one flat ``(tokens, d)`` array, ``offsets[i]`` to
    ``offsets[i + 1]`` being text ``i``'s tokens (prompt included, padding excluded)."""

    flat: np.ndarray
    offsets: np.ndarray

    def length(self, i: np.ndarray) -> np.ndarray:
        return self.offsets[np.asarray(i) + 1] - self.offsets[np.asarray(i)]

    def batch(self, rows: np.ndarray) -> tuple[Any, Any]:
        """Padded ``(b, L, d)`` float32 states and the ``(b, L)`` mask of ``rows``."""
        import torch

        lens = self.length(rows)
        width = int(lens.max())
        out = np.zeros((len(rows), width, self.flat.shape[1]), dtype=np.float32)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for j, (i, n) in enumerate(zip(rows, lens, strict=True)):
            out[j, :n] = self.flat[self.offsets[i] : self.offsets[i] + n]
            mask[j, :n] = 1
        return torch.from_numpy(out), torch.from_numpy(mask)


def length_batches(
    lengths: np.ndarray, rows: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of similar length (little padding): shuffle, sort within pools of 50
    batches, cut, shuffle the batches."""
    rows = rng.permutation(rows)
    pool = batch_size * 50
    out = []
    for s in range(0, len(rows), pool):
        chunk = rows[s : s + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


class BranchClassifier:
    """Branch layers + linear classifier over ``[frozen layers' pooled states, mean-pooled
    branch output, emoji features]``, standardised by ``feature_mean`` / ``feature_scale``
    (what the saved head's scaler holds; see :func:`feature_statistics`).

    Why standardise: pooled transformer states have a few dimensions hundreds of times larger
    than the rest, and a linear layer on them trains slowly and badly (as the frozen head
    found, which z-scores its inputs too).
    """

    def __init__(
        self,
        branch: SentimentBranch,
        feature_mean: np.ndarray,
        feature_scale: np.ndarray,
        frozen_layers: Sequence[int] = (),
    ) -> None:
        import torch

        self.branch = branch
        self.frozen_layers = tuple(int(i) for i in frozen_layers)
        self.linear = torch.nn.Linear(len(feature_mean), 3)
        torch.nn.init.zeros_(self.linear.bias)
        torch.nn.init.normal_(self.linear.weight, std=0.01)
        self.feature_mean = torch.tensor(feature_mean, dtype=torch.float32)
        self.feature_scale = torch.tensor(feature_scale, dtype=torch.float32)

    @property
    def n_frozen(self) -> int:
        return int(self.branch.spec["hidden_size"]) * len(self.frozen_layers)

    def parameters(self) -> list[Any]:
        return list(self.branch.layers.parameters()) + list(self.linear.parameters())

    def train(self, mode: bool = True) -> None:
        self.branch.layers.train(mode)
        self.linear.train(mode)

    def logits(self, hidden: Any, mask: Any, extra: Any) -> Any:
        """``extra`` holds the frozen layers' pooled, L2-normalised states (if any) and then
        the emoji features, in the order the saved head reads them."""
        import torch

        pooled = self.branch.pool(hidden, mask).float()
        k = self.n_frozen
        x = torch.cat([extra[:, :k], pooled, extra[:, k:]], dim=1)
        return self.linear((x - self.feature_mean) / self.feature_scale)

    def state(self) -> dict[str, Any]:
        named = {f"branch.{k}": v for k, v in self.branch.layers.state_dict().items()}
        named.update({f"linear.{k}": v for k, v in self.linear.state_dict().items()})
        return named

    def load_state(self, tensors: dict[str, Any]) -> None:
        self.branch.layers.load_state_dict(
            {k[len("branch.") :]: v for k, v in tensors.items() if k.startswith("branch.")}
        )
        self.linear.load_state_dict(
            {k[len("linear.") :]: v for k, v in tensors.items() if k.startswith("linear.")}
        )


def predict_logits(
    model: BranchClassifier,
    states: TokenStates,
    rows: np.ndarray,
    extra: np.ndarray,
    batch_size: int = 128,
    bf16: bool = False,
) -> np.ndarray:
    """Logits of ``rows`` (eval mode, no gradients, batches sorted by length)."""
    import torch

    model.train(False)
    order = rows[np.argsort(states.length(rows), kind="stable")]
    out = np.zeros((len(rows), 3), dtype=np.float32)
    pos = {int(r): j for j, r in enumerate(rows)}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for s in range(0, len(order), batch_size):
            b = order[s : s + batch_size]
            h, m = states.batch(b)
            lg = model.logits(h, m, torch.from_numpy(extra[b]).float()).float().numpy()
            out[[pos[int(r)] for r in b]] = lg
    return out


def _save_checkpoint(path: Path, model: BranchClassifier, opt: Any, meta: dict) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state().items()}
    for idx, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            t = v if isinstance(v, torch.Tensor) else torch.tensor(float(v))
            tensors[f"opt.{idx}.{name}"] = t.detach().contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))


def _load_checkpoint(path: Path, model: BranchClassifier, opt: Any) -> dict:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    model.load_state({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    sd = opt.state_dict()
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    return json.loads(path.with_suffix(".json").read_text())


def fit_branch(
    model: BranchClassifier,
    states: TokenStates,
    rows: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    extra: np.ndarray,
    *,
    epochs: float = 2.0,
    batch_size: int = 32,
    lr: float = 5e-5,
    head_lr: float = 2e-3,
    weight_decay: float = 0.01,
    warmup: float = 0.05,
    seed: int = 0,
    bf16: bool = False,
    checkpoint: Path | None = None,
    every: int = 200,
    evaluate: Callable[[BranchClassifier], float] | None = None,
    eval_every: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``model`` with weighted cross-entropy, AdamW and a linear warm-up / decay.

    Resumes from ``checkpoint`` when it exists. With ``evaluate`` (a higher-is-better score of
    the model, e.g. dev macro-F1) the best state seen at each evaluation is kept and restored
    at the end. Returns a record of the run (steps, seconds, evaluations).
    """
    import torch

    torch.manual_seed(seed)
    lengths = states.length(np.arange(len(states.offsets) - 1))
    per_epoch = math.ceil(len(rows) / batch_size)
    total = int(math.ceil(per_epoch * epochs))
    groups = [
        {"params": list(model.branch.layers.parameters()), "lr": lr, "weight_decay": weight_decay},
        {"params": list(model.linear.parameters()), "lr": head_lr, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups)
    base = [g["lr"] for g in opt.param_groups]
    step = 0
    record: dict[str, Any] = {"evaluations": [], "seconds": 0.0}
    best: tuple[float, dict[str, Any]] | None = None
    if checkpoint is not None and checkpoint.exists():
        meta = _load_checkpoint(checkpoint, model, opt)
        step, record = int(meta["step"]), meta["record"]
        log(f"resumed at step {step}/{total}")
    # The batch order of every epoch is fixed by the seed, so a resumed run continues the
    # very sequence it was on.
    plan: list[np.ndarray] = []
    e = 0
    while len(plan) < total:
        plan += length_batches(lengths, rows, batch_size, np.random.default_rng(seed + e))
        e += 1
    w_all = torch.from_numpy(np.asarray(weights, dtype=np.float32))
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    x_extra = np.asarray(extra, dtype=np.float32)
    index = {int(r): j for j, r in enumerate(rows)}
    t0 = time.time()
    seen_loss: list[float] = []
    eval_every = eval_every or per_epoch
    while step < total:
        model.train(True)
        b = plan[step]
        j = np.array([index[int(r)] for r in b])
        frac = step / max(total, 1)
        scale = (
            min(1.0, frac / warmup) if warmup > 0 and frac < warmup else (1 - frac) / (1 - warmup)
        )
        for g, b0 in zip(opt.param_groups, base, strict=True):
            g["lr"] = b0 * max(scale, 0.0)
        h, m = states.batch(b)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model.logits(h, m, torch.from_numpy(x_extra[j]))
        loss_each = torch.nn.functional.cross_entropy(logits.float(), y_all[j], reduction="none")
        loss = (loss_each * w_all[j]).sum() / w_all[j].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        seen_loss.append(float(loss))
        if step % 50 == 0:
            rate = 50 * batch_size / max(time.time() - t0, 1e-9)
            log(f"step {step}/{total} loss {np.mean(seen_loss[-50:]):.4f} ({rate:.0f} texts/s)")
            record["seconds"] = float(record["seconds"]) + (time.time() - t0)
            t0 = time.time()
        if evaluate is not None and (step % eval_every == 0 or step == total):
            score = float(evaluate(model))
            record["evaluations"].append({"step": step, "score": score})
            log(f"eval at step {step}: {score:.4f}")
            if best is None or score > best[0]:
                best = (score, {k: v.detach().clone() for k, v in model.state().items()})
        if checkpoint is not None and (step % every == 0 or step == total):
            _save_checkpoint(checkpoint, model, opt, {"step": step, "record": record})
    if best is not None:
        model.load_state(best[1])
        record["best_score"] = best[0]
    record["steps"] = step
    return record


def feature_statistics(
    branch: SentimentBranch,
    states: TokenStates,
    rows: np.ndarray,
    extra: np.ndarray,
    n_frozen: int,
    sample: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the classifier's input, the branch's part measured on a seeded sample
    of ``rows`` before training (scale 1 where a feature is constant)."""
    import torch

    pick = np.random.default_rng(seed).permutation(rows)[:sample]
    pick = pick[np.argsort(states.length(pick), kind="stable")]
    pooled = []
    with torch.inference_mode():
        branch.layers.eval()
        for s in range(0, len(pick), 128):
            h, m = states.batch(pick[s : s + 128])
            pooled.append(branch.pool(h, m).float().numpy())
    p = np.concatenate(pooled)

    def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sd = x.std(axis=0)
        sd[sd < 1e-8] = 1.0
        return x.mean(axis=0), sd

    (fm, fs), (pm, ps), (em, es) = (
        stats(extra[rows][:, :n_frozen]) if n_frozen else (np.zeros(0), np.zeros(0)),
        stats(p),
        stats(extra[rows][:, n_frozen:]),
    )
    mean = np.concatenate([fm, pm, em]).astype(np.float32)
    scale = np.concatenate([fs, ps, es]).astype(np.float32)
    return mean, scale


def save_branch_head(
    model: BranchClassifier,
    folder: str | Path,
    *,
    temperature: float,
    lexicon: dict[str, Sequence[float]] | None,
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """Write the trained branch as a head folder the pipeline loads like any other."""
    from nlp_seg.models.sentiment_head import SentimentHead

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    dim = int(model.branch.spec["hidden_size"]) * (1 + len(model.frozen_layers))
    n_extra = model.linear.weight.shape[1] - dim
    head = SentimentHead(
        kind="logreg",
        use_emoji=n_extra > 0,
        lexicon=lexicon,
        calibrate=False,
        input_layers=model.frozen_layers,
    )
    head.mean_ = model.feature_mean.numpy().astype(np.float64)
    head.scale_ = model.feature_scale.numpy().astype(np.float64)
    w = model.linear.weight.detach().float().numpy().T.astype(np.float64)
    b = model.linear.bias.detach().float().numpy().astype(np.float64)
    head.layers_ = [(w, b)]
    head.temperature_ = float(temperature)
    head.classes_seen_ = [0, 1, 2]
    entry = model.branch.save(out)
    cfg = {"branch": entry, "lowercase": True}
    cfg.update(extra_config or {})
    head.save(out, extra_config=cfg)
    return out


def lower_states(
    st: Any,
    texts: Sequence[str],
    from_layer: int,
    prompt: str = "query: ",
    max_tokens: int = 128,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    pooled_layers: Sequence[int] = (),
) -> tuple[TokenStates, np.ndarray]:
    """Hidden state ``from_layer`` of every text (float16), the input the branch trains on,
    and the mean-pooled, L2-normalised states of ``pooled_layers`` (the frozen features the
    head reads beside the branch), from one pass.

    ``st`` is the sentence-transformers model whose transformer the branch was cut from;
    texts get the prompt the pipeline adds and are cut at ``max_tokens`` tokens.
    """
    import torch

    bert = st[0].auto_model
    tok = st.tokenizer
    full = [prompt + t for t in texts]
    ids = tok(full, truncation=True, max_length=max_tokens)["input_ids"]
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    d = bert.config.hidden_size
    flat = np.zeros((int(offsets[-1]), d), dtype=np.float16)
    pooled = np.zeros((len(texts), d * len(pooled_layers)), dtype=np.float32)
    order = np.argsort(lengths, kind="stable")
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = tok(
                [full[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_tokens,
                return_tensors="pt",
            ).to(bert.device)
            hidden = bert(**enc, output_hidden_states=True).hidden_states
            mask = enc["attention_mask"].unsqueeze(-1).float()
            vecs = [
                torch.nn.functional.normalize(
                    (hidden[i].float() * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=1
                )
                for i in pooled_layers
            ]
            if vecs:
                pooled[idx] = torch.cat(vecs, dim=1).cpu().numpy()
            h = hidden[from_layer].to(torch.float16).cpu().numpy()
            for j, i in enumerate(idx):
                flat[offsets[i] : offsets[i + 1]] = h[j, : lengths[i]]
            if progress:
                progress(len(idx))
    return TokenStates(flat=flat, offsets=offsets), pooled
