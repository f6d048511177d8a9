"""Datasets: the `data:` section and `--dataset` read into Examples, with every error located."""

from __future__ import annotations

import itertools
import json
import random
import textwrap
from pathlib import Path

import pytest

from dspx_cli.errors import EXIT_USAGE, DspxError, ProgramError, UsageError
from dspx_cli.evaluate import configured_splits, load_examples
from dspx_cli.program.loader import load_program
from dspx_cli.program.model import Program
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer

PROGRAM = """\
signatures:
  qa:
    inputs: {question: str, k: int, context: "list[str]", tone: "Literal['1', '2']"}
    outputs: {answer: str, confidence: float}
modules:
  answer:
    signature: qa
"""


def make_program(tmp_path: Path, data: str, body: str = PROGRAM) -> Program:
    path = tmp_path / "program.yaml"
    path.write_text(body + textwrap.dedent(data))
    return load_program(path)


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def record(i: int) -> dict[str, object]:
    return {"question": f"q{i}", "k": i, "context": [f"c{i}"], "tone": "1", "answer": f"a{i}"}


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


# ----- formats -----------------------------------------------------------------------------------


def test_jsonl_skips_blank_lines_and_marks_program_inputs(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dev.jsonl").write_text(json.dumps(record(1)) + "\n\n   \n" + json.dumps(record(2)) + "\n")
    program = make_program(tmp_path, "data:\n  dev: data/dev.jsonl\n")
    examples = load_examples(program)
    assert [e.question for e in examples] == ["q1", "q2"]
    assert examples[0].input_keys == ("question", "k", "context", "tone")  # default: the program's inputs
    assert dict(examples[0].labels()) == {"answer": "a1"}
    assert examples[1].k == 2 and examples[1].context == ["c2"]


def test_json_list_and_examples_object(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([record(1), record(2)]))
    (tmp_path / "b.json").write_text(json.dumps({"examples": [record(3)]}))
    program = make_program(tmp_path, "data:\n  train: a.json\n  test: b.json\n")
    assert [e.answer for e in load_examples(program, "train")] == ["a1", "a2"]
    assert [e.answer for e in load_examples(program, "test")] == ["a3"]


def test_csv_cells_are_text_unless_the_declared_type_is_not(tmp_path: Path) -> None:
    (tmp_path / "dev.csv").write_text(
        "question,k,context,tone,answer,confidence,extra\n"
        '42,3,"[""a"", ""b""]",1,7,0.9,[1]\n'
        'What?,not json,"line one\nline two",2,x,,\n'
    )
    program = make_program(tmp_path, "data:\n  dev: dev.csv\n")
    first, second = load_examples(program)
    # str inputs and labels stay text; int, list[str] inputs and the float output label are parsed;
    # a Literal of strings is text; a column the program does not declare stays text.
    assert first.to_dict() == {
        "question": "42",
        "k": 3,
        "context": ["a", "b"],
        "tone": "1",
        "answer": "7",
        "confidence": 0.9,
        "extra": "[1]",
    }
    assert second.k == "not json"  # not JSON: kept as written, for the adapter to judge
    assert second.context == "line one\nline two"
    assert second.confidence == ""


def test_csv_bad_rows_name_the_row_that_starts_them(tmp_path: Path) -> None:
    path = tmp_path / "dev.csv"
    path.write_text('question,k,context,tone\n"a\nb",1,[],1\nq,1,[]\n')
    program = make_program(tmp_path, "data:\n  dev: dev.csv\n")
    with pytest.raises(ProgramError) as caught:
        load_examples(program)
    assert str(caught.value) == f"{path}:4: row has 3 cells, the header has 4"

    path.write_text("question,question,k\n")
    with pytest.raises(ProgramError, match=r"dev.csv:1: the header row has duplicate column\(s\) question"):
        load_examples(program)


# ----- seeded split ------------------------------------------------------------------------------


SPLIT = """\
data:
  path: all.jsonl
  split: {train: 0.6, dev: 0.3, test: 0.1, seed: 7}
"""


def test_seeded_split_is_deterministic_disjoint_and_proportional(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "all.jsonl", [record(i) for i in range(100)])
    program = make_program(tmp_path, SPLIT)
    assert configured_splits(program) == ["train", "dev", "test"]
    parts = {name: [e.question for e in load_examples(program, name)] for name in ("train", "dev", "test")}
    assert {name: len(p) for name, p in parts.items()} == {"train": 60, "dev": 30, "test": 10}
    assert sorted(itertools.chain(*parts.values()), key=lambda q: int(q[1:])) == [f"q{i}" for i in range(100)]

    # The documented cut: shuffle with random.Random(seed), then train, dev, test in that order.
    order = [f"q{i}" for i in range(100)]
    random.Random(7).shuffle(order)
    assert parts == {"train": order[:60], "dev": order[60:90], "test": order[90:]}

    again = make_program(tmp_path, SPLIT)
    assert [e.question for e in load_examples(again, "dev")] == parts["dev"]
    reseeded = make_program(tmp_path, SPLIT.replace("seed: 7", "seed: 8"))
    assert [e.question for e in load_examples(reseeded, "dev")] != parts["dev"]


def test_split_shares_below_one_leave_the_rest_unused_and_a_file_wins(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "all.jsonl", [record(i) for i in range(10)])
    write_jsonl(tmp_path / "test.jsonl", [record(99)])
    program = make_program(tmp_path, "data:\n  path: all.jsonl\n  test: test.jsonl\n  split: {train: 0.5, dev: 0.2}\n")
    train, dev = load_examples(program, "train"), load_examples(program, "dev")
    assert (len(train), len(dev)) == (5, 2)
    assert not {e.question for e in train} & {e.question for e in dev}
    assert [e.question for e in load_examples(program, "test")] == ["q99"]


def test_limit_takes_the_first_examples_of_the_split(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "all.jsonl", [record(i) for i in range(100)])
    program = make_program(tmp_path, SPLIT)
    dev = load_examples(program, "dev")
    assert load_examples(program, "dev", limit=4) == dev[:4]
    assert len(load_examples(program, "dev", limit=1000)) == 30


# ----- --dataset ---------------------------------------------------------------------------------


def test_dataset_option_replaces_the_split_file_relative_to_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jsonl(tmp_path / "dev.jsonl", [record(1)])
    program = make_program(tmp_path, "data:\n  dev: dev.jsonl\n  inputs: [question, k, context, tone, answer]\n")
    elsewhere = tmp_path / "cwd"
    write_jsonl(elsewhere / "mine.jsonl", [record(5), record(6), record(7)])
    monkeypatch.chdir(elsewhere)
    examples = load_examples(program, "dev", dataset=Path("mine.jsonl"), limit=2)
    assert [e.question for e in examples] == ["q5", "q6"]
    assert examples[0].input_keys == ("question", "k", "context", "tone", "answer")  # data.inputs still applies
    # A split the program does not configure is fine when the file is given.
    assert len(load_examples(program, "test", dataset=Path("mine.jsonl"))) == 3


def test_program_without_data_section_reads_a_dataset(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [record(1)])
    program = make_program(tmp_path, "")
    assert configured_splits(program) == []
    assert load_examples(program, dataset=tmp_path / "d.jsonl")[0].question == "q1"


# ----- errors ------------------------------------------------------------------------------------


def raised(call: object, *args: object, **kwargs: object) -> DspxError:
    with pytest.raises(DspxError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.exit_code == EXIT_USAGE
    return caught.value


def test_missing_file_is_located_at_its_key_or_blamed_on_the_option(tmp_path: Path) -> None:
    program = make_program(tmp_path, "data:\n  train: train.jsonl\n  dev: nowhere/dev.jsonl\n")
    error = raised(load_examples, program, "dev")
    key_line = line_of(program.path, "dev: nowhere")
    assert isinstance(error, ProgramError)
    assert str(error) == f"{program.path}:{key_line}:3: data.dev: file not found: {tmp_path / 'nowhere/dev.jsonl'}"

    error = raised(load_examples, program, "dev", dataset=tmp_path / "gone.jsonl")
    assert isinstance(error, UsageError)
    assert str(error) == f"--dataset: file not found: {tmp_path / 'gone.jsonl'}"


def test_bad_jsonl_lines_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dev.jsonl"
    path.write_text(json.dumps(record(1)) + "\n\n{not json\n")
    program = make_program(tmp_path, "data:\n  dev: dev.jsonl\n")
    error = raised(load_examples, program)
    assert isinstance(error, ProgramError)
    assert str(error).startswith(f"{path}:3: expected a JSON object, got invalid JSON (")

    path.write_text(json.dumps(record(1)) + "\n[1, 2]\n")
    assert str(raised(load_examples, program)) == f"{path}:2: expected a JSON object, got a list"
    # The same file named on the command line: the same message, as a usage error.
    error = raised(load_examples, program, dataset=path)
    assert isinstance(error, UsageError) and str(error) == f"{path}:2: expected a JSON object, got a list"


def test_bad_json_files(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    program = make_program(tmp_path, "data:\n  dev: dev.json\n")
    path.write_text('[\n  {"question": "a"},\n  oops\n]')
    assert str(raised(load_examples, program)).startswith(f"{path}:3: invalid JSON: Expecting value")
    path.write_text(json.dumps([record(1), "text"]))
    assert str(raised(load_examples, program)) == f"{path}: item 2: expected a JSON object, got a string"
    path.write_text(json.dumps({"rows": []}))
    assert 'expected a list of JSON objects or {"examples": [...]}, got an object' in str(
        raised(load_examples, program)
    )


def test_a_record_without_an_input_names_file_line_and_key(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "dev.jsonl", [record(1), {"question": "q", "k": 1, "context": [], "answer": "a"}])
    program = make_program(tmp_path, "data:\n  dev: dev.jsonl\n")
    assert str(raised(load_examples, program)) == (
        f"{path}:2: the record has no input 'tone' (its keys: question, k, context, answer)"
    )
    (tmp_path / "dev.json").write_text(json.dumps([{**record(1), "k": None}]))
    error = raised(load_examples, program, dataset=tmp_path / "dev.json")
    assert str(error) == f"{tmp_path / 'dev.json'}: item 1: input 'k' is null"
    (tmp_path / "dev.csv").write_text("question,k,context\nq,1,[]\n")
    error = raised(load_examples, program, dataset=tmp_path / "dev.csv")
    assert str(error) == f"{tmp_path / 'dev.csv'}:2: the record has no input 'tone' (its keys: question, k, context)"


def test_unconfigured_and_unknown_splits(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [record(1)])
    program = make_program(tmp_path, "data:\n  train: train.jsonl\n")
    error = raised(load_examples, program, "dev")
    assert isinstance(error, UsageError)
    assert str(error) == (
        f"{program.path} configures no 'dev' split (configured splits: train); pass --split train or --dataset FILE"
    )
    assert "configured splits: none" in str(raised(load_examples, make_program(tmp_path, ""), "dev"))
    assert str(raised(load_examples, program, "valid")) == "unknown split 'valid'; expected one of: train, dev, test"
    assert str(raised(load_examples, program, "train", limit=0)) == "--limit must be at least 1, got 0"


def test_empty_results(tmp_path: Path) -> None:
    (tmp_path / "dev.jsonl").write_text("\n\n")
    program = make_program(tmp_path, "data:\n  dev: dev.jsonl\n")
    error = raised(load_examples, program)
    assert isinstance(error, ProgramError) and str(error).endswith(
        f"data.dev: {tmp_path / 'dev.jsonl'} has no examples"
    )

    write_jsonl(tmp_path / "all.jsonl", [record(i) for i in range(3)])
    program = make_program(tmp_path, "data:\n  path: all.jsonl\n  split: {train: 0.9, dev: 0.1}\n")
    assert "the dev split (0.1 of 3 examples) of" in str(raised(load_examples, program, "dev"))


def test_data_section_mistakes_are_located(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "all.jsonl", [record(1)])
    program = make_program(tmp_path, "data:\n  path: all.jsonl\n  split: {train: 0.7, dev: 0.4}\n")
    line = line_of(program.path, "split:")
    assert str(raised(load_examples, program, "dev")) == (
        f"{program.path}:{line}:3: data.split fractions add up to more than 1 (train 0.7, dev 0.4)"
    )
    program = make_program(tmp_path, "data:\n  split: {dev: 0.5}\n")
    assert str(raised(load_examples, program, "dev")).endswith("data.split needs data.path, the file to split")
    program = make_program(tmp_path, "data:\n  path: all.jsonl\n  split: {seed: 3}\n")
    assert "every split a share of 0" in str(raised(load_examples, program, "dev"))
    program = make_program(tmp_path, "data:\n  dev: all.jsonl\n  inputs: [question]\n")
    line = line_of(program.path, "inputs: [question]")
    assert str(raised(load_examples, program)).startswith(
        f"{program.path}:{line}:3: data.inputs lacks the program input(s) k, context, tone;"
    )
    (tmp_path / "dev.txt").write_text("x")
    program = make_program(tmp_path, "")
    assert str(raised(load_examples, program, dataset=tmp_path / "dev.txt")) == (
        f"--dataset: {tmp_path / 'dev.txt'}: expected a .jsonl, .json or .csv file"
    )


def test_the_shipped_programs_load_their_data() -> None:
    root = Path(__file__).resolve().parent.parent
    for name in ("sentiment.yaml", "sentiment.toml"):
        program = load_program(root / "programs" / name)
        dev = load_examples(program, "dev")
        assert len(dev) == 30 and set(dev[0].labels().keys()) == {"sentiment"}
        assert len(load_examples(program, "train")) == 40
    qa = load_program(root / "programs" / "qa.yaml")
    assert [e.input_keys for e in load_examples(qa, limit=2)] == [("question",), ("question",)]


def test_an_optional_input_may_be_left_out_of_a_record(tmp_path: Path, lm_server: LMServer) -> None:
    """As with -i and --batch rows: the example lacks it, and the prompt has no section for it."""
    write_jsonl(
        tmp_path / "dev.jsonl",
        [
            {"question": "q1", "answer": "a"},
            {"question": "q2", "hint": None, "answer": "a"},
            {"question": "q3", "hint": "think", "answer": "a"},
        ],
    )
    path = tmp_path / "p.yaml"
    path.write_text(
        f'lm: {{model: openai/x, api_base: "{lm_server.api_base}", num_retries: 0}}\n'
        'modules:\n  m: {signature: "question: str, hint: Optional[str] -> answer"}\n'
        "data: {dev: dev.jsonl}\nmetric: exact_match\n"
    )
    examples = load_examples(load_program(path))
    assert [sorted(example.inputs().keys()) for example in examples] == [
        ["question"],
        ["hint", "question"],
        ["hint", "question"],
    ]
    lm_server.responder = lambda body: "[[ ## answer ## ]]\na\n\n[[ ## completed ## ]]"
    done = dspx("evaluate", str(path), "--json", "-j", "1", "--output", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["score"] == 1.0
    users = [request.body["messages"][-1]["content"] for request in lm_server.requests]
    assert ["[[ ## hint ## ]]" in text for text in users] == [False, True, True]
    assert "[[ ## hint ## ]]\nNone" in users[1] and "[[ ## hint ## ]]\nthink" in users[2]
