"""The `dspx` command line as a typer app: every command, its options and its help.

Heavy modules (pydantic, httpx, rich, the engine) are imported inside the commands, so that
`dspx --help` pays only for typer. `cli/app.py` is the entry point: it runs the common plain
calls of `run`, `evaluate` and `validate` without building this app (cli/fast_path.py).

No `from __future__ import annotations` here: typer reads every command's annotations when it
builds the app (`dspx --help` included), and as strings it evaluates each one twice per command
(inspect.signature and get_type_hints), compiling them anew: ~12 ms of the ~18 ms the build took.
Evaluated once when the functions are defined, the shared `Annotated` aliases cost nothing more.
"""

from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main

from dspx_cli import __version__
from dspx_cli.cli import actions

app = typer.Typer(
    name="dspx",
    help="Run, evaluate, inspect and validate declarative LM programs written as YAML or TOML files.",
    no_args_is_help=True,
    add_completion=False,
    # Plain click-style help: rendering it with rich imports markdown-it and pygments, which
    # more than doubles the time of `dspx --help` (220 ms against 90 ms here).
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ProgramArg = Annotated[
    Path, typer.Argument(metavar="PROGRAM", help="Program file (.yaml, .yml or .toml).", show_default=False)
]
InputOpt = Annotated[
    list[str] | None,
    typer.Option(
        "-i",
        "--input",
        metavar="FIELD=VALUE",
        help="One input field: text for str fields, JSON for others (checked against the type). Once per field.",
    ),
]
LMOpt = Annotated[
    str | None,
    typer.Option("--lm", envvar="DSPX_LM", help="Use this model for every module (e.g. openai/gpt-4o-mini)."),
]
DebugOpt = Annotated[
    bool, typer.Option("--debug", help="Also print the traceback of an error (the exit code stays the same).")
]
StateOpt = Annotated[
    Path | None, typer.Option("--state", help="Apply a compiled state (demos, instructions; DSPy's save() layout).")
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", envvar="DSPX_CACHE_DIR", help="Cache and history folder [default: ~/.cache/dspx]."),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache for this run.")]
CONCURRENCY_HELP = "{} in flight [default: 2 when a module runs a local model, else 16]."
ExamplesConcurrencyOpt = Annotated[
    int | None, typer.Option("-j", "--concurrency", min=1, help=CONCURRENCY_HELP.format("Examples"))
]
SummaryJsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
TrainLimitOpt = Annotated[int | None, typer.Option("--limit", help="Only the first N train and dev examples.")]
CacheOnlyOpt = Annotated[
    bool, typer.Option("--cache-only", help="Replay from the cache; a call that is not cached is an error.")
]
RefreshOpt = Annotated[
    bool,
    typer.Option("--refresh", help="Do not read the cache: call the LM again and store its answers over the old ones."),
]

# The names in optimizers/registry.py's OPTIMIZERS, in its order, for --optimizer's help: importing the
# registry defines its settings dataclasses (~5 ms, a twentieth of `dspx --help`) and help needs
# only the names. tests/test_registries.py checks that the two agree.
OPTIMIZER_NAMES = ("labeled_few_shot", "bootstrap_few_shot", "bootstrap_random_search", "mipro_v2", "copro")

OtlpOpt = Annotated[
    str | None,
    typer.Option(
        "--otlp",
        metavar="URL",
        envvar="DSPX_OTLP",
        help="Send OpenTelemetry traces to this OTLP/HTTP collector (URL/v1/traces); "
        "OTEL_EXPORTER_OTLP_ENDPOINT does the same.",
    ),
]
OtlpContentOpt = Annotated[
    bool,
    typer.Option("--otlp-content", help="Also put prompts and completions on the LM call spans (off by default)."),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dspx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    otlp: Annotated[
        str | None,
        typer.Option(
            "--otlp", metavar="URL", help="Send OpenTelemetry traces of the command to this OTLP/HTTP collector."
        ),
    ] = None,
    otlp_content: Annotated[
        bool, typer.Option("--otlp-content", help="With --otlp: also send prompts and completions.")
    ] = False,
) -> None:
    """dspx: DSPy-style LM programs from the shell."""
    import os

    # Given before the command, they apply to it as its own --otlp/--otlp-content would (cli/tracing.py).
    if otlp:
        os.environ["DSPX_OTLP"] = otlp
    if otlp_content:
        os.environ["DSPX_OTEL_CAPTURE_CONTENT"] = "1"


