"""Flow steps that map over a list (`foreach`) or run on a condition (`when`), end to end."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer, RecordedRequest, Reply, error_body

HEADER = """\
lm: {model: openai/test-model, api_base: "${BASE}", num_retries: 0, max_tokens: 64}
"""

MAP = """\
signatures:
  split: {inputs: {text: str}, outputs: {parts: "list[str]"}}
  shout: {inputs: {word: str}, outputs: {loud: str}}
modules:
  split: {signature: split}
  shout: {signature: shout}
flow:
  - {id: words, module: split, with: {text: $input.text}}
  - id: up
    module: shout
    foreach: $words.parts
    with: {word: $item}
output: {loud: $up.loud}
"""


def write(tmp_path: Path, body: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def asked(body: dict[str, Any], field: str) -> str:
    """The value of input `field` in the last user message of a chat request."""
    match = re.search(rf"\[\[ ## {field} ## \]\]\n(.*?)(\n\n|$)", body["messages"][-1]["content"], re.S)
    assert match is not None
    return match.group(1)


def reply(**fields: Any) -> str:
    parts = [
        f"[[ ## {name} ## ]]\n{value if isinstance(value, str) else json.dumps(value)}"
        for name, value in fields.items()
    ]
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


def responder(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"]
    if "[[ ## parts ## ]]" in system:
        return reply(parts=asked(body, "text").split())
    if "[[ ## loud ## ]]" in system:
        return reply(loud=asked(body, "word").upper())
    if "[[ ## ok ## ]]" in system:
        return reply(ok="true" if "good" in asked(body, "text") else "false")
    if "[[ ## fixed ## ]]" in system:
        return reply(fixed="FIXED " + asked(body, "text"))
    raise AssertionError(system)


def run(path: Path, server: LMServer, *args: str) -> Any:
    done = dspx("run", str(path), "--json", *args, BASE=server.api_base)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_foreach_over_a_step_output_keeps_item_order_under_reversed_latency(
    lm_server: LMServer, tmp_path: Path
) -> None:
    lm_server.responder = responder
    words = ["a", "b", "c", "d"]

    def rule(request: RecordedRequest, attempt: int) -> Reply | None:
        # The first item answers last: replies arrive in reverse order.
        if "[[ ## loud ## ]]" in request.body["messages"][0]["content"]:
            return Reply(delay=0.1 * (len(words) - words.index(asked(request.body, "word"))))
        return None

    lm_server.rule = rule
    result = run(write(tmp_path, MAP), lm_server, "-i", "text=" + " ".join(words))
    assert result["loud"] == ["A", "B", "C", "D"]
    assert lm_server.max_in_flight > 1  # the items were in flight together
    shouted = [r for r in lm_server.requests if "[[ ## loud ## ]]" in r.body["messages"][0]["content"]]
    assert sorted(asked(r.body, "word") for r in shouted) == words  # one call per item


def test_foreach_over_an_input_list_and_its_type(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = responder
    path = write(
        tmp_path,
        """\
        signatures:
          shout: {inputs: {word: str, tone: str}, outputs: {loud: str}}
        modules:
          shout: {signature: shout}
        flow:
          - id: up
            module: shout
            foreach: $input.words
            as: w
            with: {word: $w, tone: $input.tone}
        """,
    )
    checked = dspx("validate", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "inputs:  tone: str, words: list[str]" in checked.stdout
    result = run(path, lm_server, "-i", 'words=["x", "y", "z"]', "-i", "tone=calm")
    assert result["loud"] == ["X", "Y", "Z"]
    assert run(path, lm_server, "-i", "words=[]", "-i", "tone=calm")["loud"] == []
    bad = dspx("run", str(path), "-i", "words=x", "-i", "tone=calm", BASE=lm_server.api_base)
    assert bad.returncode == 2 and "words" in bad.stderr


def fail_on(word: str) -> Any:
    def rule(request: RecordedRequest, attempt: int) -> Reply | None:
        system = request.body["messages"][0]["content"]
        if "[[ ## loud ## ]]" in system and asked(request.body, "word") == word:
            return Reply(status=400, json=error_body("this item is cursed"))
        return None

    return rule


def test_an_item_error_fails_the_step_by_default(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = responder
    lm_server.rule = fail_on("b")
    done = dspx("run", str(write(tmp_path, MAP)), "-i", "text=a b c", BASE=lm_server.api_base)
    assert done.returncode != 0
    assert "cursed" in done.stderr


def test_items_below_max_errors_become_null(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = responder
    lm_server.rule = fail_on("b")
    path = write(tmp_path, MAP.replace("    with: {word: $item}", "    max_errors: 2\n    with: {word: $item}"))
    assert run(path, lm_server, "-i", "text=a b c")["loud"] == ["A", None, "C"]
    done = dspx("run", str(path), "-i", "text=b b2 b", BASE=lm_server.api_base)
    assert done.returncode != 0 and "cursed" in done.stderr  # two failed items reach max_errors


WHEN = """\
signatures:
  check: {inputs: {text: str}, outputs: {ok: bool}}
  fix: {inputs: {text: "str | None"}, outputs: {fixed: str}}
