"""Providers beyond plain OpenAI: Anthropic's Messages API, Azure OpenAI and the OpenAI-compatible
presets, each against the real loopback server (tests/lm_server.py) or by its resolved endpoint.
No test reaches the internet: a preset is sent to loopback by overriding its api_base."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dspx_cli.errors import LMError
from dspx_cli.lm import LMConfig, LMRequest, LMResponse, create_lm
from dspx_cli.lm.anthropic import AnthropicLM, messages_url
from dspx_cli.lm.base import LM
from dspx_cli.lm.openai_compat import LMRequestError, OpenAICompatLM, resolve_endpoint
from dspx_cli.lm.providers import PROVIDERS
from dspx_cli.lm.retry import RetryingLM
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer, Reply

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-ant-test-0123456789-SECRET"
HELLO = LMRequest(messages=({"role": "user", "content": "hello"},))
KEY_VARIABLES = (
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "AZURE_API_KEY",
    "AZURE_API_VERSION",
    "OPENROUTER_API_KEY",
    "TOGETHER_API_KEY",
    "TOGETHERAI_API_KEY",
    "GROQ_API_KEY",
    "MISTRAL_API_KEY",
    "DEEPSEEK_API_KEY",
    "FIREWORKS_API_KEY",
    "OPENAI_API_KEY",
)


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real keys must neither leak into these tests nor change what they see.
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class SleepLog:
    """Records the pauses chosen instead of taking them (the server is still real)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def call(lm: LM, request: LMRequest = HELLO) -> LMResponse:
    try:
        return await lm.complete(request)
    finally:
        await lm.aclose()


def anthropic(server: LMServer, **settings: Any) -> AnthropicLM:
    settings.setdefault("api_key", SECRET)
    lm = create_lm(LMConfig(model="anthropic/claude-x", api_base=server.root, **settings))
    assert isinstance(lm, AnthropicLM)
    return lm


def failure(lm: LM) -> LMError:
    with pytest.raises(LMError) as caught:
        run(call(lm))
    message = str(caught.value)
    assert "\n" not in message and SECRET not in message
    return caught.value


# -- Anthropic: what is sent and how the reply reads --------------------------------------------


def test_anthropic_request_has_system_apart_headers_and_a_default_max_tokens(lm_server: LMServer) -> None:
    lm = anthropic(lm_server, temperature=0.3, extra={"top_p": 0.9})
    messages = (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    )
    adapter_json = {"response_format": {"type": "json_object"}, "stop": "\n\n"}
    response = run(call(lm, LMRequest(messages=messages, extra=adapter_json)))

    [sent] = lm_server.requests
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == SECRET
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert sent.body == {
        "model": "claude-x",
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ],
        "max_tokens": 4096,  # required by the API; the program gave none
        "temperature": 0.3,
        "top_p": 0.9,
        "stop_sequences": ["\n\n"],
    }  # no response_format: Anthropic has none, the prompt asks for JSON
    assert response.completions == ["echo: again"]
    assert response.finish_reasons == ["stop"]
    assert response.usage.prompt_tokens == 5 and response.usage.completion_tokens == 2
    assert response.model == "anthropic/claude-x"


def test_anthropic_max_tokens_and_n_as_n_requests(lm_server: LMServer) -> None:
    lm_server.stop_reason = "max_tokens"
    lm = anthropic(lm_server, max_tokens=64)
    response = run(call(lm, LMRequest(messages=HELLO.messages, n=3, max_tokens=32)))
    assert len(lm_server.requests) == 3
    assert all(r.body["max_tokens"] == 32 and "n" not in r.body for r in lm_server.requests)
    assert response.completions == ["echo: hello"] * 3
    assert response.finish_reasons == ["length"] * 3
    assert response.usage.prompt_tokens == 3 and response.usage.completion_tokens == 6


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://api.anthropic.com", "https://api.anthropic.com/v1/messages"),
        ("https://proxy.example/v1/", "https://proxy.example/v1/messages"),
        ("https://proxy.example/v1/messages", "https://proxy.example/v1/messages"),
    ],
)
def test_anthropic_url_from_api_base(base: str, url: str) -> None:
    assert messages_url(base) == url


