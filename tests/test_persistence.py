"""Saved segmenters: save, verify, load, assign new rows the same way, refuse tampered folders.

Fitted once per module on the bundled example with the tiny local models (real UMAP, real
HDBSCAN, real files); the CLI is exercised through a real subprocess.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nlp_seg.segmenter import ASSIGNMENT_COLUMNS, SegmenterConfig

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "reviews.csv"


@pytest.fixture(scope="module")
def saved(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    from nlp_seg.runs.jobs import analyze_file

    root = tmp_path_factory.mktemp("persist")
    # A private copy of the encoder, so one test may alter it without touching the others.
    enc = root / "encoder"
    shutil.copytree(tiny_models["embedding"], enc)
    cfg = SegmenterConfig(
        embedding_model=str(enc), sentiment_model=str(tiny_models["sentiment"]), seed=3
    )
    # rating named as behaviour (it is not taken as one unless named), so the saved
    # segmenter carries a behaviour scaler
    analyze_file(EXAMPLE, root / "out", cfg, save_model=root / "model", behavior_cols=["rating"])
    return {"root": root, "model": root / "model", "out": root / "out", "encoder": enc}


def test_folder_layout_and_manifest(saved: dict) -> None:
    from nlp_seg.models.store import file_sha256

    model = saved["model"]
    names = {p.name for p in model.iterdir()}
    assert names == {"segmenter.json", "manifest.json", "arrays.safetensors"}
    manifest = json.loads((model / "manifest.json").read_text())
    assert set(manifest["files"]) == {"segmenter.json", "arrays.safetensors"}
    for name, digest in manifest["files"].items():
        assert digest == file_sha256(model / name)
    state = json.loads((model / "segmenter.json").read_text())
    assert state["config"]["seed"] == 3
    assert state["models"]["embedding"]["id"] == str(saved["encoder"])
    assert len(state["models"]["embedding"]["sha256"]) == 64
    assert state["columns"]["text"] == "review"
    assert state["behavior_scaler"]["columns"] == ["rating"]
    segments = json.loads((saved["out"] / "segments.json").read_text())["segments"]
    assert [s["name"] for s in state["segments"]] == [s["name"] for s in segments]


def test_assign_reproduces_training_segments(saved: dict, tmp_path: Path) -> None:
    from nlp_seg.runs.jobs import assign_file

    result = assign_file(EXAMPLE, saved["model"], tmp_path)
    trained = pd.read_parquet(saved["out"] / "assignments.parquet")
    again = pd.read_parquet(tmp_path / "assignments.parquet")
    assert len(again) == len(trained) == result.rows_in
    # a model with behaviour columns adds behavior_missing, last (README: assign's outputs)
    contract = [*ASSIGNMENT_COLUMNS, "next_best_action", "recommended_items", "behavior_missing"]
    assert list(again.columns[-len(contract) :]) == contract
    assert (again["behavior_missing"] == "").all()
    assert again["review_id"].tolist() == trained["review_id"].tolist()
    agree = float((again["segment_id"] == trained["segment_id"]).mean())
    assert agree >= 0.95, f"only {agree:.1%} of training rows got their segment back"
    names = dict(zip(trained["segment_id"], trained["segment_name"], strict=True))
    pairs = zip(again["segment_id"], again["segment_name"], strict=True)
    assert all(names[i] == n for i, n in pairs)
    np.testing.assert_allclose(
        again["sentiment_score"], trained["sentiment_score"], rtol=0, atol=1e-5
    )
    # the CSV holds the same rows and labels as the Parquet file, not just a file
    csv = pd.read_csv(
        tmp_path / "assignments.csv", encoding="utf-8-sig", dtype=str, keep_default_na=False
    )
    assert list(csv.columns) == list(again.columns)
    assert csv["review_id"].tolist() == again["review_id"].astype(str).tolist()
    assert csv["segment_id"].astype(int).tolist() == again["segment_id"].tolist()
    assert csv["segment_name"].tolist() == again["segment_name"].tolist()
    assert csv["status"].tolist() == again["status"].tolist()
    np.testing.assert_allclose(
        csv["sentiment_score"].astype(float), again["sentiment_score"], atol=1e-6
    )
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["command"] == "assign" and run["rows_out"] == len(trained)
    assert run["rows_in"] == len(trained)


def test_rows_without_a_fitted_behaviour_column_are_refused_or_flagged(
    saved: dict, tmp_path: Path
) -> None:
    """The model was fitted on ``rating``: a file without that column is refused in one line
    (its rows would land where their rating might not put them); with
    --allow-missing-behavior, or where only some cells are empty, each such row says so."""
    from test_cli import assert_one_line_error, nlpseg

    frame = pd.read_csv(EXAMPLE, dtype=str, keep_default_na=False).iloc[:20]
    bare = tmp_path / "bare.csv"
    frame.drop(columns=["rating"]).to_csv(bare, index=False)
    args = ["--model", str(saved["model"]), "--no-cache"]
    proc = nlpseg("assign", str(bare), "--out", str(tmp_path / "a"), *args)
    assert_one_line_error(proc, "fitted with the behaviour column(s) rating")
    assert "--allow-missing-behavior" in proc.stderr
    assert not (tmp_path / "a" / "assignments.csv").exists()

    proc = nlpseg(
        "assign", str(bare), "--out", str(tmp_path / "b"), "--allow-missing-behavior", *args
    )
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(tmp_path / "b" / "assignments.csv", dtype=str, keep_default_na=False)
    assert len(got) == 20 and set(got["behavior_missing"]) == {"rating"}
    assert "named per row in behavior_missing" in proc.stderr

    partial = frame.copy()
    partial.loc[[2, 5], "rating"] = ""
    part = tmp_path / "part.csv"
    partial.to_csv(part, index=False)
    proc = nlpseg("-q", "assign", str(part), "--out", str(tmp_path / "c"), *args)
    assert proc.returncode == 0, proc.stderr
    got = pd.read_parquet(tmp_path / "c" / "assignments.parquet")
    assert got["behavior_missing"].tolist() == ["rating" if i in (2, 5) else "" for i in range(20)]


def test_new_rows_unscoreable_kept_and_unlike_rows_flagged(saved: dict) -> None:
    from nlp_seg.segmenter import load_segmenter

    seg = load_segmenter(saved["model"])
    texts = ["Terrible quality, it broke after one week", "", None, "   "]
    out = seg.predict(texts, behavior=pd.DataFrame({"rating": [1, 5, None, 3]}))
    assert len(out) == 4
    assert out["status"].tolist() == ["ok", "empty_text", "empty_text", "empty_text"]
    assert out["segment_id"].tolist()[1:] == [-1, -1, -1]
    assert not bool(out["is_outlier"].iloc[0])  # a training row is not novel

    # Rows unlike anything fitted (embeddings pointing the other way): flagged, not forced.
    emb, probs = seg.encode(["Terrible quality, it broke after one week", "great phone"])
    beh = pd.DataFrame({"rating": [1, 5]})
    _, strength_far, flagged_far = seg.place_encoded(-emb * 3, probs, beh, new_rows=True)
    assert flagged_far.all()
    assert (strength_far < 0.5).all()
    _, _, flagged_near = seg.place_encoded(emb[:1], probs[:1], beh[:1], new_rows=True)
    assert not flagged_near.any()


def test_tampered_file_is_refused(saved: dict, tmp_path: Path) -> None:
    from nlp_seg.models.store import ModelFolderError
    from nlp_seg.segmenter import load_segmenter

    bad = tmp_path / "model"
    shutil.copytree(saved["model"], bad)
    with open(bad / "arrays.safetensors", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ModelFolderError, match="arrays.safetensors does not match"):
        load_segmenter(bad)
    (bad / "manifest.json").unlink()
    with pytest.raises(ModelFolderError, match="no manifest.json"):
        load_segmenter(bad)
    with pytest.raises(ModelFolderError, match="not found"):
        load_segmenter(tmp_path / "nowhere")


class _Exploit:
    """A pickle payload that leaves a marker file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        import os

        return (os.system, (f"touch {self.marker}",))


