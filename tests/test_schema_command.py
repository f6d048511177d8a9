"""`dspx schema`: a draft-07 JSON Schema of the program format, built from the models that check it.

Every shipped program validates against it; mistakes the loader rejects as structure (an unknown
key, a wrong type, a key of another module type, an unknown optimizer setting) fail against it;
plug-in module types and registered optimizers appear by themselves; the README's wiring names
the real command.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dspx_cli.optimizers.registry import OPTIMIZERS
from dspx_cli.program import module_types
from dspx_cli.program.module_types import ModuleType, register
from dspx_cli.program.source import read_source
from dspx_cli.program.spec_base import Strict
from dspx_cli.workflows.program_schema import DIALECT, program_json_schema
from tests.cli_inprocess import dspx

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted([*ROOT.glob("programs/*.yaml"), *ROOT.glob("programs/*.toml")])
BASE: dict[str, Any] = {"modules": {"answer": {"signature": "question -> answer"}}}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return program_json_schema()


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(schema)


def errors(validator: jsonschema.Draft7Validator, data: dict[str, Any]) -> list[str]:
    """Each error with its path, and under an anyOf (`lm:`, `optimizer:` may be null) its branches' errors."""

    def walk(error: jsonschema.ValidationError) -> list[str]:
        return [
            f"{list(error.absolute_path)}: {error.message}",
            *(line for sub in error.context or () for line in walk(sub)),
        ]

    return [line for error in validator.iter_errors(data) for line in walk(error)]


def test_the_schema_is_valid_draft_07(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == DIALECT
    jsonschema.Draft7Validator.check_schema(schema)
    # Every reference resolves inside the document.
    refs = set(re.findall(r'"\$ref": "#/definitions/([^"]+)"', json.dumps(schema)))
    assert refs and refs <= set(schema["definitions"])


def test_lm_takes_the_string_shorthand_or_the_mapping_everywhere(schema: dict[str, Any]) -> None:
    expected = [{"type": "string", "description": "a model string"}, {"$ref": "#/definitions/LMSpec"}, {"type": "null"}]
    assert schema["properties"]["lm"]["anyOf"] == expected
    assert schema["properties"]["prompt_lm"]["anyOf"] == expected
    for name in module_types.MODULE_TYPES:
        assert schema["definitions"][f"module.{name}"]["properties"]["lm"]["anyOf"] == expected
    # Each pass changes a node once: no anyOf wrapped in another (pydantic's schemas share dicts).
    assert '"anyOf": [{"anyOf"' not in json.dumps(schema)


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_every_shipped_program_validates(validator: jsonschema.Draft7Validator, path: Path) -> None:
    assert errors(validator, read_source(path).data) == []


def test_shipped_programs_cover_yaml_and_toml() -> None:
    assert {path.suffix for path in SHIPPED} == {".yaml", ".toml"}


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({**BASE, "modles": {}}, "'modles' was unexpected"),
        ({**BASE, "lm": {"model": "openai/x", "temprature": 0.5}}, "['lm']"),
        ({**BASE, "lm": {"model": "openai/x", "temperature": "hot"}}, "['lm']"),
        ({"modules": {"a": {"signature": "q -> a", "tools": ["calculator"]}}}, "'tools' was unexpected"),
        ({"modules": {"a": {"type": "predikt", "signature": "q -> a"}}}, "['modules', 'a', 'type']"),
        ({"modules": {"a": {"type": "cot"}}}, "'signature' is a required property"),
        ({"modules": {"a": {"signature": "q -> a", "adapter": "xml"}}}, "['modules', 'a', 'adapter']"),
        (
            {"modules": {"a": {"type": "multi_chain_comparison", "signature": "q -> a", "M": "three"}}},
            "['modules', 'a', 'M']",
        ),
        ({**BASE, "optimizer": {"type": "copro", "k": 3}}, "['optimizer']"),
        ({**BASE, "optimizer": {"type": "labeled_few_shot", "k": "many"}}, "['optimizer', 'k']"),
        ({**BASE, "optimizer": {"type": "simba"}}, "['optimizer']"),
        ({**BASE, "metric": "exactmatch"}, "['metric']"),
        ({**BASE, "finetune": {"epochs": "many"}}, "['finetune']"),
        ({**BASE, "flow": [{"id": "a", "module": "answer", "wiht": {}}]}, "['flow', 0]"),
    ],
    ids=[
        "unknown-top-key",
        "lm-typo",
        "lm-wrong-type",
        "key-of-another-type",
        "unknown-module-type",
        "cot-without-signature",
        "unknown-adapter",
        "mcc-wrong-type",
        "optimizer-unknown-setting",
        "optimizer-wrong-type",
        "unknown-optimizer",
        "unknown-metric",
        "finetune-wrong-type",
        "flow-typo",
    ],
)
def test_mistakes_fail(validator: jsonschema.Draft7Validator, data: dict[str, Any], where: str) -> None:
    found = errors(validator, data)
    assert found, f"{data} passed"
    assert any(where in error for error in found), found


