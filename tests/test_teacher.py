"""A teacher for bootstrapping: another LM and/or a compiled state, from the file or the command line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer


def setup(tmp_path: Path, optimizer: str) -> Path:
    rows = [{"text": f"w{i}", "answer": f"W{i}"} for i in range(8)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:6]))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[6:]))
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent("""\
        lm: {model: openai/student, api_base: "${BASE}", num_retries: 0}
        modules:
          shout: {signature: "text -> answer"}
        data: {train: train.jsonl, dev: dev.jsonl}
        metric: exact_match
        """)
        + f"optimizer: {textwrap.indent(optimizer, '  ')}\n"
    )
    return path


def answer(text: str) -> str:
    return f"[[ ## answer ## ]]\n{text}\n\n[[ ## completed ## ]]"


def asked(body: dict) -> str:
    return body["messages"][-1]["content"].split("\n")[1]


def test_teacher_lm_from_the_file_writes_the_demos(lm_server: LMServer, tmp_path: Path) -> None:
    # The student echoes (always wrong), the teacher upper-cases (always right): every bootstrapped
    # demo must come from the teacher, and the student only answers the dev set.
    lm_server.responder = lambda body: answer(asked(body))
    with LMServer() as teacher:
        teacher.responder = lambda body: answer(asked(body).upper())
        path = setup(
            tmp_path,
            textwrap.dedent("""
              type: bootstrap_few_shot
              max_bootstrapped_demos: 2
              max_labeled_demos: 2
              teacher: {lm: {model: openai/teacher, api_base: "${TEACHER}", api_key: "${TEACHER_KEY}"}}"""),
        )
        state = tmp_path / "state.json"
        done = dspx(
            "compile",
            str(path),
            "-o",
            str(state),
            "--json",
            "-j",
            "1",
            BASE=lm_server.api_base,
            TEACHER=teacher.api_base,
            TEACHER_KEY="sk-teacher-secret",
        )
        assert done.returncode == 0, done.stderr
        assert [r.body["model"] for r in teacher.requests] == ["teacher", "teacher"]
        assert teacher.requests[0].headers["authorization"] == "Bearer sk-teacher-secret"
    saved = json.loads(state.read_text())
    assert [(d["text"], d["answer"], d.get("augmented")) for d in saved["shout"]["demos"]] == [
        ("w0", "W0", True),
        ("w1", "W1", True),
    ]
    # Only dev before and after reach the student.
    assert {r.body["model"] for r in lm_server.requests} == {"student"}
    assert sorted({asked(r.body) for r in lm_server.requests}) == ["w6", "w7"]
    summary = json.loads(done.stdout)
    assert summary["settings"]["teacher"] == {"lm": "openai/teacher", "state": None}
    assert "sk-teacher-secret" not in state.read_text() and "sk-teacher-secret" not in done.stdout


def test_teacher_lm_on_the_command_line_and_not_changed_by_lm(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: answer(asked(body).upper() if body["model"] == "big" else asked(body))
    path = setup(tmp_path, "{type: bootstrap_few_shot, max_bootstrapped_demos: 1, max_labeled_demos: 1}")
    done = dspx(
        "compile",
        str(path),
        "-o",
        str(tmp_path / "s.json"),
        "--json",
        "-j",
        "1",
        "--lm",
        f"openai/small@{lm_server.api_base}",
        "--teacher-lm",
        f"openai/big@{lm_server.api_base}",
        BASE="http://127.0.0.1:9/v1",
    )
    assert done.returncode == 0, done.stderr
    demos = json.loads((tmp_path / "s.json").read_text())["shout"]["demos"]
    assert demos == [{"augmented": True, "text": "w0", "answer": "W0"}]
    by_model = {m: [asked(r.body) for r in lm_server.requests if r.body["model"] == m] for m in ("big", "small")}
    assert by_model["big"] == ["w0"] and sorted(by_model["small"]) == ["w6", "w6", "w7", "w7"]


def test_teacher_state_keeps_its_demos(lm_server: LMServer, tmp_path: Path) -> None:
    # A compiled teacher is used as it is: its one demo, not labeled demos from the trainset.
    lm_server.responder = lambda body: answer(asked(body).upper())
    path = setup(
        tmp_path,
        "{type: bootstrap_few_shot, max_bootstrapped_demos: 1, max_labeled_demos: 4, teacher: {state: teacher.json}}",
    )
    (tmp_path / "teacher.json").write_text(
        json.dumps(
            {
                "shout": {
                    "demos": [{"text": "zz", "answer": "ZZ"}],
                    "traces": [],
                    "train": [],
                    "signature": {
                        "instructions": "Given the fields `text`, produce the fields `answer`.",
                        "fields": [
                            {"prefix": "Text:", "description": "${text}"},
                            {"prefix": "Answer:", "description": "${answer}"},
                        ],
                    },
                    "lm": None,
                },
                "metadata": {"dependency_versions": {}},
            }
        )
    )
    done = dspx("compile", str(path), "-o", str(tmp_path / "s.json"), "--json", "-j", "1", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    train_calls = [r.body["messages"] for r in lm_server.requests if asked(r.body) == "w0"]
    assert len(train_calls) == 1
    shown = [m["content"] for m in train_calls[0][1:-1]]
    assert len(shown) == 2 and "zz" in shown[0] and "ZZ" in shown[1]
    assert json.loads(done.stdout)["settings"]["teacher"]["state"].endswith("teacher.json")


def test_bad_teachers_are_usage_or_program_errors(lm_server: LMServer, tmp_path: Path) -> None:
    path = setup(tmp_path, "{type: bootstrap_few_shot, teacher: {lm: {modle: x}}}")
    bad = dspx("compile", str(path), BASE=lm_server.api_base)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert f"{path}:6:" in bad.stderr and "optimizer.teacher.lm" in bad.stderr
    path = setup(tmp_path, "{type: bootstrap_few_shot}")
    missing = dspx("compile", str(path), "--teacher-state", str(tmp_path / "nope.json"), BASE=lm_server.api_base)
    assert missing.returncode == 2 and "nope.json" in missing.stderr
    labeled = dspx(
        "compile", str(path), "--optimizer", "labeled_few_shot", "--teacher-lm", "openai/x", BASE=lm_server.api_base
    )
    assert labeled.returncode == 2 and "takes no teacher" in labeled.stderr
    assert lm_server.requests == []
