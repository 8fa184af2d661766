"""Vietnamese typed without diacritics: the shipped restorer, which texts it touches, and the
pipeline reading restored text (issue 16's case and diacritics robustness)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nlp_seg.errors import NlpsegError
from nlp_seg.models.diacritics import DiacriticRestorer, load_restorer, phrases, train_restorer
from nlp_seg.models.registry import _shipped_model
from nlp_seg.normalize import strip_diacritics


@pytest.fixture(scope="module")
def restorer() -> DiacriticRestorer:
    return load_restorer()


@pytest.mark.parametrize(
    "typed",
    [
        "Giao hàng nhanh, đóng gói cẩn thận, sản phẩm rất tốt",
        "Hàng kém chất lượng, không giống mô tả",
        "Pin trâu, camera chụp đẹp nhưng hơi nóng khi chơi game",
        "Shop tư vấn nhiệt tình, sẽ ủng hộ lần sau",
    ],
)
def test_common_review_sentences_get_their_marks_back(
    restorer: DiacriticRestorer, typed: str
) -> None:
    stripped = strip_diacritics(typed)
    assert restorer.needs_restoring(stripped)
    assert restorer.restore(stripped) == typed


def test_case_spacing_and_what_is_not_a_syllable_are_kept(restorer: DiacriticRestorer) -> None:
    typed = "GIAO HANG nhanh!!  Dong goi 10/10 😍 cam on shop"
    out = restorer.restore(typed)
    assert out == "GIAO HÀNG nhanh!!  Đóng gói 10/10 😍 cảm ơn shop"
    assert strip_diacritics(out) == typed


@pytest.mark.parametrize(
    "text",
    [
        "have not used it yet",  # English: it, not, yet look Vietnamese, have/used do not
        "I never got my order",
        "O produto chegou rápido e funciona muito bem",
        "el de hoy es feo",
        "Giao hàng nhanh nhưng hop bi mop",  # typed with marks: left as typed
        "ok ok",  # too short to tell
    ],
)
def test_texts_that_are_not_stripped_vietnamese_are_left_alone(
    restorer: DiacriticRestorer, text: str
) -> None:
    assert not restorer.needs_restoring(text)
    assert restorer.restore_many([text]) == ([text], 0)


@pytest.mark.parametrize(
    ("typed", "restored"),
    [
        ("Kha ok !!!", "Khá ok !!!"),  # a loanword tells neither language
        ("Cung dc. Hehe", "Cũng đc. Hehe"),
        ("Hang giao nhanh, nguyen seal. Thanks Tiki", "Hàng giao nhanh, nguyên seal. Thanks Tiki"),
        ("Co le dep, hai long voi sp, ok ok ok ok", "Có lẽ đẹp, hài lòng với sp, ok ok ok ok"),
        ("Okeee nhaaaa DEPPPPP", "Okeee nhaaaa ĐẸPPPPP"),  # each repeat keeps its mark
        ("hangggg dep lam", "hàngggg đẹp lắm"),
    ],
)
def test_loanwords_and_elongated_letters_do_not_hide_stripped_vietnamese(
    restorer: DiacriticRestorer, typed: str, restored: str
) -> None:
    assert restorer.needs_restoring(typed)
    assert restorer.restore(typed) == restored


@pytest.mark.parametrize(
    "text",
    [
        "No la recomiendo, no me gusto",  # no, la, me are Vietnamese syllables too
        "Aun no lo he recibido",
        "Read closely....it's an expansion set...not the game",
        "good product, love it, very nice",
    ],
)
def test_stop_words_that_look_vietnamese_count_for_neither_language(
    restorer: DiacriticRestorer, text: str
) -> None:
    assert not restorer.needs_restoring(text)


def test_reviews_of_other_languages_are_not_given_vietnamese_marks(
    restorer: DiacriticRestorer, shared_data: Path
) -> None:
    """None of the first 1,000 MARC English and Spanish reviews and UMSAB Spanish tweets
    (several were, "Aun no lo he recibido" -> "Aun nó lỗ hệ recibido", before shared stop
    words stopped counting as Vietnamese)."""
    marc = shared_data / "sentiment" / "marc-amazon-multi"
    texts = [
        *pd.read_csv(marc / "en.csv", header=None)[1].dropna().astype(str).head(1000),
        *pd.read_csv(marc / "es.csv", header=None)[1].dropna().astype(str).head(1000),
        *(shared_data / "sentiment/umsab-xlmt/spanish/val_text.txt").read_text().splitlines(),
    ]
    touched = [t for t in texts if restorer.needs_restoring(t)]
    assert len(touched) <= 2, touched[:5]


def test_restores_most_syllables_of_real_dev_reviews(
    restorer: DiacriticRestorer, shared_data: Path
) -> None:
    """UIT-ViSFD dev was never counted: 94.5% of its syllables come back right on the first
    1,000 (models/diacritics_vi/README.md); 300 here."""
    dev = pd.read_csv(shared_data / "reviews" / "uit-visfd" / "Dev.csv")["comment"].dropna()
    right = total = picked = 0
    for text in dev.astype(str).head(300):
        stripped = strip_diacritics(text)
        picked += restorer.needs_restoring(stripped)
        gold = [s for p in phrases(text) for s in p]
        got = [s for p in phrases(restorer.restore(stripped)) for s in p]
        assert len(got) == len(gold)
        right += sum(g == r for g, r in zip(gold, got, strict=True))
        total += len(gold)
    assert right / total >= 0.9, right / total
    assert picked >= 0.95 * 300


def test_counting_skips_texts_typed_without_marks() -> None:
    model = train_restorer(
        ["pin tụt nhanh quá", "pin tụt nhanh quá", "pin tut nhanh qua", "pin tut nhanh qua"],
        min_count=1,
    )
    assert model.record["texts_used"] == 2
    assert "tut" not in model.vocab and "tụt" in model.vocab


def test_a_tampered_model_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    shipped = _shipped_model("diacritics_vi")
    bad = tmp_path / "bad"
    shutil.copytree(shipped, bad)
    config = json.loads((bad / "config.json").read_text("utf-8"))
    config["vocab"] = config["vocab"][:100]  # ids in the counts now point past the vocabulary
    (bad / "config.json").write_text(json.dumps(config), "utf-8")
    with pytest.raises(NlpsegError, match="do not match its vocabulary"):
        DiacriticRestorer.load(bad)

    (bad / "config.json").write_text(json.dumps({**config, "format": "pickle"}), "utf-8")
    with pytest.raises(NlpsegError, match="is not a nlpseg-diacritics/1 model"):
        DiacriticRestorer.load(bad)

    (bad / "counts.safetensors").write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(NlpsegError, match="cannot be read"):
        DiacriticRestorer.load(bad)


def test_the_pipeline_reads_restored_text_and_says_so() -> None:
    """The sentiment of a stripped review is that of the marked one, and run.json's models
    section counts the texts restored; ``restore_diacritics=False`` reads them as typed."""
    from nlp_seg.segmenter import Segmenter, SegmenterConfig

    typed = [
        "Hàng kém chất lượng, không giống mô tả, shop trả lời chậm",
        "Sản phẩm rất tốt, giao hàng nhanh, đóng gói cẩn thận",
    ]
    stripped = [strip_diacritics(t) for t in typed]
    seg = Segmenter(SegmenterConfig())
    scored = seg.score(typed + stripped)
    labels = scored["sentiment_label"].astype(str).to_numpy()
    assert list(labels[:2]) == ["negative", "positive"]
    assert list(labels[2:]) == list(labels[:2])
    np.testing.assert_allclose(
        scored["sentiment_score"].to_numpy()[2:], scored["sentiment_score"].to_numpy()[:2]
    )
    info = seg.encoder.describe()["diacritics"]
    assert info["restore"] is True and info["texts_restored"] == 2

    as_typed = Segmenter(SegmenterConfig(restore_diacritics=False))
    raw = as_typed.score(stripped)["sentiment_score"].to_numpy()
    assert not np.allclose(raw, scored["sentiment_score"].to_numpy()[2:])
    assert as_typed.encoder.describe()["diacritics"] == {"restore": False}


def test_run_json_records_the_restorer_and_the_flag_turns_it_off(
    tmp_path: Path, tiny_models: dict[str, Path]
) -> None:
    """``analyze`` restores by default and says how many texts in run.json;
    ``--no-restore-diacritics`` is recorded as such (and in the parameters)."""
    import os
    import subprocess
    import sys

    rows = [
        "giao hang nhanh, dong goi can than",
        "hang kem chat luong, khong giong mo ta",
        "Sản phẩm rất tốt, sẽ ủng hộ shop",
        "Terrible battery, it died in a day",
    ] * 8
    src = tmp_path / "r.csv"
    pd.DataFrame({"review": rows}).to_csv(src, index=False)
    models = [
        "--embedding-model",
        str(tiny_models["embedding"]),
        "--sentiment-model",
        str(tiny_models["sentiment"]),
    ]
    records = {}
    for flag in ([], ["--no-restore-diacritics"]):
        out = tmp_path / ("as-typed" if flag else "restored")
        proc = subprocess.run(
            [sys.executable, "-m", "nlp_seg", "-q", "analyze", str(src), "--out", str(out)]
            + models
            + ["--no-report", *flag],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr
        records[bool(flag)] = json.loads((out / "run.json").read_text("utf-8"))
    restored, as_typed = records[False], records[True]
    assert restored["parameters"]["restore_diacritics"] is True
    assert restored["pipeline"]["diacritics"]["restore"] is True
    assert restored["pipeline"]["diacritics"]["texts_restored"] == 2  # distinct texts
    assert as_typed["parameters"]["restore_diacritics"] is False
    assert as_typed["pipeline"]["diacritics"] == {"restore": False}


@pytest.mark.parametrize(
    ("typed", "lang"),
    [
        ("Meu Deus, meu coração não aguenta, você viu?", "pt"),
        ("El envío llegó rápido, la batería dura poco", "es"),
        ("Le produit est très déçu, à éviter", "fr"),
    ],
)
def test_romance_languages_typed_without_accents_get_them_back(typed: str, lang: str) -> None:
    from nlp_seg.models.diacritics import restore_texts

    stripped = strip_diacritics(typed)
    (out,), changed = restore_texts([stripped])
    assert changed == 1
    words_back = sum(a == b for a, b in zip(out.split(), typed.split(), strict=True))
    assert words_back >= len(typed.split()) - 1, out  # an accent as rare as "llegó" may stay


def test_accent_restorer_leaves_english_accented_and_ambiguous_words() -> None:
    from nlp_seg.models.diacritics import AccentRestorer, restore_texts

    english = "I never got my order, it was a waste of money"
    accented = "Não gostei do produto"
    assert restore_texts([english, accented]) == ([english, accented], 0)
    latin = AccentRestorer()
    assert latin.language("esta caixa nao veio com o cabo") == "pt"
    # "esta" (this) and "está" (is) are both common: left as typed; "nao" is not a word
    assert latin.restore("esta caixa nao veio", "pt") == "esta caixa não veio"
    assert latin.restore("NAO gostei", "pt") == "NÃO gostei"
