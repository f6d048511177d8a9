"""Every kind of bad program file is reported with file, line, column and what was expected."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dspx_cli.errors import EXIT_USAGE, ProgramError
from dspx_cli.program.loader import load_program

GOOD = """\
dspx: 1
signatures:
  qa:
    inputs:
      question: str
    outputs:
      answer: {type: str, desc: short}
modules:
  answer:
    type: predict
    signature: qa
"""


def write(tmp_path: Path, text: str, name: str = "prog.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path, env: dict[str, str] | None = None) -> ProgramError:
    with pytest.raises(ProgramError) as info:
        load_program(path, env=env or {})
    assert info.value.exit_code == EXIT_USAGE
    assert "\n" not in str(info.value)
    return info.value


def test_good_program_loads(tmp_path: Path) -> None:
    program = load_program(write(tmp_path, GOOD), env={})
    assert list(program.inputs) == ["question"]
    assert list(program.outputs) == ["answer"]
    assert program.modules["answer"].lm.model == "local/smollm2"


YAML_CASES = [
    # (description, text, expected line, expected column, fragments of the message)
    (
        "unknown top-level key",
        GOOD + "modles: {}\n",
        12,
        1,
        ["unknown key 'modles' in the top level; did you mean 'modules'?"],
    ),
    (
        "unknown module key",
        GOOD + "    temprature: 0.5\n",
        12,
        5,
        ["unknown key 'temprature' in modules.answer; did you mean 'temperature'?"],
    ),
    (
        "unknown key with nothing close",
        GOOD + "    colour: blue\n",
        12,
        5,
        ["unknown key 'colour' in modules.answer; expected one of: ", "temperature"],
    ),
    (
        "wrong type",
        GOOD + "    n: many\n",
        12,
        5,
        ["modules.answer.n: expected an integer", "'many'"],
    ),
    (
        "bad literal",
        GOOD.replace("type: predict", "type: predictor"),
        10,
        5,
        ["modules.answer.type: expected", "'chain_of_thought'", "'predictor'"],
    ),
    (
        "unknown signature reference",
        GOOD.replace("signature: qa", "signature: qna"),
        11,
        5,
        ["unknown signature 'qna'", "defined signatures: qa"],
    ),
    (
        "missing required field",
        GOOD.replace("    signature: qa\n", ""),
        9,
        3,
        ["missing required key 'signature' in modules.answer"],
    ),
    (
        "missing outputs in a signature",
        GOOD.replace("    outputs:\n      answer: {type: str, desc: short}\n", ""),
        3,
        3,
        ["missing required key 'outputs' in signatures.qa"],
    ),
    (
        "unknown type in a signature",
        GOOD.replace("question: str", "question: strng"),
        5,
        7,
        ["field 'question'", "strng"],
    ),
    (
        "malformed string signature",
        GOOD.replace(
            "  qa:\n    inputs:\n      question: str\n    outputs:\n      answer: {type: str, desc: short}\n",
            "  qa: question answer\n",
        ),
        3,
        3,
        ["invalid signature", "->"],
    ),
    (
        "demo with an unknown field",
        GOOD + "    demos:\n      - {question: hi, anwser: x}\n",
        13,
        24,
        ["demo key 'anwser'", "answer, question"],
    ),
    (
        "several modules without a flow",
        GOOD + "  other:\n    signature: qa\n",
        8,
        1,
        ["needs a `flow`"],
    ),
    (
        "invalid YAML",
        GOOD + "  bad: [unclosed\n",
        13,
        1,
        ["invalid YAML"],
    ),
    (
        "duplicate key",
        GOOD + "signatures: {}\n",
        12,
        1,
        ["duplicate key 'signatures'"],
    ),
]


@pytest.mark.parametrize("case", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_yaml_errors(tmp_path: Path, case: tuple) -> None:
    _, text, line, column, fragments = case
    path = write(tmp_path, text)
    error = error_of(path)
    assert error.location is not None
    assert (error.location.line, error.location.column) == (line, column), str(error)
    assert str(error).startswith(f"{path}:{line}:{column}: ")
    for fragment in fragments:
        assert fragment in str(error)


FLOW = (
    GOOD
    + """\
  check:
    signature: "answer -> verdict: bool"
