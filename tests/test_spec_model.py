"""core/spec_model.py: program-file models checked without pydantic when a file is valid.

The contract: whatever `model_validate` returns or raises is what pydantic (the mirror built from
the same declarations) returns or raises. The fast check may only say "valid, and these are
pydantic's values"; every other value goes to pydantic.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from dspx_cli.core.redact import UnsetSecret
from dspx_cli.core.spec_mirror import pydantic_model, validate_dataclass
from dspx_cli.core.spec_model import SpecModel, SpecValidationError
from dspx_cli.errors import ProgramError
from dspx_cli.finetune.section import FinetuneSettings
from dspx_cli.optimizers.registry import OPTIMIZERS
from dspx_cli.program.schema import FlowStep, LMSpec, ModuleSpec, ProgramSpec, SignatureSpec
from dspx_cli.program.source import read_source

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = sorted((ROOT / "programs").glob("*.yaml"))


def _via_pydantic(model: type[SpecModel], data: Any) -> Any:
    """What the mirror makes of `data`: its dump (JSON text, so 1 and 1.0 differ), or its error types."""
    try:
        checked = pydantic_model(model).model_validate(data)
    except ValidationError as exc:
        return sorted(error["type"] for error in exc.errors())
    dump = json.dumps(checked.model_dump(), sort_keys=True, default=repr)
    return dump, sorted(checked.model_fields_set)


def _via_spec(model: type[SpecModel], data: Any) -> Any:
    try:
        built = model.model_validate(data)
    except SpecValidationError as exc:
        return sorted(error["type"] for error in exc.errors())
    return json.dumps(built.model_dump(), sort_keys=True, default=repr), sorted(built.model_fields_set)


@pytest.mark.parametrize("path", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_every_shipped_program_is_read_as_pydantic_reads_it(path: Path) -> None:
    data = read_source(path).data
    assert _via_spec(ProgramSpec, data) == _via_pydantic(ProgramSpec, data)


def test_validating_and_loading_every_shipped_program_imports_no_pydantic() -> None:
    """The point of the fast check: a valid file never pays for pydantic (~90 ms of `dspx validate`).
    Object types (`types:`) are pydantic models the adapters need, so those programs do."""
    plain = [path for path in PROGRAMS if "types" not in read_source(path).data]
    assert len(plain) >= 8
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from dspx_cli.workflows.validate import validate_program\n"
        f"for path in {[str(p) for p in plain]!r}:\n"
        "    validate_program(Path(path))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# Values of every kind a YAML or TOML file (or --set) can give, valid or not for any field.
_SAMPLES: list[Any] = [
    None, True, False, 0, 1, -1, 3, 2.0, 0.5, 1e9, "", "8", "0.5", "true", "yes", "x", "chat", "json",
    "openai/gpt-4o-mini", [], ["a"], [1], {}, {"model": "m"}, {"type": "int"}, {"a": 1}, 10**400,
]  # fmt: skip


# A valid mapping of each model, which the test then changes a few keys of at random.
_VALID: dict[type[SpecModel], dict[str, Any]] = {
    LMSpec: {"model": "m", "temperature": 0.5, "max_tokens": 8, "extra": {"seed": 1}},
    FlowStep: {"id": "a", "module": "m", "with": {"x": "$input.x"}, "max_errors": 2},
    SignatureSpec: {"inputs": {"q": "str"}, "outputs": {"a": {"type": "int", "desc": "d"}}},
    ModuleSpec: {"signature": "q -> a", "lm": "openai/x", "n": 2, "demos": [{"q": "1", "a": "2"}]},
    FinetuneSettings: {"epochs": 2, "lora": {"r": 4}, "gguf": "q8_0"},
}


def _random_mapping(model: type[SpecModel], rng: random.Random) -> dict[str, Any]:
    data = dict(_VALID[model])
    names = [info.alias or name for name, info in model.model_fields.items()]
    for name in rng.sample(names, rng.randint(0, 2)):
        data[name] = rng.choice(_SAMPLES)
    for name in rng.sample(list(data), rng.randint(0, 1)):
        del data[name]
    if rng.random() < 0.1:
        data["unknown_key"] = 1
    return data


@pytest.mark.parametrize("model", list(_VALID), ids=[model.__name__ for model in _VALID])
def test_random_mappings_get_pydantic_s_values_or_pydantic_s_errors(model: type[SpecModel]) -> None:
    rng = random.Random(model.__name__)
    accepted = 0
    for _ in range(600):
        data = _random_mapping(model, rng)
        ours = _via_spec(model, data)
        assert ours == _via_pydantic(model, data), data
        accepted += isinstance(ours, tuple)
    assert 100 < accepted < 590  # both valid and invalid mappings were tried


def test_values_pydantic_coerces_are_coerced() -> None:
    spec = LMSpec.model_validate({"model": "m", "max_tokens": "8", "temperature": 1, "cache": "false"})
    assert (spec.max_tokens, spec.temperature, spec.cache) == (8, 1.0, False)
    assert type(spec.temperature) is float
    assert LMSpec.model_validate({"model": "m", "timeout": 30}).timeout == 30.0


def test_an_unset_secret_keeps_its_error_on_both_paths() -> None:
    unset = UnsetSecret(ProgramError("OPENAI_API_KEY is not set", None))
    fast = LMSpec.model_validate({"model": "m", "api_key": unset})
    coerced = LMSpec.model_validate({"model": "m", "api_key": unset, "max_tokens": "8"})
    assert fast.api_key is unset and coerced.api_key is unset
    assert LMSpec.model_validate({"model": "m", "api_key": ""}).api_key is None
    assert "api_key" not in repr(fast)


def test_validators_run_on_both_paths() -> None:
    for extra in ({}, {"n": "2"}):  # "2" sends the module to pydantic
        module = ModuleSpec.model_validate({"type": "Chain-Of-Thought", "lm": "openai/x", "tools": ["t"], **extra})
        assert module.type == "chain_of_thought"
        assert module.lm == LMSpec(model="openai/x")
        assert module.model_extra == {"tools": ["t"]} and module.tools == ["t"]
        assert module.own_keys == {"tools": ["t"]}


def test_aliases_read_and_dump() -> None:
    step = FlowStep.model_validate({"id": "a", "module": "m", "with": {"x": "$input.x"}, "as": "row"})
    assert step.with_ == {"x": "$input.x"} and step.as_ == "row"
    assert step.model_dump(by_alias=True)["with"] == {"x": "$input.x"}
    assert "with_" in step.model_dump() and step.model_fields_set == {"id", "module", "with_", "as_"}


def test_errors_are_pydantic_s_with_the_mirror_to_locate_them() -> None:
    with pytest.raises(SpecValidationError) as caught:
        LMSpec.model_validate({"model": "m", "temprature": 0.5})
    assert [e["type"] for e in caught.value.errors()] == ["extra_forbidden"]
    assert caught.value.model is pydantic_model(LMSpec)
    assert caught.value.model.__name__ == "LMSpec" and caught.value.model.__doc__ == LMSpec.__doc__


def test_optimizer_settings_dataclasses_read_as_pydantic_reads_them() -> None:
    from pydantic import TypeAdapter

    rng = random.Random(7)
    for record in OPTIMIZERS.values():
        names = list(record.defaults())
        for _ in range(200):
            data = {name: rng.choice(_SAMPLES) for name in rng.sample(names, rng.randint(0, len(names)))}
            try:
                expected: Any = TypeAdapter(record.settings).validate_python(data)
            except ValidationError as exc:
                with pytest.raises(SpecValidationError) as caught:
                    validate_dataclass(record.settings, data)
                assert caught.value.errors() == exc.errors()
                continue
            got = validate_dataclass(record.settings, data)
            assert json.dumps(got.__dict__, default=repr) == json.dumps(expected.__dict__, default=repr), data


def test_a_model_object_inside_the_data_is_left_to_pydantic() -> None:
    """The mirror takes mappings only; the fast check must not accept what it would refuse."""
    data = {"modules": {"a": {"signature": "q -> a", "lm": LMSpec(model="m")}}}
    with pytest.raises(SpecValidationError):
        ProgramSpec.model_validate(data)


def test_a_mutable_default_is_refused_at_declaration() -> None:
    from dspx_cli.core.spec_model import Field

    with pytest.raises(TypeError, match="default_factory"):

        class Shared(SpecModel):
            tags: list[str] = Field(default=[])