@app.command()
def run(
    program: ProgramArg,
    inputs: InputOpt = None,
    lm: LMOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outputs as one JSON object.")] = False,
    input_file: Annotated[
        str | None,
        typer.Option(
            "--batch",
            metavar="FILE",
            help="Run every JSON line of FILE ('-' for stdin); print one JSON line per input.",
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option("-j", "--concurrency", min=1, help=CONCURRENCY_HELP.format("Rows (--batch)"))
    ] = None,
    usage_file: Annotated[
        Path | None, typer.Option("--usage-file", help="Write calls, tokens and cost as JSON to this file.")
    ] = None,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    cache_only: CacheOnlyOpt = False,
    refresh: RefreshOpt = False,
    state: StateOpt = None,
    trace: Annotated[
        bool,
        typer.Option(
            "--trace",
            help="Show every step's fields and agent trajectories (stderr; with --batch, a 'trace' key per row).",
        ),
    ] = False,
    debug: DebugOpt = False,
    otlp: OtlpOpt = None,
    otlp_content: OtlpContentOpt = False,
) -> None:
    """Run PROGRAM on one input (-i) and print its output fields, or on a JSONL file (--batch)."""
    actions.run(
        program,
        inputs or [],
        lm,
        as_json,
        input_file=input_file,
        concurrency=concurrency,
        usage_file=usage_file,
        cache_dir=cache_dir,
        no_cache=no_cache,
        cache_only=cache_only,
        refresh=refresh,
        state=state,
        trace=trace,
        debug=debug,
        otlp=otlp,
        otlp_content=otlp_content,
    )


@app.command()
def evaluate(
    program: ProgramArg,
    split: Annotated[str, typer.Option("--split", help="Which data split to score: train, dev or test.")] = "dev",
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="Score this JSONL/JSON/CSV file instead of the split's.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N examples.")] = None,
    concurrency: ExamplesConcurrencyOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Run folder [default: runs/<timestamp>-<program>].")
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report here.")] = None,
    junit_pass: Annotated[
        float, typer.Option("--junit-pass", help="An example passes in JUnit when its score is at least this.")
    ] = 1.0,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Exit 3 when the score (0 to 1) is below this.")
    ] = None,
    failure_score: Annotated[float, typer.Option("--failure-score", help="Score of an example that fails.")] = 0.0,
    max_errors: Annotated[
        int | None, typer.Option("--max-errors", help="Stop after more examples than this have failed.")
    ] = 10,
    lm: LMOpt = None,
    as_json: SummaryJsonOpt = False,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    cache_only: CacheOnlyOpt = False,
    refresh: RefreshOpt = False,
    state: StateOpt = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            metavar="RUN_DIR",
            help="Compare this run with an earlier run folder at the end (as dspx compare does).",
        ),
    ] = None,
    max_regressions: Annotated[
        int | None,
        typer.Option(
            "--max-regressions",
            min=0,
            help="With --baseline: exit 4 when more examples than this went from pass to fail.",
        ),
    ] = None,
    debug: DebugOpt = False,
    otlp: OtlpOpt = None,
    otlp_content: OtlpContentOpt = False,
) -> None:
    """Score PROGRAM on its dataset with its metric; exit 3 when below --min-score."""
    actions.evaluate(
        program,
        split=split,
        dataset=dataset,
        limit=limit,
        concurrency=concurrency,
        output=output,
        junit=junit,
        junit_pass=junit_pass,
        min_score=min_score,
        failure_score=failure_score,
        max_errors=max_errors,
        lm=lm,
        as_json=as_json,
        cache_dir=cache_dir,
        no_cache=no_cache,
        cache_only=cache_only,
        refresh=refresh,
        state=state,
        baseline=baseline,
        max_regressions=max_regressions,
        debug=debug,
        otlp=otlp,
        otlp_content=otlp_content,
    )


