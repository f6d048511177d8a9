"""Fine-tuning on the CPU: `train(records, base, settings, out_dir)` -> a checkpoint folder and a GGUF.

A plain loop over padded batches (no HF Trainer): forward with labels, backward, clip, AdamW step,
scheduler step. It checkpoints every `checkpoint_every` steps and at the last one (train_state.py);
calling `train` again with the same out_dir resumes from the newest checkpoint with the same data
order, RNG and optimizer state, so the loss curve continues as if never stopped. A run whose
outputs are complete returns its recorded result without training again (re-writing only the
GGUF when gguf_type changed); its checkpoints are removed once the model files are written.

Outputs in out_dir: `model/` (transformers checkpoint folder: `lm: local/<out_dir>/model`),
`model.gguf` (when the base came from a GGUF; `lm: local/<out_dir>/model.gguf`), `result.json`.
LoRA adapters are merged into the base weights before either is written.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dspx_cli.core.telemetry import OFF, Telemetry
from dspx_cli.finetune import train_state
from dspx_cli.finetune.atomic import write_text
from dspx_cli.finetune.chat_data import Encoded, check_records, collate, encode, epoch_order
from dspx_cli.finetune.errors import FinetuneError
from dspx_cli.finetune.loss import causal_lm_loss
from dspx_cli.finetune.settings import TrainSettings
from dspx_cli.lm.core_share import CoreShare

MODEL_DIR = "model"
GGUF_FILE = "model.gguf"
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class StepInfo:
    step: int  # 1-based, over all epochs
    total_steps: int
    epoch: int  # 1-based
    loss: float
    learning_rate: float
    tokens_per_second: float  # non-padding input tokens per second of training, this session
    elapsed_seconds: float  # training time so far, over all sessions
    eta_seconds: float


@dataclass(frozen=True)
class TrainResult:
    checkpoint_dir: Path
    gguf_path: Path | None  # None when the base has no GGUF to copy metadata from
    steps: int
    loss_curve: list[float]  # one mean loss per step
    examples: int  # records trained on
    skipped_too_long: int  # records left out: longer than max_length tokens
    tokens: int  # non-padding input tokens processed
    trained_tokens: int  # of which labelled (assistant replies)
    tokens_per_second: float
    seconds: float  # in training steps, over all sessions
    resumed_from: int  # the step the last session started at (0: from the base weights)
    load_seconds: float
    export_seconds: float

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["checkpoint_dir"] = str(self.checkpoint_dir)
        data["gguf_path"] = str(self.gguf_path) if self.gguf_path else None
        return data


def train(
    records: Sequence[dict[str, Any]],
    base: Path,
    settings: TrainSettings,
    out_dir: Path,
    on_step: Callable[[StepInfo], None] | None = None,
    telemetry: Telemetry = OFF,
) -> TrainResult:
    """Train `base` (a .gguf or checkpoint folder) on chat records; write the result into out_dir."""
    settings.check()
    check_records(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(records, base, settings)
    finished = _finished(out_dir, fingerprint, settings.gguf_type)
    if finished is not None:
        return finished

    import torch

    from dspx_cli.finetune.base_model import load_base

    threads_before = torch.get_num_threads()
    share = CoreShare() if settings.threads is None else None
    torch.set_num_threads(settings.threads or threads_before)
    try:
        started = time.perf_counter()
        random.seed(settings.seed)
        torch.manual_seed(settings.seed)
        loaded = load_base(base)
        model = _with_lora(loaded.model, settings) if settings.lora is not None else loaded.model
        encoded = [encode(loaded.tokenizer, record["messages"]) for record in records]
        kept = [
            example for example in encoded if len(example.input_ids) <= settings.max_length and example.trained_tokens
        ]
        if not kept:
            raise FinetuneError(f"no training record fits max_length={settings.max_length} tokens")
        load_seconds = time.perf_counter() - started
        pad_id = (
            loaded.tokenizer.pad_token_id
            if loaded.tokenizer.pad_token_id is not None
            else loaded.tokenizer.eos_token_id
        )
        progress, resumed_from = _train_loop(model, kept, pad_id, settings, out_dir, fingerprint, on_step, share)

        started = time.perf_counter()
        with telemetry.span("export", {"dspx.export.gguf": loaded.gguf_template is not None}):
            if settings.lora is not None:
                model = model.merge_and_unload()
            from dspx_cli.finetune.export import export_checkpoint
            from dspx_cli.finetune.gguf_export import export_gguf

            checkpoint_dir = export_checkpoint(model, loaded.tokenizer, out_dir / MODEL_DIR, loaded.gguf_template)
            gguf_path = None
            if loaded.gguf_template is not None:
                gguf_path = export_gguf(model, loaded.gguf_template, out_dir / GGUF_FILE, settings.gguf_type)
        result = TrainResult(
            checkpoint_dir=checkpoint_dir,
            gguf_path=gguf_path,
            steps=progress.step,
            loss_curve=progress.losses,
            examples=len(kept),
            skipped_too_long=len(encoded) - len(kept),
            tokens=progress.tokens,
            trained_tokens=progress.trained_tokens,
            tokens_per_second=progress.tokens / progress.seconds if progress.seconds else 0.0,
            seconds=progress.seconds,
            resumed_from=resumed_from,
            load_seconds=load_seconds,
            export_seconds=time.perf_counter() - started,
        )
        _record(out_dir, fingerprint, settings.gguf_type, result)
        # The model files hold everything a finished run needs; a full fine-tuning checkpoint is
        # three times the model (weights and AdamW's two moments) and would only take disk.
        for checkpoint in out_dir.glob(f"{train_state.PREFIX}*"):
            shutil.rmtree(checkpoint, ignore_errors=True)
        return result
    finally:
        torch.set_num_threads(threads_before)


def _train_loop(
    model: Any,
    examples: list[Encoded],
    pad_id: int,
    settings: TrainSettings,
    out_dir: Path,
    fingerprint: str,
    on_step: Callable[[StepInfo], None] | None,
    share: CoreShare | None,
) -> tuple[train_state.Progress, int]:
    import torch

    lengths = [len(example.input_ids) for example in examples]
    per_epoch = math.ceil(len(examples) / settings.batch_size)
    total = per_epoch * settings.epochs
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(settings.warmup_steps, total))

    progress = train_state.Progress(fingerprint)
    checkpoint = train_state.latest(out_dir)
    if checkpoint is not None:
        progress = train_state.load(checkpoint, model, optimizer, scheduler, fingerprint)
    resumed_from = progress.step
    session_tokens, session_seconds = 0, 0.0

    model.train()
    for epoch in range(progress.step // per_epoch, settings.epochs):
        batches = epoch_order(lengths, settings.batch_size, settings.seed, epoch)
        for index in range(progress.step - epoch * per_epoch, per_epoch):
            batch = collate([examples[i] for i in batches[index]], pad_id)
            if share is not None and (threads := share.threads()) != torch.get_num_threads():
                torch.set_num_threads(threads)
            began = time.perf_counter()
            loss, labelled = causal_lm_loss(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - began

            tokens = int(batch["attention_mask"].sum())
            progress.step += 1
            progress.losses.append(float(loss.detach()))
            progress.tokens += tokens
            progress.trained_tokens += labelled
            progress.seconds += seconds
            session_tokens += tokens
            session_seconds += seconds
            if progress.step % settings.checkpoint_every == 0 or progress.step == total:
                train_state.save(out_dir, model, optimizer, scheduler, progress)
            if on_step is not None:
                rate = session_tokens / session_seconds if session_seconds else 0.0
                per_step = session_seconds / (progress.step - resumed_from)
                on_step(
                    StepInfo(
                        step=progress.step,
                        total_steps=total,
                        epoch=epoch + 1,
                        loss=progress.losses[-1],
                        learning_rate=float(scheduler.get_last_lr()[0]),
                        tokens_per_second=rate,
                        elapsed_seconds=progress.seconds,
                        eta_seconds=per_step * (total - progress.step),
                    )
                )
    model.eval()
    return progress, resumed_from


def _schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _with_lora(model: Any, settings: TrainSettings) -> Any:
    assert settings.lora is not None
    try:
        import peft
    except ImportError:
        raise FinetuneError("LoRA needs peft: pip install 'dspx_cli[hf]'") from None
    config = peft.LoraConfig(
        r=settings.lora.r,
        lora_alpha=settings.lora.alpha,
        lora_dropout=settings.lora.dropout,
        target_modules=list(settings.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():
            # peft asks transformers a deprecated question (is_gradient_checkpointing) on every wrap.
            warnings.simplefilter("ignore", FutureWarning)
            return peft.get_peft_model(model, config)
    except ValueError as exc:
        raise FinetuneError(f"lora.target_modules: {' '.join(str(exc).split())}") from None


def _fingerprint(records: Sequence[dict[str, Any]], base: Path, settings: TrainSettings) -> str:
    digest = hashlib.sha256()
    for part in (str(base.resolve()), settings.fingerprint_fields(), [record["messages"] for record in records]):
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


def _record(out_dir: Path, fingerprint: str, gguf_type: str, result: TrainResult) -> None:
    data = {"fingerprint": fingerprint, "gguf_type": gguf_type, **result.to_json()}
    write_text(out_dir / RESULT_FILE, json.dumps(data, indent=2) + "\n")


def _finished(out_dir: Path, fingerprint: str, gguf_type: str) -> TrainResult | None:
    """The recorded result of a finished run of the same training, re-exporting its GGUF first if
    only gguf_type changed; None when out_dir holds no such run."""
    path = out_dir / RESULT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        recorded = data.pop("fingerprint", None) if isinstance(data, dict) else None
    except (OSError, ValueError) as exc:
        raise FinetuneError(f"{path}: unreadable ({exc}); delete the folder to start over") from None
    if recorded != fingerprint:
        raise FinetuneError(
            f"{out_dir} holds the result of a different training run (other data, settings or base model); "
            "use a new output folder or delete it to start over"
        )
    if not (out_dir / MODEL_DIR).is_dir():
        return None
    written_type = data.pop("gguf_type", None)
    # The folder may have moved, or its result.json been edited: the model files are the ones in
    # out_dir, never paths read from the file (a rewritten GGUF must not land outside the folder).
    data["checkpoint_dir"] = out_dir / MODEL_DIR
    data["gguf_path"] = out_dir / GGUF_FILE if data.get("gguf_path") else None
    try:
        result = TrainResult(**data)
    except TypeError as exc:
        raise FinetuneError(f"{path}: unreadable ({exc}); delete the folder to start over") from None
    if result.gguf_path is not None and written_type != gguf_type:
        from dspx_cli.finetune.base_model import load_base
        from dspx_cli.finetune.gguf_export import export_gguf

        loaded = load_base(result.checkpoint_dir)
        if loaded.gguf_template is None:
            raise FinetuneError(f"{result.checkpoint_dir}: the GGUF it came from is gone; cannot write {gguf_type}")
        export_gguf(loaded.model, loaded.gguf_template, result.gguf_path, gguf_type)
        _record(out_dir, fingerprint, gguf_type, result)
    return result
