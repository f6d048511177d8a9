"""Load a program file: parse, interpolate, validate, and resolve every reference.

Every error is raised before any LM is created, and names the file, line and column.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dspx_cli.core import Signature, parse_type
from dspx_cli.errors import ProgramError, SignatureError
from dspx_cli.lm.config import LMConfig
from dspx_cli.program.diagnostics import to_program_error
from dspx_cli.program.flow import build_flow
from dspx_cli.program.interpolate import interpolate
from dspx_cli.program.model import ModuleDef, Program
from dspx_cli.program.schema import LMSpec, ModuleSpec, ProgramSpec
from dspx_cli.program.source import KeyPath, Positions, read_source

DEFAULT_LM = "local/smollm2"


def load_program(
    path: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    lm_override: str | None = None,
) -> Program:
    """`lm_override` (from `--lm` or DSPX_LM) replaces the model of every LM in the program."""
    source = read_source(Path(path))
    positions = source.positions
    data = interpolate(source.data, os.environ if env is None else env, positions)
    try:
        spec = ProgramSpec.model_validate(data)
    except ValidationError as exc:
        raise to_program_error(exc, data, positions, ProgramSpec) from None

    signatures = {
        name: _build_signature(data["signatures"][name], ("signatures", name), positions)
        for name in spec.signatures
    }
    default_lm = lm_config(spec.lm, lm_override)
    modules = {
        name: _build_module(name, module, data["modules"][name], signatures, default_lm, lm_override, positions)
        for name, module in spec.modules.items()
    }
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
    )


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
    )
    if not override:
        return config
    # Only the model changes (and the endpoint, for `model@http://host/v1`): sampling settings,
    # retries, limits and prices stay as the program wrote them.
    given = LMConfig.from_model_string(override)
    return replace(config, model=given.model, api_base=given.api_base or config.api_base)


def _build_signature(raw: Any, key_path: KeyPath, positions: Positions) -> Signature:
    if isinstance(raw, dict):
        # Check each type string first, so a bad type is reported at its own line.
        for role in ("inputs", "outputs"):
            for field_name, field_spec in (raw.get(role) or {}).items():
                type_text = field_spec if isinstance(field_spec, str) else field_spec.get("type", "str")
                field_path = (*key_path, role, field_name)
                if isinstance(field_spec, dict) and "type" in field_spec:
                    field_path = (*field_path, "type")
                try:
                    parse_type(type_text)
                except SignatureError as exc:
                    raise ProgramError(f"field {field_name!r}: {exc}", positions.locate(field_path)) from None
    try:
        return Signature.from_spec(raw)
    except SignatureError as exc:
        raise ProgramError(f"invalid signature: {exc}", positions.locate(key_path)) from None


def _build_module(
    name: str,
    module: ModuleSpec,
    raw: dict[str, Any],
    signatures: dict[str, Signature],
    default_lm: LMConfig,
    lm_override: str | None,
    positions: Positions,
) -> ModuleDef:
    key_path: KeyPath = ("modules", name)
    if isinstance(module.signature, str) and "->" not in module.signature:
        if module.signature not in signatures:
            known = ", ".join(signatures) or "none"
            raise ProgramError(
                f"module {name!r} uses unknown signature {module.signature!r}; defined signatures: {known}",
                positions.locate((*key_path, "signature")),
            )
        signature = signatures[module.signature]
    else:
        signature = _build_signature(raw["signature"], (*key_path, "signature"), positions)
    if module.instructions is not None:
        signature = signature.with_instructions(module.instructions)

    allowed = set(signature.input_fields) | set(signature.output_fields)
    if module.type == "chain_of_thought":
        allowed.add("reasoning")
    for index, demo in enumerate(module.demos):
        for key in demo:
            if key not in allowed:
                raise ProgramError(
                    f"demo key {key!r} is not a field of module {name!r}; expected one of: {', '.join(sorted(allowed))}",
                    positions.locate((*key_path, "demos", index, key)),
                )

    lm = lm_config(module.lm, lm_override) if module.lm else default_lm
    return ModuleDef(
        name=name,
        type=module.type,
        signature=signature,
        demos=[dict(d) for d in module.demos],
        lm=lm,
        n=module.n or lm.n,
        temperature=module.temperature if module.temperature is not None else lm.temperature,
        max_tokens=module.max_tokens or lm.max_tokens,
        location=positions.locate(key_path),
        adapter=module.adapter,
    )