def _plant_pickles(folder: Path, marker: Path) -> None:
    import pickle

    blob = pickle.dumps(_Exploit(marker))
    for name in ("reducer.joblib", "clusterer.joblib", "segmenter.pkl"):
        (folder / name).write_bytes(blob)


def test_planted_pickle_is_never_read(saved: dict, tmp_path: Path) -> None:
    """An attacker's pickle beside a valid model, and listed in a recomputed manifest: neither
    assign nor load runs it (nothing in nlp_seg unpickles), and a listed stranger is refused."""
    from test_cli import nlpseg

    from nlp_seg.models.store import ModelFolderError, file_sha256
    from nlp_seg.segmenter import load_segmenter

    marker = tmp_path / "pwned"
    model = tmp_path / "model"
    shutil.copytree(saved["model"], model)
    _plant_pickles(model, marker)
    # Unlisted pickles: the folder still loads and works, and the pickles are never opened.
    seg = load_segmenter(model)
    assert len(seg.predict(["Terrible quality, it broke after one week"])) == 1
    proc = nlpseg("-q", "assign", str(EXAMPLE), "--model", str(model), "--out", str(tmp_path / "a"))
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    # The attacker also rewrites the manifest to list the pickle with its true hash.
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["files"]["reducer.joblib"] = file_sha256(model / "reducer.joblib")
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFolderError, match="unexpected file 'reducer.joblib'"):
        load_segmenter(model)
    proc = nlpseg("assign", str(EXAMPLE), "--model", str(model), "--out", str(tmp_path / "b"))
    assert proc.returncode == 2 and "unexpected file" in proc.stderr
    assert not marker.exists()
    # Sanity: the payload is real (unpickling it does leave the marker).
    import pickle

    pickle.loads((model / "reducer.joblib").read_bytes())  # noqa: S301 - the test's own payload
    assert marker.exists()


