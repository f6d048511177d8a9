"""The extension points: module types, optimizers and LM providers are each one registry record,
and every module type meets runners, wrappers and optimizers through one `Module` protocol."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.errors import ProgramError, UsageError
from dspx_cli.program.loader import load_program
from dspx_cli.program.module_types import MODULE_TYPES, predictor_names
from dspx_cli.program.runner import ProgramRunner
from tests.cli_process import dspx
from tests.lm_server import LMServer

ROOT = Path(__file__).resolve().parent.parent

EVERY_TYPE = """\
lm: {model: openai/m, api_base: http://127.0.0.1:9/v1, api_key: k}
tools:
  calculator: {type: calculator}
modules:
  plain: {type: predict, signature: "question -> answer", demos: [{question: q, answer: a}]}
  cot: {type: cot, signature: "question -> answer", demos: [{question: q, reasoning: r, answer: a}]}
  agent: {type: react, signature: "question -> answer", tools: [calculator]}
  compare: {type: multi_chain_comparison, signature: "question -> answer", M: 2}
  best: {type: best_of_n, module: cot, N: 2, reward: {python: "rewards.py:short"}}
  refined: {type: refine, module: plain, N: 2, reward: {python: "rewards.py:short"}}
  find: {type: retrieve, corpus: corpus.txt, k: 1}
  glue: {type: python, function: "steps.py:glue", signature: "question -> answer"}
  pot: {type: program_of_thought, signature: "question -> answer", max_iters: 2, timeout: 5}
  act: {type: code_act, signature: "question -> answer", tools: [calculator], max_iters: 2}
flow:
  - {id: a, module: plain, with: {question: $input.question}}
  - {id: b, module: cot, with: {question: $input.question}}
  - {id: c, module: agent, with: {question: $input.question}}
  - {id: d, module: compare, with: {question: $input.question}}
  - {id: e, module: best, with: {question: $input.question}}
  - {id: f, module: refined, with: {question: $input.question}}
  - {id: g, module: find, with: {query: $input.question}}
  - {id: h, module: glue, with: {question: $input.question}}
  - {id: i, module: pot, with: {question: $input.question}}
  - {id: j, module: act, with: {question: $input.question}}
output: {a: $a.answer, b: $b.answer, c: $c.answer, d: $d.answer, e: $e.answer, f: $f.answer, g: $g.passages, h: $h.answer,
  i: $i.answer, j: $j.answer}
"""


@pytest.fixture
def every_type(tmp_path: Path) -> Path:
    (tmp_path / "rewards.py").write_text("def short(inputs, prediction):\n    return 1.0\n")
    (tmp_path / "steps.py").write_text("def glue(question):\n    return {'answer': question}\n")
    (tmp_path / "corpus.txt").write_text("Brussels is the capital of Belgium.\n\nParis is in France.\n")
    path = tmp_path / "every.yaml"
    path.write_text(EVERY_TYPE)
    return path


# ----- module types ------------------------------------------------------------------------------


def test_the_program_above_uses_every_registered_module_type(every_type: Path) -> None:
    program = load_program(every_type, env={})
    assert {definition.type for definition in program.modules.values()} == set(MODULE_TYPES)


def test_registered_predictor_names_are_the_built_modules(every_type: Path) -> None:
    """Which predictors a type names is known from its record, before anything is built."""
    program = load_program(every_type, env={})
    runner = ProgramRunner(program, None)
    for name, module in runner.modules.items():
        built = [predictor for predictor, _ in module.named_predictors()]
        assert predictor_names(program.modules[name], program.modules) == built, name


def test_every_module_type_copies_its_predictors_and_renders_messages(every_type: Path) -> None:
    """The Module protocol: `copy()` owns every predictor at any depth; `messages()` exists for all."""
    program = load_program(every_type, env={})
    runner = ProgramRunner(program, None)
    for step in program.steps:
        module = runner.modules[step.module]
        clone = module.copy()
        assert type(clone) is type(module)
        for (name, original), (clone_name, copied) in zip(
            module.named_predictors(), clone.named_predictors(), strict=True
        ):
            assert name == clone_name and copied is not original and copied.demos == original.demos
            copied.demos.append({"question": "new"})
            assert {"question": "new"} not in original.demos, (step.module, name)
    previews = {step.id: messages for step, messages in runner.preview({"question": "Why?"})}
    assert previews["g"] == previews["h"] == [] and all(previews[step] for step in "abcdefij")


COMMON_KEYS = ["type", "signature", "instructions", "demos", "lm", "adapter", "n", "temperature", "max_tokens"]


def test_the_schema_holds_only_the_common_keys_and_each_type_its_own() -> None:
    """A type's own keys live in its record's settings model, not in ModuleSpec: a new type with new
    keys touches no schema line. No type's key shadows a common one."""
    from dspx_cli.program.schema import ModuleSpec

    assert list(ModuleSpec.model_fields) == COMMON_KEYS
    for record in MODULE_TYPES.values():
        assert record.settings.model_config.get("extra") == "forbid", record.name
        assert not set(record.keys) & set(COMMON_KEYS), record.name
    assert MODULE_TYPES["react"].keys == ["tools", "max_iters"]
    assert MODULE_TYPES["retrieve"].keys == ["corpus", "k", "text_field", "embeddings"]


TYPE_KEYS = """\
lm: {model: openai/m, api_base: http://127.0.0.1:9/v1, api_key: k}
tools:
  calculator: {type: calculator}
modules:
  plain: {signature: "question -> answer"}
  %s
"""


@pytest.mark.parametrize(
    ("module", "key", "message"),
    [
        (
            'agent: {type: react, signature: "q -> a", tools: [calculator], max_iter: 3}',
            "max_iter:",
            "unknown key 'max_iter' in modules.agent; did you mean 'max_iters'?",
        ),
        (
            'agent: {type: react, signature: "q -> a", tools: [calculator], max_iters: -1}',
            "max_iters:",
            "modules.agent.max_iters: expected greater than or equal to 0, got -1",
        ),
        (
            'best: {type: best_of_n, module: plain, N: many, reward: {python: "r.py:f"}}',
            "N:",
            "modules.best.N: expected an integer, got 'many'",
        ),
        (
            "find: {type: retrieve, corpus: c.txt, embeddings: {model: x, bach_size: 3}}",
            "bach_size:",
            "unknown key 'bach_size' in modules.find.embeddings; did you mean 'batch_size'?",
        ),
        (
            'cmp: {type: multi_chain_comparison, signature: "q -> a", colour: red}',
            "colour:",
            "unknown key 'colour' in modules.cmp; expected one of: " + ", ".join([*COMMON_KEYS, "M"]),
        ),
        (
            'plain2: {type: predict, signature: "q -> a", M: 2}',
            "M:",
            "module 'plain2': 'M' applies to type multi_chain_comparison, not predict",
        ),
        (
            'glue: {type: python, function: "s.py:f", signature: "q -> a", tools: [calculator]}',
            "tools:",
            "module 'glue': 'tools' applies to type code_act and react, not python",
        ),
    ],
)
def test_a_types_own_keys_are_checked_by_its_settings_where_written(
    tmp_path: Path, module: str, key: str, message: str
) -> None:
    """A wrong key or value among a type's own keys is located like any schema error; an unknown key
    lists the common keys and that type's own."""
    path = tmp_path / "p.yaml"
    path.write_text(TYPE_KEYS % module)
    with pytest.raises(ProgramError) as raised:
        load_program(path, env={})
    assert raised.value.detail == message
    column = f"  {module}".index(key) + 1
    assert (raised.value.location.line, raised.value.location.column) == (6, column)


def test_typed_settings_reach_the_module_definition(every_type: Path) -> None:
    from dspx_cli.program.builtin_module_types import MultiChainSettings
    from dspx_cli.program.module_types import WrapperSettings, typed

    program = load_program(every_type, env={})
    assert typed(program.modules["compare"].settings, MultiChainSettings).M == 2
    assert typed(program.modules["best"].settings, WrapperSettings).N == 2
    with pytest.raises(AssertionError):
        typed(program.modules["plain"].settings, WrapperSettings)


def test_the_resolved_program_shows_each_types_own_settings_checked(every_type: Path) -> None:
    """The run folder's program.json holds a type's own keys as its settings model resolved them
    (defaults included, secrets redacted), and no key of another type."""
    from dspx_cli.workflows.run_folder import resolved_program

    path = every_type.with_name("embedded.yaml")
    path.write_text(
        EVERY_TYPE.replace(
            "corpus: corpus.txt, k: 1", "corpus: corpus.txt, embeddings: {model: openai/e, api_key: sk-1}"
        )
    )
    modules = resolved_program(load_program(path, env={}))["modules"]
    assert modules["find"]["embeddings"] == {
        "model": "openai/e",
        "api_base": None,
        "api_key": "<redacted>",
        "batch_size": 128,
        "timeout": 60.0,
    }
    assert modules["compare"]["M"] == 2 and modules["best"]["N"] == 2 and modules["agent"]["max_iters"] is None
    assert "tools" not in modules["plain"] and "M" not in modules["agent"]


def test_unknown_module_type_lists_the_registered_ones(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text('modules:\n  a: {type: predictor, signature: "q -> a"}\n')
    with pytest.raises(ProgramError) as raised:
        load_program(path, env={})
    assert raised.value.location.line == 2
    for name in MODULE_TYPES:
        assert repr(name) in str(raised.value)


def test_the_docs_table_lists_the_registered_module_types() -> None:
    text = (ROOT / "docs" / "program-format.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if re.match(r"\| `(\w+)`( \(`\w+`\))? \|", line)]
    cells = [[cell.strip() for cell in row.split("|")[1:-1]] for row in rows]
    table = {cell[0].split()[0].strip("`"): cell for cell in cells if len(cell) == 4}
    assert [name for name in table if name in MODULE_TYPES] == list(MODULE_TYPES)
    for name, record in MODULE_TYPES.items():
        _, keys, outputs, _ = table[name]
        assert (keys, outputs) == (record.key_docs, record.outputs_doc), name


NEW_TYPE = """\
import asyncio, sys
from pydantic import Field
from dspx_cli.core import Prediction
from dspx_cli.errors import ProgramError
from dspx_cli.program import module_types
from dspx_cli.program.spec_base import Strict

class ShoutSettings(Strict):
    times: int = Field(default=1, ge=1)  # how often the input is repeated

class Shout:
    # A module type without an LM: its output is its input, upper-cased, `times` times.
    def __init__(self, signature, times):
        self.signature = signature
        self.times = times
    def named_predictors(self):
        return []
    def messages(self, inputs):
        return []
    async def acall(self, **inputs):
        return Prediction(loud=" ".join([str(inputs["text"]).upper()] * self.times))
    def copy(self):
        return self

def build(definition, builder):
    return Shout(definition.signature, module_types.typed(definition.settings, ShoutSettings).times)

module_types.register(module_types.ModuleType(
    "shout", "upper-cases its input", build, settings=ShoutSettings, predictors=(), calls_lm=False,
    summary=lambda definition: f"shout × {definition.settings.times}",
))

from dspx_cli.cli.render import messages_text, program_summary
from dspx_cli.program.loader import load_program
from dspx_cli.program.runner import ProgramRunner

program = load_program(sys.argv[1], env={})
print(program_summary(program), end="")
print(messages_text(program.steps[0], program.modules["loud"], []), end="")
result = asyncio.run(ProgramRunner(program, None).run({"text": "hello"}))
print(result.outputs["loud"])
for bad in sys.argv[2:]:
    try:
        load_program(bad, env={})
    except ProgramError as exc:
        print(f"{exc.location.line}:{exc.location.column}: {exc.detail}")
"""


def test_a_new_module_type_is_one_record(tmp_path: Path) -> None:
    """Registering a record, with its own settings model, is all the schema, the loader (typed and
    located checks of its keys), `validate`'s summary, the builder and the runner need."""
    program = tmp_path / "p.yaml"
    program.write_text('modules:\n  loud: {type: shout, signature: "text -> loud", times: 2}\n')
    wrong_value = tmp_path / "wrong_value.yaml"
    wrong_value.write_text('modules:\n  loud:\n    type: shout\n    signature: "text -> loud"\n    times: often\n')
    wrong_key = tmp_path / "wrong_key.yaml"
    wrong_key.write_text('modules:\n  loud: {type: shout, signature: "text -> loud", time: 2}\n')
    other_type = tmp_path / "other_type.yaml"
    other_type.write_text('modules:\n  loud: {type: predict, signature: "text -> loud", times: 2}\n')
    script = tmp_path / "register.py"
    script.write_text(NEW_TYPE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(script), *map(str, (program, wrong_value, wrong_key, other_type))],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "  step loud: shout × 2" in lines
    assert lines[lines.index("  step loud: shout × 2") + 1 :][:2] == [
        "=== step loud · module loud (shout × 2) ===",
        "(no LM call)",
    ]
    assert lines[-4:] == [
        "HELLO HELLO",
        "5:5: modules.loud.times: expected an integer, got 'often'",
        "2:50: unknown key 'time' in modules.loud; did you mean 'times'?",
        "2:52: module 'loud': 'times' applies to type shout, not predict",
    ]


# ----- optimizers --------------------------------------------------------------------------------

OPTIMIZED = """\
lm: {model: openai/m, api_base: http://127.0.0.1:9/v1, api_key: k}
modules:
  answer: {signature: "question -> answer"}
optimizer:
  type: labeled_few_shot
  k: {k}
"""


def _optimized(tmp_path: Path, k: str) -> Any:
    path = tmp_path / "p.yaml"
    path.write_text(OPTIMIZED.replace("{k}", k))
    return load_program(path, env={})


def test_optimizer_settings_are_checked_against_their_types(tmp_path: Path) -> None:
    from dspx_cli.optimizers.compile import choose_optimizer

    assert choose_optimizer(_optimized(tmp_path, "2"), None, ()).settings == {"k": 2, "seed": 0}
    with pytest.raises(ProgramError) as raised:
        choose_optimizer(_optimized(tmp_path, "many"), None, ())
    assert raised.value.location.line == 6
    assert "optimizer labeled_few_shot: k: expected a valid integer" in str(raised.value)
    with pytest.raises(UsageError, match=r"^--set seed=abc: optimizer labeled_few_shot: seed: expected"):
        choose_optimizer(_optimized(tmp_path, "2"), None, ("seed=abc",))


def test_a_new_optimizer_is_one_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import dataclass

    from dspx_cli.optimizers import registry
    from dspx_cli.optimizers.compile import choose_optimizer, optimize

    @dataclass
    class Settings:
        demos: int = 1

    record = registry.OptimizerType(
        "first_example", "the first training example", Settings, "tests.test_registries:first_example"
    )
    monkeypatch.setitem(registry.OPTIMIZERS, "first_example", record)
    program = _optimized(tmp_path, "2")
    choice = choose_optimizer(program, "first_example", ("demos=1",))
    assert choice.settings == {"demos": 1}
    runner = ProgramRunner(program, None)
    from dspx_cli.core import Example

    trainset = [Example(question="q", answer="a").with_inputs("question")]
    report = asyncio.run(optimize(runner, choice, trainset, lambda *_: 1.0, concurrency=1))  # type: ignore[arg-type]
    assert report == {"set": 1} and runner.modules["answer"].named_predictors()[0][1].demos == [
        {"question": "q", "answer": "a"}
    ]
    assert "first_example" in registry.optimizer_names()


async def first_example(runner: ProgramRunner, settings: dict[str, Any], job: Any) -> dict[str, Any]:
    for _, predictor in runner.modules["answer"].named_predictors():
        predictor.demos = [dict(example.items()) for example in job.trainset[: settings["demos"]]]
    return {"set": settings["demos"]}


def test_optimizer_help_and_errors_name_every_registered_optimizer(tmp_path: Path) -> None:
    from dspx_cli.optimizers.registry import OPTIMIZERS

    helped = dspx("compile", "--help")
    unknown = dspx("compile", str(ROOT / "programs" / "qa.yaml"), "--optimizer", "mipro")
    assert helped.returncode == 0 and unknown.returncode == 2
    help_text = " ".join(helped.stdout.split())
    for name in OPTIMIZERS:
        assert name in help_text and name in unknown.stderr


def test_the_help_copy_of_the_optimizer_names_is_the_registry() -> None:
    from dspx_cli.cli.typer_app import OPTIMIZER_NAMES
    from dspx_cli.optimizers.registry import OPTIMIZERS, optimizer_names

    assert OPTIMIZER_NAMES == tuple(OPTIMIZERS)
    help_text = " ".join(dspx("compile", "--help").stdout.split())
    assert f"{optimizer_names()} (default: the file's)." in help_text


# ----- providers ---------------------------------------------------------------------------------


def test_a_new_provider_is_one_record(lm_server: LMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The load-time name check, the endpoint and the backend all read the one record."""
    from dspx_cli.lm.base import LMRequest
    from dspx_cli.lm.config import LMConfig
    from dspx_cli.lm.providers import PROVIDERS, Provider
    from dspx_cli.lm.registry import create_lm, model_problem

    config = LMConfig.from_model_string("acme/tiny")
    assert "unknown model 'acme/tiny'" in (model_problem(config) or "")
    monkeypatch.setitem(PROVIDERS, "acme", Provider("acme", lm_server.api_base))
    assert model_problem(config) is None
    assert "acme/<model>" in (model_problem(LMConfig.from_model_string("nope")) or "")

    async def ask() -> Any:
        lm = create_lm(config)
        try:
            return await lm.complete(LMRequest(messages=({"role": "user", "content": "hi"},)))
        finally:
            await lm.aclose()

    asyncio.run(ask())
    assert lm_server.requests[-1].body["model"] == "tiny"


def test_validate_summary_describes_metric_and_optimizer_from_their_registries() -> None:
    from dspx_cli.evaluate.metrics import METRICS
    from dspx_cli.optimizers.registry import OPTIMIZERS
    from tests.cli_inprocess import dspx as dspx_inprocess

    done = dspx_inprocess("validate", "programs/support.yaml")
    assert done.returncode == 0, done.stderr
    assert f"  metric:  answer_exact_match: {METRICS['answer_exact_match'].doc}\n" in done.stdout
    assert f"  optimizer: bootstrap_few_shot: {OPTIMIZERS['bootstrap_few_shot'].doc}\n" in done.stdout