def test_anthropic_key_from_the_environment_and_default_base(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LMError) as caught:
        create_lm(LMConfig(model="anthropic/claude-x"))
    assert str(caught.value) == (
        "model 'anthropic/claude-x' needs an API key: export ANTHROPIC_API_KEY, "
        "or set api_key in the lm section (api_key: ${ANTHROPIC_API_KEY})"
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    lm = create_lm(LMConfig(model="anthropic/claude-x"))
    assert isinstance(lm, AnthropicLM) and lm.url == "https://api.anthropic.com/v1/messages"
    assert lm.endpoint.auth_headers() == {"x-api-key": SECRET} and lm.endpoint.key_env == "ANTHROPIC_API_KEY"
    assert SECRET not in repr(lm)


# -- Anthropic: errors and retries ---------------------------------------------------------------


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def test_anthropic_4xx_is_one_line_with_the_servers_words(lm_server: LMServer) -> None:
    lm_server.push(Reply(status=400, json=anthropic_error("invalid_request_error", "max_tokens: too large")))
    error = failure(anthropic(lm_server))
    assert isinstance(error, LMRequestError) and not error.retryable
    assert "HTTP 400" in str(error) and "max_tokens: too large" in str(error)
    assert len(lm_server.requests) == 1

    lm_server.push(Reply(status=401, json=anthropic_error("authentication_error", "invalid x-api-key")))
    error = failure(anthropic(lm_server))
    assert "HTTP 401" in str(error) and "ANTHROPIC_API_KEY" in str(error) and "invalid x-api-key" in str(error)


def test_anthropic_429_529_and_500_are_retried_honouring_retry_after(lm_server: LMServer) -> None:
    lm_server.push(
        Reply(status=429, json=anthropic_error("rate_limit_error", "slow down"), headers={"Retry-After": "7"}),
        Reply(status=529, json=anthropic_error("overloaded_error", "Overloaded"), headers={"Retry-After": "3"}),
        Reply(status=500, json=anthropic_error("api_error", "oops")),
    )
    sleep = SleepLog()
    lm = RetryingLM(anthropic(lm_server), 3, base_delay=0.01, max_delay=0.05, sleep=sleep)
    assert run(call(lm)).completions == ["echo: hello"]
    assert len(lm_server.requests) == 4
    first, second, third = sleep.delays
    assert 7.0 <= first <= 7.01 and 3.0 <= second <= 3.01 and third <= 0.05


def test_anthropic_529_exhausted_is_one_line(lm_server: LMServer) -> None:
    lm_server.rule = lambda request, attempt: Reply(status=529, json=anthropic_error("overloaded_error", "Overloaded"))
    lm = RetryingLM(anthropic(lm_server), 1, base_delay=0.0, sleep=SleepLog())
    error = failure(lm)
    assert "gave up after 2 attempts" in str(error) and "HTTP 529" in str(error) and "Overloaded" in str(error)


# -- Azure OpenAI --------------------------------------------------------------------------------


def test_azure_url_api_key_header_and_api_version(lm_server: LMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    root = lm_server.root
    lm = create_lm(LMConfig(model="azure/my-gpt4o", api_base=root + "/", api_key=SECRET))
    assert isinstance(lm, OpenAICompatLM)
    run(call(lm))
    sent = lm_server.requests[-1]
    assert sent.path == "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
    assert sent.headers["api-key"] == SECRET and "authorization" not in sent.headers
    assert sent.body["model"] == "my-gpt4o" and sent.body["messages"] == [{"role": "user", "content": "hello"}]

    monkeypatch.setenv("AZURE_API_VERSION", "2025-01-01-preview")
    monkeypatch.setenv("AZURE_API_KEY", SECRET)
    run(call(create_lm(LMConfig(model="azure/my-gpt4o", api_base=root))))
    assert lm_server.requests[-1].path.endswith("?api-version=2025-01-01-preview")
    assert lm_server.requests[-1].headers["api-key"] == SECRET
    # The lm section's api_version wins over the environment.
    run(call(create_lm(LMConfig(model="azure/my-gpt4o", api_base=root, api_version="2024-06-01"))))
    assert lm_server.requests[-1].path.endswith("?api-version=2024-06-01")


def test_azure_needs_api_base_and_a_key(lm_server: LMServer) -> None:
    with pytest.raises(LMError, match=r"^model 'azure/dep' needs api_base: the Azure OpenAI resource endpoint"):
        create_lm(LMConfig(model="azure/dep", api_key=SECRET))
    # Azure's api_base is always given, so it does not excuse a missing key.
    with pytest.raises(LMError, match=r"needs an API key: export AZURE_API_KEY"):
        create_lm(LMConfig(model="azure/dep", api_base=lm_server.root))


# -- OpenAI-compatible presets -------------------------------------------------------------------

PRESETS = [
    ("gemini", "https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY"),
    ("openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    ("together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    ("together_ai", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    ("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    ("deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    ("fireworks", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    ("fireworks_ai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
]


@pytest.mark.parametrize(("prefix", "base", "variable"), PRESETS)
def test_preset_resolves_its_base_and_key_variable(
    prefix: str, base: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = f"{prefix}/some/model-1"
    with pytest.raises(LMError) as caught:
        create_lm(LMConfig(model=model))
    assert str(caught.value) == (
        f"model {model!r} needs an API key: export {variable}, or set api_key in the lm section (api_key: ${{{variable}}})"
    )
    monkeypatch.setenv(variable, SECRET)
    lm = create_lm(LMConfig(model=model))
    assert isinstance(lm, OpenAICompatLM)
    assert lm.endpoint.url == f"{base}/chat/completions" and lm.endpoint.model_name == "some/model-1"
    assert lm.endpoint.auth_headers() == {"Authorization": f"Bearer {SECRET}"}
    assert lm.endpoint.key_env == variable and PROVIDERS[prefix].key_env == variable


def test_together_accepts_litellms_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGETHERAI_API_KEY", SECRET)
    endpoint = resolve_endpoint(LMConfig(model="together/meta-llama/Llama-3-8b"))
    assert endpoint.api_key == SECRET and endpoint.key_env == "TOGETHERAI_API_KEY"


def test_a_users_api_base_overrides_a_preset(lm_server: LMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    lm = create_lm(LMConfig(model="gemini/gemini-2.0-flash", api_base=lm_server.api_base))
    assert run(call(lm)).completions == ["echo: hello"]
    sent = lm_server.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.body["model"] == "gemini-2.0-flash"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    # Without a key the user's own server is still asked (it may need none), as for openai/.
    monkeypatch.delenv("GEMINI_API_KEY")
    run(call(create_lm(LMConfig(model="groq/llama-3.1-8b", api_base=lm_server.api_base))))
    assert "authorization" not in lm_server.requests[-1].headers


# -- through the CLI: cache, usage, history, validate --------------------------------------------

REPLY = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"


def program(tmp_path: Path) -> Path:
    path = tmp_path / "qa.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            lm:
              model: anthropic/claude-x
              api_base: ${BASE}
              num_retries: 2
            modules:
              answer: {signature: "question -> answer"}
            """
        )
    )
    return path


def test_cli_run_through_anthropic_caches_counts_and_keeps_no_key(
    lm_server: LMServer, tmp_path: Path, isolated_cache: Path
) -> None:
    lm_server.responder = lambda body: REPLY
    lm_server.push(
        Reply(status=529, json=anthropic_error("overloaded_error", "Overloaded"), headers={"Retry-After": "0"})
    )
    path = program(tmp_path)
    usage_file = tmp_path / "usage.json"
    env = {"BASE": lm_server.root, "ANTHROPIC_API_KEY": SECRET}
    first = dspx("run", str(path), "-i", "question=Capital?", "--usage-file", str(usage_file), **env)
    assert first.returncode == 0 and first.stdout == "answer: Paris\n", first.stderr
    assert len(lm_server.requests) == 2  # the 529, retried
    sent = lm_server.requests[-1]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == SECRET
    assert "[[ ## question ## ]]" in sent.body["messages"][-1]["content"] and sent.body["system"]
    usage = json.loads(usage_file.read_text())["models"]["anthropic/claude-x"]
    assert usage["calls"] == 1 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0

    second = dspx("run", str(path), "-i", "question=Capital?", **env)
    assert second.returncode == 0 and second.stdout == "answer: Paris\n", second.stderr
    assert len(lm_server.requests) == 2 and "(1 cached)" in second.stderr

    records = [json.loads(line) for line in dspx("history", "-n", "2", "--json").stdout.splitlines()]
    assert [r["cached"] for r in records] == [False, True]
    assert records[0]["lm"]["model"] == "anthropic/claude-x" and records[0]["usage"]["prompt_tokens"] > 0
    stored = b"".join(p.read_bytes() for p in isolated_cache.rglob("*") if p.is_file())
    assert SECRET.encode() not in stored


def test_cli_missing_key_is_one_line_at_run_not_at_validate(lm_server: LMServer, tmp_path: Path) -> None:
    path = tmp_path / "qa.yaml"
    path.write_text("lm: anthropic/claude-x\nmodules:\n  answer: {signature: 'question -> answer'}\n")
    assert dspx("validate", str(path)).returncode == 0
    done = dspx("run", str(path), "-i", "question=q")
    assert done.returncode != 0 and "ANTHROPIC_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    reference = tmp_path / "openai.yaml"
    reference.write_text("lm: openai/gpt-4o-mini\nmodules:\n  answer: {signature: 'question -> answer'}\n")
    assert dspx("run", str(reference), "-i", "question=q").returncode == done.returncode


def test_validate_of_an_anthropic_program_imports_no_http_stack(tmp_path: Path) -> None:
    path = tmp_path / "qa.yaml"
    path.write_text("lm: {model: anthropic/claude-x, max_tokens: 100}\nmodules:\n  answer: {signature: 'q -> a'}\n")
    script = (
        "import sys, json, atexit\n"
        f"sys.argv = ['dspx', 'validate', {str(path)!r}]\n"
        "names = ('httpx', 'aiohttp', 'asyncio', 'dspx_cli.lm.anthropic', 'dspx_cli.lm.openai_http')\n"
        "atexit.register(lambda: print(json.dumps([m for m in names if m in sys.modules]), file=sys.stderr))\n"
        "from dspx_cli.cli.app import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def test_an_anthropic_embeddings_model_is_refused_in_one_line() -> None:
    with pytest.raises(LMError, match=r"^embeddings model 'anthropic/x': Anthropic's API offers no embeddings"):
        OpenAICompatLM(LMConfig(model="anthropic/x", api_key=SECRET), what="embeddings model")
