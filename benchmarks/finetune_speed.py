"""Training tokens/s of `dspx finetune`'s trainer beside a plain transformers loop, same data and model.

    python benchmarks/finetune_speed.py [--examples 16] [--batch-size 4] [--demos 0] [--lora] [--repeats 1]

The data: the support program's train split as chat records (ChatAdapter.format_finetune_data,
with --demos few-shot demos in each prompt). The model: the embedded SmolLM2 GGUF. Each side runs
in its own process (so each has its own peak RSS), one after the other, --repeats times,
alternating; the best run of each is compared. Both run the same batches in the same order with
the same optimizer (AdamW, same learning rate, gradient clipping) on 2 torch threads:
- plain: `model(**batch).loss`, backward, clip, step: the minimal hand-written loop;
- dspx: `dspx_cli.finetune.trainer.train` (one epoch, checkpoint only at the end), whose loss
  projects only the labelled positions onto the vocabulary.
Figure: plain's seconds per token / dspx's, i.e. how much slower dspx trains; target <= 1.11
(dspx >= 0.9x plain's tokens/s). Model load, checkpoint and export are excluded from both rates
and printed beside them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.figures import Figure, print_table  # noqa: E402

TARGET_RATIO = 1 / 0.9


def records(examples: int, demos: int) -> list[dict[str, object]]:
    from dspx_cli.adapters.chat import ChatAdapter
    from dspx_cli.program.loader import load_program

    program = load_program(ROOT / "programs" / "support.yaml")
    signature = program.signatures["route"]
    rows = [json.loads(line) for line in (ROOT / "datasets" / "support" / "train.jsonl").read_text().splitlines()]
    shots, pool = rows[:demos], rows[demos:]
    chosen = [pool[i % len(pool)] for i in range(examples)]
    adapter = ChatAdapter()
    return [
        adapter.format_finetune_data(signature, shots, {"message": row["message"]}, {"queue": row["queue"]})
        for row in chosen
    ]


def settings(batch_size: int, lora: bool) -> object:
    from dspx_cli.finetune.settings import LoraSettings, TrainSettings

    return TrainSettings(
        epochs=1,
        batch_size=batch_size,
        max_length=2048,
        checkpoint_every=10**6,
        lora=LoraSettings() if lora else None,
        threads=2,  # as the plain loop
    )


def child_dspx(data: list[dict[str, object]], batch_size: int, lora: bool) -> dict[str, float]:
    from dspx_cli.finetune.trainer import train
    from dspx_cli.lm.local_gguf import embedded_model_path

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = train(data, embedded_model_path(), settings(batch_size, lora), Path(out))  # type: ignore[arg-type]
        wall = time.perf_counter() - started
    return {
        "tokens": result.tokens,
        "seconds": result.seconds,
        "load": result.load_seconds,
        "other": wall - result.seconds - result.load_seconds,  # final checkpoint and export
        "loss": result.loss_curve[-1],
    }


def child_plain(data: list[dict[str, object]], batch_size: int, lora: bool) -> dict[str, float]:
    import torch

    from dspx_cli.finetune.base_model import load_base
    from dspx_cli.finetune.chat_data import collate, encode, epoch_order
    from dspx_cli.finetune.trainer import _with_lora
    from dspx_cli.lm.local_gguf import embedded_model_path

    chosen = settings(batch_size, lora)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    started = time.perf_counter()
    loaded = load_base(embedded_model_path())
    model = _with_lora(loaded.model, chosen) if lora else loaded.model  # type: ignore[arg-type]
    encoded = [encode(loaded.tokenizer, record["messages"]) for record in data]  # type: ignore[arg-type, index]
    load = time.perf_counter() - started
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=chosen.lr)  # type: ignore[attr-defined]
    model.train()
    tokens, seconds, loss = 0, 0.0, 0.0
    for batch_indices in epoch_order([len(e.input_ids) for e in encoded], batch_size, 0, 0):
        batch = collate([encoded[i] for i in batch_indices], loaded.tokenizer.pad_token_id)
        began = time.perf_counter()
        output = model(**batch)
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - began
        tokens += int(batch["attention_mask"].sum())
        loss = float(output.loss)
    return {"tokens": tokens, "seconds": seconds, "load": load, "other": 0.0, "loss": loss}


def measure(side: str, args: argparse.Namespace) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", side, "--examples", str(args.examples)]
    command += ["--batch-size", str(args.batch_size), "--demos", str(args.demos)] + (["--lora"] if args.lora else [])
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--demos", type=int, default=0)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--child", choices=("dspx", "plain"))
    args = parser.parse_args()
    if args.child:
        data = records(args.examples, args.demos)
        run = child_dspx if args.child == "dspx" else child_plain
        figures = run(data, args.batch_size, args.lora)
        figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(figures))
        return

    mode = "LoRA" if args.lora else "full"
    print(
        f"Fine-tuning speed ({mode}): {args.examples} support records, {args.demos} demos each, batch {args.batch_size}"
    )
    runs: dict[str, list[dict[str, float]]] = {"plain": [], "dspx": []}
    for _ in range(args.repeats):
        for side in ("plain", "dspx"):
            runs[side].append(measure(side, args))
    best = {side: max(found, key=lambda r: r["tokens"] / r["seconds"]) for side, found in runs.items()}
    for side, found in best.items():
        rates = ", ".join(f"{r['tokens'] / r['seconds']:.1f}" for r in runs[side])
        print(
            f"  {side:5}  {found['tokens'] / found['seconds']:7.1f} tokens/s (runs: {rates})  {found['tokens']:.0f} tokens "
            f"in {found['seconds']:.1f} s; load {found['load']:.1f} s, checkpoint+export {found['other']:.1f} s; "
            f"peak RSS {found['peak_rss_mb']:.0f} MB; last loss {found['loss']:.3f}"
        )
    plain, dspx = best["plain"], best["dspx"]
    ratio = (dspx["seconds"] / dspx["tokens"]) / (plain["seconds"] / plain["tokens"])
    print_table(
        [Figure("dspx time per token / plain loop's", ratio, "x", round(TARGET_RATIO, 3), "plain loop, same run")]
    )


if __name__ == "__main__":
    main()
