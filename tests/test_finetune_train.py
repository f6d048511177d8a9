"""Training the real embedded model on a tiny repeated chat dataset: full and LoRA, the loss, the
written model files, and resuming after the training process is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import peft  # noqa: F401  (LoRA is part of the hf extra: a missing peft fails here, never skips)
import pytest
from gguf import GGUFReader
from safetensors.torch import load_file

from dspx_cli.finetune.base_model import load_base
from dspx_cli.finetune.errors import FinetuneError
from dspx_cli.finetune.export import export_checkpoint
from dspx_cli.finetune.settings import LoraSettings, TrainSettings
from dspx_cli.finetune.trainer import StepInfo, TrainResult, train
from dspx_cli.lm.core_share import CoreShare
from dspx_cli.lm.local_gguf import embedded_model_path
from tests.finetune_helpers import answers

SYSTEM = "You keep secrets."
QUESTION = "What is the secret word?"
RECORDS = [
    {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": "pineapple"},
        ]
    },
    {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is the code?"},
            {"role": "assistant", "content": "blue falcon"},
        ]
    },
] * 2
# A fixed thread count: by default torch's threads follow the cores other processes leave free,
# and a different count sums in another order, so a resumed run's losses would drift from the
# uninterrupted run's whenever the machine's load changed between them.
LORA = TrainSettings(
    epochs=4,
    batch_size=2,
    max_length=64,
    learning_rate=3e-3,
    checkpoint_every=2,
    lora=LoraSettings(r=8, alpha=16),
    threads=2,
)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model as a checkpoint folder: a quicker base to load than the GGUF."""
    loaded = load_base(embedded_model_path())
    return export_checkpoint(
        loaded.model, loaded.tokenizer, tmp_path_factory.mktemp("base") / "model", loaded.gguf_template
    )


