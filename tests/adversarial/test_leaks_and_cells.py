"""Adversarial cases: personal data in shared outputs, spreadsheet formulas, stale caches.

Each test drives the real CLI (a subprocess) on a real file, as a careless user or an attacker
would, and checks the written files themselves.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_cli import nlpseg, tiny_args

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "reviews.csv"

PHONES = ["0901234567", "+84 912 345 678", "(028) 3823 4567"]
EMAILS = ["nguyen.van.a@example.com", "maria+promo@example.org"]


@pytest.fixture(scope="module")
def leaky_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example reviews with contacts written into the review texts."""
    df = pd.read_csv(EXAMPLE, dtype=str)
    contacts = PHONES + EMAILS
    for i, c in enumerate(contacts):
        for j in range(6):  # several rows each, so some of them become quotes
            row = i * 6 + j
            df.loc[row, "review"] = f"{df.loc[row, 'review']} lien he {c} nhe"
    path = tmp_path_factory.mktemp("leaky") / "reviews.csv"
    df.to_csv(path, index=False)
    return path


def _leaks(text: str) -> list[str]:
    """Contacts found as written, or as their bare digits standing alone."""
    found = [e for e in EMAILS if e in text]
    for p in PHONES:
        digits = "".join(ch for ch in p if ch.isdigit())
        if p in text or re.search(rf"(?<!\d){digits}(?!\d)", text):
            found.append(p)
    return found


def test_no_contact_in_report_segments_or_saved_model(
    leaky_csv: Path, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    out, model = tmp_path / "out", tmp_path / "model"
    proc = nlpseg(
        "-q", "analyze", str(leaky_csv), "--out", str(out), "--save-model", str(model),
        *tiny_args(tiny_models),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shared = {
        "report.html": (out / "report.html").read_text(encoding="utf-8"),
        "segments.json": (out / "segments.json").read_text(encoding="utf-8"),
        "segmenter.json": (model / "segmenter.json").read_text(encoding="utf-8"),
    }
    for name, text in shared.items():
        assert not _leaks(text), f"{name} shows {_leaks(text)}"
    quotes = [q for s in json.loads(shared["segments.json"])["segments"] for q in s["examples"]]
    assert any("@phone" in q for q in quotes) or any("@email" in q for q in quotes)


def test_no_formula_reaches_a_csv_whatever_the_dtype(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """A Parquet input with categorical and Arrow-string columns carrying formulas."""
    formulas = ['=HYPERLINK("http://x","y")', "@cmd", "=1+1", "-1+2", "\t=1+1", "+SUM(A1)"]
    n = 24
    df = pd.DataFrame(
        {
            "id": pd.array([f"c{i}" for i in range(n)], dtype="string[pyarrow]"),
            "review": pd.Categorical(
                [formulas[i % len(formulas)] + " good phone" for i in range(n)]
            ),
            "note": pd.Categorical([formulas[(i + 1) % len(formulas)] for i in range(n)]),
            "delta": pd.array(["-5", "+84901234567"] * (n // 2), dtype="string[pyarrow]"),
        }
    )
    src = tmp_path / "in.parquet"
    df.to_parquet(src)
    out = tmp_path / "score.csv"
    proc = nlpseg("-q", "score", str(src), "--out", str(out), *tiny_args(tiny_models))
    assert proc.returncode == 0, proc.stderr
    back = pd.read_csv(out, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    for col in back.columns:
        for cell in back[col]:
            assert not cell.startswith(("=", "@", "\t", "\r", "+S", "-1")), (col, cell)
    # plain numbers typed as text come back as typed
    assert back["delta"].tolist()[:2] == ["-5", "+84901234567"]
    assert back["note"].str.startswith("'").all()


def test_changed_model_weights_are_re_encoded(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """Weights replaced under the same path: the cache must not serve the old vectors."""
    import torch
    from sentence_transformers import SentenceTransformer

    enc = tmp_path / "encoder"
    shutil.copytree(tiny_models["embedding"], enc)
    cache = tmp_path / "cache"
    args = ["--embedding-model", str(enc), "--sentiment-model", str(tiny_models["sentiment"])]

    def run(out: Path) -> dict:
        proc = nlpseg(
            "-q", "analyze", str(EXAMPLE), "--out", str(out), "--cache-dir", str(cache),
            "--no-report", "--no-audiences", *args,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return json.loads((out / "run.json").read_text())["models"]["embedding"]["cache"]

    first = run(tmp_path / "a")
    assert first["encoded"] > 0
    assert run(tmp_path / "b")["hits"] == first["encoded"]  # unchanged: all from the cache
    model = SentenceTransformer(str(enc), device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.save(str(enc))
    third = run(tmp_path / "c")
    assert third["hits"] == 0 and third["encoded"] == first["encoded"]
