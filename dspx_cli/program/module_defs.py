"""Each entry of `modules:` checked against its type and turned into a ModuleDef.

Type by type, what a module needs besides its LM settings:

    predict, chain_of_thought   signature (demos)
    react                       signature, tools (names from `tools:`), max_iters
    multi_chain_comparison      signature, M
    best_of_n, refine           module (another module's name), N, reward, threshold, fail_count
    retrieve                    corpus, k, text_field, embeddings; its signature is `query -> passages`

A key that belongs to another type is an error at its line: `tools` on a predict module would
otherwise be silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from dspx_cli.core import Signature
from dspx_cli.errors import ProgramError
from dspx_cli.lm.config import LMConfig
from dspx_cli.program.model import ModuleDef, ToolDef
from dspx_cli.program.schema import ModuleSpec
from dspx_cli.program.source import KeyPath, Positions
from dspx_cli.program.tools import build_retriever

SignatureBuilder = Callable[[Any, KeyPath], Signature]

RETRIEVE_SIGNATURE = "query: str -> passages: list[str]"
_REACT_STEP_FIELDS = ("trajectory", "next_thought", "next_tool_name", "next_tool_args")
# Keys that only some types take (the rest, e.g. lm, adapter, n, temperature, apply to all).
_KEYS_BY_TYPE: dict[str, set[str]] = {
    "tools": {"react"},
    "max_iters": {"react"},
    "module": {"best_of_n", "refine"},
    "N": {"best_of_n", "refine"},
    "reward": {"best_of_n", "refine"},
    "threshold": {"best_of_n", "refine"},
    "fail_count": {"best_of_n", "refine"},
    "M": {"multi_chain_comparison"},
    "corpus": {"retrieve"},
    "k": {"retrieve"},
    "text_field": {"retrieve"},
    "embeddings": {"retrieve"},
}
_WRAPPERS = ("best_of_n", "refine")


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
    for name, spec in specs.items():
        _check_keys(name, spec, positions)
        if spec.type not in _WRAPPERS:
            built[name] = _plain(name, spec, raw_modules[name], build_signature, signatures, tools, lm_for(spec),
                                 base_dir, positions)
    pending = [name for name, spec in specs.items() if spec.type in _WRAPPERS]
    while pending:
        progressed = False
        for name in list(pending):
            spec = specs[name]
            where = positions.locate(("modules", name, "module"))
            if spec.module is None:
                raise ProgramError(f"module {name!r} ({spec.type}) needs `module:`, the module to run N times",
                                   positions.locate(("modules", name)))
            if spec.module not in specs:
                raise ProgramError(f"module {name!r} wraps unknown module {spec.module!r}; defined modules: "
                                   f"{', '.join(specs)}", where)
            if spec.module == name:
                raise ProgramError(f"module {name!r} cannot wrap itself", where)
            if spec.module in built:
                built[name] = _wrapper(name, spec, built[spec.module], lm_for(spec), positions)
                pending.remove(name)
                progressed = True
        if not progressed:
            raise ProgramError(f"modules {', '.join(pending)} wrap each other in a cycle",
                               positions.locate(("modules", pending[0], "module")))
    return {name: built[name] for name in specs}


def _check_keys(name: str, spec: ModuleSpec, positions: Positions) -> None:
    for key, types in _KEYS_BY_TYPE.items():
        if getattr(spec, key) is not None and spec.type not in types:
            raise ProgramError(
                f"module {name!r}: {key!r} applies to type {' and '.join(sorted(types))}, not {spec.type}",
                positions.locate(("modules", name, key)),
            )
    if spec.type in (*_WRAPPERS, "retrieve"):
        for key in ("signature", "instructions"):
            if getattr(spec, key) is not None:
                raise ProgramError(f"module {name!r}: a {spec.type} module takes no {key!r}",
                                   positions.locate(("modules", name, key)))
        if spec.demos:
            where = "the module it wraps" if spec.type in _WRAPPERS else "nothing: it has no predictor"
            raise ProgramError(f"module {name!r}: demos of a {spec.type} module belong to {where}",
                               positions.locate(("modules", name, "demos")))


def _plain(
    name: str,
    spec: ModuleSpec,
    raw: dict[str, Any],
    build_signature: SignatureBuilder,
    signatures: Mapping[str, Signature],
    tools: Mapping[str, ToolDef],
    lm: LMConfig,
    base_dir: Path,
    positions: Positions,
) -> ModuleDef:
    key_path: KeyPath = ("modules", name)
    retriever = None
    if spec.type == "retrieve":
        signature = Signature.parse(RETRIEVE_SIGNATURE)
        retriever = build_retriever(spec, base_dir, key_path, positions)
    else:
        signature = _signature(name, spec, raw, build_signature, signatures, positions)
    leading: tuple[tuple[str, Any], ...] = ()
    allowed = set(signature.input_fields) | set(signature.output_fields)
    if spec.type == "chain_of_thought":
        leading = (("reasoning", str),)
    elif spec.type == "react":
        leading = (("trajectory", dict[str, Any]), ("reasoning", str))
        allowed |= set(_REACT_STEP_FIELDS)
    elif spec.type == "multi_chain_comparison":
        leading = (("rationale", str),)
        allowed |= {f"reasoning_attempt_{i}" for i in range(1, (spec.M or 3) + 1)}
    allowed |= {field for field, _ in leading}
    for index, demo in enumerate(spec.demos):
        for key in demo:
            if key not in allowed:
                raise ProgramError(
                    f"demo key {key!r} is not a field of module {name!r}; expected one of: {', '.join(sorted(allowed))}",
                    positions.locate((*key_path, "demos", index, key)),
                )

    module_tools: tuple[ToolDef, ...] = ()
    if spec.type == "react":
        if not spec.tools:
            raise ProgramError(f"module {name!r}: a react module needs `tools:`, a list of names from the "
                               f"program's `tools:` section", positions.locate(key_path))
        for index, tool in enumerate(spec.tools):
            if tool not in tools:
                raise ProgramError(f"module {name!r} uses unknown tool {tool!r}; defined tools: "
                                   f"{', '.join(tools) or 'none'}", positions.locate((*key_path, "tools", index)))
        module_tools = tuple(tools[tool] for tool in spec.tools)

    return ModuleDef(
        name=name,
        type=spec.type,
        signature=signature,
        demos=[dict(d) for d in spec.demos],
        lm=lm,
        n=spec.n or lm.n,
        temperature=spec.temperature if spec.temperature is not None else lm.temperature,
        max_tokens=spec.max_tokens or lm.max_tokens,
        location=positions.locate(key_path),
        adapter=spec.adapter,
        leading_outputs=leading,
        tools=module_tools,
        max_iters=spec.max_iters,
        M=spec.M,
        retriever=retriever,
    )


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
        raise ProgramError(f"missing required key 'signature' in modules.{name}: a name from `signatures:` or \"inputs -> outputs\"",
                           positions.locate(key_path))
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


def _wrapper(name: str, spec: ModuleSpec, inner: ModuleDef, lm: LMConfig, positions: Positions) -> ModuleDef:
    """Same signature and outputs as the wrapped module; the LM is the one Refine asks for advice."""
    if inner.type == "retrieve":
        raise ProgramError(f"module {name!r} cannot wrap retrieve module {inner.name!r}: it calls no LM",
                           positions.locate(("modules", name, "module")))
    if spec.N is None or spec.reward is None:
        missing = "N" if spec.N is None else "reward"
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
        N=spec.N,
        threshold=spec.threshold,
        fail_count=spec.fail_count,
        reward=spec.reward,
    )
