"""Trained weights as a transformers checkpoint folder: what `lm: local/path/to/folder` loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dspx_cli.finetune.atomic import write_folder
from dspx_cli.finetune.base_model import SOURCE_FILE


def export_checkpoint(model: Any, tokenizer: Any, folder: Path, gguf_template: Path | None) -> Path:
    """Write config, safetensors weights, generation config and tokenizer (with its chat template)
    into `folder`, replaced as a whole. `gguf_template` is remembered, so the folder can later be
    a base whose trained weights are again written as a GGUF."""

    def fill(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        source = {"gguf_template": str(gguf_template) if gguf_template else None}
        (staging / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")

    return write_folder(folder, fill)