flow:
  - id: first
    module: answer
    with: {question: $input.question}
  - id: second
    module: check
    with: {answer: $first.answer}
output: {verdict: $second.verdict}
"""
)


def test_flow_program_loads_in_dependency_order(tmp_path: Path) -> None:
    text = (
        FLOW.replace("  - id: first\n    module: answer\n    with: {question: $input.question}\n", "")
        + "  - id: first\n    module: answer\n    with: {question: $input.question}\n"
    )
    # `second` is written before `first` but reads it, so it must run after it.
    text = text.replace("output: {verdict: $second.verdict}\n", "") + "output: {verdict: $second.verdict}\n"
    program = load_program(write(tmp_path, text), env={})
    assert [s.id for s in program.steps] == ["first", "second"]
    assert list(program.inputs) == ["question"]


FLOW_CASES = [
    ("unknown module", FLOW.replace("module: check", "module: chek"), 19, 5, ["unknown module 'chek'"]),
    ("unknown step", FLOW.replace("$first.answer", "$frist.answer"), 20, 12, ["unknown step 'frist'"]),
    (
        "unknown output field",
        FLOW.replace("$second.verdict", "$second.verdikt"),
        21,
        10,
        ["has no output 'verdikt'", "verdict"],
    ),
    (
        "unbound input",
        FLOW.replace("with: {answer: $first.answer}", "with: {}"),
        18,
        5,
        ["does not bind input(s) answer"],
    ),
    (
        "not an input",
        FLOW.replace("{question: $input.question}", "{question: $input.question, q: x}"),
        17,
        39,
        ["binds 'q'"],
    ),
    ("bad reference", FLOW.replace("$first.answer", "$first"), 20, 12, ["expected a reference"]),
    ("duplicate id", FLOW.replace("id: second", "id: first"), 18, 5, ["duplicate step id 'first'"]),
    (
        "cycle",
        FLOW.replace("with: {question: $input.question}", "with: {question: $second.verdict}"),
        15,
        5,
        ["cycle: first -> second -> first"],
    ),
]


@pytest.mark.parametrize("case", FLOW_CASES, ids=[c[0] for c in FLOW_CASES])
def test_flow_errors(tmp_path: Path, case: tuple) -> None:
    _, text, line, column, fragments = case
    error = error_of(write(tmp_path, text))
    assert (error.location.line, error.location.column) == (line, column), str(error)
    for fragment in fragments:
        assert fragment in str(error)


def test_required_env_var(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("dspx: 1\n", "dspx: 1\nlm:\n  model: ${MODEL:?export MODEL first}\n"))
    error = error_of(path)
    assert (error.location.line, error.location.column) == (3, 3)
    assert "environment variable MODEL is not set: export MODEL first" in str(error)
    program = load_program(path, env={"MODEL": "openai/x"})
    assert program.modules["answer"].lm.model == "openai/x"


def test_unset_required_key_fails_only_when_an_lm_would_send_it(tmp_path: Path) -> None:
    """validate and inspect create no LM, so they need no key; creating the LM names file:line."""
    from dspx_cli.lm.registry import create_lm

    path = write(
        tmp_path,
        GOOD.replace("dspx: 1\n", "dspx: 1\nlm:\n  model: openai/x\n  api_key: ${MY_KEY:?export MY_KEY first}\n"),
    )
    program = load_program(path, env={})  # no error at load
    config = program.modules["answer"].lm
    with pytest.raises(ProgramError) as info:
        create_lm(config)
    assert info.value.exit_code == EXIT_USAGE
    assert str(info.value) == f"{path}:4:3: environment variable MY_KEY is not set: export MY_KEY first"
    assert load_program(path, env={"MY_KEY": "sk-test"}).modules["answer"].lm.api_key == "sk-test"


def test_env_defaults_and_escapes(tmp_path: Path) -> None:
    text = GOOD.replace(
        "dspx: 1\n",
        "dspx: 1\ndescription: costs $${PRICE}\nlm:\n  model: ${MODEL:-local/smollm2}\n  temperature: ${TEMP:-0.5}\n",
    )
    path = write(tmp_path, text)
    program = load_program(path, env={"TEMP": "0.25"})
    assert program.description == "costs ${PRICE}"
    assert program.modules["answer"].lm.model == "local/smollm2"
    assert program.modules["answer"].temperature == 0.25
    program = load_program(path, env={"MODEL": "openai/gpt-4o-mini", "TEMP": "0"})
    assert program.modules["answer"].lm.model == "openai/gpt-4o-mini"


def test_empty_api_key_variable_means_no_key(tmp_path: Path) -> None:
    text = GOOD.replace("dspx: 1\n", "dspx: 1\nlm: {model: openai/x, api_key: '${KEY}'}\n")
    program = load_program(write(tmp_path, text), env={})
    assert program.modules["answer"].lm.api_key is None


def test_lm_override_replaces_only_the_model(tmp_path: Path) -> None:
    text = GOOD.replace("dspx: 1\n", "dspx: 1\nlm: {model: openai/x, api_base: 'http://h/v1', max_tokens: 99}\n")
    program = load_program(write(tmp_path, text), env={}, lm_override="vllm/other")
    lm = program.modules["answer"].lm
    assert (lm.model, lm.api_base, lm.max_tokens) == ("vllm/other", "http://h/v1", 99)


TOML_GOOD = """\
dspx = 1

