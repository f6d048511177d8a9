"""Load a function named by `"path/to/file.py:function"`: Python metrics and Python tools.

The file is imported under a private module name derived from its absolute path, so two files
named `tools.py` in different folders do not collide and loading the same file twice reuses it.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["PyFileError", "load_function", "split_target"]


class PyFileError(ValueError):
    """What was wrong with a `file.py:function` reference, as one line for the caller to locate."""


def split_target(target: Any, base_dir: Path) -> tuple[Path, str]:
    """`"file.py:function"` as (the file, resolved against `base_dir`, and the function's name)."""
    file_text, _, function_name = target.rpartition(":") if isinstance(target, str) else ("", "", "")
    if not file_text or not function_name.isidentifier():
        raise PyFileError(f'expected "file.py:function", got {target!r}')
    path = Path(file_text).expanduser()
    return (path if path.is_absolute() else base_dir / path), function_name


def load_function(target: Any, base_dir: Path, *, prefix: str = "dspx_user") -> tuple[Callable[..., Any], Path]:
    """The function and the file it came from; relative paths are resolved against `base_dir`."""
    path, function_name = split_target(target, base_dir)
    if not path.is_file():
        raise PyFileError(f"file not found: {path}")
    module = _import(path, f"{prefix}_{abs(hash(str(path.resolve())))}")
    function = getattr(module, function_name, None)
    if not callable(function):
        defined = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__)
        raise PyFileError(f"{path} defines no function {function_name!r}; its functions: {', '.join(defined) or 'none'}")
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
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 (whatever the file raises on import is reported as one line)
        sys.modules.pop(module_name, None)
        raise PyFileError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(path.parent))
    return module
