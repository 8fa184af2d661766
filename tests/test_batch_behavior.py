"""``nlpseg batch`` with behaviour gives what ``nlpseg analyze`` gives.

Both commands run on the bundled reviews and orders (172 reviews, 150 customers) with the tiny
models, ``--unit customer``; batch in four chunks. They must put (nearly) every customer in the
same segment, under the same name, and write the same set of files: assignments, segments,
audiences, report, run.json and the saved model. Batch then hands its saved model to
``nlpseg assign`` like analyze's.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pandas as pd
import pytest
from test_cli import nlpseg, tiny_args

from nlp_seg.models.precision import cpu_flags

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
CHUNK = 50  # 172 reviews: four chunks


@functools.cache
def encodes_by_batch_shape(encoder: Path) -> bool:
    """Whether this machine's kernels give a text other fp32 vectors in a chunk than in the
    whole file: oneDNN and MKL pick GEMM kernels by shape, on AMX CPUs and on some AVX-512
    ones (an Intel Xeon without AMX here), and UMAP amplifies a 1e-5 difference into other
    segments. Probed, not guessed from CPU flags: the example reviews through the test
    encoder, all at once and in the batch chunks."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    texts = pd.read_csv(EXAMPLES / "reviews.csv")["review"].astype(str).tolist()
    model = SentenceTransformer(str(encoder), device="cpu")
    whole = model.encode(texts, batch_size=32)
    parts = [model.encode(texts[i : i + CHUNK], batch_size=32) for i in range(0, len(texts), CHUNK)]
    return not np.array_equal(whole, np.vstack(parts))


@pytest.fixture(autouse=True)
def _batch_shape(request: pytest.FixtureRequest, tiny_models: dict[str, Path]) -> None:
    """The comparisons marked ``batch_shape`` are expected to fail where encoding depends on
    the batch (batch-invariant encoding is an open problem, issue 14's fast-CPU part) and must
    pass everywhere else."""
    if request.node.get_closest_marker("batch_shape") is None:
        return
    if "amx_bf16" in cpu_flags() or encodes_by_batch_shape(tiny_models["embedding"]):
        request.applymarker(
            pytest.mark.xfail(
                reason="this CPU's kernels depend on batch shape: chunked and whole-file "
                "vectors differ",
                strict=False,
            )
        )


BATCH_SHAPE_DEPENDENT = pytest.mark.batch_shape


def _files(folder: Path) -> set[str]:
    """Relative paths of the files a run wrote (not its work folder)."""
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and "_work" not in p.relative_to(folder).parts
    }


