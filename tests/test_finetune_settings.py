"""The `finetune:` section and the command line of `dspx finetune`: errors where they are written,
a remote student refused, and a state whose predictors point at a local model."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from dspx_cli.finetune.section import choose_finetune_settings
from dspx_cli.finetune.settings import FULL_LEARNING_RATE, LORA_LEARNING_RATE
from dspx_cli.program.loader import load_program
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer

PROGRAM = """\
lm: {model: openai/m, api_base: "${BASE:-http://127.0.0.1:9/v1}", num_retries: 0}
modules:
  shout: {signature: "text -> answer"}
data: {train: train.jsonl, dev: dev.jsonl}
metric: exact_match
"""


def program(tmp_path: Path, finetune: str = "", lm: str | None = None) -> Path:
    rows = [{"text": f"w{i}", "answer": f"W{i}"} for i in range(4)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[2:]))
    text = PROGRAM if lm is None else PROGRAM.replace(PROGRAM.splitlines()[0], f"lm: {lm}")
    path = tmp_path / "p.yaml"
    path.write_text(text + textwrap.dedent(finetune))
    return path


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("finetune:\n  epoch: 2\n", "p.yaml:7:3: unknown key 'epoch' in finetune; did you mean 'epochs'?"),
        ("finetune:\n  epochs: 0\n", "p.yaml:7:3: finetune.epochs: expected greater than or equal to 1, got 0"),
        ("finetune:\n  lora: {r: 0}\n", "p.yaml:7:10: finetune.lora.r: expected greater than or equal to 1, got 0"),
        ("finetune:\n  lora: {rank: 8}\n", "p.yaml:7:10: unknown key 'rank' in finetune.lora"),
        ("finetune:\n  gguf: q4\n", "p.yaml:7:3: finetune.gguf: expected 'f16', 'q8_0' or 'source', got 'q4'"),
        ("finetune:\n  traces: all\n", "p.yaml:7:3: finetune.traces: expected 'auto', 'labeled' or 'bootstrap'"),
        ("finetune:\n  learning_rate: fast\n", "p.yaml:7:3: finetune.learning_rate: expected a number, got 'fast'"),
        ("finetune:\n  teacher: {lm: no-such-model}\n", "p.yaml:7:13: teacher: unknown model 'no-such-model'"),
        ("finetune: [1]\n", "p.yaml:6:1: finetune: expected a mapping, got a list"),
    ],
)
def test_bad_settings_are_exit_2_at_their_line(tmp_path: Path, section: str, message: str) -> None:
    path = program(tmp_path, section)
    for command in (("validate",), ("finetune", "--data-only")):
        done = dspx(*command, path.name, cwd=tmp_path)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.startswith("error: " + message), (command, done.stderr)
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "epochs=zero"), "error: --set epochs=zero: finetune.epochs: expected a valid integer"),
        (("--set", "epoch=2"), "error: --set epoch=2: expected KEY=VALUE with KEY one of: epochs, learning_rate"),
        (("--set", "lora.rank=2"), "error: --set lora.rank=2: expected lora.KEY with KEY one of: r, alpha, dropout"),
        (("--set", "gguf=q4"), "error: --set gguf=q4: finetune.gguf: expected 'f16', 'q8_0' or 'source'"),
        (("--traces", "some"), "error: --traces some: expected 'auto', 'labeled' or 'bootstrap'"),
        (("--teacher-lm", "nonsense"), "error: --teacher-lm nonsense: unknown model 'nonsense'"),
    ],
)
def test_bad_command_line_settings_are_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = dspx("finetune", str(program(tmp_path)), "--data-only", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message), done.stderr


def test_settings_merge_the_file_and_set(tmp_path: Path) -> None:
    path = program(tmp_path, "finetune:\n  epochs: 2\n  lora: true\n  gguf: q8_0\n")
    choice = choose_finetune_settings(load_program(path), ["lora.r=4", "learning_rate=0.003"])
    record = choice.settings.record()
    assert record["epochs"] == 2 and record["gguf"] == "q8_0" and record["learning_rate"] == 0.003
    assert record["lora"] == {"r": 4, "alpha": 32, "dropout": 0.05}
    assert choose_finetune_settings(load_program(path), []).settings.learning_rate_or_default == LORA_LEARNING_RATE
    (tmp_path / "plain").mkdir()
    plain = choose_finetune_settings(load_program(program(tmp_path / "plain")), []).settings
    assert plain.lora_settings is None and plain.learning_rate_or_default == FULL_LEARNING_RATE


def test_a_remote_student_is_refused_before_any_call(lm_server: LMServer, tmp_path: Path) -> None:
    done = dspx("finetune", str(program(tmp_path)), cwd=tmp_path, BASE=lm_server.api_base)
    assert done.returncode == 2
    assert "dspx finetune trains a local model on this machine, and the program runs on 'openai/m'" in done.stderr
    assert "--data-only" in done.stderr
    assert lm_server.requests == []


def test_a_state_points_a_predictor_at_a_local_model(lm_server: LMServer, tmp_path: Path) -> None:
    """`lm: {model: local/<path>}` in a state, relative to the state file, replaces the program's model."""
    from dspx_cli.lm.local_gguf import embedded_model_path

    path = program(tmp_path)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    os.symlink(embedded_model_path(), folder / "model.gguf")
    state = {
        "shout": {
            "traces": [],
            "train": [],
            "demos": [{"text": "a", "answer": "A"}],
            "signature": {
                "instructions": "Upper-case the text.",
                "fields": [
                    {"prefix": "Text:", "description": "${text}"},
                    {"prefix": "Answer:", "description": "${answer}"},
                ],
            },
            "lm": {"model": "local/model.gguf"},
        }
    }
    (folder / "state.json").write_text(json.dumps(state))
    done = dspx(
        "run", str(path), "--state", str(folder / "state.json"), "-i", "text=b", "--json",
        cwd=tmp_path, BASE=lm_server.api_base,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr  # the tiny model may not answer in format; it must be asked
    assert lm_server.requests == []
    history = dspx("history", "-n", "1", "--json", cwd=tmp_path)
    assert f"local/{(folder / 'model.gguf').resolve()}" in history.stdout

    state["shout"]["lm"] = {"model": "local/missing.gguf"}
    (folder / "state.json").write_text(json.dumps(state))
    missing = dspx("run", str(path), "--state", str(folder / "state.json"), "-i", "text=b", cwd=tmp_path)
    assert missing.returncode == 2
    assert f"{folder / 'state.json'}: predictor 'shout': local model" in missing.stderr
    assert "no such file or folder" in missing.stderr

    # DSPy writes the LM a predictor was given; a hosted model in a state is ignored, as before.
    state["shout"]["lm"] = {"model": "openai/gpt-4o-mini", "temperature": 0.0}
    (folder / "state.json").write_text(json.dumps(state))
    lm_server.responder = lambda body: "[[ ## answer ## ]]\nB\n\n[[ ## completed ## ]]"
    hosted = dspx("run", str(path), "--state", str(folder / "state.json"), "-i", "text=b", BASE=lm_server.api_base)
    assert hosted.returncode == 0 and hosted.stdout.strip() == "answer: B"
    assert [r.body["model"] for r in lm_server.requests] == ["m"]


def test_validate_and_help_of_finetune_import_no_training_packages(tmp_path: Path) -> None:
    from tests.test_cli import imported_modules

    path = program(tmp_path, "finetune:\n  lora: true\n  teacher: {lm: local/smollm2}\n")
    assert imported_modules("validate", str(path)) == []
    assert imported_modules("finetune", "--help") == []


def test_a_toml_finetune_table_is_checked_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(
        '[modules.m]\nsignature = "q -> a"\n\n[finetune]\nepochs = 2\n\n[finetune.lora]\nr = 0\n'
    )
    done = dspx("validate", "p.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "error: p.toml:8:1: finetune.lora.r: expected greater than or equal to 1, got 0\n"
