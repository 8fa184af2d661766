"""Adversarial cases: folders from strangers, values that must not change on the way through,
and degenerate inputs that must end with a clear message or a valid result, every row kept.

Everything runs through the real CLI (a subprocess) on real files.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_cli import assert_one_line_error, nlpseg, tiny_args

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "reviews.csv"


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        import os

        return (os.system, (f"touch {self.marker}",))


def test_batch_work_folder_never_unpickles(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """A pickle planted where the batch engine kept its fit (``_work/fit/segmenter.pkl``), and
    beside its saved fit: the resumed run finishes without opening either."""
    out, marker = tmp_path / "out", tmp_path / "pwned"
    args = ["-q", "batch", str(EXAMPLE), "--out", str(out), "--chunk-size", "60"]
    args += ["--no-report", "--no-audiences", *tiny_args(tiny_models)]
    assert nlpseg(*args).returncode == 0
    fit = out / "_work" / "fit"
    blob = pickle.dumps(_Payload(marker))
    (fit / "segmenter.pkl").write_bytes(blob)
    for name in ("reducer.joblib", "clusterer.joblib"):
        (fit / "segmenter" / name).write_bytes(blob)
    for part in (out / "_work" / "parts").glob("*.done"):
        part.unlink()  # force pass 2 to load the fit again
    proc = nlpseg(*args)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert len(pd.read_parquet(out / "assignments.parquet")) == len(pd.read_csv(EXAMPLE))


def test_input_columns_come_out_as_typed_in_every_command(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    df = pd.read_csv(EXAMPLE, dtype=str)
    df["delta"] = ["-5", "+84901234567", "4.50", "007"] * (len(df) // 4) + ["1"] * (len(df) % 4)
    src = tmp_path / "in.csv"
    df.to_csv(src, index=False)
    model = tmp_path / "model"
    common = [*tiny_args(tiny_models), "--no-report", "--no-audiences"]
    runs = {
        "analyze": ["analyze", str(src), "--out", str(tmp_path / "a"), "--save-model", str(model)],
        "batch": ["batch", str(src), "--out", str(tmp_path / "b"), "--chunk-size", "50"],
    }
    for name, args in runs.items():
        proc = nlpseg("-q", *args, *common)
        assert proc.returncode == 0, (name, proc.stderr)
    proc = nlpseg("-q", "assign", str(src), "--model", str(model), "--out", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    proc = nlpseg(
        "-q", "score", str(src), "--out", str(tmp_path / "s.csv"), *tiny_args(tiny_models)
    )
    assert proc.returncode == 0, proc.stderr
    csvs = [tmp_path / d / "assignments.csv" for d in "abc"] + [tmp_path / "s.csv"]
    for path in csvs:
        back = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        assert back["delta"].tolist() == df["delta"].tolist(), path
        assert back["review_id"].tolist() == df["review_id"].tolist(), path


@pytest.mark.parametrize(
    ("name", "content", "expect"),
    [
        ("same40", "id,review\n" + "".join(f"{i},great phone\n" for i in range(40)), "ok"),
        ("ragged", "id,review\n1,good phone, fast\n2,bad, really bad\n3,ok, fine\n", "ok"),
        ("ragged-mid", "id,review,note\n1,good,x\n2,bad,y,z\n", "line 3"),
        ("numbers", "id,review\n" + "".join(f"{i},{i * 7}\n" for i in range(30)), "numbers"),
        ("nul", "id,review\n1,good\x00 phone\n2,bad\x00\n", "ok"),
        ("empty-texts", "id,review\n1,\n2,   \n3,\n", "no row"),
    ],
)
def test_degenerate_inputs(
    tiny_models: dict[str, Path], tmp_path: Path, name: str, content: str, expect: str
) -> None:
    src = tmp_path / f"{name}.csv"
    src.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    proc = nlpseg("analyze", str(src), "--out", str(out), *tiny_args(tiny_models))
    assert "Traceback" not in proc.stderr
    n_rows = content.count("\n") - 1
    if expect in ("ok", "numbers"):
        assert proc.returncode == 0, proc.stderr
        back = pd.read_csv(out / "assignments.csv", dtype=str, encoding="utf-8-sig")
        assert len(back) == n_rows  # every row accounted for
        raw = (out / "assignments.csv").read_bytes()
        assert b"\x00" not in raw
        if expect == "numbers":
            assert "holds numbers, not text" in proc.stderr
            assert any(
                "numbers" in w for w in json.loads((out / "run.json").read_text())["warnings"]
            )
        if name.startswith("ragged"):
            assert back["review"].iloc[0] == "good phone, fast" and back["id"].iloc[0] == "1"
    elif expect == "no row":
        if proc.returncode == 0:  # every row kept, each marked with why it was not scored
            back = pd.read_csv(out / "assignments.csv", dtype=str, encoding="utf-8-sig")
            assert len(back) == n_rows and set(back["status"]) == {"empty_text"}
        else:
            assert_one_line_error(proc, "text")
    else:
        assert_one_line_error(proc, expect)
        assert not (out / "assignments.csv").exists()


def test_tampered_saved_folder_refused_by_assign_and_serve(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """A recomputed manifest listing a planted pickle: assign and serve both refuse."""
    from nlp_seg.models.store import file_sha256

    model = tmp_path / "model"
    proc = nlpseg(
        "-q", "analyze", str(EXAMPLE), "--out", str(tmp_path / "a"), "--save-model", str(model),
        "--no-report", "--no-audiences", *tiny_args(tiny_models),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    marker = tmp_path / "pwned"
    (model / "reducer.joblib").write_bytes(pickle.dumps(_Payload(marker)))
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["files"]["reducer.joblib"] = file_sha256(model / "reducer.joblib")
    (model / "manifest.json").write_text(json.dumps(manifest))
    proc = nlpseg("assign", str(EXAMPLE), "--model", str(model), "--out", str(tmp_path / "b"))
    assert_one_line_error(proc, "unexpected file")
    proc = nlpseg("serve", "--model", str(model), "--port", "0")
    assert proc.returncode != 0 and "unexpected file" in proc.stderr
    assert not marker.exists()
    shutil.rmtree(model)
