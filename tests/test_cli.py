"""The command line: stdout, stderr and the exit code. Most calls run in-process
(tests/cli_inprocess.py); start-up, help and the exit codes go through a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import cli_process
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "programs"
HEAVY = ("torch", "transformers", "optuna", "llama_cpp")


def imported_modules(*argv: str) -> list[str]:
    """Run the CLI in a fresh interpreter and report which heavy packages it imported."""
    script = (
        "import sys, json\n"
        f"sys.argv = ['dspx', *{list(argv)!r}]\n"
        "import atexit\n"
        # At exit: main() may end the process itself (os._exit after the atexit functions).
        f"atexit.register(lambda: print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr))\n"
        "from dspx_cli.cli.app import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_help_and_validate_import_no_heavy_packages() -> None:
    assert imported_modules("--help") == []
    assert imported_modules("validate", str(PROGRAMS / "sentiment.yaml")) == []
    assert imported_modules("inspect", str(PROGRAMS / "qa.yaml"), "-i", "question=Why?") == []


def test_version_and_help_on_every_command() -> None:
    from dspx_cli import __version__

    dspx = cli_process.dspx  # start-up as users see it
    done = dspx("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"dspx {__version__}"
    for command in ("run", "inspect", "validate"):
        done = dspx(command, "--help")
        assert done.returncode == 0, done.stderr
        assert "PROGRAM" in done.stdout


def _command_paths() -> list[list[str]]:
    import typer.main

    from dspx_cli.cli.typer_app import app

    def walk(command: Any, path: list[str]) -> list[list[str]]:
        found = [path] if path else []
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            found += walk(sub, [*path, name])
        return found

    return walk(typer.main.get_command(app), [])


@pytest.mark.parametrize("columns", ["80", "43"])
def test_a_commands_help_is_the_typer_apps_help(columns: str) -> None:
    """`dspx COMMAND --help` is printed without parsing the root's options (cli/typer_app.py
    command_help): the same bytes, exit code and stderr as the app run as a whole."""
    app_run = "import sys; from dspx_cli.cli.typer_app import app; sys.argv[0] = 'dspx'; app(prog_name='dspx')"
    env = {k: v for k, v in os.environ.items() if k not in ("DSPX_LM", "NO_COLOR")} | {"COLUMNS": columns}
    paths = _command_paths()
    assert ["run"] in paths and ["cache", "rm"] in paths
    for argv in [*([*path, "--help"] for path in paths), ["cache", "-h"], ["nosuch", "--help"]]:
        ours = subprocess.run([sys.executable, "-m", "dspx_cli", *argv], capture_output=True, env=env, cwd=ROOT)
        apps = subprocess.run([sys.executable, "-c", app_run, *argv], capture_output=True, env=env, cwd=ROOT)
        assert (ours.returncode, ours.stdout, ours.stderr) == (apps.returncode, apps.stdout, apps.stderr), argv
        assert argv[0] == "nosuch" or b"-h, --help" in ours.stdout, argv


def test_a_commands_help_imports_no_pydantic() -> None:
    script = (
        "import sys, json, atexit\n"
        "sys.argv = ['dspx', 'run', '--help']\n"
        "atexit.register(lambda: print(json.dumps('pydantic' in sys.modules), file=sys.stderr))\n"
        "from dspx_cli.cli.app import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and "PROGRAM" in done.stdout, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) is False


@pytest.mark.parametrize("name", ["sentiment.yaml", "sentiment.toml", "qa.yaml"])
def test_validate_shipped_programs(name: str) -> None:
    done = dspx("validate", str(PROGRAMS / name))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: ")


def test_yaml_and_toml_send_identical_messages() -> None:
    review = "A slow start, then wonderful."
    yaml_out = dspx("inspect", "programs/sentiment.yaml", "-i", f"review={review}", "--json")
    toml_out = dspx("inspect", "programs/sentiment.toml", "-i", f"review={review}", "--json")
    assert yaml_out.returncode == toml_out.returncode == 0, yaml_out.stderr + toml_out.stderr
    yaml_steps, toml_steps = json.loads(yaml_out.stdout), json.loads(toml_out.stdout)
    assert yaml_steps == toml_steps
    messages = yaml_steps[0]["messages"]
    assert messages[-1]["content"].startswith(f"[[ ## review ## ]]\n{review}\n\n")
    assert len(messages) == 1 + 2 * 4 + 1  # system, four demo pairs, the question


def test_validate_bad_program_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("modules:\n  m:\n    signature: 'q -> a'\n    temprature: 1\n")
    done = cli_process.dspx("validate", str(bad))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines == [f"error: {bad}:4:5: unknown key 'temprature' in modules.m; did you mean 'temperature'?"]
    assert "Traceback" not in done.stderr


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("modules: {}\n")
    quiet, loud = dspx("validate", str(bad)), dspx("validate", str(bad), "--debug")
    assert quiet.returncode == loud.returncode == 2
    assert "Traceback" in loud.stderr and "ProgramError" in loud.stderr
    # The one-line message still closes stderr, so what a script greps for is there either way.
    assert loud.stderr.strip().splitlines()[-1] == quiet.stderr.strip()


def test_debug_keeps_exit_1_for_a_failed_run(tmp_path: Path) -> None:
    program = tmp_path / "p.yaml"
    program.write_text(
        'lm: {model: openai/m, api_base: "http://127.0.0.1:9/v1", api_key: x, num_retries: 0}\n'
        "modules:\n  m: {signature: 'q -> a'}\n"
    )
    done = cli_process.dspx("run", str(program), "-i", "q=x", "--no-cache", "--debug")
    assert done.returncode == 1, done.stderr
    assert "Traceback" in done.stderr and done.stderr.strip().splitlines()[-1].startswith("error: ")


def test_debug_keeps_exit_3_below_min_score(lm_server: LMServer, tmp_path: Path) -> None:
    (tmp_path / "dev.jsonl").write_text('{"q": "a", "a": "right"}\n')
    program = tmp_path / "p.yaml"
    program.write_text(
        'lm: {model: openai/m, api_base: "${BASE}", api_key: x}\n'
        "modules:\n  m: {signature: 'q -> a'}\ndata: {dev: dev.jsonl}\nmetric: exact_match\n"
    )
    lm_server.responder = lambda body: "[[ ## a ## ]]\nwrong\n\n[[ ## completed ## ]]"
    args = ("evaluate", str(program), "--min-score", "0.5", "--output", str(tmp_path / "run"))
    quiet = dspx(*args, BASE=lm_server.api_base)
    loud = cli_process.dspx(*args, "--debug", BASE=lm_server.api_base)
    assert quiet.returncode == loud.returncode == 3, loud.stderr
    assert "Traceback" in loud.stderr and "is below --min-score 0.5" in loud.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["-i", "reviw=x"], "has no input 'reviw'; its inputs are: review (str)"),
        (["-i", "review"], "expected FIELD=VALUE"),
        ([], "missing input(s) review"),
    ],
)
def test_bad_inputs_exit_2(args: list[str], fragment: str) -> None:
    done = dspx("inspect", "programs/sentiment.yaml", *args)
    assert done.returncode == 2
    assert fragment in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_non_string_inputs_are_json(tmp_path: Path) -> None:
    program = tmp_path / "p.yaml"
    program.write_text("modules:\n  m:\n    signature: 'context: list[str], k: int -> answer'\n")
    done = dspx("inspect", str(program), "-i", 'context=["a", "b"]', "-i", "k=3", "--json")
    assert done.returncode == 0, done.stderr
    user = json.loads(done.stdout)[0]["messages"][-1]["content"]
    assert user.startswith('[[ ## context ## ]]\n["a", "b"]\n\n[[ ## k ## ]]\n3\n\n')
    done = dspx("inspect", str(program), "-i", "context=a,b", "-i", "k=3")
    assert done.returncode == 2 and "expected JSON for type list[str]" in done.stderr


def test_validate_prints_the_graph() -> None:
    done = dspx("validate", "programs/triage.yaml", "--graph")
    assert done.returncode == 0, done.stderr
    graph = done.stdout.split("graph (")[1]
    assert "[0] sentiment" in graph and "[0] aspect" in graph and "[1] headline" in graph
    mermaid = dspx("validate", "programs/triage.yaml", "--mermaid").stdout
    assert mermaid.startswith("flowchart LR") and "sentiment -- sentiment --> headline" in mermaid


def test_validate_checks_the_metric_and_data_sections(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('modules:\n  m: {signature: "q -> answer"}\nmetric: exact_mach\n')
    done = dspx("validate", str(bad))
    assert done.returncode == 2 and f"{bad}:3:1: unknown metric 'exact_mach'" in done.stderr
    assert imported_modules("validate", str(bad)) == []