def test_old_pickle_format_is_refused_with_advice(saved: dict, tmp_path: Path) -> None:
    from nlp_seg.models.store import ModelFolderError, file_sha256
    from nlp_seg.segmenter import load_segmenter

    model = tmp_path / "model"
    shutil.copytree(saved["model"], model)
    state = json.loads((model / "segmenter.json").read_text())
    state["format_version"] = 1
    (model / "segmenter.json").write_text(json.dumps(state))
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["files"]["segmenter.json"] = file_sha256(model / "segmenter.json")
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFolderError, match="older nlpseg .* re-fit"):
        load_segmenter(model)


def test_changed_embedding_model_is_refused(saved: dict, tmp_path: Path) -> None:
    from nlp_seg.models.store import ModelFolderError
    from nlp_seg.segmenter import load_segmenter

    model = tmp_path / "model"
    shutil.copytree(saved["model"], model)
    enc = saved["encoder"]
    cfg = enc / "config_sentence_transformers.json"
    original = cfg.read_bytes()
    try:
        cfg.write_bytes(original + b"\n")
        with pytest.raises(ModelFolderError, match="differs from the one this segmenter"):
            load_segmenter(model)
        load_segmenter(model, verify_models=False)  # an explicit opt-out still loads
    finally:
        cfg.write_bytes(original)


def test_segmenter_save_method_round_trip(saved: dict, tmp_path: Path) -> None:
    from nlp_seg.segmenter import load_segmenter

    seg = load_segmenter(saved["model"])
    again = Path(seg.save(str(tmp_path / "copy")))
    loaded = load_segmenter(again)
    assert loaded.segments_ == seg.segments_
    assert loaded.columns_ == seg.columns_


def test_cli_assign_and_tampered_one_line_error(saved: dict, tmp_path: Path) -> None:
    from test_cli import assert_one_line_error, nlpseg

    proc = nlpseg(
        "-q", "assign", str(EXAMPLE), "--model", str(saved["model"]), "--out", str(tmp_path / "a")
    )
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(tmp_path / "a" / "assignments.csv", encoding="utf-8-sig")
    src = pd.read_csv(EXAMPLE)
    assert len(out) == len(src)
    assert out["review_id"].tolist() == src["review_id"].tolist()
    # the CLI labels rows as the Python API does, with the saved segment names
    trained = pd.read_parquet(saved["out"] / "assignments.parquet")
    agree = float((out["segment_id"].to_numpy() == trained["segment_id"].to_numpy()).mean())
    assert agree >= 0.95, agree
    names = {
        s["id"]: s["name"]
        for s in json.loads((saved["out"] / "segments.json").read_text())["segments"]
    }
    ok = out["segment_id"] >= 0
    assert (out.loc[ok, "segment_name"] == out.loc[ok, "segment_id"].map(names)).all()
    bad = tmp_path / "bad"
    shutil.copytree(saved["model"], bad)
    (bad / "segmenter.json").write_text("{}")
    proc = nlpseg("assign", str(EXAMPLE), "--model", str(bad), "--out", str(tmp_path / "b"))
    assert_one_line_error(proc, "does not match its SHA-256")
    assert proc.returncode == 2


def test_a_model_converted_again_elsewhere_keeps_its_fingerprint(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """The bundled encoder is converted on each machine; its conversion record (timings)
    differs, the weights do not, so a segmenter saved on one machine loads on another."""
    import shutil

    from nlp_seg.models.bundled import MANIFEST
    from nlp_seg.models.store import CONVERSION_RECORD, folder_fingerprint

    assert CONVERSION_RECORD == MANIFEST
    folder = tmp_path / "enc"
    shutil.copytree(tiny_models["embedding"], folder)
    (folder / MANIFEST).write_text('{"seconds": 11.1}', encoding="utf-8")
    first = folder_fingerprint(folder)
    (folder / MANIFEST).write_text('{"seconds": 16.1}', encoding="utf-8")
    assert folder_fingerprint(folder) == first
    assert folder_fingerprint(folder, legacy=True) != first
    weights = next(folder.rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    assert folder_fingerprint(folder) != first
