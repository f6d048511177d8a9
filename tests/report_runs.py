"""Run folders for the report tests, made by real `dspx evaluate` and `dspx compile` runs against
the loopback LM server (tests/lm_server.py).

The program shouts its input back; the label is wrong for every third example (a failure), the
example whose text is `xss` gets a reply that would run script if the page let it in, and the one
whose text is `boom` gets a server error (an example with an error).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from tests.cli_inprocess import dspx
from tests.lm_server import RecordedRequest, Reply, error_body

SECRET = "sk-REPORT-SECRET-7f3a"
XSS = '</script><script>alert(1)</script><img src=x onerror="window.__xss=1"><b id=injected>bold</b>'


def texts(count: int) -> list[str]:
    return [*(f"t{i}" for i in range(count - 2)), "xss", "boom"]


def write_program(directory: Path, count: int) -> Path:
    rows = []
    for i, text in enumerate(texts(count)):
        answer = XSS if text == "xss" else text.upper()
        rows.append({"text": text, "answer": "wrong" if i % 3 == 0 else answer})
    (directory / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (directory / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    path = directory / "p.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: shout
            lm: {{model: openai/m, api_base: "${{BASE}}", api_key: "${{KEY:-{SECRET}x}}", num_retries: 0}}
            modules:
              echo: {{signature: "text -> answer"}}
            data: {{dev: dev.jsonl, train: train.jsonl}}
            metric: exact_match
            optimizer: {{type: bootstrap_few_shot, max_bootstrapped_demos: 1, max_labeled_demos: 1}}
            """
        )
    )
    return path


def shout(body: dict[str, Any]) -> str:
    text = body["messages"][-1]["content"].split("\n")[1]
    answer = XSS if text == "xss" else text.upper()
    return f"[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"


def refuse_boom(request: RecordedRequest, attempt: int) -> Reply | None:
    """The server's rule: the example `boom` gets a 400 (with num_retries 0, an example error)."""
    if request.body.get("messages", [{}])[-1].get("content", "").startswith("[[ ## text ## ]]\nboom"):
        return Reply(status=400, json=error_body("boom is refused"))
    return None


def evaluate_run(program: Path, out: Path, base: str, *extra: str, **env: str) -> None:
    done = dspx("evaluate", str(program), "--output", str(out), *extra, BASE=base, KEY=SECRET, **env)
    assert done.returncode == 0, done.stderr


def compile_run(program: Path, base: str, **env: str) -> Path:
    """A compile's own run folder (runs/<timestamp>-shout beside the program: no -o)."""
    done = dspx("compile", str(program), cwd=program.parent, BASE=base, KEY=SECRET, **env)
    assert done.returncode == 0, done.stderr
    [out] = (program.parent / "runs").iterdir()
    return out


def mipro_run(directory: Path) -> Path:
    """A real mipro_v2 compile on the golden fixture's scripted server (tests/test_mipro_cli.py):
    its run folder has trials.jsonl, and, with -o, no summary.json (the state's metadata has it)."""
    from tests.test_mipro_cli import compile_case

    directory.mkdir(parents=True, exist_ok=True)
    _, run_dir = compile_case(directory, "light_predict")
    return run_dir


def finetune_run(out: Path) -> Path:
    """A finetune run folder's files as `dspx finetune` writes them (training itself needs torch)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({"student": "local/smollm2"}))
    summary = {
        "program": "p.yaml",
        "student": "local/smollm2",
        "teacher": None,
        "traces": {"mode": "labeled", "records": 8},
        "score_before": 0.25,
        "score_after": 0.5,
        "steps": 6,
        "loss_curve": [2.5, 2.1, 1.7, 1.2, 0.9, 0.8],
        "seconds": 12.5,
    }
    (out / "summary.json").write_text(json.dumps(summary))
    return out
