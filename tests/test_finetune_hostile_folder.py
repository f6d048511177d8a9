"""A finetune run folder is untrusted input (a committed `runs/` folder, a folder handed over):
resuming from its checkpoint must never unpickle arbitrary objects, and a malformed checkpoint or
records file is a one-line error. (A result.json's paths are never written to: test_finetune_train.)"""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import pytest
import torch

from dspx_cli.finetune import train_state
from dspx_cli.finetune.errors import FinetuneError
from tests.cli_inprocess import dspx
from tests.test_finetune_settings import program


class RunsCode:
    """Unpickling this writes a file: what a hostile checkpoint would do with a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "ran"))  # type: ignore[return-value]


def live_objects() -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def checkpoint(tmp_path: Path) -> Path:
    model, optimizer, scheduler = live_objects()
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    return train_state.save(tmp_path, model, optimizer, scheduler, train_state.Progress("fp", step=1))


def test_a_genuine_checkpoint_resumes(tmp_path: Path) -> None:
    folder = checkpoint(tmp_path)
    random.seed(5)
    model, optimizer, scheduler = live_objects()
    progress = train_state.load(folder, model, optimizer, scheduler, "fp")
    assert progress.step == 1 and scheduler.last_epoch == 1 and optimizer.state_dict()["state"]


@pytest.mark.parametrize("file", ["optimizer.pt", "weights.pt"])
def test_a_pickle_that_runs_code_is_refused_unrun(tmp_path: Path, file: str) -> None:
    folder = checkpoint(tmp_path / "run")
    marker = tmp_path / "pwned"
    with (folder / file).open("wb") as handle:
        pickle.dump({"optimizer": RunsCode(marker)}, handle)
    with pytest.raises(FinetuneError, match=f"{file}: unreadable checkpoint file"):
        train_state.load(folder, *live_objects(), "fp")
    assert not marker.exists()


@pytest.mark.parametrize(
    "progress", ['{"fingerprint": "fp", "step": 1, "rm -rf": 1}', "[1, 2]", "not json", '{"fingerprint": 3}']
)
def test_a_malformed_progress_file_is_an_error(tmp_path: Path, progress: str) -> None:
    folder = checkpoint(tmp_path)
    (folder / "progress.json").write_text(progress)
    with pytest.raises(FinetuneError, match="unreadable checkpoint"):
        train_state.load(folder, *live_objects(), "fp")


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    folder = checkpoint(tmp_path)
    with pytest.raises(FinetuneError, match="a different training run"):
        train_state.load(folder, *live_objects(), "other")
    assert json.loads((folder / "progress.json").read_text())["step"] == 1 and os.path.isdir(folder)


def test_unreadable_records_in_a_run_folder_are_exit_2(tmp_path: Path) -> None:
    path = program(tmp_path)
    first = dspx("finetune", str(path), "--data-only", "-o", "run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "run" / "train.jsonl").is_file()
    (tmp_path / "run" / "traces.json").write_text('{"mode": "labeled"}')
    again = dspx("finetune", str(path), "--data-only", "-o", "run", cwd=tmp_path)
    assert again.returncode == 2
    assert "its training records are unreadable (KeyError" in again.stderr
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1
