"""The train and dev examples a command that learns from the program's data reads (compile, finetune)."""

from __future__ import annotations

import logging

from dspx_cli.core import Example
from dspx_cli.errors import UsageError
from dspx_cli.evaluate.datasets import BadRow, configured_splits, load_rows
from dspx_cli.program.model import Program

logger = logging.getLogger(__name__)


def train_and_dev(program: Program, command: str, limit: int | None) -> tuple[list[Example], list[Example]]:
    """The readable train examples (at least one) and dev examples (none without a dev split).

    A bad row is skipped with a warning naming its file and line; the others are kept.
    """
    splits = configured_splits(program)
    if "train" not in splits:
        # load_rows' own hint names evaluate's --split/--dataset, which these commands do not take.
        raise UsageError(
            f"{program.path} configures no 'train' split (configured splits: {', '.join(splits) or 'none'}); "
            f"{command} trains on it: add data.train (a file) or data.path with data.split to the program"
        )
    trainset = readable(load_rows(program, "train", limit=limit))
    devset = readable(load_rows(program, "dev", limit=limit)) if "dev" in splits else []
    if not trainset:
        raise UsageError(f"{program.path}: no training example could be read (see the warnings above)")
    return trainset, devset


def readable(rows: list[Example | BadRow]) -> list[Example]:
    """The rows that are examples; each bad one is skipped with a warning naming its file and line."""
    for row in rows:
        if isinstance(row, BadRow):
            logger.warning("skipping %s", row)
    return [row for row in rows if not isinstance(row, BadRow)]
