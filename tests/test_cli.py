"""The ``nlpseg`` command end to end, through a real subprocess, with tiny local models.

Bad input must give a single-line error and a non-zero exit (no traceback); good input must
come out with every row, in order, with the contract's columns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html import escape
from pathlib import Path

import pandas as pd
import pytest

CONTRACT = [
    "sentiment_label",
    "sentiment_score",
    "sentiment_confidence",
    "segment_id",
    "segment_name",
    "segment_probability",
    "is_outlier",
    "status",
    "aspects",
    "sentiment_mixed",
    "next_best_action",  # personalisation (README: Personalisation)
    "recommended_items",
]


def nlpseg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nlp_seg", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert lines, "no error printed"
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith("error: ")
    assert needle.lower() in lines[-1].lower(), lines[-1]
    assert len([ln for ln in lines if ln.startswith("error:")]) == 1


def tiny_args(tiny_models: dict[str, Path]) -> list[str]:
    return [
        "--embedding-model",
        str(tiny_models["embedding"]),
        "--sentiment-model",
        str(tiny_models["sentiment"]),
    ]


@pytest.fixture(scope="module")
def reviews_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few hundred rows from the generated example, plus awkward rows."""
    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo / "scripts"))
    from make_example import make_reviews

    df = make_reviews(n_customers=150, seed=3)
    df.loc[2, "review"] = ""
    df.loc[5, "review"] = None
    df.loc[7, "review"] = "pin trâu " * 3000  # very long: truncated for the model only
    df.loc[9, "review"] = '=HYPERLINK("http://evil")'
    path = tmp_path_factory.mktemp("cli") / "reviews.csv"
    df.to_csv(path, index=False)
    return path


#: Modules that take seconds to import; ``--help`` must not load any of them.
HEAVY_MODULES = {
    "torch",
    "transformers",
    "sentence_transformers",
    "umap",
    "hdbscan",
    "numba",
    "sklearn",
    "ray",
}


