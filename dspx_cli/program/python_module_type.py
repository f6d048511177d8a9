"""The `python` module type: a flow step that runs a function from the program's own Python file.

    modules:
      clean:
        type: python
        function: steps.py:normalize     # relative to the program file
        signature: "text: str -> words: list[str], count: int"

Loading checks it without running it (so `dspx validate` runs no user code, as for Python tools
and metrics): the file exists, parses and defines the function, its parameters take the
signature's inputs (the module's signature as built: declared types, a named one), and no LM
setting is written on the module (module_defs rejects those for every `calls_lm=False` type). The file is
imported when the program is built to run; the live module is modules/python_step.py.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

from dspx_cli.core.pyfile import PyFileError, find_function, load_function
from dspx_cli.errors import ProgramError
from dspx_cli.program.module_types import DefineArgs, ModuleType, register, typed
from dspx_cli.program.spec_base import Strict

if TYPE_CHECKING:
    from dspx_cli.modules.base import Module
    from dspx_cli.program.build import Builder
    from dspx_cli.program.model import ModuleDef

__all__ = ["PythonSettings"]


class PythonSettings(Strict):
    function: str | None = None  # "file.py:function", relative to the program file


def _define_python(args: DefineArgs) -> dict[str, Any]:
    target = typed(args.settings, PythonSettings).function
    if target is None:
        raise args.error(f"module {args.name!r}: a python module needs `function: file.py:function`")
    try:
        found = find_function(target, args.base_dir)
    except PyFileError as exc:
        raise args.error(f"module {args.name!r}: function: {exc}", "function") from None
    if found.definition is not None:
        problem = _parameter_problem(found.definition, list(args.signature.input_fields))
        if problem:
            raise args.error(
                f"module {args.name!r}: {found.path.name}:{found.definition.lineno} {found.name}() {problem}",
                "function",
            )
    return {"options": {"function": target, "function_at": args.positions.locate(("modules", args.name, "function"))}}


def _parameter_problem(definition: ast.FunctionDef | ast.AsyncFunctionDef, inputs: list[str]) -> str | None:
    """Why the `def` cannot take the inputs as keyword arguments, or None when it can."""
    params = definition.args
    if params.posonlyargs:
        return f"has positional-only parameters ({', '.join(a.arg for a in params.posonlyargs)}); inputs come by name"
    named = params.args + params.kwonlyargs
    defaults = len(params.defaults)
    required = [a.arg for a in params.args[: len(params.args) - defaults]]
    required += [a.arg for a, d in zip(params.kwonlyargs, params.kw_defaults, strict=True) if d is None]
    unknown = [name for name in inputs if name not in {a.arg for a in named}]
    if unknown and params.kwarg is None:
        return f"takes no parameter {', '.join(unknown)}; the step passes its inputs {', '.join(inputs)} by name"
    missing = [name for name in required if name not in inputs]
    if missing and inputs:
        return f"requires {', '.join(missing)}, which the signature's inputs ({', '.join(inputs)}) do not give"
    return None


def _build_python(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules.python_step import PythonStep

    target = definition.options["function"]
    try:
        function, path = load_function(target, builder.program.base_dir)
    except PyFileError as exc:
        raise ProgramError(
            f"module {definition.name!r}: function: {exc}", definition.options.get("function_at")
        ) from None
    problem = _callable_problem(function, list(definition.signature.input_fields))
    if problem:
        raise ProgramError(f"module {definition.name!r}: {target} {problem}", definition.options.get("function_at"))
    return PythonStep(definition.signature, function, name=definition.name, label=target, path=path)


def _callable_problem(function: Any, inputs: list[str]) -> str | None:
    """The same check on the imported function (a named signature, or a name not bound by `def`)."""
    import inspect

    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return None  # a builtin without a signature: its call will tell
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    by_name = {p.name: p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = [name for name in inputs if name not in by_name]
    if unknown:
        return f"takes no parameter {', '.join(unknown)}; the step passes its inputs {', '.join(inputs)} by name"
    missing = [
        p.name for p in parameters if p.default is p.empty and p.kind is not p.VAR_POSITIONAL and p.name not in inputs
    ]
    if missing:
        return f"requires {', '.join(missing)}, which the signature's inputs ({', '.join(inputs)}) do not give"
    return None


def _summary_python(definition: ModuleDef) -> str:
    return f"python · {definition.options['function']}"


register(
    ModuleType(
        "python",
        "runs a function of the program's Python file: inputs as keyword arguments, a dict of outputs back",
        _build_python,
        predictors=(),
        settings=PythonSettings,
        calls_lm=False,
        define=_define_python,
        summary=_summary_python,
        key_docs="`function` (`file.py:function`, required)",
    ),
)
