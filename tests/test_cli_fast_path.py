"""Plain `dspx run` / `dspx validate` calls skip the typer app (cli/fast_path.py): they must print
and exit exactly as the typer app does, and anything unusual must still reach typer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dspx_cli.cli.fast_path import _EVALUATE, _RUN, _VALIDATE, parse
from tests.lm_server import LMServer, Reply

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "programs"

# The same argv through main() (fast path where it applies) and through the typer app alone.
_THROUGH_MAIN = "import sys\nsys.argv = ['dspx', *sys.argv[1:]]\nfrom dspx_cli.cli.app import main\nmain()\n"
_THROUGH_TYPER = "from dspx_cli.cli.typer_app import app\napp(prog_name='dspx')\n"


def both_ways(*argv: str, **env: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DSPX_LM", "DSPX_CACHE_DIR")}
    full_env.update({"NO_COLOR": "1", **env})
    done = [
        subprocess.run(
            [sys.executable, "-c", script, *argv],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=ROOT,
            timeout=120,
        )
        for script in (_THROUGH_MAIN, _THROUGH_TYPER)
    ]
    return done[0], done[1]


def same(fast: subprocess.CompletedProcess[str], typer: subprocess.CompletedProcess[str]) -> None:
    assert (fast.returncode, fast.stdout, fast.stderr) == (typer.returncode, typer.stdout, typer.stderr)


@pytest.fixture
def echo_program(tmp_path: Path, lm_server: LMServer) -> Path:
    program = tmp_path / "p.yaml"
    program.write_text(
        f'lm: {{model: openai/x, api_base: "{lm_server.api_base}", num_retries: 0}}\n'
        'modules:\n  echo: {signature: "text -> answer"}\n'
    )
    return program


@pytest.mark.parametrize(
    "argv",
    [
        ("validate", str(PROGRAMS / "sentiment.yaml")),
        ("validate", str(PROGRAMS / "qa.yaml"), "--graph"),
        ("validate", "--mermaid", str(PROGRAMS / "qa.yaml")),
        ("validate", "missing.yaml"),
        ("validate", "missing.yaml", "--debug"),
        ("validate", str(ROOT / "README.md")),
    ],
)
def test_validate_prints_and_exits_as_the_typer_app_does(argv: tuple[str, ...]) -> None:
    fast, typer = both_ways(*argv)
    if "--debug" in argv:  # the traceback's frames differ; its last line and the exit code do not
        assert fast.returncode == typer.returncode == 2
        assert fast.stderr.splitlines()[-1] == typer.stderr.splitlines()[-1]
    else:
        same(fast, typer)


def test_run_prints_and_exits_as_the_typer_app_does(echo_program: Path, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    for argv in (
        ("run", str(echo_program), "-i", "text=hi", "--no-cache", "--json"),
        ("run", str(echo_program), "--input", "text=hi", "--cache-dir", cache),
        ("run", str(echo_program), "-i", "nope=hi", "--no-cache"),
        ("run", str(echo_program), "-i", "text=hi", "--cache-only", "--cache-dir", cache, "--refresh"),
    ):
        fast, typer = both_ways(*argv)
        assert fast.returncode == typer.returncode, (argv, fast.stderr, typer.stderr)
        assert fast.stdout == typer.stdout, argv
        # The usage line on stderr ends with the call's seconds, which differ between runs.
        assert [line.rsplit("·", 1)[0] for line in fast.stderr.splitlines()] == [
            line.rsplit("·", 1)[0] for line in typer.stderr.splitlines()
        ], argv


def test_run_reads_the_lm_and_the_cache_folder_from_the_environment(
    echo_program: Path, tmp_path: Path, lm_server: LMServer
) -> None:
    env = {"DSPX_LM": f"envmodel@{lm_server.api_base}", "DSPX_CACHE_DIR": str(tmp_path / "env-cache")}
    fast, typer = both_ways("run", str(echo_program), "-i", "text=hi", "--json", **env)
    assert (fast.returncode, fast.stdout) == (typer.returncode, typer.stdout)
    assert {request.body["model"] for request in lm_server.requests} == {"envmodel"}
    assert (tmp_path / "env-cache").is_dir()
    seen = len(lm_server.requests)
    both_ways("run", str(echo_program), "-i", "text=hi", "--no-cache", DSPX_LM="")  # empty: no override
    assert {request.body["model"] for request in lm_server.requests[seen:]} == {"x"}


def test_typer_still_answers_what_the_fast_path_does_not_parse(echo_program: Path) -> None:
    for argv in (
        ("validate",),
        ("validate", "--help"),
        ("validate", str(PROGRAMS / "qa.yaml"), "--nope"),
        ("validate", str(PROGRAMS / "qa.yaml"), "extra"),
        ("run", str(echo_program), "-j", "0", "-i", "text=hi"),
        ("run", str(echo_program), "--lm=openai/x", "-i", "text=hi"),
    ):
        fast, typer = both_ways(*argv)
        same(fast, typer)


def test_what_the_fast_path_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSPX_CACHE_DIR", raising=False)
    monkeypatch.delenv("DSPX_LM", raising=False)
    assert parse(["p.yaml", "--graph"], _VALIDATE) == (Path("p.yaml"), {"graph": True})
    assert parse(["-i", "a=1", "p.yaml", "--input", "b=2", "-j", "3", "--state", "s.json"], _RUN) == (
        Path("p.yaml"),
        {"inputs": ["a=1", "b=2"], "concurrency": 3, "state": Path("s.json")},
    )
    assert parse(["p.yaml", "--baseline", "runs/a", "--max-regressions", "0"], _EVALUATE) == (
        Path("p.yaml"),
        {"baseline": Path("runs/a"), "max_regressions": 0},
    )
    assert parse(["p.yaml", "--max-regressions", "-1"], _EVALUATE) is None
    for unusual in (
        [],
        ["p.yaml", "--help"],
        ["p.yaml", "-h"],
        ["p.yaml", "--lm=x"],
        ["p.yaml", "--lm", "a", "--lm", "b"],
        ["p.yaml", "--lm", "--json"],
        ["p.yaml", "-j", "0"],
        ["p.yaml", "-j", "two"],
        ["p.yaml", "--", "x"],
        ["p.yaml", "q.yaml"],
        ["", "-i", "a=1"],
        ["p.yaml", "-i"],
    ):
        assert parse(unusual, _RUN) is None, unusual


def test_validate_imports_neither_typer_nor_the_http_stack_nor_rich_nor_asyncio_nor_pydantic() -> None:
    script = (
        "import sys, json\n"
        f"sys.argv = ['dspx', 'validate', {str(PROGRAMS / 'sentiment.yaml')!r}]\n"
        "import atexit\n"
        "names = ('typer', 'httpx', 'aiohttp', 'rich', 'torch', 'transformers', 'llama_cpp', 'optuna', 'asyncio',"
        " 'dspx_cli.lm.cache', 'pydantic')\n"
        # At exit: main() ends the process itself (os._exit after the atexit functions).
        "atexit.register(lambda: print(json.dumps([m for m in names if m in sys.modules]), file=sys.stderr))\n"
        "from dspx_cli.cli.app import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["compile", "--help"],
        ["validate", str(ROOT / "tests" / "fixtures" / "mipro" / "programs" / "route_then_prioritize.yaml")],
    ],
    ids=["help", "compile-help", "validate-mipro"],
)
def test_help_and_validating_a_mipro_program_import_no_optuna(argv: list[str]) -> None:
    """optuna (mipro_v2's study) is imported inside the optimizer only, never to parse or check."""
    script = (
        "import sys, json, atexit\n"
        f"sys.argv = ['dspx', *{argv!r}]\n"
        "names = ('optuna', 'torch', 'transformers', 'llama_cpp', 'sqlalchemy')\n"
        "atexit.register(lambda: print(json.dumps([m for m in names if m in sys.modules]), file=sys.stderr))\n"
        "from dspx_cli.cli.app import main\n"
        "main()\n"
    )
    env = {**os.environ, "MIPRO_API_BASE": "http://127.0.0.1:9/v1", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    if argv[0] == "validate":
        assert "optimizer: mipro_v2" in done.stdout and "prompt lm: openai/prompt-model" in done.stdout
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def test_one_run_call_imports_no_aiohttp_nor_module_types_it_does_not_use(
    echo_program: Path, lm_server: LMServer
) -> None:
    answer = "[[ ## answer ## ]]\nhello\n\n[[ ## completed ## ]]"
    lm_server.push(Reply(json={"choices": [{"message": {"content": answer}, "finish_reason": "stop"}]}))
    script = (
        "import sys, json\n"
        f"sys.argv = ['dspx', 'run', {str(echo_program)!r}, '-i', 'text=hi', '--no-cache']\n"
        "import atexit\n"
        "names = ('aiohttp', 'typer', 'pydantic', 'dspx_cli.modules.react', 'dspx_cli.retrieval', 'dspx_cli.evaluate')\n"
        "atexit.register(lambda: print(json.dumps([m for m in names if m in sys.modules]), file=sys.stderr))\n"
        "from dspx_cli.cli.app import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "answer: hello\n"
    assert len(lm_server.requests) == 1
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def test_evaluate_prints_and_exits_as_the_typer_app_does(echo_program: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": f"q{i}", "answer": f"q{i}"}) + "\n" for i in range(3)))
    echo_program.write_text(echo_program.read_text() + "metric: exact_match\n")
    volatile = ("seconds", "finished_at")
    summaries = []
    for name in ("fast", "typer"):
        argv = ("evaluate", str(echo_program), "--dataset", str(data), "--no-cache", "--json", "--min-score", "0.5")
        fast, typer = both_ways(*argv, "--output", str(tmp_path / name))
        done = fast if name == "fast" else typer
        assert done.returncode == 3, done.stderr  # the echo server's replies score 0
        summaries.append({key: value for key, value in json.loads(done.stdout).items() if key not in volatile})
    assert summaries[0] == summaries[1]
    for argv in (
        ("evaluate", str(echo_program), "--split", "nope"),
        ("evaluate", str(echo_program), "--dataset", str(tmp_path / "missing.jsonl"), "--limit", "2"),
        ("evaluate", str(echo_program), "--min-score", "inf"),
        ("evaluate", str(echo_program), "--baseline", str(tmp_path / "no-run"), "--max-regressions", "0"),
    ):
        same(*both_ways(*argv))


def test_the_entry_point_offers_the_fast_path_every_command_it_parses() -> None:
    from dspx_cli.cli.app import _FAST_COMMANDS
    from dspx_cli.cli.fast_path import _COMMANDS

    assert set(_COMMANDS) == _FAST_COMMANDS


def test_a_users_python_file_may_import_what_the_entry_point_blocks(tmp_path: Path, lm_server: LMServer) -> None:
    """The `dspx` process blocks trio (httpcore would import it; dspx never runs on trio), yet a
    metric or tool of the user's that imports it must load: here a local trio.py beside it."""
    (tmp_path / "trio.py").write_text("MARK = 'local trio'\n")
    (tmp_path / "metrics.py").write_text(
        "import trio\n\ndef marked(example, prediction, trace=None):\n    return trio.MARK == 'local trio'\n"
    )
    (tmp_path / "dev.jsonl").write_text('{"text": "a", "answer": "b"}\n')
    program = tmp_path / "p.yaml"
    program.write_text(
        f'lm: {{model: openai/x, api_base: "{lm_server.api_base}", num_retries: 0}}\n'
        'modules:\n  echo: {signature: "text -> answer"}\n'
        "data: {dev: dev.jsonl, inputs: [text]}\n"
        'metric: {python: "metrics.py:marked"}\n'
    )
    lm_server.responder = lambda body: "[[ ## answer ## ]]\nb\n\n[[ ## completed ## ]]"
    done = subprocess.run(
        [sys.executable, "-m", "dspx_cli", "evaluate", str(program), "--json", "--output", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["score"] == 1.0


def test_a_users_python_file_is_torn_down_as_in_a_normal_exit(tmp_path: Path, lm_server: LMServer) -> None:
    """The fast path ends the process without the interpreter's teardown, except when a program's
    own Python file was imported: here a metric whose log file is only flushed when it is finalized."""
    log = tmp_path / "scores.log"
    (tmp_path / "metrics.py").write_text(
        f"LOG = open({str(log)!r}, 'w', buffering=1 << 20)  # flushed when the file object is finalized\n\n"
        "def logged(example, prediction, trace=None):\n"
        "    LOG.write(f'{example.text} scored\\n')\n"
        "    return 1.0\n"
    )
    (tmp_path / "dev.jsonl").write_text('{"text": "a", "answer": "b"}\n')
    program = tmp_path / "p.yaml"
    program.write_text(
        f'lm: {{model: openai/x, api_base: "{lm_server.api_base}", num_retries: 0}}\n'
        'modules:\n  echo: {signature: "text -> answer"}\n'
        "data: {dev: dev.jsonl, inputs: [text]}\n"
        'metric: {python: "metrics.py:logged"}\n'
    )
    lm_server.responder = lambda body: "[[ ## answer ## ]]\nb\n\n[[ ## completed ## ]]"
    done = subprocess.run(
        [sys.executable, "-m", "dspx_cli", "evaluate", str(program), "--json", "--output", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["score"] == 1.0
    assert log.read_text() == "a scored\n"


def test_the_garbage_collector_is_on_once_the_program_runs(tmp_path: Path, lm_server: LMServer) -> None:
    """The entry point pauses the collector for start-up only: a metric (run in the evaluate loop)
    sees it on, and so does whatever the typer app runs when the fast path declines."""
    (tmp_path / "metrics.py").write_text(
        "import gc\n\ndef collecting(example, prediction, trace=None):\n    return float(gc.isenabled())\n"
    )
    (tmp_path / "dev.jsonl").write_text('{"text": "a", "answer": "b"}\n')
    program = tmp_path / "p.yaml"
    program.write_text(
        f'lm: {{model: openai/x, api_base: "{lm_server.api_base}", num_retries: 0}}\n'
        'modules:\n  echo: {signature: "text -> answer"}\n'
        "data: {dev: dev.jsonl, inputs: [text]}\n"
        'metric: {python: "metrics.py:collecting"}\n'
    )
    lm_server.responder = lambda body: "[[ ## answer ## ]]\nb\n\n[[ ## completed ## ]]"
    argv = ("evaluate", str(program), "--json", "--output", str(tmp_path / "run"))
    done = subprocess.run(
        [sys.executable, "-c", _THROUGH_MAIN, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["score"] == 1.0
    script = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('collector on' if gc.isenabled() else 'collector off', file=sys.stderr))\n"
        + _THROUGH_MAIN
    )
    declined = subprocess.run(  # `--graph=yes` is not the fast path's: typer reports the usage error
        [sys.executable, "-c", script, "validate", str(program), "--graph=yes"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert declined.returncode == 2
    assert declined.stderr.strip().splitlines()[-1] == "collector on"