def _imported(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``nlpseg ARGS`` under ``python -X importtime``; the top-level packages it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nlp_seg", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            module = line.rsplit("|", 1)[1].strip()
            if module != "package":  # the header line
                names.add(module.split(".")[0])
    return proc, names


def test_help_is_fast_and_lists_commands() -> None:
    """Fast means it loads no model library: the imports themselves are checked, not a clock."""
    proc, imported = _imported("--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for cmd in ("analyze", "batch", "score", "assign", "serve", "models"):
        assert cmd in proc.stdout
    assert "nlp_seg" in imported and "typer" in imported  # the parse above works
    assert not imported & HEAVY_MODULES, sorted(imported & HEAVY_MODULES)
    proc, imported = _imported("batch", "--help")
    assert proc.returncode == 0 and "--chunk-size" in proc.stdout
    assert not imported & HEAVY_MODULES, sorted(imported & HEAVY_MODULES)


def test_analyze_writes_the_contract(reviews_csv: Path, tmp_path: Path, tiny_models) -> None:
    out = tmp_path / "out"
    proc = nlpseg(
        "-q", "analyze", str(reviews_csv), "--out", str(out), "--no-cache", *tiny_args(tiny_models)
    )
    assert proc.returncode == 0, proc.stderr
    src = pd.read_csv(reviews_csv, keep_default_na=False, dtype=str)
    got = pd.read_csv(out / "assignments.csv", keep_default_na=False, dtype=str)
    assert len(got) == len(src)
    assert got["review_id"].tolist() == src["review_id"].tolist()  # same rows, same order
    assert list(got.columns) == list(src.columns) + CONTRACT
    long_text = got.loc[7, "review"]
    assert len(long_text) == len(src.loc[7, "review"])  # kept whole in the output
    assert got.loc[9, "review"].startswith("'=")  # spreadsheet-safe
    assert set(got.loc[[2, 5], "status"]) == {"empty_text"}
    assert (got.drop(index=[2, 5])["status"] == "ok").all()

    pq = pd.read_parquet(out / "assignments.parquet")
    assert len(pq) == len(src)
    assert pq["segment_id"].dtype.kind == "i"
    assert pq["is_outlier"].dtype == bool
    ok = pq["status"] == "ok"
    assert pq.loc[ok, "sentiment_score"].between(-1, 1).all()
    assert pq.loc[ok, "sentiment_confidence"].between(0, 1).all()
    assert pq.loc[ok, "segment_probability"].between(0, 1).all()
    assert set(pq.loc[ok, "sentiment_label"]) <= {"negative", "neutral", "positive"}
    assert (pq.loc[ok, "segment_id"] >= 0).all()  # outliers reassigned by default
    assert pq.loc[9, "review"].startswith("=")  # parquet keeps the value as typed

    segments = json.loads((out / "segments.json").read_text())["segments"]
    assert sum(s["size"] for s in segments) == int(ok.sum())
    for s in segments:
        assert {"id", "name", "size", "share", "sentiment", "keywords", "examples"} <= set(s)
    names = [s["name"] for s in segments]
    assert len(names) == len(set(names))

    run = json.loads((out / "run.json").read_text())
    assert run["rows_in"] == run["rows_out"] == len(src)
    assert run["seed"] == 42
    assert run["versions"]["torch"]
    assert run["models"]["embedding"]["model"] == str(tiny_models["embedding"])
    assert run["seconds"]["total"] > 0


def test_same_seed_same_segments(reviews_csv: Path, tmp_path: Path, tiny_models) -> None:
    outs = []
    for i in range(2):
        out = tmp_path / f"o{i}"
        proc = nlpseg(
            "-q",
            "analyze",
            str(reviews_csv),
            "--out",
            str(out),
            "--seed",
            "11",
            *tiny_args(tiny_models),
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(pd.read_parquet(out / "assignments.parquet"))
    assert outs[0]["segment_id"].tolist() == outs[1]["segment_id"].tolist()
    assert outs[0]["segment_name"].tolist() == outs[1]["segment_name"].tolist()


def test_keep_outliers_leaves_outliers_at_minus_one(
    reviews_csv: Path, tmp_path: Path, tiny_models
) -> None:
    """By default HDBSCAN's noise rows are placed in their nearest segment (flagged
    ``is_outlier``); ``--keep-outliers`` leaves exactly those rows in segment -1."""
    runs = {}
    for name, extra in (("default", []), ("kept", ["--keep-outliers"])):
        out = tmp_path / name
        proc = nlpseg(
            "-q", "analyze", str(reviews_csv), "--out", str(out), "--no-cache",
            "--min-cluster-size", "8", "--min-samples", "12", *extra, *tiny_args(tiny_models),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs[name] = pd.read_parquet(out / "assignments.parquet")
        runs[name + "_run"] = json.loads((out / "run.json").read_text())
    kept, default = runs["kept"], runs["default"]
    assert runs["kept_run"]["parameters"]["keep_outliers"] is True
    assert runs["default_run"]["parameters"]["keep_outliers"] is False
    ok = kept["status"] == "ok"
    assert (default["status"] == kept["status"]).all()
    outliers = kept["is_outlier"] & ok
    assert outliers.any(), "no outlier at all: the test shows nothing (lower --min-cluster-size?)"
    assert (kept.loc[ok, "segment_id"] == -1).eq(kept.loc[ok, "is_outlier"]).all()
    assert (kept.loc[outliers, "segment_name"] == "outlier").all()
    assert (kept.loc[~ok, "segment_id"] == -1).all()
    # the same fit: the same rows are outliers, and by default they are placed in a segment
    assert default["is_outlier"].tolist() == kept["is_outlier"].tolist()
    assert (default.loc[ok, "segment_id"] >= 0).all()
    inliers = ~outliers & ok
    assert (default.loc[inliers, "segment_id"] == kept.loc[inliers, "segment_id"]).all()


def test_tiny_inputs_make_one_segment(tmp_path: Path, tiny_models) -> None:
    small = tmp_path / "small.csv"
    pd.DataFrame({"text": ["good phone", "bad battery", "ok"]}).to_csv(small, index=False)
    out = tmp_path / "o"
    proc = nlpseg("analyze", str(small), "--out", str(out), *tiny_args(tiny_models))
    assert proc.returncode == 0, proc.stderr
    got = pd.read_parquet(out / "assignments.parquet")
    assert got["segment_id"].tolist() == [0, 0, 0]
    assert "single segment" in proc.stderr


def test_score_writes_sentiment_only(reviews_csv: Path, tmp_path: Path, tiny_models) -> None:
    out = tmp_path / "scores.csv"
    proc = nlpseg("-q", "score", str(reviews_csv), "--out", str(out), *tiny_args(tiny_models))
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(out, keep_default_na=False, dtype=str)
    src = pd.read_csv(reviews_csv, keep_default_na=False, dtype=str)
    assert list(got.columns) == list(src.columns) + [
        "sentiment_label",
        "sentiment_score",
        "sentiment_confidence",
        "status",
    ]
    assert len(got) == len(src)
    assert got["review_id"].tolist() == src["review_id"].tolist()
    # the planted formula comes out escaped, and only it is changed
    assert src.loc[9, "review"] == '=HYPERLINK("http://evil")'
    assert got.loc[9, "review"] == "'" + src.loc[9, "review"]
    assert got["review"].drop(index=9).tolist() == src["review"].drop(index=9).tolist()
    raw = out.read_text(encoding="utf-8-sig")
    assert '"=HYPERLINK' not in raw and ",=HYPERLINK" not in raw


@pytest.mark.parametrize(
    ("make", "extra", "needle"),
    [
        (lambda d: d / "missing.csv", [], "not found"),
        (lambda d: _write(d / "empty.csv", b""), [], "empty"),
        (lambda d: _write(d / "bin.parquet", b"\x00\x01garbage"), [], "cannot read"),
        (lambda d: _write(d / "nums.csv", b"a,b\n1,2\n3,4\n"), [], "no text column"),
        (
            lambda d: _write(d / "t.csv", b"text\nhello there\n"),
            ["--text-col", "nope"],
            "unknown text column",
        ),
        (
            lambda d: _write(d / "t2.csv", b"text\nhello there\n"),
            ["--behavior-cols", "spend"],
            "unknown behaviour column",
        ),
        (
            lambda d: _write(d / "l.csv", "text\nNão gostei\n".encode("cp1252")),
            ["--encoding", "utf-8"],
            "not valid utf-8",
        ),
        (
            lambda d: _write(d / "w.csv", b"text\nhello there\n"),
            ["--weights", "colour=2"],
            "unknown weight",
        ),
        (
            lambda d: _write(d / "w2.csv", b"text\nhello there\n"),
            ["--weights", "aspects=2"],
            "needs --aspects",
        ),
        (
            lambda d: _write(d / "p.csv", b"text\nhello there\n"),
            ["--profile", "cloud"],
            "unknown --profile",
        ),
    ],
)
def test_bad_input_one_line_error(tmp_path: Path, make, extra: list[str], needle: str) -> None:
    path = make(tmp_path)
    proc = nlpseg("analyze", str(path), "--out", str(tmp_path / "o"), *extra)
    assert_one_line_error(proc, needle)


def test_missing_hub_model_offline_names_the_model(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", b"text\nhello there\n")
    proc = nlpseg(
        "score",
        str(path),
        "--out",
        str(tmp_path / "s.csv"),
        "--sentiment-model",
        "someorg/not-a-real-model",
        "--embedding-model",
        "someorg/nope",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert_one_line_error(proc, "someorg/")
    assert "hf download" in proc.stderr
    missing_folder = nlpseg(
        "score",
        str(path),
        "--out",
        str(tmp_path / "s.csv"),
        "--embedding-model",
        str(tmp_path / "no_such_model"),
    )
    assert_one_line_error(missing_folder, "model folder not found")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- global options anywhere, missing extras, the hub offline (issue 16) -------------------


def test_global_options_work_after_the_command(tmp_path: Path, tiny_models) -> None:
    from nlp_seg.cli import hoist_global_options

    version = nlpseg("analyze", "--version")
    assert version.returncode == 0 and version.stdout.startswith("nlpseg "), version.stderr
    listed = nlpseg("models", "list", "-q")
    assert listed.returncode == 0 and "profile bundled" in listed.stdout, listed.stderr
    path = _write(tmp_path / "t.csv", b"text\ngood phone\nbad battery\nok\n")
    out = tmp_path / "o"
    proc = nlpseg("analyze", str(path), "--out", str(out), *tiny_args(tiny_models), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (out / "assignments.csv").exists()
    assert "rows in" not in proc.stderr  # quiet: no summary
    scores = tmp_path / "s.csv"
    proc = nlpseg(
        "score", str(path), "-q", "--out", str(scores), "--debug", *tiny_args(tiny_models)
    )
    assert proc.returncode == 0, proc.stderr
    assert scores.exists() and "rows in" not in proc.stderr

    import typer.main

    group = typer.main.get_command(__import__("nlp_seg.cli", fromlist=["app"]).app)
    ctx = group.make_context("nlpseg", ["--help"], resilient_parsing=True)
    # The value of an option is left alone, and so is everything after "--".
    assert hoist_global_options(group, ctx, ["score", "f.csv", "--text-col", "-q", "-q"]) == [
        "-q",
        "score",
        "f.csv",
        "--text-col",
        "-q",
    ]
    assert hoist_global_options(group, ctx, ["score", "--", "--debug"]) == [
        "score",
        "--",
        "--debug",
    ]


def _blocking_shim(tmp_path: Path) -> Path:
    """A ``sitecustomize`` that makes importing the modules in NLPSEG_TEST_BLOCK fail, as
    they fail where the extra is not installed."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import os, sys\n"
        "_BLOCK = set(filter(None, os.environ.get('NLPSEG_TEST_BLOCK', '').split(',')))\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in _BLOCK:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    return shim


def test_serve_without_the_serve_extra_names_the_install_command(tmp_path: Path) -> None:
    shim = _blocking_shim(tmp_path)
    (tmp_path / "model").mkdir()
    proc = nlpseg(
        "serve",
        "--model",
        str(tmp_path / "model"),
        "--port",
        "0",
        env={
            "PYTHONPATH": os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")])),
            "NLPSEG_TEST_BLOCK": "uvicorn",
        },
    )
    assert_one_line_error(proc, "nlpseg serve needs the serve extra")
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: nlpseg serve needs the serve extra: pip install 'nlpseg[serve]'"
    )
    # Whichever module of the extra is missing, and whether the code that tripped over it
    # wrapped the ImportError or not, guarded() gives the same line.
    code = (
        "import sys, typer\n"
        "from nlp_seg import cli\n"
        "from nlp_seg.errors import NlpsegError\n"
        "cli._STATE['command'] = 'serve'\n"
        "def bare():\n"
        "    raise ModuleNotFoundError(\"No module named 'prometheus_client'\", "
        "name='prometheus_client')\n"
        "def wrapped():\n"
        "    try:\n"
        "        import fastapi_not_here  # noqa\n"
        "    except ImportError as exc:\n"
        "        exc.name = 'fastapi'\n"
        "        raise NlpsegError('the service needs fastapi') from exc\n"
        "for fn in (bare, wrapped):\n"
        "    try:\n"
        "        cli.guarded(fn)\n"
        "    except typer.Exit as e:\n"
        "        print('exit', e.exit_code)\n"
    )
    shim_proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    errors = [ln for ln in shim_proc.stderr.splitlines() if ln.startswith("error:")]
    assert (
        errors == ["error: nlpseg serve needs the serve extra: pip install 'nlpseg[serve]'"] * 2
    ), shim_proc.stderr
    assert shim_proc.stdout.split() == ["exit", "2", "exit", "2"]


def test_hub_profile_fails_fast_without_network(tmp_path: Path) -> None:
    import time

    from nlp_seg.models.registry import hub_reachable

    if hub_reachable():
        pytest.skip("this machine reaches huggingface.co; the test needs it not to")
    path = _write(tmp_path / "t.csv", b"text\nhello there\n")
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nlp_seg",
            "score",
            str(path),
            "--profile",
            "hub",
            "--out",
            str(tmp_path / "s.csv"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    took = time.monotonic() - t0
    assert_one_line_error(proc, "cannot be reached")
    line = proc.stderr.strip().splitlines()[-1]
    assert "cardiffnlp/twitter-xlm-roberta-base-sentiment" in line
    assert "hf download cardiffnlp/twitter-xlm-roberta-base-sentiment" in line
    assert "huggingface-cli" not in line
    assert "--sentiment-model ./models/twitter-xlm-roberta-base-sentiment" in line
    assert took < 20, f"took {took:.1f} s"


def test_hub_check_is_bounded_by_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from nlp_seg.models import registry

    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(registry, "_REACHABLE", {})
    monkeypatch.setenv("HF_ENDPOINT", "https://10.255.255.1:81")  # non-routable: no answer
    t0 = time.monotonic()
    assert registry.hub_reachable(timeout=1.0) is False
    assert time.monotonic() - t0 < 3
    assert registry.hub_endpoint() == ("10.255.255.1", 81)


def test_analyze_end_to_end_on_the_bundled_profile(
    visfd_reviews: pd.DataFrame, tmp_path: Path
) -> None:
    """The default profile (bundled e5 encoder + the shipped sentiment head, no model option)
    on 300 real Vietnamese phone reviews: every row out, segments and report written, and
    the sentiment reads the obvious rows the right way round."""
    rows = visfd_reviews.dropna(subset=["comment"])
    src = (
        pd.concat([g.sample(n=60, random_state=7) for _, g in rows.groupby("n_star")])
        .sample(frac=1.0, random_state=7)
        .reset_index(drop=True)[["index", "comment", "n_star", "date_time"]]
    )
    assert len(src) == 300
    path = tmp_path / "reviews.csv"
    src.to_csv(path, index=False)
    out = tmp_path / "out"
    proc = nlpseg(
        "-q", "analyze", str(path), "--out", str(out), "--text-col", "comment",
        "--id-col", "index",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = pd.read_parquet(out / "assignments.parquet")
    assert len(got) == len(src)
    assert got["index"].astype(int).tolist() == src["index"].tolist()  # every row, in order
    assert list(got.columns[-len(CONTRACT) :]) == CONTRACT
    # every row is a real review: the not-a-review filter may take at most a few for noise
    # (1 of these 300: a complaint about ads popping up, docs/benchmarks.md)
    noise = got["status"] == "low_information"
    assert noise.mean() <= 0.02 and (got.loc[~noise, "status"] == "ok").all()
    assert (got.loc[noise, "segment_name"] == "noise").all()
    got = got[~noise]
    assert got["sentiment_label"].isin(["negative", "neutral", "positive"]).all()
    stars = got["n_star"].astype(int)
    mean = got.groupby(stars)["sentiment_score"].mean()
    assert mean[1] < -0.2 < 0.2 < mean[5], mean.to_dict()
    assert mean[1] < mean[3] < mean[5], mean.to_dict()
    agree = (got.loc[stars == 1, "sentiment_label"] == "negative").mean()
    assert agree >= 0.6, f"only {agree:.0%} of 1-star reviews read as negative"
    agree = (got.loc[stars == 5, "sentiment_label"] == "positive").mean()
    assert agree >= 0.6, f"only {agree:.0%} of 5-star reviews read as positive"

    segments = json.loads((out / "segments.json").read_text())["segments"]
    assert len(segments) >= 2
    assert sum(s["size"] for s in segments) == len(got)  # noise rows are in no segment
    assert set(got["segment_id"]) == {s["id"] for s in segments}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert all(escape(s["name"]) in html or s["name"] in html for s in segments)
    run = json.loads((out / "run.json").read_text())
    assert run["rows_in"] == run["rows_out"] == len(src)
    models = json.dumps(run["models"])
    assert "e5" in models and "sentiment-head" in models, models