@pytest.fixture(scope="module")
def lora_run(base_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(RECORDS, base_folder, LORA, tmp_path_factory.mktemp("lora"))


def _secret(model: str) -> str:
    return answers(model, (QUESTION,), max_tokens=8)[0]


def test_full_fine_tuning_from_the_gguf_learns_and_writes_both_formats(
    base_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    steps: list[StepInfo] = []
    threads: list[int] = []

    def on_step(info: StepInfo) -> None:
        steps.append(info)
        threads.append(torch.get_num_threads())

    # The step's thread count is what the free cores allow, asked again before every step.
    monkeypatch.setattr(CoreShare, "threads", lambda self: 1)
    threads_before = torch.get_num_threads()
    settings = TrainSettings(epochs=4, batch_size=2, max_length=64, learning_rate=1e-4, checkpoint_every=100)
    result = train(RECORDS, embedded_model_path(), settings, tmp_path, on_step)
    assert threads == [1] * 8 and torch.get_num_threads() == threads_before

    assert result.steps == 8 == len(result.loss_curve) and result.resumed_from == 0
    assert [info.step for info in steps] == list(range(1, 9)) and steps[-1].total_steps == 8
    assert steps[-1].eta_seconds == 0 and all(info.tokens_per_second > 0 for info in steps)
    assert sum(result.loss_curve[-2:]) / 2 < result.loss_curve[0] / 4
    assert result.examples == 4 and result.trained_tokens > 0 and result.tokens > result.trained_tokens

    trained = load_file(str(result.checkpoint_dir / "model.safetensors"))
    before = load_file(str(base_folder / "model.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not trained[name].equal(before[name])
    assert result.gguf_path is not None and result.gguf_path.is_file()
    assert "pineapple" in _secret(f"local/{result.gguf_path}")
    assert "pineapple" in _secret(f"local/{result.checkpoint_dir}")
    assert "pineapple" not in _secret("local/smollm2")


def test_lora_learns_and_is_merged_into_the_written_model(lora_run: TrainResult, base_folder: Path) -> None:
    assert lora_run.steps == 8 and lora_run.resumed_from == 0
    assert sum(lora_run.loss_curve[-2:]) / 2 < lora_run.loss_curve[0] / 4
    trained = load_file(str(lora_run.checkpoint_dir / "model.safetensors"))
    assert not any("lora" in key for key in trained)  # merged: a plain llama checkpoint
    before = load_file(str(base_folder / "model.safetensors"))
    name = "model.layers.0.mlp.down_proj.weight"
    assert not trained[name].equal(before[name])
    # A base folder from the GGUF remembers it, so a GGUF is written too.
    assert lora_run.gguf_path is not None
    assert "pineapple" in _secret(f"local/{lora_run.gguf_path}")


def test_a_finished_run_is_returned_not_retrained(lora_run: TrainResult, base_folder: Path, tmp_path: Path) -> None:
    out_dir = lora_run.checkpoint_dir.parent
    assert not list(out_dir.glob("checkpoint-*"))  # the model files replace them
    again = train(RECORDS, base_folder, LORA, out_dir, lambda info: pytest.fail("trained again"))
    assert again.loss_curve == lora_run.loss_curve
    # result.json is untrusted (a committed run folder): the paths in it are never written to.
    recorded = json.loads((out_dir / "result.json").read_text())
    elsewhere = tmp_path / "elsewhere.gguf"
    recorded.update(gguf_path=str(elsewhere), checkpoint_dir=str(tmp_path / "other-model"))
    (out_dir / "result.json").write_text(json.dumps(recorded))
    # Another GGUF type re-writes only the GGUF.
    requantized = train(
        RECORDS, base_folder, replace(LORA, gguf_type="q8_0"), out_dir, lambda info: pytest.fail("trained")
    )
    assert requantized.gguf_path == out_dir / "model.gguf" and not elsewhere.exists()
    assert requantized.checkpoint_dir == out_dir / "model"
    assert GGUFReader(requantized.gguf_path).fields["general.file_type"].contents() == 7
    with pytest.raises(FinetuneError, match="holds the result of a different training run"):
        train(RECORDS[:2], base_folder, LORA, out_dir)


_CHILD = """
import sys, time, json
from pathlib import Path
from dspx_cli.finetune.trainer import train
from dspx_cli.finetune.settings import LoraSettings, TrainSettings
from tests.test_finetune_train import LORA, RECORDS

def stall(info):
    if info.step == 2:  # checkpoint-000002 is on disk: wait here to be killed
        time.sleep(600)

train(RECORDS, Path(sys.argv[1]), LORA, Path(sys.argv[2]), stall)
"""


def test_resume_after_a_kill_continues_from_the_checkpoint(
    lora_run: TrainResult, base_folder: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(base_folder), str(tmp_path)], cwd=ROOT, env=env)
    try:
        while not (tmp_path / "checkpoint-000002").is_dir():
            assert child.poll() is None, "the training process ended before its first checkpoint"
            time.sleep(0.2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not (tmp_path / "model").exists()

    resumed: list[int] = []
    result = train(RECORDS, base_folder, LORA, tmp_path, lambda info: resumed.append(info.step))
    assert result.resumed_from == 2 and resumed == [3, 4, 5, 6, 7, 8]
    assert result.steps == 8
    # Same data order, optimizer, scheduler and dropout RNG: the curve of the uninterrupted run.
    assert result.loss_curve == pytest.approx(lora_run.loss_curve, rel=1e-4)


def test_bad_settings_and_records_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FinetuneError, match="batch_size: expected a whole number >= 1"):
        train(RECORDS, embedded_model_path(), TrainSettings(batch_size=0), tmp_path)
    assert TrainSettings(gguf_type="q4", lora=LoraSettings(r=0)).problems() == [
        "gguf_type: expected one of f16, q8_0, source",
        "lora.r: expected a whole number >= 1",
    ]
    with pytest.raises(FinetuneError, match="training record 2: no assistant message"):
        train(
            [RECORDS[0], {"messages": [{"role": "user", "content": "hi"}]}],
            embedded_model_path(),
            TrainSettings(),
            tmp_path,
        )
    too_long = TrainSettings(max_length=16)
    with pytest.raises(FinetuneError, match="no training record fits max_length=16"):
        train(RECORDS, embedded_model_path(), too_long, tmp_path)
    assert json.dumps(TrainSettings().fingerprint_fields())  # JSON-able: part of the resume fingerprint