modules:
  check: {signature: check}
  fix: {signature: fix}
flow:
  - {id: check, module: check, with: {text: $input.text}}
  - {id: fix, module: fix, when: CONDITION, with: {text: $input.text}}
output: {ok: $check.ok, fixed: $fix.fixed}
"""


def test_when_true_false_and_not(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = responder
    plain = write(tmp_path, WHEN.replace("CONDITION", "$check.ok"), "plain.yaml")
    negated = write(tmp_path, WHEN.replace("CONDITION", "not $check.ok"), "negated.yaml")
    assert run(plain, lm_server, "-i", "text=good one") == {"ok": True, "fixed": "FIXED good one"}
    assert run(plain, lm_server, "-i", "text=bad one") == {"ok": False, "fixed": None}
    assert run(negated, lm_server, "-i", "text=good one") == {"ok": True, "fixed": None}
    assert run(negated, lm_server, "-i", "text=bad one") == {"ok": False, "fixed": "FIXED bad one"}
    fixes = [r for r in lm_server.requests if "[[ ## fixed ## ]]" in r.body["messages"][0]["content"]]
    assert len(fixes) == 2  # skipped steps made no call


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


READER = (
    WHEN.replace("CONDITION", "$check.ok")
    .replace(
        "output: {ok: $check.ok, fixed: $fix.fixed}",
        """\
  - {id: use, module: use, with: {fixed: $fix.fixed}}