[signatures.qa]
inputs = { question = "str" }
outputs = { answer = "str" }

[modules.answer]
type = "predict"
signature = "qa"
"""

TOML_CASES = [
    ("unknown key", TOML_GOOD + "temprature = 0.1\n", 10, 1, ["unknown key 'temprature' in modules.answer"]),
    ("wrong type", TOML_GOOD + 'n = "many"\n', 10, 1, ["modules.answer.n: expected an integer"]),
    (
        "unknown signature",
        TOML_GOOD.replace('signature = "qa"', 'signature = "nope"'),
        9,
        1,
        ["unknown signature 'nope'"],
    ),
    (
        "bad type in inline table",
        TOML_GOOD.replace('question = "str"', 'question = "strng"'),
        4,
        12,
        ["field 'question'"],
    ),
    ("invalid TOML", TOML_GOOD + "x = [1,\n", 10, 1, ["invalid TOML"]),
    ("unknown table", TOML_GOOD + "\n[modlues.x]\ntype = 'predict'\n", 11, 1, ["unknown key 'modlues'"]),
]


@pytest.mark.parametrize("case", TOML_CASES, ids=[c[0] for c in TOML_CASES])
def test_toml_errors(tmp_path: Path, case: tuple) -> None:
    _, text, line, column, fragments = case
    path = write(tmp_path, text, "prog.toml")
    error = error_of(path)
    assert (error.location.line, error.location.column) == (line, column), str(error)
    for fragment in fragments:
        assert fragment in str(error)


def test_missing_file_and_wrong_suffix(tmp_path: Path) -> None:
    assert "program file not found" in str(error_of(tmp_path / "nope.yaml"))
    assert "expected a .yaml, .yml or .toml" in str(error_of(write(tmp_path, GOOD, "prog.txt")))


def test_type_mismatch_between_steps(tmp_path: Path) -> None:
    text = FLOW.replace('signature: "answer -> verdict: bool"', 'signature: "answer: list[int] -> verdict: bool"')
    error = error_of(write(tmp_path, text))
    assert (error.location.line, error.location.column) == (20, 12)
    assert "$first.answer is str but input 'answer' of module 'check' expects list[int]" in str(error)


def test_str_inputs_accept_any_type(tmp_path: Path) -> None:
    # `first` now produces an int; `check` takes a str, which any value can be shown as.
    program = load_program(write(tmp_path, FLOW.replace("answer: {type: str, desc: short}", "answer: int")), env={})
    assert [s.id for s in program.steps] == ["first", "second"]


def test_unreachable_step(tmp_path: Path) -> None:
    text = FLOW.replace("output: {verdict: $second.verdict}", "output: {answer: $first.answer}")
    error = error_of(write(tmp_path, text))
    assert (error.location.line, error.location.column) == (18, 5)
    assert "step 'second' is unreachable" in str(error)


def test_readme_validate_example_is_the_real_output(tmp_path: Path) -> None:
    """The README shows a bad file and the exact line `dspx validate` prints for it."""
    from tests.cli_inprocess import ROOT, dspx

    readme = (ROOT / "README.md").read_text()
    block = readme.split("$ cat bad.yaml\n", 1)[1].split("```", 1)[0]
    content, command_and_output = block.split("$ dspx validate bad.yaml\n")
    (tmp_path / "bad.yaml").write_text(content)
    done = dspx("validate", "bad.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == command_and_output


# ----- dspx validate: every later rejection, without running the program's code ----------------

SIDE_EFFECT = """\
import pathlib
pathlib.Path(__file__).with_suffix(".imported").write_text("ran")
"""


def _code_project(tmp_path: Path) -> Path:
    (tmp_path / "tools.py").write_text(SIDE_EFFECT + "def lookup(order: str) -> str:\n    return order\n")
    (tmp_path / "metrics.py").write_text(SIDE_EFFECT + "def score(example, prediction, trace=None):\n    return 1.0\n")
    (tmp_path / "rewards.py").write_text(SIDE_EFFECT + "def short(example, prediction):\n    return 1.0\n")
    (tmp_path / "dev.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    return write(
        tmp_path,
        """\
        tools:
          lookup: {python: "tools.py:lookup"}
        modules:
          agent: {type: react, signature: "question -> answer", tools: [lookup]}
          best: {type: best_of_n, module: agent, N: 2, reward: {python: "rewards.py:short"}}
        data: {dev: dev.jsonl}
        metric: {python: "metrics.py:score"}
        optimizer: {type: labeled_few_shot, k: 2}
        flow:
          - {id: best, module: best, with: {question: $input.question}}
        """,
    )


def test_validate_checks_python_files_without_running_them(tmp_path: Path) -> None:
    from tests.cli_inprocess import dspx

    path = _code_project(tmp_path)
    done = dspx("validate", str(path))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("*.imported")) == []
    # inspect (which renders each tool's schema) and run still build the tools, once.
    assert dspx("inspect", str(path), "-i", "question=q").returncode == 0
    assert (tmp_path / "tools.imported").exists()


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (("tools.py:lookup", "tools.py:find"), ["tool 'lookup': python:", "defines no function 'find'", "lookup"]),
        (("tools.py:lookup", "nowhere.py:lookup"), ["tool 'lookup': python: file not found:", "nowhere.py"]),
        (("metrics.py:score", "metrics.py:grade"), ["python:", "defines no function 'grade'"]),
        (("rewards.py:short", "rewards.py:long"), ["python:", "defines no function 'long'"]),
    ],
)
def test_validate_reports_python_references_where_written(
    tmp_path: Path, change: tuple[str, str], fragments: list[str]
) -> None:
    from tests.cli_inprocess import dspx

    path = _code_project(tmp_path)
    text = path.read_text().replace(*change)
    path.write_text(text)
    done = dspx("validate", str(path))
    assert done.returncode == 2, done.stderr
    line = next(i for i, row in enumerate(text.splitlines(), 1) if change[1] in row)
    assert done.stderr.startswith(f"error: {path}:{line}:"), done.stderr
    for fragment in fragments:
        assert fragment in done.stderr
    assert not list(tmp_path.glob("*.imported"))


def test_static_check_reads_syntax_errors_and_arity(tmp_path: Path) -> None:
    path = _code_project(tmp_path)
    from dspx_cli.evaluate.metrics import resolve_metric

    (tmp_path / "metrics.py").write_text("def score(example):\n    return 1\n")
    program = load_program(path, env={}, run_code=False)
    with pytest.raises(ProgramError, match=r"metrics.py:score must take \(example, prediction\).*it takes \(example\)"):
        resolve_metric(program, None, run_code=False)
    (tmp_path / "metrics.py").write_text("def score(example, prediction:\n")
    with pytest.raises(ProgramError, match=r"metrics.py:1: invalid Python"):
        resolve_metric(program, None, run_code=False)
    # Bound by import or assignment also counts: what running the file would define.
    (tmp_path / "metrics.py").write_text("from os.path import join as score\n")
    resolve_metric(program, None, run_code=False)


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda t: t.replace("dev: dev.jsonl", "dev: missing.jsonl"), ["missing.jsonl"]),
        (
            lambda t: t.replace('metric: {python: "metrics.py:score"}', "metric: exact_matsch"),
            ["unknown metric 'exact_matsch'"],
        ),
        (lambda t: t.replace("labeled_few_shot, k: 2", "labeled_few_shots"), ["unknown optimizer 'labeled_few_shots'"]),
        (lambda t: t.replace("k: 2", "kk: 2"), ["optimizer labeled_few_shot has no setting 'kk'"]),
        (
            lambda t: t.replace("data: {dev: dev.jsonl}", "data: {path: dev.jsonl, split: {train: 0.9, dev: 0.9}}"),
            ["data.split"],
        ),
        (
            lambda t: t.replace("type: labeled_few_shot, k: 2", "type: bootstrap_few_shot, teacher: {lm: gpt-9}"),
            ["teacher: unknown model 'gpt-9'"],
        ),
    ],
)
def test_validate_rejects_what_a_later_command_would(tmp_path: Path, edit, fragments: list[str]) -> None:  # type: ignore[no-untyped-def]
    from tests.cli_inprocess import dspx

    path = _code_project(tmp_path)
    path.write_text(edit(path.read_text()))
    done = dspx("validate", str(path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in done.stderr


def test_validate_reads_the_data_files(tmp_path: Path) -> None:
    from tests.cli_inprocess import dspx

    path = _code_project(tmp_path)
    (tmp_path / "dev.jsonl").write_text('{"question": "q", "answer": "a"}\n{"question": \n')
    done = dspx("validate", str(path))
    assert done.returncode == 2
    assert f"{tmp_path / 'dev.jsonl'}:2" in done.stderr


@pytest.mark.parametrize("where", ["lm", "module", "judge"])
def test_unknown_model_is_a_load_error_at_its_line(tmp_path: Path, where: str) -> None:
    from tests.cli_inprocess import dspx

    text = {
        "lm": "lm: gpt-4o-mini\nmodules: {m: {signature: 'q -> a'}}\n",
        "module": "modules:\n  m: {signature: 'q -> a', lm: {model: antrhopic/claude}}\n",
        "judge": "modules: {m: {signature: 'q -> a'}}\nmetric:\n  judge: {signature: 'q, a -> correct: bool', lm: nosuchhost/x}\n",
    }[where]
    path = write(tmp_path, text)
    line = {"lm": 1, "module": 2, "judge": 3}[where]
    for command in (("validate", str(path)), ("run", str(path), "-i", "q=x")):
        done = dspx(*command)
        assert done.returncode == 2, done.stderr
        if where != "judge" or command[0] == "validate":  # run does not use the metric
            assert done.stderr.startswith(f"error: {path}:{line}:"), done.stderr
            assert "unknown model" in done.stderr and done.stderr.count("\n") == 1
        if where == "judge":
            break


def test_lm_flag_paths_are_relative_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "programs").mkdir()
    (tmp_path / "work").mkdir()
    path = write(tmp_path / "programs", GOOD.replace("dspx: 1\n", "dspx: 1\nlm: my.gguf\n"))
    (tmp_path / "programs" / "my.gguf").write_bytes(b"GGUF")  # the file's own model: next to the file
    (tmp_path / "work" / "my.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path / "work")
    assert load_program(path, env={}).modules["answer"].lm.model == "my.gguf"
    assert load_program(path, env={}, lm_override="./my.gguf").modules["answer"].lm.model == str(
        tmp_path / "work" / "my.gguf"
    )
    assert load_program(path, env={}, lm_override="local/my.gguf").modules["answer"].lm.model == (
        "local/" + str(tmp_path / "work" / "my.gguf")
    )
    from dspx_cli.errors import UsageError

    with pytest.raises(UsageError, match=r"--lm \./other.gguf: local model .*work/other.gguf"):
        load_program(path, env={}, lm_override="./other.gguf")
    assert (
        load_program(path, env={}, lm_override="openai/gpt-4o-mini").modules["answer"].lm.model == "openai/gpt-4o-mini"
    )


def test_validate_and_inspect_need_no_key_that_only_a_call_uses(tmp_path: Path) -> None:
    from tests.cli_inprocess import dspx

    path = write(
        tmp_path,
        GOOD.replace(
            "dspx: 1\n",
            "dspx: 1\nlm:\n  model: openai/gpt-4o-mini\n  api_key: ${DSPX_TEST_KEY:?export DSPX_TEST_KEY}\n",
        ),
    )
    assert dspx("validate", str(path)).returncode == 0
    assert dspx("inspect", str(path), "-i", "question=q").returncode == 0
    done = dspx("run", str(path), "-i", "question=q")
    assert done.returncode == 2
    assert done.stderr == f"error: {path}:4:3: environment variable DSPX_TEST_KEY is not set: export DSPX_TEST_KEY\n"


def test_embeddings_without_a_server_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "corpus.txt").write_text("a passage\n")
    path = write(
        tmp_path,
        """\
        modules:
          find: {type: retrieve, corpus: corpus.txt, embeddings: text-embedding-3-small}
        """,
    )
    error = error_of(path)
    assert (error.location.line, error.location.column) == (2, 46)
    assert "embeddings model 'text-embedding-3-small' names no server" in str(error)
    path.write_text(path.read_text().replace("text-embedding-3-small", "openai/text-embedding-3-small"))
    assert load_program(path, env={}).modules["find"].retriever.embeddings.model == "openai/text-embedding-3-small"


def test_validate_of_a_hosted_program_does_not_import_the_http_client(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path, "lm: openai/gpt-4o-mini\nmodules: {m: {signature: 'q -> a'}}\n")
    code = (
        "import sys\nfrom dspx_cli.cli.commands import validate\nfrom pathlib import Path\n"
        f"validate(Path({str(path)!r}))\nprint(sorted(m for m in ('httpx', 'aiohttp') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "[]", done.stderr


def test_an_unset_judge_key_fails_evaluate_at_its_line_before_any_call(tmp_path: Path) -> None:
    from tests.cli_inprocess import dspx

    (tmp_path / "dev.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    path = write(
        tmp_path,
        """\
        lm: {model: openai/m, api_base: "http://127.0.0.1:9/v1"}
        modules: {m: {signature: "question -> answer"}}
        data: {dev: dev.jsonl}
        metric:
          judge:
            signature: "question, answer, gold_answer -> correct: bool"
            lm: {model: openai/j, api_base: "http://127.0.0.1:9/v1", api_key: "${DSPX_JUDGE_KEY:?set DSPX_JUDGE_KEY}"}
        """,
    )
    assert dspx("validate", str(path)).returncode == 0
    done = dspx("evaluate", str(path), "--output", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stderr == f"error: {path}:7:62: environment variable DSPX_JUDGE_KEY is not set: set DSPX_JUDGE_KEY\n"


@pytest.mark.parametrize(("key", "value"), [("lm", "openai/x"), ("temperature", "0.5"), ("adapter", "json")])
def test_a_module_type_that_calls_no_lm_takes_no_lm_settings(tmp_path: Path, key: str, value: str) -> None:
    """`calls_lm=False` on a type's record (retrieve here, python too) makes every LM key an error at its line."""
    (tmp_path / "corpus.txt").write_text("a passage\n")
    path = write(tmp_path, f"modules:\n  find: {{type: retrieve, corpus: corpus.txt, {key}: {value}}}\n")
    error = error_of(path)
    assert (error.location.line, error.location.column) == (2, 46)
    assert f"a retrieve module calls no LM; it takes no {key!r}" in str(error)
