"""Compiled state: what an optimizer changed in a program, in the JSON layout of DSPy's `Module.save()`.

Per predictor DSPy writes `traces`, `train`, `demos`, `signature` (`instructions` and one
`{prefix, description}` per field, inputs then outputs, no field names) and `lm`; next to the
predictors sits `metadata` with `dependency_versions`. dspx writes exactly that, so DSPy can load a
dspx state into the same program, and adds its own record under `metadata.dspx`.

`lm` is None unless the state names a model of its own: `dspx finetune` writes
`{"model": "local/<path>"}`, the path relative to the state file's folder, so the state and the
model it points at move together. A state never carries endpoints or keys; an `lm` naming any
other model (DSPy writes the LM a predictor was given) is ignored, and the program's LMs stay.

DSPy's layout names no fields, so matching a state to a program relies on predictor names, field
counts, DSPy's `${name}` placeholder descriptions, demo keys and, for states dspx wrote, the
signatures recorded in `metadata.dspx.predictors`. Instructions, descriptions and prefixes are what
optimizers change (MIPROv2 the instructions, COPRO the instructions and the last field's prefix):
they are taken from the state, never compared with the program file's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from dspx_cli import __version__
from dspx_cli.core import Signature
from dspx_cli.core.json_values import json_kind, jsonable
from dspx_cli.core.redact import redact
from dspx_cli.errors import ProgramError, UsageError
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.registry import EMBEDDED_NAMES, LOCAL_PREFIX, model_problem
from dspx_cli.modules import Predict
from dspx_cli.program.context import RunContext
from dspx_cli.program.runner import ProgramRunner

__all__ = [
    "dump_state",
    "load_state",
    "local_model_entry",
    "named_predictors",
    "program_hash",
    "read_state_file",
    "save_state_file",
]

METADATA = "metadata"
# Keys DSPy puts into demos besides the signature's fields: `augmented` marks a bootstrapped demo,
# `dspy_uuid`/`dspy_split` come from DSPy's datasets. The adapters ignore them, so they are kept.
_BOOKKEEPING_KEY = re.compile(r"augmented$|dspy_\w+$")
# DSPy's description of a field declared without one.
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def named_predictors(runner: ProgramRunner) -> list[tuple[str, Predict]]:
    """Predictors named as DSPy's `named_predictors()` names them in a program holding each module as
    an attribute: a Predict `answer` is `answer`, a ChainOfThought's inner predictor `answer.predict`."""
    return [
        (f"{module_name}.{suffix}" if suffix else module_name, predictor)
        for module_name, module in runner.modules.items()
        for suffix, predictor in module.named_predictors()
    ]


def program_hash(runner: ProgramRunner) -> str:
    """SHA-256 of the program's structure: predictor names and their typed inputs and outputs.

    Instructions, descriptions and demos are left out: they are what a state changes."""
    structure = {name: str(predictor.signature) for name, predictor in named_predictors(runner)}
    return hashlib.sha256(json.dumps(structure, sort_keys=True).encode()).hexdigest()


# ----- dump ------------------------------------------------------------------------------------


