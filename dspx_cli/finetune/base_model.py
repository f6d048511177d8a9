"""The model to train, as transformers objects: the embedded GGUF (or any llama GGUF) or a checkpoint folder.

A GGUF is read with gguf-py, not with transformers' own `from_pretrained(gguf_file=...)`: the
weights are the same bit for bit (tests/test_finetune_gguf.py checks), but transformers parses
every metadata array in Python and took ~25 s for the 135M model where this takes a few seconds.
The tokenizer does come from transformers' GGUF converter (the vocabulary, merges, pre-tokenizer
and chat template as llama.cpp reads them); no file is downloaded.

Quantized tensors are dequantized to float32: training starts from exactly the numbers llama.cpp
computes with. A checkpoint folder written by `export.export_checkpoint` remembers the GGUF it came
from (`SOURCE_FILE`), so its trained weights can be written back as a GGUF with that file's metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspx_cli.errors import LMError
from dspx_cli.finetune.errors import FinetuneError

HF_EXTRA_HINT = "fine-tuning needs the hf extra: pip install 'dspx_cli[hf]'"
# Written beside config.json by export_checkpoint: which GGUF the weights started from.
SOURCE_FILE = "dspx_finetune.json"


@dataclass(eq=False)
class LoadedBase:
    model: Any  # transformers LlamaForCausalLM (typed loosely: this module imports without torch)
    tokenizer: Any  # a transformers fast tokenizer with the chat template
    gguf_template: Path | None  # the GGUF whose metadata an exported GGUF copies; None: none known


def load_base(base: Path) -> LoadedBase:
    """A `.gguf` file or a checkpoint folder (config.json + weights + tokenizer) on the CPU, float32."""
    _quiet_transformers()
    if base.is_dir():
        return _load_checkpoint(base)
    if base.suffix.lower() == ".gguf" and base.is_file():
        return _load_gguf(base)
    raise FinetuneError(f"base model {base}: expected a .gguf file or a checkpoint folder with config.json")


def gguf_metadata(reader: Any) -> dict[str, Any]:
    """Every key/value field of a GGUFReader as Python values (the GGUF.* header fields left out)."""
    return {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}


def _quiet_transformers() -> None:
    try:
        import transformers
    except ImportError:
        raise FinetuneError(HF_EXTRA_HINT) from None
    # Progress bars and load warnings on stderr would break the CLI's own output.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _load_checkpoint(folder: Path) -> LoadedBase:
    from dspx_cli.lm.local_hf import open_checkpoint

    try:
        model, tokenizer = open_checkpoint(folder)
    except LMError as exc:
        raise FinetuneError(f"base model: {exc}") from None
    return LoadedBase(model, tokenizer, _recorded_template(folder))


def _recorded_template(folder: Path) -> Path | None:
    """The GGUF an exported folder says it came from, if that file is still there. The folder may
    come from anyone: a malformed record means no GGUF output rather than an error."""
    try:
        recorded = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    template = recorded.get("gguf_template") if isinstance(recorded, dict) else None
    if isinstance(template, str) and template.lower().endswith(".gguf") and Path(template).is_file():
        return Path(template)
    return None


def _load_gguf(path: Path) -> LoadedBase:
    import numpy as np
    import torch
    import transformers
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from dspx_cli.finetune.gguf_names import heads_for, hf_name, unpermute

    reader = GGUFReader(path)
    meta = gguf_metadata(reader)
    if meta.get("general.architecture") != "llama":
        raise FinetuneError(
            f"{path}: only llama-architecture GGUF files can be fine-tuned (this is {meta.get('general.architecture')!r})"
        )
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if not tokenizer.chat_template:
        raise FinetuneError(f"{path}: the file has no chat template (tokenizer.chat_template)")
    config = _llama_config(meta, tokenizer, tied=all(t.name != "output.weight" for t in reader.tensors))
    n_head, n_head_kv = config.num_attention_heads, config.num_key_value_heads

    state: dict[str, Any] = {}
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        if name is None:
            raise FinetuneError(f"{path}: unexpected tensor {tensor.name}")
        weights = dequantize(tensor.data, tensor.tensor_type)
        heads = heads_for(tensor.name, n_head, n_head_kv)
        if heads is not None:
            weights = unpermute(weights, heads)
        state[name] = torch.from_numpy(np.array(weights, dtype=np.float32))  # a writable copy
    # Random initialisation of 135M weights that are overwritten next costs seconds; skip it.
    with _no_init_weights():
        model = transformers.LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not (config.tie_word_embeddings and key == "lm_head.weight")]
    if missing or unexpected:
        raise FinetuneError(
            f"{path}: weights do not fit a llama model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.tie_weights()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return LoadedBase(model, tokenizer, path.resolve())


def _no_init_weights() -> Any:
    try:
        from transformers.initialization import no_init_weights  # transformers 5
    except ImportError:
        from transformers.modeling_utils import no_init_weights  # type: ignore[attr-defined,no-redef]
    return no_init_weights()


def _llama_config(meta: dict[str, Any], tokenizer: Any, tied: bool) -> Any:
    import transformers

    def get(key: str) -> Any:
        if f"llama.{key}" not in meta:
            raise FinetuneError(f"the GGUF has no llama.{key}")
        return meta[f"llama.{key}"]

    n_head = int(get("attention.head_count"))
    hidden = int(get("embedding_length"))
    return transformers.LlamaConfig(
        vocab_size=int(meta.get("llama.vocab_size") or len(meta["tokenizer.ggml.tokens"])),
        hidden_size=hidden,
        intermediate_size=int(get("feed_forward_length")),
        num_hidden_layers=int(get("block_count")),
        num_attention_heads=n_head,
        num_key_value_heads=int(meta.get("llama.attention.head_count_kv", n_head)),
        head_dim=int(meta.get("llama.rope.dimension_count", hidden // n_head)),
        max_position_embeddings=int(get("context_length")),
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon")),
        rope_parameters={"rope_type": "default", "rope_theta": float(meta.get("llama.rope.freq_base", 10000.0))},
        tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
