"""Writing a file or a folder so that a crash leaves either the old one or the new one, never half."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def write_folder(target: Path, fill: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling folder, then swap it in for `target` (replacing any old one)."""
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    fill(staging)
    _sync_tree(staging)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)  # a folder cannot be replaced in one step; the old one stays until the new one is in
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def write_file(target: Path, fill: Callable[[Path], object]) -> Path:
    """Write a temporary sibling file with `fill(path)`, then rename it over `target`."""
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    staging.unlink(missing_ok=True)
    fill(staging)
    with open(staging, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(staging, target)
    return target


def write_text(target: Path, text: str) -> Path:
    return write_file(target, lambda path: path.write_text(text, encoding="utf-8"))


def _sync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
