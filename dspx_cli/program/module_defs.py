"""Each entry of `modules:` checked against its type and turned into a ModuleDef.

What a type takes besides the common settings (lm, adapter, n, temperature, ...) is its record's
in program/module_types.py: its settings model, its signature rule, its leading outputs and demo
fields, and its `define` hook. The type's own keys are checked against its settings model and
located like any schema error; a key that belongs to another type says so at its line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from dspx_cli.core import Signature
from dspx_cli.core.media import media_annotation
from dspx_cli.core.spec_model import SpecModel, SpecValidationError
from dspx_cli.errors import ProgramError
from dspx_cli.lm.config import LMConfig
from dspx_cli.program.diagnostics import to_program_error
from dspx_cli.program.media_inputs import MediaError, prepare_media
from dspx_cli.program.model import ModuleDef, ToolDef
from dspx_cli.program.module_types import MODULE_TYPES, DefineArgs, WrapperSettings, settings_keys, typed
from dspx_cli.program.schema import ModuleSpec
from dspx_cli.program.source import KeyPath, Positions

SignatureBuilder = Callable[[Any, KeyPath], Signature]
COMMON_KEYS = tuple(settings_keys(ModuleSpec))
# The common keys that only mean something to a module calling an LM (a record's `calls_lm`).
LM_KEYS = ("lm", "adapter", "n", "temperature", "max_tokens", "demos", "instructions")


def _keys_by_type() -> dict[str, set[str]]:
    """Each type-specific key and the types that take it."""
    owners: dict[str, set[str]] = {}
    for record in MODULE_TYPES.values():
        for key in record.keys:
            owners.setdefault(key, set()).add(record.name)
    return owners


def build_module_defs(
    specs: Mapping[str, ModuleSpec],
    raw_modules: Mapping[str, Any],
    build_signature: SignatureBuilder,
    signatures: Mapping[str, Signature],
    tools: Mapping[str, ToolDef],
    lm_for: Callable[[ModuleSpec], LMConfig],
    base_dir: Path,
    positions: Positions,
) -> dict[str, ModuleDef]:
    """Wrappers (best_of_n, refine) are built after the module they wrap, whose signature they take."""
    built: dict[str, ModuleDef] = {}
    settings = {name: _settings(name, spec, raw_modules[name], positions) for name, spec in specs.items()}
    for name, spec in specs.items():
        if not MODULE_TYPES[spec.type].wraps:
            built[name] = _plain(
                name,
                spec,
                settings[name],
                raw_modules[name],
                build_signature,
                signatures,
                tools,
                lm_for(spec),
                base_dir,
                positions,
            )
    pending = [name for name, spec in specs.items() if MODULE_TYPES[spec.type].wraps]
    while pending:
        progressed = False
        for name in list(pending):
            spec = specs[name]
            wrapping = typed(settings[name], WrapperSettings)
            where = positions.locate(("modules", name, "module"))
            if wrapping.module is None:
                raise ProgramError(
                    f"module {name!r} ({spec.type}) needs `module:`, the module to run N times",
                    positions.locate(("modules", name)),
                )
            if wrapping.module not in specs:
                raise ProgramError(
                    f"module {name!r} wraps unknown module {wrapping.module!r}; defined modules: {', '.join(specs)}",
                    where,
                )
            if wrapping.module == name:
                raise ProgramError(f"module {name!r} cannot wrap itself", where)
            if wrapping.module in built:
                built[name] = _wrapper(name, spec, wrapping, built[wrapping.module], lm_for(spec), positions)
                pending.remove(name)
                progressed = True
        if not progressed:
            raise ProgramError(
                f"modules {', '.join(pending)} wrap each other in a cycle",
                positions.locate(("modules", pending[0], "module")),
            )
    return {name: built[name] for name in specs}


def _settings(name: str, spec: ModuleSpec, raw: dict[str, Any], positions: Positions) -> SpecModel:
    """The module's own keys, as its type's settings model; every problem located in the file."""
    record = MODULE_TYPES[spec.type]
    own = spec.own_keys
    owners = _keys_by_type()
    for key in own:
        types = owners.get(key, set())
        if types and spec.type not in types:
            raise ProgramError(
                f"module {name!r}: {key!r} applies to type {' and '.join(sorted(types))}, not {spec.type}",
                positions.locate(("modules", name, key)),
            )
    try:
        settings = record.settings.model_validate(own)
    except SpecValidationError as exc:
        # Located in the module's own mapping; an unknown key lists the common keys and the type's.
        raise to_program_error(exc, raw, positions, at=("modules", name), common=COMMON_KEYS) from None
    _check_common_keys(name, spec, positions)
    spec.attach_settings(settings)
    return settings


def _check_common_keys(name: str, spec: ModuleSpec, positions: Positions) -> None:
    record = MODULE_TYPES[spec.type]
    if record.signature != "declared":
        for key in ("signature", "instructions"):
            if getattr(spec, key) is not None:
                raise ProgramError(
                    f"module {name!r}: a {spec.type} module takes no {key!r}", positions.locate(("modules", name, key))
                )
        if spec.demos:
            where = "the module it wraps" if record.wraps else "nothing: it has no predictor"
            raise ProgramError(
                f"module {name!r}: demos of a {spec.type} module belong to {where}",
                positions.locate(("modules", name, "demos")),
            )
    if not record.calls_lm:
        for key in LM_KEYS:
            if key in spec.model_fields_set:
                raise ProgramError(
                    f"module {name!r}: a {spec.type} module calls no LM; it takes no {key!r}",
                    positions.locate(("modules", name, key)),
                )


def _plain(
    name: str,
    spec: ModuleSpec,
    settings: SpecModel,
    raw: dict[str, Any],
    build_signature: SignatureBuilder,
    signatures: Mapping[str, Signature],
    tools: Mapping[str, ToolDef],
    lm: LMConfig,
    base_dir: Path,
    positions: Positions,
) -> ModuleDef:
    key_path: KeyPath = ("modules", name)
    record = MODULE_TYPES[spec.type]
    if record.fixed_signature is not None:
        signature = Signature.parse(record.fixed_signature)
    else:
        signature = _signature(name, spec, raw, build_signature, signatures, positions)
    leading = record.leading_outputs(settings)
    allowed = set(signature.input_fields) | set(signature.output_fields) | set(record.demo_fields(settings))
    allowed |= {field for field, _ in leading}
    for index, demo in enumerate(spec.demos):
        for key in demo:
            if key not in allowed:
                raise ProgramError(
                    f"demo key {key!r} is not a field of module {name!r}; expected one of: {', '.join(sorted(allowed))}",
                    positions.locate((*key_path, "demos", index, key)),
                )

    own = record.define(DefineArgs(name, spec, signature, settings, tools, base_dir, positions))

    return ModuleDef(
        name=name,
        type=spec.type,
        signature=signature,
        demos=[
            _demo_media(d, signature, base_dir, positions, (*key_path, "demos", i)) for i, d in enumerate(spec.demos)
        ],
        lm=lm,
        n=spec.n or lm.n,
        temperature=spec.temperature if spec.temperature is not None else lm.temperature,
        max_tokens=spec.max_tokens or lm.max_tokens,
        location=positions.locate(key_path),
        adapter=spec.adapter,
        leading_outputs=leading,
        settings=settings,
        **own,
    )


def _demo_media(
    demo: Mapping[str, Any], signature: Signature, base_dir: Path, positions: Positions, at: KeyPath
) -> dict[str, Any]:
    """A demo with its Image paths read (relative to the program's folder, never outside it)."""
    out = dict(demo)
    for key in demo:
        field = signature.input_fields.get(key)
        if field is None or media_annotation(field.annotation) is None:
            continue
        try:
            out.update(prepare_media({key: field}, {key: demo[key]}, base_dir, confine=True))
        except MediaError as exc:
            raise ProgramError(f"demo {exc}", positions.locate((*at, key))) from None
    return out


def _signature(
    name: str,
    spec: ModuleSpec,
    raw: dict[str, Any],
    build_signature: SignatureBuilder,
    signatures: Mapping[str, Signature],
    positions: Positions,
) -> Signature:
    key_path: KeyPath = ("modules", name)
    if spec.signature is None:
        raise ProgramError(
            f"missing required key 'signature' in modules.{name}: a name from `signatures:` or \"inputs -> outputs\"",
            positions.locate(key_path),
        )
    if isinstance(spec.signature, str) and "->" not in spec.signature:
        if spec.signature not in signatures:
            known = ", ".join(signatures) or "none"
            raise ProgramError(
                f"module {name!r} uses unknown signature {spec.signature!r}; defined signatures: {known}",
                positions.locate((*key_path, "signature")),
            )
        signature = signatures[spec.signature]
    else:
        signature = build_signature(raw["signature"], (*key_path, "signature"))
    if spec.instructions is not None:
        signature = signature.with_instructions(spec.instructions)
    return signature


def _wrapper(
    name: str, spec: ModuleSpec, settings: WrapperSettings, inner: ModuleDef, lm: LMConfig, positions: Positions
) -> ModuleDef:
    """Same signature and outputs as the wrapped module; the LM is the one Refine asks for advice."""
    if not MODULE_TYPES[inner.type].calls_lm:
        raise ProgramError(
            f"module {name!r} cannot wrap {inner.type} module {inner.name!r}: it calls no LM",
            positions.locate(("modules", name, "module")),
        )
    if settings.N is None or settings.reward is None:
        missing = "N" if settings.N is None else "reward"
        raise ProgramError(f"module {name!r} ({spec.type}) needs `{missing}:`", positions.locate(("modules", name)))
    return replace(
        inner,
        name=name,
        type=spec.type,
        demos=[],
        lm=lm,
        location=positions.locate(("modules", name)),
        tools=(),
        wraps=inner.name,
        settings=settings,
        reward=settings.reward,
        retriever=None,
        options={},
    )
