"""Load a program file: parse, interpolate, validate, and resolve every reference.

Every error is raised before any LM is created, and names the file, line and column. Program
files are code, like a Makefile: a Python tool's file is imported when the program loads, unless
`run_code=False` (`dspx validate`), which only parses it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from dspx_cli.core import Signature, parse_type
from dspx_cli.core.spec_model import SpecValidationError
from dspx_cli.errors import ProgramError, SignatureError, UsageError
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.registry import anchor_model_path, model_problem
from dspx_cli.program.diagnostics import to_program_error
from dspx_cli.program.flow import build_flow
from dspx_cli.program.interpolate import interpolate
from dspx_cli.program.model import ModuleDef, Program
from dspx_cli.program.module_defs import build_module_defs
from dspx_cli.program.schema import LMSpec, ProgramSpec
from dspx_cli.program.source import KeyPath, Positions, read_source
from dspx_cli.program.tools import build_tools

DEFAULT_LM = "local/smollm2"


def load_program(
    path: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    lm_override: str | None = None,
    run_code: bool = True,
) -> Program:
    """`lm_override` (from `--lm` or DSPX_LM) replaces the model of every LM in the program; a
    path in it is relative to the working directory. `run_code=False` parses Python tools
    instead of importing them (their ToolDef has no `tool`)."""
    given_override = lm_override
    if lm_override is not None:
        lm_override = anchor_model_path(lm_override, Path.cwd())
    source = read_source(Path(path))
    positions = source.positions
    data = interpolate(source.data, os.environ if env is None else env, positions)
    try:
        spec = ProgramSpec.model_validate(data)
    except SpecValidationError as exc:
        raise to_program_error(exc, data, positions) from None

    named_types = _build_types(data.get("types") or {}, positions) if spec.types else {}
    signatures = {
        name: _build_signature(data["signatures"][name], ("signatures", name), positions, named_types)
        for name in spec.signatures
    }
    default_lm = lm_config(spec.lm, lm_override)
    tools = build_tools(spec.tools, source.path.parent, positions, run_code=run_code)
    modules = build_module_defs(
        spec.modules,
        data["modules"],
        lambda raw, key_path: _build_signature(raw, key_path, positions, named_types),
        signatures,
        tools,
        lambda module: lm_config(module.lm, lm_override) if module.lm else default_lm,
        source.path.parent,
        positions,
    )
    _check_models(spec, modules, given_override, source.path.parent, positions)
    prompt_lm = lm_config(spec.prompt_lm, None) if spec.prompt_lm is not None else None
    if prompt_lm is not None and (problem := model_problem(prompt_lm, source.path.parent)) is not None:
        raise ProgramError(problem, positions.locate(("prompt_lm", "model")))
    steps, outputs, inputs = build_flow(spec, data, modules, positions)
    return Program(
        path=source.path,
        name=spec.name or source.path.stem,
        description=spec.description,
        spec=spec,
        positions=positions,
        signatures=signatures,
        modules=modules,
        steps=steps,
        outputs=outputs,
        inputs=inputs,
        default_lm=default_lm,
        prompt_lm=prompt_lm,
    )


def _check_models(
    spec: ProgramSpec,
    modules: Mapping[str, ModuleDef],
    given_override: str | None,
    base_dir: Path,
    positions: Positions,
) -> None:
    """A model no backend takes is an error where it is written (or of `--lm`), not at the first call."""
    for name, module in modules.items():
        problem = model_problem(module.lm, base_dir)
        if problem is None:
            continue
        if given_override:
            raise UsageError(f"--lm {given_override}: {problem}")
        key_path: KeyPath = ("modules", name, "lm") if spec.modules[name].lm is not None else ("lm",)
        raise ProgramError(problem, positions.locate((*key_path, "model")))


def lm_config(spec: LMSpec | None, override: str | None) -> LMConfig:
    if spec is None:
        return LMConfig.from_model_string(override) if override else LMConfig(model=DEFAULT_LM)
    config = LMConfig(
        model=spec.model,
        api_base=spec.api_base,
        api_key=spec.api_key,
        temperature=spec.temperature,
        max_tokens=spec.max_tokens,
        n=spec.n,
        timeout=spec.timeout,
        extra=dict(spec.extra),
        num_retries=spec.num_retries,
        max_concurrency=spec.max_concurrency,
        rpm=spec.rpm,
        tpm=spec.tpm,
        price_input=spec.prices.input if spec.prices else None,
        price_output=spec.prices.output if spec.prices else None,
        cache=spec.cache,
        api_version=spec.api_version,
    )
    if not override:
        return config
    # Only the model changes (and the endpoint, for `model@http://host/v1`): sampling settings,
    # retries, limits and prices stay as the program wrote them.
    given = LMConfig.from_model_string(override)
    return replace(config, model=given.model, api_base=given.api_base or config.api_base)


def _build_types(section: Mapping[str, Any], positions: Positions) -> dict[str, Any]:
    """The `types:` section as pydantic models; a mistake is reported where it is written."""
    from dspx_cli.core.object_types import ObjectTypeError, build_object_types

    try:
        return build_object_types(section)
    except ObjectTypeError as exc:
        raise ProgramError(str(exc), positions.locate(("types", *exc.path))) from None


def _build_signature(
    raw: Any, key_path: KeyPath, positions: Positions, named_types: Mapping[str, Any] | None = None
) -> Signature:
    if isinstance(raw, dict):
        # Check each type string first, so a bad type is reported at its own line.
        for role in ("inputs", "outputs"):
            for field_name, field_spec in (raw.get(role) or {}).items():
                type_text = field_spec if isinstance(field_spec, str) else field_spec.get("type", "str")
                field_path = (*key_path, role, field_name)
                if isinstance(field_spec, dict) and "type" in field_spec:
                    field_path = (*field_path, "type")
                try:
                    parse_type(type_text, named_types)
                except SignatureError as exc:
                    raise ProgramError(f"field {field_name!r}: {exc}", positions.locate(field_path)) from None
    try:
        return Signature.from_spec(raw, named_types=named_types)
    except SignatureError as exc:
        raise ProgramError(f"invalid signature: {exc}", positions.locate(key_path)) from None
