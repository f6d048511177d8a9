"""Load a function named by `"path/to/file.py:function"`: Python metrics and Python tools.

The file is imported under a private module name derived from its absolute path, so two files
named `tools.py` in different folders do not collide and loading the same file twice reuses it.

`find_function` checks the same reference without running the file (for `dspx validate`): the
file exists, parses, and binds the name at its top level.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["PyFileError", "StaticFunction", "find_function", "load_function", "split_target"]

MAX_SOURCE_BYTES = 8 * 1024 * 1024  # a metric or tool file larger than this is not source code


class PyFileError(ValueError):
    """What was wrong with a `file.py:function` reference, as one line for the caller to locate."""


def split_target(target: Any, base_dir: Path) -> tuple[Path, str]:
    """`"file.py:function"` as (the file, resolved against `base_dir`, and the function's name)."""
    file_text, _, function_name = target.rpartition(":") if isinstance(target, str) else ("", "", "")
    if not file_text or not function_name.isidentifier():
        raise PyFileError(f'expected "file.py:function", got {target!r}')
    path = Path(file_text).expanduser()
    return (path if path.is_absolute() else base_dir / path), function_name


@dataclass(frozen=True)
class StaticFunction:
    """What parsing found: the file, and the `def` itself when the name is bound by one."""

    path: Path
    name: str
    definition: ast.FunctionDef | ast.AsyncFunctionDef | None


def find_function(target: Any, base_dir: Path) -> StaticFunction:
    """Check `"file.py:function"` by reading the file, never running it."""
    path, function_name = split_target(target, base_dir)
    if not path.is_file():
        raise PyFileError(f"file not found: {path}")
    if path.stat().st_size > MAX_SOURCE_BYTES:
        raise PyFileError(f"{path} is larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MB; expected Python source")
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise PyFileError(f"{path}:{exc.lineno}: invalid Python: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
        raise PyFileError(f"{path}: cannot parse it as Python: {type(exc).__name__}") from None
    bindings = _top_level_bindings(tree.body)
    if function_name in bindings:
        return StaticFunction(path, function_name, bindings[function_name])
    if any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(tree)):
        return StaticFunction(path, function_name, None)  # `from x import *` may bind it: cannot tell
    defined = sorted(name for name, node in bindings.items() if node is not None)
    raise PyFileError(f"{path} defines no function {function_name!r}; its functions: {', '.join(defined) or 'none'}")


def _top_level_bindings(body: list[ast.stmt]) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef | None]:
    """Names the module binds when it runs, inside top-level if/try/with blocks too; a `def`
    maps to itself, any other binding (assignment, import, class) to None."""
    found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef | None] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            found[node.name] = None
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                found.setdefault((alias.asname or alias.name).split(".")[0], None)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        found.setdefault(name.id, None)
        elif isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [handler.body for handler in getattr(node, "handlers", [])]
            for block in blocks:
                for bound, definition in _top_level_bindings(block).items():
                    found.setdefault(bound, definition)
    return found


def load_function(target: Any, base_dir: Path, *, prefix: str = "dspx_user") -> tuple[Callable[..., Any], Path]:
    """The function and the file it came from; relative paths are resolved against `base_dir`."""
    path, function_name = split_target(target, base_dir)
    if not path.is_file():
        raise PyFileError(f"file not found: {path}")
    module = _import(path, f"{prefix}_{abs(hash(str(path.resolve())))}")
    function = getattr(module, function_name, None)
    if not callable(function):
        defined = sorted(
            n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__
        )
        raise PyFileError(
            f"{path} defines no function {function_name!r}; its functions: {', '.join(defined) or 'none'}"
        )
    return function, path


def _import(path: Path, module_name: str) -> ModuleType:
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PyFileError(f"cannot import {path}; expected a .py file")
    module = importlib.util.module_from_spec(spec)
    # Registered and on sys.path while it runs, so the file can import its neighbours and define
    # dataclasses (which look their module up in sys.modules).
    sys.modules[module_name] = module
    # The `dspx` entry point blocks a few imports httpx would make and dspx never uses (a None in
    # sys.modules, see cli/app.py); the user's file may want them, so they are unblocked first.
    for blocked in [name for name, loaded in sys.modules.items() if loaded is None]:
        del sys.modules[blocked]
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 (whatever the file raises on import is reported as one line)
        sys.modules.pop(module_name, None)
        raise PyFileError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(path.parent))
    return module