@pytest.fixture(scope="module")
def runs(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batch_behavior")
    common = [
        str(EXAMPLES / "reviews.csv"),
        "--orders",
        str(EXAMPLES / "orders.csv"),
        "--unit",
        "customer",
        *tiny_args(tiny_models),
        "--no-cache",  # each encodes on its own: analyze the whole file, batch chunk by chunk
        # the equality asked here is for fp32, whatever auto picks (see BATCH_SHAPE_DEPENDENT)
        *("--precision", "fp32"),
    ]
    for cmd, extra in (("analyze", []), ("batch", ["--chunk-size", str(CHUNK)])):
        proc = nlpseg(
            "-q",
            cmd,
            *common,
            *extra,
            "--out",
            str(root / cmd),
            "--save-model",
            str(root / f"{cmd}_model"),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
    return root


@BATCH_SHAPE_DEPENDENT
def test_batch_finds_the_segments_analyze_finds(runs: Path) -> None:
    a = pd.read_parquet(runs / "analyze" / "assignments.parquet").set_index("customer_id")
    b = pd.read_parquet(runs / "batch" / "assignments.parquet").set_index("customer_id")
    assert b.index.is_unique and set(a.index) == set(b.index)
    b = b.loc[a.index]
    same = (a["segment_id"] == b["segment_id"]) & (a["segment_name"] == b["segment_name"])
    assert same.mean() >= 0.99, f"{int((~same).sum())} of {len(a)} customers differ"
    assert list(a.columns) == list(b.columns)
    sa, sb = (json.loads((runs / d / "segments.json").read_text()) for d in ("analyze", "batch"))
    assert [s["name"] for s in sa["segments"]] == [s["name"] for s in sb["segments"]]
    assert sa["naming_rules"] == sb["naming_rules"]

    run = json.loads((runs / "batch" / "run.json").read_text())
    ran = json.loads((runs / "analyze" / "run.json").read_text())
    assert run["command"] == "batch" and run["batch"]["chunks"] == -(-172 // CHUNK)
    assert run["rows_in"] == 172 and run["rows_out"] == ran["rows_out"] == len(a)
    assert run["behavior"] == ran["behavior"]
    assert run["audiences"] == ran["audiences"]
    assert run["warnings"] == ran["warnings"]


@BATCH_SHAPE_DEPENDENT
def test_batch_writes_the_files_analyze_writes(runs: Path) -> None:
    want = _files(runs / "analyze")
    assert {"report.html", "run.json", "segments.json", "audiences/index.csv"} <= want
    assert {"assignments.csv", "assignments.parquet"} <= want
    assert any(f.startswith("audiences/segment_") for f in want)
    assert _files(runs / "batch") == want
    assert _files(runs / "batch_model") == _files(runs / "analyze_model") != set()
    index = [
        pd.read_csv(runs / d / "audiences" / "index.csv", encoding="utf-8-sig")
        for d in ("analyze", "batch")
    ]
    pd.testing.assert_frame_equal(index[0], index[1])
    html = (runs / "batch" / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "reviews.csv" in html


@BATCH_SHAPE_DEPENDENT
def test_the_saved_model_assigns_as_analyzes_does(runs: Path) -> None:
    for d in ("analyze", "batch"):
        proc = nlpseg(
            "-q",
            "assign",
            str(EXAMPLES / "reviews.csv"),
            "--model",
            str(runs / f"{d}_model"),
            "--orders",
            str(EXAMPLES / "orders.csv"),
            "--out",
            str(runs / f"assign_{d}"),
            "--no-cache",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (
        pd.read_parquet(runs / f"assign_{d}" / "assignments.parquet").set_index("customer_id")
        for d in ("analyze", "batch")
    )
    b = b.loc[a.index]
    assert (a["segment_name"] == b["segment_name"]).mean() >= 0.99


def test_batch_help_lists_the_analyze_options() -> None:
    proc = nlpseg("batch", "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for flag in (
        "--orders",
        "--events",
        "--orders-id-col",
        "--orders-date-col",
        "--orders-amount-col",
        "--events-id-col",
        "--events-type-col",
        "--events-time-col",
        "--clv-horizon-days",
        "--unit",
        "--report",
        "--no-report",
        "--audiences",
        "--no-audiences",
        "--email-col",
        "--phone-col",
        "--default-country",
        "--audience-plain",
        "--gmail-strip-dots",
        "--save-model",
        "--lang",
        "--playbook",
    ):
        assert flag in proc.stdout, flag


def test_bad_behaviour_input_fails_before_encoding(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """A customer unit without an id column, or an unknown unit, is refused at once."""
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"review": ["good phone", "bad battery"]}).to_csv(texts, index=False)
    out = tmp_path / "out"
    proc = nlpseg(
        "-q", "batch", str(texts), "--unit", "customer", "--out", str(out), *tiny_args(tiny_models)
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--id-col" in proc.stderr.strip().splitlines()[-1]
    assert not (out / "_work" / "chunks").exists()  # nothing was encoded
    proc = nlpseg("-q", "batch", str(texts), "--unit", "shop", "--out", str(out))
    assert proc.returncode == 2 and "choose review or customer" in proc.stderr


@BATCH_SHAPE_DEPENDENT
def test_plain_batch_equals_plain_analyze(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """Review unit, no behaviour: batch's chunked fit/place gives analyze's segments too (the
    same fit-sample rule, the same float16 vectors, the same neighbour placement)."""
    common = [str(EXAMPLES / "reviews.csv"), *tiny_args(tiny_models), "--no-cache"]
    common += ["--precision", "fp32"]  # as in the runs fixture
    common += ["--no-report", "--no-audiences", "--fit-sample-size", "120"]
    for cmd, extra in (("analyze", []), ("batch", ["--chunk-size", str(CHUNK)])):
        proc = nlpseg("-q", cmd, *common, *extra, "--out", str(tmp_path / cmd))
        assert proc.returncode == 0, proc.stderr[-3000:]
    a = pd.read_parquet(tmp_path / "analyze" / "assignments.parquet")
    b = pd.read_parquet(tmp_path / "batch" / "assignments.parquet")
    assert a["review_id"].tolist() == b["review_id"].tolist()
    same = (a["segment_id"] == b["segment_id"]) & (a["segment_name"] == b["segment_name"])
    assert same.mean() >= 0.99, f"{int((~same).sum())} of {len(a)} rows differ"
    # 52 rows were outside the 120-row fit sample: placed by their nearest fitted rows in both
    assert (
        json.loads((tmp_path / "batch" / "run.json").read_text())["batch"]["fit_sample_rows"] == 120
    )