def dump_state(
    runner: ProgramRunner, *, metadata: Mapping[str, Any] | None = None, lm: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The program's state as DSPy's `Module.save()` lays it out. `metadata` (optimizer, settings,
    scores, LM usage, ...) goes under `metadata.dspx`, next to what dspx records itself. `lm`
    (`local_model_entry`) is every predictor's model; None keeps the program's."""
    state: dict[str, Any] = {}
    for name, predictor in named_predictors(runner):
        state[name] = {
            "traces": [],
            "train": [],
            "demos": [jsonable(dict(demo)) for demo in predictor.demos],
            "signature": _dump_signature(predictor.signature),
            # None: the LM comes from the program file. A state never carries endpoints or keys.
            "lm": dict(lm) if lm is not None else None,
        }
    state[METADATA] = {
        # DSPy's `load()` compares every key here with its own versions and fails on keys it does not
        # know, so only `python` is written; dspx's version lives under `dspx`.
        "dependency_versions": {"python": f"{sys.version_info.major}.{sys.version_info.minor}"},
        "dspx": {
            **redact(dict(metadata or {})),
            "version": __version__,
            "program_hash": program_hash(runner),
            "predictors": {name: str(predictor.signature) for name, predictor in named_predictors(runner)},
        },
    }
    return state


def local_model_entry(model_path: Path, state_path: Path) -> dict[str, Any]:
    """A predictor's `lm` naming a local model file or folder, relative to the state file's folder
    when it lies below it (a run folder moved elsewhere keeps working), else absolute."""
    model_path, folder = model_path.resolve(), state_path.resolve().parent
    try:
        shown = str(model_path.relative_to(folder))
    except ValueError:
        shown = str(model_path)
    return {"model": LOCAL_PREFIX + shown}


def _dump_signature(signature: Signature) -> dict[str, Any]:
    return {
        "instructions": signature.instructions,
        "fields": [{"prefix": f.prefix, "description": f.desc or f"${{{f.name}}}"} for f in signature.fields.values()],
    }


# ----- load ------------------------------------------------------------------------------------


def load_state(
    runner: ProgramRunner,
    state: Mapping[str, Any],
    *,
    source: str,
    context: RunContext | None = None,
    base_dir: Path | None = None,
) -> None:
    """Set demos, instructions, field descriptions and prefixes of every predictor from `state`, and the
    model of those whose `lm` names a local one (relative to `base_dir`, the state file's folder;
    only with a `context`, which makes LMs: without one nothing is called, as in `dspx inspect`).

    Accepts what dspx and DSPy write. Everything is checked before any predictor changes, so a state
    that does not fit leaves the runner as it was. Errors name `source` (the state file)."""
    if not isinstance(state, Mapping):
        raise _error(source, f"expected a JSON object of predictors, got {json_kind(state)}")
    predictors = dict(named_predictors(runner))
    state = _keyed_by_predictor(state, list(predictors), source)
    saved = [name for name in state if name != METADATA]

    unknown = [name for name in saved if name not in predictors]
    if unknown:
        raise _error(
            source,
            f"predictor {_names(unknown)} in the state is not in the program; "
            f"the program's predictors are {_names(predictors)}",
        )
    missing = [name for name in predictors if name not in state]
    if missing:
        raise _error(
            source,
            f"the program's predictor {_names(missing)} is not in the state, which has {_names(saved) or 'none'}; "
            "the state was saved for a different program",
        )
    recorded = _recorded_signatures(state.get(METADATA), source)
    # A demo may carry any field of the program's predictors: LabeledFewShot gives every predictor
    # whole training examples (as DSPy does), so a step's demo holds the columns its neighbours use.
    known = {field for predictor in predictors.values() for field in predictor.signature.fields}

    updates = {
        name: _checked_update(name, predictor, state[name], recorded.get(name), known, source)
        for name, predictor in predictors.items()
    }
    models = {name: _local_model(name, state[name], base_dir, source) for name in predictors}
    for name, (signature, demos) in updates.items():
        predictors[name].signature = signature
        predictors[name].demos = demos
        model = models[name]
        if model is not None and context is not None:
            # The module's LM settings (timeouts, cache, limits) stay; only the model is the state's,
            # and a local model has no endpoint or key.
            config = runner.program.modules[name.split(".", 1)[0]].lm
            predictors[name].lm = context.lm(replace(config, model=model, api_base=None, api_key=None))


def _local_model(name: str, entry: Any, base_dir: Path | None, source: str) -> str | None:
    """The local model a predictor's `lm` names, as an absolute `local/...` string; None when it names
    none (None, or a model that is not `local/...`, which is ignored: see the module's docstring)."""
    lm = entry.get("lm") if isinstance(entry, Mapping) else None
    if lm is None:
        return None
    if not isinstance(lm, Mapping) or not isinstance(lm.get("model"), str):
        raise _error(source, f"predictor {name!r}: expected `lm` to be null or an object with a `model`")
    model = lm["model"].strip()
    if model in EMBEDDED_NAMES:
        return model
    if not model.startswith(LOCAL_PREFIX):
        return None
    path = Path(model[len(LOCAL_PREFIX) :]).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    resolved = LOCAL_PREFIX + str(path.resolve())
    problem = model_problem(LMConfig(model=resolved))
    if problem is not None:
        raise _error(source, f"predictor {name!r}: {problem}")
    return resolved


def _keyed_by_predictor(state: Mapping[str, Any], predictors: list[str], source: str) -> Mapping[str, Any]:
    """`state` with the program's predictor names as keys, for states DSPy saved from a bare module.

    DSPy's `save()` of a lone `dspy.Predict` writes that predictor's own keys (`demos`,
    `signature`, ...) at the top level, with no name; a lone `dspy.ChainOfThought` names its inner
    predictor `predict`. Both fit a program whose modules hold exactly that: the names are added."""
    if _is_flat(state):
        if len(predictors) != 1:
            raise _error(
                source,
                "the state holds one predictor saved on its own (DSPy's save() of a bare Predict: "
                f"`demos` and `signature` at the top level), but the program has {len(predictors)} predictors "
                f"({_names(predictors)}); save the whole program in DSPy, or use a program with one predictor",
            )
        entry = {key: value for key, value in state.items() if key != METADATA}
        return {predictors[0]: entry, **({METADATA: state[METADATA]} if METADATA in state else {})}
    saved = [name for name in state if name != METADATA]
    modules = {name.split(".", 1)[0] for name in predictors}
    if len(modules) == 1 and saved and not any(name in predictors for name in saved):
        # Saved from the one module itself, so its names lack the module's (`predict`, not `draft.predict`).
        (module,) = modules
        renamed = {f"{module}.{name}": state[name] for name in saved}
        if sorted(renamed) == sorted(predictors):
            return {**renamed, **({METADATA: state[METADATA]} if METADATA in state else {})}
    return state


def _is_flat(state: Mapping[str, Any]) -> bool:
    # A predictor's own `signature` holds `instructions`/`fields`; a predictor *named* "signature"
    # would hold `demos`, `signature`, ... instead, so the two cannot be confused. A file mixing both
    # layouts is not flat: its names are then checked, and reported, as usual.
    signature = state.get("signature")
    if "demos" not in state or not isinstance(signature, Mapping):
        return False
    if "instructions" not in signature and "fields" not in signature:
        return False
    return not any(_looks_like_predictor(value) for key, value in state.items() if key != "signature")


def _looks_like_predictor(value: Any) -> bool:
    return isinstance(value, Mapping) and "signature" in value and "demos" in value


def _checked_update(
    name: str, predictor: Predict, entry: Any, recorded: str | None, known: set[str], source: str
) -> tuple[Signature, list[dict[str, Any]]]:
    where = f"predictor {name!r}"
    if not isinstance(entry, Mapping):
        raise _error(source, f"{where}: expected an object with demos and signature, got {json_kind(entry)}")
    if "extended_signature" in entry:
        raise _error(
            source, f"{where}: `extended_signature` is the layout of DSPy 2.5 and earlier; save it again with DSPy 2.6+"
        )
    signature = predictor.signature

    saved_signature = entry.get("signature")
    if not isinstance(saved_signature, Mapping):
        raise _error(source, f"{where}: expected `signature` to be an object, got {json_kind(saved_signature)}")
    instructions = saved_signature.get("instructions")
    if not isinstance(instructions, str):
        raise _error(source, f"{where}: expected `signature.instructions` to be text, got {json_kind(instructions)}")
    saved_fields = saved_signature.get("fields")
    if not isinstance(saved_fields, list):
        raise _error(source, f"{where}: expected `signature.fields` to be a list, got {json_kind(saved_fields)}")

    fields = list(signature.fields.values())
    if len(saved_fields) != len(fields):
        raise _error(
            source,
            f"{where} has {len(saved_fields)} field(s) in the state, {len(fields)} in the program "
            f"({', '.join(f.name for f in fields)}); the state was saved for a different signature",
        )
    updated = signature.with_instructions(instructions)
    for index, (field, saved_field) in enumerate(zip(fields, saved_fields, strict=True)):
        description = saved_field.get("description") if isinstance(saved_field, Mapping) else None
        if not isinstance(description, str):
            raise _error(source, f"{where}: expected field {index + 1} ({field.name}) to have a text `description`")
        placeholder = _PLACEHOLDER.fullmatch(description)
        if placeholder and placeholder.group(1) != field.name:
            # DSPy writes `${name}` for a field without a description: the only field name its layout keeps.
            raise _error(
                source,
                f"{where}: field {index + 1} is {placeholder.group(1)!r} in the state, {field.name!r} in the program "
                f"(program fields in order: {', '.join(f.name for f in fields)})",
            )
        # Prefixes are not compared but taken: DSPy's COPRO rewrites the last one, and no adapter
        # shows them, so a state's prefix changes what the next save writes, never a prompt.
        prefix = saved_field.get("prefix", field.prefix)
        if not isinstance(prefix, str):
            raise _error(source, f"{where}: expected field {index + 1} ({field.name}) to have a text `prefix`")
        updated = updated.with_updated_field(field.name, desc=description, prefix=prefix)

    demos = _checked_demos(where, entry.get("demos"), signature, known, source)
    # Checked last: the checks above name the exact field; this one also catches changed types and
    # fields moved between inputs and outputs, which DSPy's layout cannot show.
    if recorded is not None and recorded != str(signature):
        raise _error(
            source,
            f"{where} was saved for the signature `{recorded}`, the program now has `{signature}`; "
            "compile the program again",
        )
    return updated, demos


def _checked_demos(where: str, demos: Any, signature: Signature, known: set[str], source: str) -> list[dict[str, Any]]:
    """The demos as dicts; the adapter shows each predictor its own fields. A key that is no field of
    any predictor of the program is a data column (LabeledFewShot keeps whole rows, as DSPy does)
    unless the demo also misses all of this predictor's inputs or outputs: then it teaches nothing
    and the key is most likely a renamed field, or the state was saved for another program."""
    if not isinstance(demos, list):
        raise _error(source, f"{where}: expected `demos` to be a list, got {json_kind(demos)}")
    checked = []
    for index, demo in enumerate(demos):
        if not isinstance(demo, Mapping):
            raise _error(source, f"{where}: expected demo {index + 1} to be an object, got {json_kind(demo)}")
        stray = [key for key in demo if key not in known and not _BOOKKEEPING_KEY.fullmatch(str(key))]
        useful = any(f.name in demo for f in signature.inputs) and any(f.name in demo for f in signature.outputs)
        if stray and not useful:
            raise _error(
                source,
                f"{where}: demo {index + 1} has key {_names(stray)}, not a field of this predictor; "
                f"its fields are {', '.join(signature.fields)}",
            )
        checked.append(dict(demo))
    return checked


def _recorded_signatures(metadata: Any, source: str) -> dict[str, str]:
    """The signatures dspx recorded when saving; empty for states written by DSPy."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise _error(source, f"expected `metadata` to be an object, got {json_kind(metadata)}")
    dspx = metadata.get("dspx")
    recorded = dspx.get("predictors") if isinstance(dspx, Mapping) else None
    if not isinstance(recorded, Mapping):
        return {}
    return {str(name): text for name, text in recorded.items() if isinstance(text, str)}


# ----- files -----------------------------------------------------------------------------------


def save_state_file(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write `state` as indented UTF-8 JSON, as DSPy does. The file is replaced atomically, so an
    interrupted save never leaves half a state behind."""
    path = Path(path)
    try:
        text = json.dumps(state, indent=2, ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{path}: cannot save the state as JSON: {exc}") from None
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"{path}: cannot write the state file: {exc.strerror or exc}") from None


def read_state_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _error(str(path), "state file not found") from None
    except IsADirectoryError:
        raise _error(str(path), "expected a state file (.json), got a directory") from None
    except UnicodeDecodeError:
        raise _error(str(path), "the state file is not UTF-8 text") from None
    except OSError as exc:
        raise _error(str(path), f"cannot read the state file: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _error(f"{path}:{exc.lineno}:{exc.colno}", f"the state file is not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise _error(str(path), f"expected a JSON object of predictors, got {json_kind(data)}")
    return data


# ----- messages --------------------------------------------------------------------------------


def _error(source: str, message: str) -> ProgramError:
    return ProgramError(f"{source}: {message}")


def _names(names: Any) -> str:
    return ", ".join(repr(str(name)) for name in names)
