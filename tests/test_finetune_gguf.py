"""The finetune model layer's conversions on the real embedded model: GGUF -> transformers -> GGUF
and checkpoint folder, checked by what llama-cpp-python and dspx's checkpoint backend answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from dspx_cli.finetune.base_model import LoadedBase, load_base
from dspx_cli.finetune.errors import FinetuneError
from dspx_cli.finetune.export import export_checkpoint
from dspx_cli.finetune.gguf_export import export_gguf
from dspx_cli.finetune.gguf_names import permute, unpermute
from dspx_cli.lm.local_gguf import embedded_model_path
from tests.finetune_helpers import answers


@pytest.fixture(scope="module")
def base() -> LoadedBase:
    return load_base(embedded_model_path())


def _fields(path: Path) -> dict[str, object]:
    reader = GGUFReader(path)
    return {key: field.contents() for key, field in reader.fields.items() if not key.startswith("GGUF.")}


def test_permute_and_unpermute_are_inverse_and_not_the_identity() -> None:
    weights = np.arange(9 * 64 * 4, dtype=np.float32).reshape(9 * 64, 4)
    assert not np.array_equal(permute(weights, 9), weights)
    assert np.array_equal(unpermute(permute(weights, 9), 9), weights)


def test_the_embedded_model_loads_with_its_chat_template_and_tied_embeddings(base: LoadedBase) -> None:
    assert base.gguf_template == embedded_model_path().resolve()
    assert "<|im_start|>" in base.tokenizer.chat_template
    assert base.model.config.tie_word_embeddings
    assert base.model.lm_head.weight.data_ptr() == base.model.model.embed_tokens.weight.data_ptr()
    assert base.tokenizer.convert_ids_to_tokens(base.tokenizer.eos_token_id) == "<|im_end|>"


def test_untrained_export_in_the_source_types_is_the_original_file(base: LoadedBase, tmp_path: Path) -> None:
    # The round trip: dequantize, un-permute, float32 torch weights, re-permute, re-quantize.
    exported = export_gguf(base.model, embedded_model_path(), tmp_path / "roundtrip.gguf", "source")
    original, copy = GGUFReader(embedded_model_path()), GGUFReader(exported)
    assert [t.name for t in copy.tensors] == [t.name for t in original.tensors]
    for ours, theirs in zip(copy.tensors, original.tensors, strict=True):
        assert ours.tensor_type == theirs.tensor_type, ours.name
        assert np.asarray(ours.data).tobytes() == np.asarray(theirs.data).tobytes(), ours.name
    assert _fields(exported) == _fields(embedded_model_path())
    assert answers(f"local/{exported}") == answers("local/smollm2")


def test_f16_export_and_checkpoint_folder_answer_alike(base: LoadedBase, tmp_path: Path) -> None:
    gguf = export_gguf(base.model, embedded_model_path(), tmp_path / "model.gguf", "f16")
    folder = export_checkpoint(base.model, base.tokenizer, tmp_path / "model", base.gguf_template)
    fields, original = _fields(gguf), _fields(embedded_model_path())
    assert fields.pop("general.file_type") == 1  # LLAMA_FTYPE_MOSTLY_F16
    original.pop("general.file_type")
    assert fields == original  # tokenizer, chat template, hyperparameters copied
    assert {t.tensor_type.name for t in GGUFReader(gguf).tensors} == {"F16", "F32"}
    # llama.cpp on the F16 file and transformers on the folder run the same weights: a wrong q/k
    # permutation or a lost tied embedding would make the replies part at once.
    from_gguf, from_folder = answers(f"local/{gguf}"), answers(f"local/{folder}")
    assert from_gguf == from_folder
    assert all(reply.strip() for reply in from_gguf)
    assert load_base(folder).gguf_template == embedded_model_path().resolve()


def test_q8_0_export_loads_and_answers(base: LoadedBase, tmp_path: Path) -> None:
    gguf = export_gguf(base.model, embedded_model_path(), tmp_path / "q8.gguf", "q8_0")
    assert _fields(gguf)["general.file_type"] == 7
    # Q8_0 (like the original Q4_1) multiplies with 8-bit activations: its greedy replies follow
    # neither the F16 file's nor the original's exactly, so only "loads and answers" is checked.
    reply = answers(f"local/{gguf}", ("List three primary colors.",))[0]
    assert "Red" in reply or "red" in reply


def test_bad_base_and_type_are_one_line_errors(base: LoadedBase, tmp_path: Path) -> None:
    with pytest.raises(FinetuneError, match=r"expected a \.gguf file or a checkpoint folder"):
        load_base(tmp_path / "missing.bin")
    with pytest.raises(FinetuneError, match="gguf_type 'q4_k': expected one of f16, q8_0, source"):
        export_gguf(base.model, embedded_model_path(), tmp_path / "x.gguf", "q4_k")


def test_the_finetune_api_imports_no_heavy_library() -> None:
    # The CLI side reads TrainSettings while validating a program: that must stay light.
    import subprocess
    import sys

    code = (
        "import sys\nimport dspx_cli.finetune.trainer, dspx_cli.finetune.settings\n"
        "print([m for m in ('torch', 'transformers', 'peft', 'gguf', 'numpy', 'llama_cpp') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
