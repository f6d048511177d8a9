"""Trained weights as a GGUF file that llama-cpp-python runs like the file they came from.

The template GGUF gives everything but the weights: architecture and hyperparameters, the
tokenizer (vocabulary, merges, special tokens) and the chat template, copied field by field with
their GGUF types, so llama.cpp formats prompts and stops exactly as for the original. Only
`general.file_type` changes, to the type written here.

Types: "f16" and "q8_0" write every matrix so; "source" writes each tensor in the template's own
type (Q4_1 and Q8_0 for the embedded model). Re-quantizing weights that were only dequantized
gives the template's bytes back, so an untrained "source" export answers exactly as the original;
an F16 file of the same weights does not always: llama.cpp multiplies Q4_1 weights with
activations rounded to 8 bits, F16 weights with float activations, and greedy answers of a 135M
model can part after a few tokens (docs/architecture.md, "Fine-tuning").

Weights go back through the inverse of the load: q_proj/k_proj rows are re-permuted into
llama.cpp's rotary layout (gguf_names.permute), and a model with tied embeddings writes no
`output.weight` (llama.cpp then reads the output projection from `token_embd`). Norms stay float32,
as convert_hf_to_gguf.py keeps 1-D tensors; matrices are F16 or Q8_0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dspx_cli.finetune.atomic import write_file
from dspx_cli.finetune.errors import FinetuneError

GGUF_TYPES = ("f16", "q8_0", "source")
# llama.cpp's LLAMA_FTYPE values, for general.file_type ("source" keeps the template's).
_FILE_TYPES = {"f16": 1, "q8_0": 7}


def export_gguf(model: Any, template: Path, out_path: Path, gguf_type: str = "f16") -> Path:
    """Write `model`'s weights into a GGUF at `out_path` with `template`'s metadata (atomically)."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import quantize

    from dspx_cli.finetune.gguf_names import heads_for, hf_name, permute

    if gguf_type not in GGUF_TYPES:
        raise FinetuneError(f"gguf_type {gguf_type!r}: expected one of {', '.join(GGUF_TYPES)}")
    reader = GGUFReader(template)
    config = model.config
    state = {name: tensor.detach().to("cpu").float().numpy() for name, tensor in model.state_dict().items()}

    names = [tensor.name for tensor in reader.tensors]
    source_types = {tensor.name: tensor.tensor_type for tensor in reader.tensors}
    if not config.tie_word_embeddings and "output.weight" not in names:
        names.append("output.weight")

    def fill(path: Path) -> None:
        writer = GGUFWriter(path, arch=str(reader.fields["general.architecture"].contents()))
        alignment = reader.fields.get("general.alignment")
        if alignment is not None:
            writer.data_alignment = int(alignment.contents())
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":  # the writer adds the architecture
                continue
            if key == "general.file_type" and gguf_type in _FILE_TYPES:
                writer.add_uint32(key, _FILE_TYPES[gguf_type])
                continue
            main = field.types[0]
            sub = field.types[-1] if main == GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), main, sub)
        for name in names:
            hf = hf_name(name)
            if hf is None or hf not in state:
                raise FinetuneError(f"the model has no weights for the GGUF tensor {name} ({hf})")
            weights = state[hf]
            heads = heads_for(name, config.num_attention_heads, config.num_key_value_heads)
            if heads is not None:
                weights = permute(weights, heads)
            if weights.ndim == 1:
                kind = GGMLQuantizationType.F32
            elif gguf_type == "source":
                kind = source_types.get(name, GGMLQuantizationType.F16)
            else:
                kind = GGMLQuantizationType.F16 if gguf_type == "f16" else GGMLQuantizationType.Q8_0
            weights = np.ascontiguousarray(weights, dtype=np.float32)
            if kind == GGMLQuantizationType.F32:
                writer.add_tensor(name, weights)
            elif kind == GGMLQuantizationType.F16:
                writer.add_tensor(name, weights.astype(np.float16))
            else:
                try:
                    packed = quantize(weights, kind)
                except NotImplementedError:
                    raise FinetuneError(
                        f"gguf_type source: gguf-py cannot write {kind.name} ({name}); use f16 or q8_0"
                    ) from None
                writer.add_tensor(name, packed, raw_dtype=kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    out_path.parent.mkdir(parents=True, exist_ok=True)
    return write_file(out_path, fill)