@app.command()
def compare(
    base: Annotated[
        Path, typer.Argument(metavar="BASE_RUN", help="The earlier run folder (dspx evaluate).", show_default=False)
    ],
    new: Annotated[Path, typer.Argument(metavar="NEW_RUN", help="The later run folder.", show_default=False)],
    pass_score: Annotated[
        float | None,
        typer.Option(
            "--pass-score",
            help="An example passes when it has no error and scores at least this "
            "[default: the new run's --junit-pass, 1.0 unless set].",
        ),
    ] = None,
    max_regressions: Annotated[
        int | None,
        typer.Option("--max-regressions", min=0, help="Exit 4 when more examples than this went from pass to fail."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as one JSON document.")] = False,
    as_markdown: Annotated[
        bool,
        typer.Option("--markdown", help='Print GitHub-flavoured markdown (>> "$GITHUB_STEP_SUMMARY").'),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Compare two evaluate runs: the examples that went from pass to fail and back, score, cost and time."""
    from dspx_cli.cli import compare_command

    actions.guard(
        debug,
        lambda: compare_command.run(
            base,
            new,
            pass_score=pass_score,
            max_regressions=max_regressions,
            as_json=as_json,
            as_markdown=as_markdown,
        ),
    )


def _compile(
    program: ProgramArg,
    optimizer: Annotated[
        str | None,
        typer.Option(
            "--optimizer",
            help=f"{', '.join(OPTIMIZER_NAMES[:-1])} or {OPTIMIZER_NAMES[-1]} (default: the file's).",
        ),
    ] = None,
    assignments: Annotated[
        list[str] | None, typer.Option("--set", help="Override an optimizer setting: KEY=VALUE (JSON). Repeatable.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="State file [default: runs/<timestamp>-<program>/state.json].")
    ] = None,
    concurrency: ExamplesConcurrencyOpt = None,
    limit: TrainLimitOpt = None,
    teacher_lm: Annotated[
        str | None, typer.Option("--teacher-lm", help="Bootstrap with this model as the teacher (not changed by --lm).")
    ] = None,
    teacher_state: Annotated[
        Path | None, typer.Option("--teacher-state", help="Bootstrap with the program in this state as the teacher.")
    ] = None,
    prompt_lm: Annotated[
        str | None,
        typer.Option(
            "--prompt-lm",
            help="mipro_v2/copro: the model that writes instructions [default: the file's prompt_lm:, else its lm:]"
            " (not changed by --lm).",
        ),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage", help="mipro_v2: optuna storage URL for the study [default: sqlite in the run folder]."
        ),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option("--study", help="mipro_v2: the study's name; processes given the same one share its trials."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="mipro_v2: continue the killed run kept in this run folder (RUN_DIR)."),
    ] = None,
    lm: LMOpt = None,
    as_json: SummaryJsonOpt = False,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    cache_only: CacheOnlyOpt = False,
    refresh: RefreshOpt = False,
    debug: DebugOpt = False,
    otlp: OtlpOpt = None,
    otlp_content: OtlpContentOpt = False,
) -> None:
    """Optimize PROGRAM's demos (and, with mipro_v2/copro, its instructions) on its train split and
    save a state file for --state."""
    from dspx_cli.cli import commands, compile_command, tracing

    spans = tracing.command_trace(
        "compile", otlp, otlp_content, program=program, optimizer=optimizer, set=assignments, lm=lm, limit=limit
    )
    options = compile_command.CompileOptions(
        optimizer=optimizer,
        assignments=tuple(assignments or ()),
        output=output,
        concurrency=concurrency,
        limit=limit,
        as_json=as_json,
        teacher_lm=teacher_lm,
        teacher_state=teacher_state,
        prompt_lm=prompt_lm,
        storage=storage,
        study=study,
        resume=resume,
    )
    actions.guard(
        debug,
        lambda: compile_command.run(
            program,
            lm,
            options,
            commands.CacheOptions(cache_dir, no_cache, cache_only, refresh, telemetry=tracing.telemetry_of(spans)),
        ),
        spans,
    )


app.command("compile")(_compile)
app.command("optimize", help="Alias of compile.")(_compile)


@app.command()
def finetune(
    program: ProgramArg,
    assignments: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a finetune: setting: KEY=VALUE (JSON; lora.r=8). Repeatable."),
    ] = None,
    traces: Annotated[
        str | None,
        typer.Option(
            "--traces",
            help="labeled (the examples are the calls), bootstrap (the teacher's runs the metric accepts) "
            "or auto (labeled when the examples label every output) [default: the file's, else auto].",
        ),
    ] = None,
    data_only: Annotated[
        bool, typer.Option("--data-only", help="Write the training records (train.jsonl) and stop.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Run folder [default: runs/finetune-<program>-<hash of the settings>]."),
    ] = None,
    concurrency: ExamplesConcurrencyOpt = None,
    limit: TrainLimitOpt = None,
    teacher_lm: Annotated[
        str | None, typer.Option("--teacher-lm", help="The model whose runs become the traces (not changed by --lm).")
    ] = None,
    teacher_state: Annotated[
        Path | None, typer.Option("--teacher-state", help="Collect traces from the program in this state.")
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="A compiled state for the student: its demos are in the prompts trained on."),
    ] = None,
    lm: LMOpt = None,
    as_json: SummaryJsonOpt = False,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    cache_only: CacheOnlyOpt = False,
    refresh: RefreshOpt = False,
    debug: DebugOpt = False,
    otlp: OtlpOpt = None,
    otlp_content: OtlpContentOpt = False,
) -> None:
    """Fine-tune PROGRAM's local model on traces of its train split; save a state that runs it."""
    from dspx_cli.cli import commands, finetune_command, tracing

    spans = tracing.command_trace(
        "finetune", otlp, otlp_content, program=program, set=assignments, traces=traces, lm=lm, limit=limit
    )
    options = finetune_command.FinetuneOptions(
        assignments=tuple(assignments or ()),
        output=output,
        concurrency=concurrency,
        limit=limit,
        traces=traces,
        data_only=data_only,
        teacher_lm=teacher_lm,
        teacher_state=teacher_state,
        state=state,
        as_json=as_json,
    )
    actions.guard(
        debug,
        lambda: finetune_command.run(
            program,
            lm,
            options,
            commands.CacheOptions(cache_dir, no_cache, cache_only, refresh, telemetry=tracing.telemetry_of(spans)),
        ),
        spans,
    )


@app.command()
def inspect(
    program: ProgramArg,
    inputs: InputOpt = None,
    lm: LMOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the messages as JSON.")] = False,
    state: StateOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Print the exact messages PROGRAM would send, without calling any LM."""
    from dspx_cli.cli import commands

    actions.guard(debug, lambda: commands.inspect(program, inputs or [], lm, as_json, state))


@app.command()
def validate(
    program: ProgramArg,
    graph: Annotated[bool, typer.Option("--graph", help="Also print the execution graph as text.")] = False,
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Print the graph as a Mermaid flowchart instead.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Check PROGRAM and exit 0 if it is valid, 2 if not."""
    actions.validate(program, graph=graph, mermaid=mermaid, debug=debug)


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the schema to this file instead of stdout.")
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Print a JSON Schema (draft-07) of the program-file format, for editors' completion and checks."""
    from dspx_cli.cli import schema_command

    actions.guard(debug, lambda: schema_command.run(output))


@app.command()
def report(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN_DIR", help="Run folders of evaluate, compile or finetune.", show_default=False),
    ],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="HTML file [default: RUN_DIR/report.html; ./report.html for several]."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the first N examples of each run.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Write one self-contained HTML page (no network, no server) showing the runs: summary, charts,
    every example with the messages sent and the raw replies."""
    from dspx_cli.cli import report_command

    actions.guard(debug, lambda: report_command.run(run_dirs, output, limit))


cache_app = typer.Typer(help="Look at or empty the response cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("path")
def cache_path(cache_dir: CacheDirOpt = None, debug: DebugOpt = False) -> None:
    """Print the cache folder."""
    from dspx_cli.cli import cache_commands

    actions.guard(debug, lambda: cache_commands.path(cache_dir))


@cache_app.command("stats")
def cache_stats(
    cache_dir: CacheDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Print how many responses are cached and how much room they take."""
    from dspx_cli.cli import cache_commands

    actions.guard(debug, lambda: cache_commands.stats(cache_dir, as_json))


@cache_app.command("clear")
def cache_clear(cache_dir: CacheDirOpt = None, debug: DebugOpt = False) -> None:
    """Delete every cached response (the history is kept); also repairs a damaged cache."""
    from dspx_cli.cli import cache_commands

    actions.guard(debug, lambda: cache_commands.clear(cache_dir))


@cache_app.command("rm")
def cache_rm(
    keys: Annotated[
        list[str],
        typer.Argument(metavar="KEY", help="One or more cache keys (`dspx history` shows them) or unique prefixes."),
    ],
    cache_dir: CacheDirOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Delete the cached responses with these keys, so their calls are made again."""
    from dspx_cli.cli import cache_commands

    actions.guard(debug, lambda: cache_commands.remove(cache_dir, keys))


@app.command()
def history(
    count: Annotated[int, typer.Option("-n", "--count", help="How many of the last calls to show.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON record per line.")] = False,
    cache_dir: CacheDirOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Show the last LM calls: messages, outputs, usage, latency, cached or not, cache key."""
    from dspx_cli.cli import cache_commands

    actions.guard(debug, lambda: cache_commands.history(cache_dir, count, as_json))


def command_help(argv: list[str]) -> None:
    """Print the help of `dspx COMMAND [SUBCOMMAND] -h|--help` (argv exactly that) and exit, as the
    app does; return when argv is anything else.

    The app would first parse the root's options: typer converts each option that takes a value
    (the root's --otlp, even when absent) through a pydantic TypeAdapter, and importing pydantic
    doubles the time of a command's help. The contexts above the command are built as click's
    make_context builds them (each group's context_settings, as `-h` needs), without parsing.
    tests/test_cli.py compares the output with the app's.
    """
    if len(argv) < 2 or argv[-1] not in ("-h", "--help"):
        return
    command = typer.main.get_command(app)
    parent = None
    name = "dspx"
    for word in argv[:-1]:
        parent = command.context_class(command, info_name=name, parent=parent, **command.context_settings)
        commands: dict[str, Any] = getattr(command, "commands", {})
        if word not in commands:
            return  # the app words the error
        command, name = commands[word], word
    command.main([argv[-1]], prog_name=name, parent=parent)