@pytest.mark.parametrize(
    "data",
    [
        {**BASE, "lm": "openai/gpt-4o-mini", "prompt_lm": {"model": "openai/x", "temperature": 1.0}},
        {"modules": {"a": {"type": "ChainOfThought", "signature": "q -> a", "lm": "openai/x"}}},
        {"modules": {"a": {"type": "chain-of-thought", "signature": "q -> a"}}},
        {"modules": {"a": {"type": "react", "signature": "q -> a", "tools": ["calc"], "max_iters": 3}}},
        {"modules": {"r": {"type": "retrieve", "corpus": "c.jsonl", "k": 2, "embeddings": "openai/e"}}},
        {
            "modules": {
                "a": {"signature": "q -> a"},
                "b": {"type": "best_of_n", "module": "a", "N": 3, "reward": {"name": "regex", "pattern": "x"}},
            }
        },
        {**BASE, "optimizer": {"type": "mipro_v2", "auto": None, "num_trials": 3, "teacher": {"lm": "openai/y"}}},
        {**BASE, "metric": {"judge": {"signature": "answer, gold_answer -> correct: bool", "type": "cot"}}},
        {**BASE, "metric": {"python": "metrics.py:score"}},
        {**BASE, "finetune": {"lora": {"r": 8}, "teacher": {"state": "compiled.json"}}},
        {**BASE, "lm": {"model": "openai/x", "temperature": "${TEMP:-0.5}", "cache": "${CACHE}"}},
    ],
    ids=[
        "lm-forms",
        "dspy-class-spelling",
        "dashed-spelling",
        "react",
        "retrieve",
        "wrapper-reward",
        "optimizer",
        "judge",
        "python-metric",
        "finetune",
        "interpolated-number",
    ],
)
def test_what_the_loader_accepts_passes(validator: jsonschema.Draft7Validator, data: dict[str, Any]) -> None:
    assert errors(validator, data) == []


def test_module_types_optimizers_and_metrics_come_from_their_registries(schema: dict[str, Any]) -> None:
    from dspx_cli.evaluate.metric_base import METRICS

    definitions = schema["definitions"]
    assert definitions["ModuleSpec"]["properties"]["type"]["anyOf"][0]["enum"] == list(module_types.MODULE_TYPES)
    for name, record in module_types.MODULE_TYPES.items():
        keys = set(definitions[f"module.{name}"]["properties"])
        assert set(record.keys) <= keys and "signature" in keys and "lm" in keys
    assert set(definitions["module.react"]["properties"]) - set(definitions["module.predict"]["properties"]) == {
        "tools",
        "max_iters",
    }
    assert definitions["Optimizer"]["properties"]["type"]["enum"] == list(OPTIMIZERS)
    for name, record in OPTIMIZERS.items():
        assert set(definitions[f"optimizer.{name}"]["properties"]) == {"type", *record.defaults()}
    assert definitions["Metric"]["anyOf"][0]["enum"] == list(METRICS)
    assert schema["properties"]["modules"]["additionalProperties"] == {"$ref": "#/definitions/ModuleSpec"}
    assert definitions["module.predict"]["properties"]["adapter"]["enum"] == ["chat", "json"]


