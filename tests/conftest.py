"""Shared fixtures.

Plumbing tests use *tiny random* transformer and sentence-transformers models that are built
here, saved to a temporary folder and loaded through the same code path as real models (by
folder path, offline). Tests that need real text read ``../shared/data`` and skip with a clear
reason when it is absent (a user's own clone); CI has it and runs them all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("NLPSEG_DATA_DIR", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VOCAB_WORDS = [
    "good",
    "great",
    "love",
    "excellent",
    "bad",
    "terrible",
    "awful",
    "hate",
    "ok",
    "fine",
    "phone",
    "battery",
    "camera",
    "screen",
    "delivery",
    "price",
    "cheap",
    "expensive",
    "fast",
    "slow",
    "hope",
    "add",
    "update",
    "fix",
    "please",
    "sản",
    "phẩm",
    "tốt",
    "quá",
    "tệ",
    "pin",
    "máy",
    "đẹp",
    "giao",
    "hàng",
    "nhanh",
    "chậm",
    "mong",
    "shop",
    "cải",
    "thiện",
    "cập",
    "nhật",
    "😍",
    "👍",
    "😡",
    "the",
    "is",
    "was",
    "very",
    "and",
    "but",
    "a",
    "it",
    "this",
    "not",
    "service",
    "quality",
]


def _tiny_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(VOCAB_WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    fast.save_pretrained(folder)


def _tiny_config(n_vocab: int, **extra: object) -> object:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=n_vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        **extra,
    )


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of a tiny sentiment classifier and a tiny sentence-transformers model."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st_models
    from transformers import BertForSequenceClassification, BertModel

    root = tmp_path_factory.mktemp("tiny_models")
    torch.manual_seed(0)
    clf_dir = root / "tiny-sentiment"
    _tiny_tokenizer(clf_dir)
    n_vocab = len(set(VOCAB_WORDS)) + 5
    clf = BertForSequenceClassification(
        _tiny_config(
            n_vocab,
            num_labels=3,
            id2label={0: "negative", 1: "neutral", 2: "positive"},
            label2id={"negative": 0, "neutral": 1, "positive": 2},
        )
    )
    clf.save_pretrained(clf_dir)

    enc_dir = root / "tiny-encoder-hf"
    _tiny_tokenizer(enc_dir)
    BertModel(_tiny_config(n_vocab)).save_pretrained(enc_dir)
    word = st_models.Transformer(str(enc_dir), max_seq_length=64)
    pool = st_models.Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    st_dir = root / "tiny-st"
    SentenceTransformer(modules=[word, pool, st_models.Normalize()]).save(str(st_dir))
    return {"sentiment": clf_dir, "embedding": st_dir}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real corpora not found at {SHARED_DATA} (CI has ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def visfd_reviews(shared_data: Path) -> pd.DataFrame:
    path = shared_data / "reviews" / "uit-visfd" / "Train.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return pd.read_csv(path)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory):
    """Keep caches out of the user's home; the numba cache, the converted bundled encoder and
    the default embedding cache are shared per test run. Session-wide, so module-scoped
    fixtures (fits shared by several tests) use it too. Under pytest-xdist the workers share
    one folder (the run's temporary folder, above each worker's): umap's numba code compiles
    and the encoder converts once per run, not once per worker (both are safe with several
    processes: numba writes its cache files atomically, the conversion runs under a file lock,
    the embedding cache is SQLite in WAL mode)."""
    home = os.environ.get("NLPSEG_TEST_HOME")
    if not home:
        base = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            base = base.parent  # the controller's folder, above popen-gw0, popen-gw1, ...
        home = str(base / "nlpseg_home")
        os.environ["NLPSEG_TEST_HOME"] = home
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLPSEG_HOME", home)
        yield