output: {final: $use.final}""",
    )
    .replace("  fix: {signature: fix}\n", "  fix: {signature: fix}\n  use: {signature: use}\n")
)


def test_a_skipped_steps_output_needs_an_optional_reader(lm_server: LMServer, tmp_path: Path) -> None:
    strict = write(
        tmp_path, READER.replace("modules:", "  use: {inputs: {fixed: str}, outputs: {final: str}}\nmodules:")
    )
    done = dspx("validate", str(strict))
    assert done.returncode == 2
    assert f"{strict}:{line_of(strict, 'id: use')}" in done.stderr
    assert "$fix.fixed is null when step 'fix' is skipped" in done.stderr and "optional" in done.stderr
    assert "Traceback" not in done.stderr

    lenient = write(
        tmp_path,
        READER.replace("modules:", '  use: {inputs: {fixed: "str | None"}, outputs: {final: str}}\nmodules:'),
        "ok.yaml",
    )
    done = dspx("validate", str(lenient))
    assert done.returncode == 0, done.stderr
    assert "when $check.ok" in done.stdout


def test_foreach_on_a_non_list_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MAP.replace("foreach: $words.parts", "foreach: $words.parts2").replace(
            '  split: {inputs: {text: str}, outputs: {parts: "list[str]"}}',
            '  split: {inputs: {text: str}, outputs: {parts: "list[str]", parts2: str}}',
        ),
    )
    done = dspx("validate", str(path))
    assert done.returncode == 2
    assert f"{path}:{line_of(path, 'foreach:')}" in done.stderr
    assert "foreach: $words.parts2 is str, expected a list" in done.stderr

    condition = write(tmp_path, WHEN.replace("CONDITION", "$check.missing"), "w.yaml")
    done = dspx("validate", str(condition))
    assert done.returncode == 2 and f"{condition}:{line_of(condition, 'when:')}" in done.stderr
    assert "has no output 'missing'" in done.stderr


def test_a_reader_of_a_mapped_step_sees_a_list(tmp_path: Path) -> None:
    body = MAP.replace(
        "output: {loud: $up.loud}", "  - {id: join, module: join, with: {louds: $up.loud}}\noutput: {all: $join.all}"
    )
    body = body.replace("modules:", "  join: {inputs: {louds: TYPE}, outputs: {all: str}}\nmodules:")
    body = body.replace("  shout: {signature: shout}\n", "  shout: {signature: shout}\n  join: {signature: join}\n")
    good = write(tmp_path, body.replace("TYPE", '"list[str]"'), "good.yaml")
    assert dspx("validate", str(good)).returncode == 0
    bad = write(tmp_path, body.replace("TYPE", "int"), "bad.yaml")
    done = dspx("validate", str(bad))
    assert done.returncode == 2 and "$up.loud is list[str] but input 'louds'" in done.stderr
    assert f"{bad}:{line_of(bad, 'id: join')}" in done.stderr


def test_bootstrap_compiles_through_a_foreach_step(lm_server: LMServer, tmp_path: Path) -> None:
    def respond(body: dict[str, Any]) -> str:
        # The scripted model knows the training words; other words it upper-cases once it has a demo.
        word = asked(body, "word")
        knows = len(body["messages"]) > 2 or word[1] in "0123"
        return reply(loud=word.upper() if knows else word)

    lm_server.responder = respond
    rows = [{"words": [f"w{i}a", f"w{i}b"], "loud": [f"W{i}A", f"W{i}B"]} for i in range(6)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[4:]))
    (tmp_path / "metric.py").write_text(
        "def same(example, prediction, trace=None):\n    return float(prediction.loud == example.loud)\n"
    )
    path = write(
        tmp_path,
        """\
        modules:
          shout: {signature: "word -> loud"}
        flow:
          - {id: up, module: shout, foreach: $input.words, with: {word: $item}}
        data: {train: train.jsonl, dev: dev.jsonl}
        metric: {python: "metric.py:same"}
        optimizer: {type: bootstrap_few_shot, max_bootstrapped_demos: 2, max_labeled_demos: 0}
        """,
    )
    state = tmp_path / "state.json"
    done = dspx("compile", str(path), "-o", str(state), "--json", BASE=lm_server.api_base)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["score_before"], summary["score_after"]) == (0.0, 1.0)
    demos = json.loads(state.read_text())["shout"]["demos"]
    # Each successful example called `shout` once per item; bootstrap keeps one demo of the two.
    assert len(demos) == 2 and all(d["augmented"] for d in demos)
    assert all(d["loud"] == d["word"].upper() for d in demos)


def test_when_on_an_input_and_keys_that_need_foreach(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = responder
    body = WHEN.replace("CONDITION", "$input.fix").replace("{ok: $check.ok, fixed: $fix.fixed}", "{fixed: $fix.fixed}")
    body = body.replace("  - {id: check, module: check, with: {text: $input.text}}\n", "")
    path = write(tmp_path, body)
    checked = dspx("validate", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "fix: bool" in checked.stdout
    assert run(path, lm_server, "-i", "text=x", "-i", "fix=false") == {"fixed": None}
    assert run(path, lm_server, "-i", "text=x", "-i", "fix=true") == {"fixed": "FIXED x"}

    stray = write(tmp_path, WHEN.replace("when: CONDITION", "max_errors: 3"), "stray.yaml")
    done = dspx("validate", str(stray))
    assert done.returncode == 2 and "`max_errors` only applies to a step with `foreach`" in done.stderr
    assert f"{stray}:{line_of(stray, 'max_errors')}" in done.stderr


def test_foreach_over_objects_reads_their_keys(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = responder
    path = write(
        tmp_path,
        """\
        signatures:
          shout: {inputs: {word: str, tone: str}, outputs: {loud: str}}
        modules:
          shout: {signature: shout}
        flow:
          - {id: up, module: shout, foreach: $input.rows, with: {word: $item.w, tone: $item.t}}
        """,
    )
    checked = dspx("validate", str(path))
    assert checked.returncode == 0, checked.stderr
    assert "rows: list[dict[str, Any]]" in checked.stdout
    rows = json.dumps([{"w": "a", "t": "calm"}, {"w": "b", "t": "calm"}])
    assert run(path, lm_server, "-i", f"rows={rows}")["loud"] == ["A", "B"]
    done = dspx("run", str(path), "-i", 'rows=[{"w": "a"}]', BASE=lm_server.api_base)
    assert done.returncode != 0 and "$item.t - the item has no key 't'" in done.stderr


def test_an_item_of_the_wrong_type_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, MAP.replace("shout: {inputs: {word: str}", "shout: {inputs: {word: int}"))
    done = dspx("validate", str(path))
    assert done.returncode == 2
    assert "$item (an item of $words.parts) is str but input 'word' of module 'shout' expects int" in done.stderr
    assert f"{path}:{line_of(path, 'with: {word: $item}')}" in done.stderr


def test_a_long_list_runs_at_most_a_bounded_number_of_items_at_once(tmp_path: Path) -> None:
    """A list from a row or a reply may be huge; each item of a sync Python step holds a thread."""
    from dspx_cli.program.foreach import MAX_ITEMS_AT_ONCE

    (tmp_path / "steps.py").write_text(
        textwrap.dedent("""\
        import threading, time
        lock = threading.Lock()
        running = peak = 0

        def shout(word):
            global running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.02)
            with lock:
                running -= 1
            return {"loud": word.upper(), "peak": peak}
        """)
    )
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent("""\
        modules:
          shout: {type: python, function: "steps.py:shout", signature: "word: str -> loud: str, peak: int"}
        flow:
          - {id: up, module: shout, foreach: $input.words, with: {word: $item}}
        output: {loud: $up.loud, peak: $up.peak}
        """)
    )
    words = [f"w{i}" for i in range(3 * MAX_ITEMS_AT_ONCE)]
    done = dspx("run", str(path), "--json", "-i", f"words={json.dumps(words)}")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["loud"] == [w.upper() for w in words]  # item order kept
    assert 1 < max(result["peak"]) <= MAX_ITEMS_AT_ONCE