def test_descriptions_come_from_the_models(schema: dict[str, Any]) -> None:
    lm = schema["definitions"]["LMSpec"]["properties"]
    assert all(field.get("description") for field in lm.values()), [
        k for k, v in lm.items() if not v.get("description")
    ]
    assert all(schema["properties"][key].get("description") for key in schema["properties"])
    assert schema["definitions"]["module.react"]["description"] == module_types.MODULE_TYPES["react"].doc
    for name in OPTIMIZERS:
        settings = schema["definitions"][f"optimizer.{name}"]["properties"]
        assert all(field.get("description") for field in settings.values()), name
    for model in ("FinetuneSettings", "LoraSettings", "EmbeddingsSpec", "TeacherSpec", "JudgeSpec"):
        fields = schema["definitions"][model]["properties"]
        assert all(field.get("description") for field in fields.values()), model


def test_a_plug_in_module_type_appears_with_its_own_keys() -> None:
    class Shout(Strict):
        volume: int = 3

    register(ModuleType("shout", "says it louder", lambda definition, builder: None, settings=Shout, aliases=("yell",)))  # type: ignore[arg-type, return-value]
    try:
        validator = jsonschema.Draft7Validator(program_json_schema())
        assert errors(validator, {"modules": {"s": {"type": "Yell", "signature": "q -> a", "volume": 11}}}) == []
        assert errors(validator, {"modules": {"s": {"type": "shout", "signature": "q -> a", "volume": "loud"}}})
        assert errors(validator, {"modules": {"s": {"signature": "q -> a", "volume": 11}}})
    finally:
        del module_types.MODULE_TYPES["shout"]
        for spelling in ("shout", "yell"):
            del module_types.MODULE_ALIASES[spelling]


def test_dspx_schema_prints_it_and_writes_it(tmp_path: Path) -> None:
    done = dspx("schema")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == program_json_schema()
    target = tmp_path / "program.schema.json"
    written = dspx("schema", "-o", str(target))
    assert (written.returncode, written.stdout) == (0, "")
    assert json.loads(target.read_text()) == program_json_schema()
    bad = dspx("schema", "-o", str(tmp_path / "missing" / "x.json"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "cannot write" in bad.stderr


def test_dspx_schema_imports_no_heavy_module() -> None:
    script = (
        "import sys, json, atexit\n"
        "sys.argv = ['dspx', 'schema']\n"
        "names = ('optuna', 'torch', 'transformers', 'llama_cpp', 'peft')\n"
        "atexit.register(lambda: print(json.dumps([m for m in names if m in sys.modules]), file=sys.stderr))\n"
        "from dspx_cli.cli.app import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def test_the_readme_wires_the_real_command(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Editor support", 1)[1].split("\n## ", 1)[0]
    command = re.search(r"^dspx (schema -o (\S+))$", section, re.MULTILINE)
    assert command, "the section shows `dspx schema -o FILE`"
    file_name = command.group(2)
    assert f"# yaml-language-server: $schema={file_name}" in section
    assert f"#:schema {file_name}" in section
    assert json.loads(re.search(r'\{"yaml\.schemas".*\}', section).group(0)) == {  # type: ignore[union-attr]
        "yaml.schemas": {f"./{file_name}": ["programs/*.yaml"]}
    }
    assert "| `dspx schema [-o FILE]` |" in readme
    # The command as the README writes it works, and the examples it shows validate.
    done = dspx(*command.group(1).split(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    validator = jsonschema.Draft7Validator(json.loads((tmp_path / file_name).read_text()))
    for fence, suffix in (("yaml", ".yaml"), ("toml", ".toml")):
        example = re.search(rf"```{fence}\n(#[^\n]*schema[^\n]*\n.*?)```", section, re.DOTALL)
        assert example, fence
        program = tmp_path / f"example{suffix}"
        program.write_text(example.group(1))
        assert errors(validator, read_source(program).data) == []
    assert "dspx schema" in (ROOT / "docs" / "program-format.md").read_text()
