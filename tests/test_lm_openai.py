"""The OpenAI-compatible client against a real HTTP server on loopback (tests/lm_server.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dspx_cli.errors import LMError
from dspx_cli.lm import LMConfig, LMRequest, LMResponse, create_lm
from dspx_cli.lm.openai_compat import LMRequestError, OpenAICompatLM, resolve_endpoint
from dspx_cli.lm.retry import RetryingLM
from dspx_cli.lm.structured_outputs import SchemaRefusals, catalog_mode
from tests.lm_server import LMServer, RecordedRequest, Reply, error_body

T = TypeVar("T")
SECRET = "sk-test-0123456789abcdef-SECRET"
HELLO = LMRequest(messages=({"role": "user", "content": "hello"},))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def call(lm: OpenAICompatLM, request: LMRequest = HELLO) -> LMResponse:
    try:
        return await lm.complete(request)
    finally:
        await lm.aclose()


def make_lm(server: LMServer, model: str = "openai/gpt-test", **settings: Any) -> OpenAICompatLM:
    lm = create_lm(LMConfig(model=model, api_base=server.api_base, **settings))
    assert isinstance(lm, OpenAICompatLM)
    return lm


def failure(lm: OpenAICompatLM, request: LMRequest = HELLO) -> LMRequestError:
    with pytest.raises(LMRequestError) as caught:
        run(call(lm, request))
    message = str(caught.value)
    assert "\n" not in message and SECRET not in message
    return caught.value


@pytest.fixture(autouse=True)
def _no_ambient_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real key must neither leak into these tests nor change what they see.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


# -- what is sent -----------------------------------------------------------------------------


def test_request_body_strips_provider_and_passes_settings_and_extra(lm_server: LMServer) -> None:
    lm = make_lm(lm_server, temperature=0.7, max_tokens=99, extra={"top_p": 0.5, "seed": 1})
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"})
    request = LMRequest(messages=messages, temperature=0.2, n=2, extra={"seed": 7, "stop": ["\n\n"]})
    response = run(call(lm, request))

    sent = lm_server.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {
        "model": "gpt-test",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "temperature": 0.2,  # the request's setting wins over the config's default
        "max_tokens": 99,  # the config's default fills what the request leaves open
        "n": 2,
        "top_p": 0.5,
        "seed": 7,  # request extra over config extra
        "stop": ["\n\n"],
    }
    assert response.completions == ["echo: hi", "echo: hi"]
    assert response.model == "openai/gpt-test"


def test_unset_sampling_settings_are_left_to_the_server(lm_server: LMServer) -> None:
    run(call(make_lm(lm_server)))
    body = lm_server.requests[-1].body
    assert "temperature" not in body and "max_tokens" not in body
    assert "n" not in body  # DSPy leaves n = 1 out, and some servers reject the parameter


def test_named_settings_win_over_extra(lm_server: LMServer) -> None:
    run(call(make_lm(lm_server, extra={"model": "other", "temperature": 1.5}), LMRequest(HELLO.messages, 0.0)))
    body = lm_server.requests[-1].body
    assert body["model"] == "gpt-test" and body["temperature"] == 0.0


def test_unknown_prefix_with_api_base_is_sent_verbatim(lm_server: LMServer) -> None:
    run(call(make_lm(lm_server, model="HuggingFaceTB/SmolLM2-135M-Instruct")))
    assert lm_server.requests[-1].body["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    run(call(make_lm(lm_server, model="vllm/meta-llama/Llama-3.1-8B")))
    assert lm_server.requests[-1].body["model"] == "meta-llama/Llama-3.1-8B"


def test_authorization_header_only_with_a_key(lm_server: LMServer) -> None:
    run(call(make_lm(lm_server, api_key=SECRET)))
    assert lm_server.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    run(call(make_lm(lm_server)))
    assert "authorization" not in lm_server.requests[-1].headers


def test_openai_prefix_reads_the_key_from_the_environment(lm_server: LMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    run(call(make_lm(lm_server)))
    assert lm_server.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    run(call(make_lm(lm_server, model="vllm/x")))  # only hosted OpenAI reads OPENAI_API_KEY
    assert "authorization" not in lm_server.requests[-1].headers


def test_n_completions_in_index_order_and_usage(lm_server: LMServer) -> None:
    lm_server.push(
        Reply(
            json={
                "choices": [
                    {"index": 1, "message": {"role": "assistant", "content": "second"}, "finish_reason": "length"},
                    {"index": 0, "message": {"role": "assistant", "content": "first"}, "finish_reason": "stop"},
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
            }
        )
    )
    response = run(call(make_lm(lm_server), LMRequest(HELLO.messages, n=2)))
    assert response.completions == ["first", "second"]
    assert response.finish_reasons == ["stop", "length"]
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.total_tokens) == (12, 5, 17)
    assert response.latency_s > 0


def test_replies_computed_from_the_messages(lm_server: LMServer) -> None:
    lm_server.responder = lambda body: [f"{body['messages'][-1]['content']} #{i}" for i in range(body["n"])]
    response = run(call(make_lm(lm_server), LMRequest(({"role": "user", "content": "q"},), n=3)))
    assert response.completions == ["q #0", "q #1", "q #2"]
    assert response.usage.prompt_tokens == 1 and response.usage.completion_tokens == 6


def test_one_instance_reuses_its_connection(lm_server: LMServer) -> None:
    lm = make_lm(lm_server)

    async def three_calls() -> None:
        try:
            for _ in range(3):
                await lm.complete(HELLO)
        finally:
            await lm.aclose()

    run(three_calls())
    assert len({request.client_port for request in lm_server.requests}) == 1


def test_secrets_stay_out_of_reprs(lm_server: LMServer) -> None:
    config = LMConfig(model="openai/gpt-test", api_base=lm_server.api_base, api_key=SECRET)
    lm = create_lm(config)
    assert isinstance(lm, OpenAICompatLM)
    for shown in (repr(config), str(config.redacted()), repr(lm), repr(lm.endpoint)):
        assert SECRET not in shown


# -- what fails, and what the message says ----------------------------------------------------


def test_401_without_a_key_says_how_to_set_one(lm_server: LMServer) -> None:
    lm_server.push(Reply(status=401, json=error_body("You didn't provide an API key.")))
    error = failure(make_lm(lm_server))
    assert error.status == 401 and not error.retryable
    assert "no API key was sent" in str(error) and "OPENAI_API_KEY" in str(error)
    assert "You didn't provide an API key." in str(error)


def test_401_with_a_key_never_shows_it_even_when_the_server_echoes_it(lm_server: LMServer) -> None:
    lm_server.push(Reply(status=401, json=error_body(f"Incorrect API key provided: {SECRET}")))
    error = failure(make_lm(lm_server, api_key=SECRET))
    assert "was rejected" in str(error) and "Incorrect API key provided: ***" in str(error)


def test_403_is_a_key_problem_too(lm_server: LMServer) -> None:
    lm_server.push(Reply(status=403, json=error_body("project has no access to model gpt-test")))
    error = failure(make_lm(lm_server, api_key=SECRET))
    assert str(error).startswith(f"HTTP 403 from {lm_server.api_base}/chat/completions: the API key was rejected")
    assert "project has no access to model gpt-test" in str(error)


def test_404_names_the_url_and_the_model(lm_server: LMServer) -> None:
    lm_server.push(Reply(status=404, json=error_body("The model `gpt-test` does not exist")))
    error = failure(make_lm(lm_server, api_key=SECRET))
    assert str(error) == (
        f"HTTP 404 from {lm_server.api_base}/chat/completions: the model 'gpt-test' or the api_base is wrong: "
        "The model `gpt-test` does not exist"
    )


def test_404_hints_at_a_missing_v1(lm_server: LMServer) -> None:
    lm_server.push(Reply(status=404, body=b"404 page not found", headers={"Content-Type": "text/plain"}))
    lm = create_lm(LMConfig(model="ollama/llama3", api_base=f"http://127.0.0.1:{lm_server.port}"))
    assert isinstance(lm, OpenAICompatLM)
    error = failure(lm)
    assert "usually ends in /v1" in str(error) and "404 page not found" in str(error)


def test_400_shows_the_server_message(lm_server: LMServer) -> None:
    lm_server.push(Reply(status=400, json=error_body("max_tokens is too large: 99999999")))
    error = failure(make_lm(lm_server))
    assert str(error) == (
        f"HTTP 400 from {lm_server.api_base}/chat/completions (model 'gpt-test'): max_tokens is too large: 99999999"
    )
    assert not error.retryable


def test_400_with_a_fastapi_detail(lm_server: LMServer) -> None:
    lm_server.push(Reply(status=400, json={"detail": "messages: field required"}))
    assert str(failure(make_lm(lm_server))).endswith(": messages: field required")


def test_500_is_retryable_and_shows_the_message(lm_server: LMServer) -> None:
    lm_server.push(Reply(status=500, json=error_body("The server had an error", "server_error")))
    error = failure(make_lm(lm_server))
    assert str(error) == f"HTTP 500 server error from {lm_server.api_base}/chat/completions: The server had an error"
    assert error.status == 500 and error.retryable


def test_429_carries_retry_after(lm_server: LMServer) -> None:
    lm_server.push(Reply(status=429, json=error_body("Rate limit reached"), headers={"Retry-After": "3"}))
    error = failure(make_lm(lm_server))
    assert "HTTP 429 rate limited" in str(error) and "retry after 3s" in str(error)
    assert "Rate limit reached" in str(error)
    assert error.retryable and error.retry_after == 3.0


def test_connection_refused_on_a_closed_port(transport: str) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lm = create_lm(LMConfig(model="llamacpp/any", api_base=f"http://127.0.0.1:{port}/v1", api_key=SECRET))
    assert isinstance(lm, OpenAICompatLM)
    error = failure(lm)
    assert str(error).startswith(f"cannot connect to http://127.0.0.1:{port}/v1: is the server running?")
    assert error.retryable


def test_timeout_against_a_stalled_server(lm_server: LMServer, transport: str) -> None:
    lm_server.push(Reply.stall(5.0))
    error = failure(make_lm(lm_server, timeout=0.5, api_key=SECRET))
    assert str(error).startswith(f"timed out after 0.5s waiting for {lm_server.api_base}/chat/completions")
    assert error.retryable


def test_non_json_body(lm_server: LMServer, transport: str) -> None:
    lm_server.push(Reply(body=b"<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}))
    error = failure(make_lm(lm_server))
    assert str(error) == (
        f"{lm_server.api_base}/chat/completions replied HTTP 200 with a body that is not JSON: "
        '"<html>Bad Gateway</html>" (is api_base an OpenAI-compatible /v1 endpoint?)'
    )


def test_json_without_choices(lm_server: LMServer) -> None:
    lm_server.push(Reply(json={"object": "list", "data": []}))
    error = failure(make_lm(lm_server))
    assert "replied without choices" in str(error) and '"data": []' in str(error)


@pytest.mark.parametrize("fault", [Reply.reset(), Reply.close()], ids=["reset", "close"])
def test_connection_dropped_without_a_reply(lm_server: LMServer, fault: Reply, transport: str) -> None:
    lm_server.push(fault)
    error = failure(make_lm(lm_server))
    assert str(error).startswith(f"the connection to {lm_server.api_base}/chat/completions closed before a reply")
    assert error.retryable


def test_client_recovers_after_a_dropped_connection(lm_server: LMServer, transport: str) -> None:
    lm = make_lm(lm_server)

    async def drop_then_retry() -> LMResponse:
        try:
            with pytest.raises(LMRequestError):
                await lm.complete(HELLO)
            return await lm.complete(HELLO)
        finally:
            await lm.aclose()

    lm_server.push(Reply.reset())
    assert run(drop_then_retry()).completions == ["echo: hello"]


# -- model strings and configs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "api_base", "sent"),
    [
        ("openai/gpt-4o-mini", "https://api.openai.com/v1", "gpt-4o-mini"),
        ("vllm/Qwen/Qwen2.5-7B", "http://localhost:8000/v1", "Qwen/Qwen2.5-7B"),
        ("ollama/llama3.2:1b", "http://localhost:11434/v1", "llama3.2:1b"),
        ("llamacpp/smol", "http://localhost:8080/v1", "smol"),
    ],
)
def test_provider_defaults(model: str, api_base: str, sent: str) -> None:
    endpoint = resolve_endpoint(LMConfig(model=model, api_key=SECRET))
    assert (endpoint.api_base, endpoint.model_name, endpoint.api_key) == (api_base, sent, SECRET)


def test_hosted_openai_without_a_key_fails_before_any_call() -> None:
    with pytest.raises(LMError) as caught:
        create_lm(LMConfig(model="openai/gpt-4o-mini"))
    assert str(caught.value) == (
        "model 'openai/gpt-4o-mini' needs an API key: export OPENAI_API_KEY, "
        "or set api_key in the lm section (api_key: ${OPENAI_API_KEY})"
    )


def test_explicit_api_base_wins_and_loses_its_trailing_slash() -> None:
    endpoint = resolve_endpoint(LMConfig(model="ollama/x", api_base="http://gpu-box:9000/v1/"))
    assert endpoint.url == "http://gpu-box:9000/v1/chat/completions"


def test_unknown_model_lists_the_accepted_forms() -> None:
    with pytest.raises(LMError) as caught:
        create_lm(LMConfig(model="gpt-4o-mini"))
    message = str(caught.value)
    for form in ("local/smollm2", ".gguf", "openai/<model>", "vllm/<model>", "ollama/<model>", "api_base"):
        assert form in message


def test_missing_local_file_is_named(tmp_path: Any) -> None:
    with pytest.raises(LMError, match=r"no such file or folder: .*missing\.gguf"):
        create_lm(LMConfig(model="missing.gguf"), base_dir=tmp_path)


def test_config_hash_and_equality_ignore_extra_order() -> None:
    one = LMConfig(model="openai/x", extra={"a": 1, "b": [1, 2]})
    two = LMConfig(model="openai/x", extra={"b": [1, 2], "a": 1})
    assert one == two and hash(one) == hash(two) and len({one, two}) == 1
    assert LMConfig(model="openai/x", api_key="k1") != LMConfig(model="openai/x", api_key="k2")


def test_redacted_never_has_the_key() -> None:
    config = LMConfig(model="openai/x", api_key=SECRET, temperature=0.0, extra={"seed": 1})
    assert config.redacted() == {"model": "openai/x", "temperature": 0.0, "timeout": 120.0, "extra": {"seed": 1}}


def test_from_model_string() -> None:
    assert LMConfig.from_model_string(" local/smollm2 ") == LMConfig(model="local/smollm2")
    assert LMConfig.from_model_string("qwen2.5@http://127.0.0.1:8000/v1") == LMConfig(
        model="qwen2.5", api_base="http://127.0.0.1:8000/v1"
    )
    with pytest.raises(ValueError):
        LMConfig.from_model_string("  ")


# -- the aiohttp fast path sends and reads what httpx's client does (the `transport` fixture: both) --


TRANSPORTS = ["aiohttp", "httpx"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DSPX_HTTP_TRANSPORT", request.param)
    return str(request.param)


def test_both_transports_send_the_same_headers(lm_server: LMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = {}
    for name in TRANSPORTS:
        monkeypatch.setenv("DSPX_HTTP_TRANSPORT", name)
        run(call(make_lm(lm_server, api_key=SECRET)))
        sent[name] = lm_server.requests[-1].headers
    assert sent["aiohttp"] == sent["httpx"]
    assert sent["aiohttp"]["authorization"] == f"Bearer {SECRET}"
    assert sent["aiohttp"]["content-type"] == "application/json"


def test_a_compressed_reply_is_decoded(lm_server: LMServer, transport: str) -> None:
    import gzip
    import json as stdlib_json

    body = {"choices": [{"index": 0, "message": {"content": "zipped"}, "finish_reason": "stop"}]}
    lm_server.push(Reply(body=gzip.compress(stdlib_json.dumps(body).encode()), headers={"Content-Encoding": "gzip"}))
    assert run(call(make_lm(lm_server))).completions == ["zipped"]


def test_a_reply_that_does_not_decode(lm_server: LMServer, transport: str) -> None:
    lm_server.push(Reply(body=b"not gzip at all", headers={"Content-Encoding": "gzip"}))
    error = failure(make_lm(lm_server))
    assert "replied with a body that cannot be decoded" in str(error) and error.retryable


def test_non_json_body_is_read_in_its_charset(lm_server: LMServer, transport: str) -> None:
    lm_server.push(
        Reply(body="<p>caf\u00e9</p>".encode("latin-1"), headers={"Content-Type": "text/html; charset=latin-1"})
    )
    assert '"<p>caf\u00e9</p>"' in str(failure(make_lm(lm_server)))


def test_cookies_a_server_sets_are_sent_back(lm_server: LMServer, transport: str) -> None:
    lm = make_lm(lm_server)

    async def twice() -> None:
        try:
            await lm.complete(HELLO)
            await lm.complete(HELLO)
        finally:
            await lm.aclose()

    lm_server.push(Reply(json={"choices": [{"message": {"content": "hi"}}]}, headers={"Set-Cookie": "route=b7"}))
    run(twice())
    assert "cookie" not in lm_server.requests[-2].headers
    assert lm_server.requests[-1].headers.get("cookie") == "route=b7"


# -- response_format: which models get a schema, and servers that refuse one ------------------

SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "DSPyProgramOutputs", "strict": True, "schema": {"type": "object"}},
}
ASK_JSON = LMRequest(messages=HELLO.messages, extra={"response_format": SCHEMA})
FIXTURES = Path(__file__).parent / "fixtures"
# Entries of DSPy's (LiteLLM's) catalog that no family rule reproduces: one-off flags on single models.
CATALOG_ODDITIES = {
    "daybreak-blue-latest",
    "daybreak-red-latest",
    "gpt-5.5-cyber",
    "gpt-5.5-cyber-preview",
    "gpt-6-astra-law",
    "gpt-6-cyber",
    "gpt-6-rosalind",
    "gpt-6.1-terra",
    "gpt-audio-mini-2025-10-06",
}


def test_response_format_modes_follow_dspy_for_its_catalog() -> None:
    recorded = json.loads((FIXTURES / "dspy_response_format_modes.json").read_text())["modes"]
    assert len(recorded) > 100
    differ = {
        name: (mode, catalog_mode(None, name)) for name, mode in recorded.items() if catalog_mode(None, name) != mode
    }
    assert set(differ) == CATALOG_ODDITIES
    # The cases that matter most: names DSPy does not know (any custom server) get no response_format.
    assert recorded["smollm2"] == catalog_mode(None, "smollm2") == "none"
    assert recorded["gpt-4o-mini"] == catalog_mode("openai", "gpt-4o-mini") == "json_schema"
    assert recorded["gpt-4"] == catalog_mode(None, "gpt-4") == "json_object"
    assert catalog_mode("vllm", "gpt-4o-mini") == catalog_mode("ollama", "llama3") == "none"


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        ("openai/gpt-4o-mini", SCHEMA),
        ("gpt-4.1", SCHEMA),  # a bare name on an api_base is DSPy's openai/<name>
        ("openai/gpt-4-turbo", {"type": "json_object"}),
        ("openai/my-finetune", None),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", None),
        ("vllm/gpt-4o-mini", None),
    ],
)
def test_the_adapters_response_format_is_sent_only_to_models_that_take_it(
    lm_server: LMServer, model: str, sent: dict[str, Any] | None
) -> None:
    run(call(make_lm(lm_server, model=model), ASK_JSON))
    assert lm_server.requests[-1].body.get("response_format") == sent


def test_a_response_format_the_program_sets_is_sent_as_written(lm_server: LMServer) -> None:
    mine = {"type": "json_object"}
    lm = make_lm(lm_server, model="openai/my-finetune", extra={"response_format": mine})
    run(call(lm, LMRequest(messages=HELLO.messages, extra={"response_format": mine})))
    assert lm_server.requests[-1].body["response_format"] == mine


@pytest.mark.parametrize("status", [400, 422, 500])
def test_a_refused_schema_is_asked_again_at_once_in_json_mode_and_remembered(
    lm_server: LMServer, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    # llama-cpp-python's server answers a json_schema request with HTTP 500.
    def rule(request: RecordedRequest, attempt: int) -> Reply | None:
        if request.body["response_format"]["type"] == "json_schema":
            return Reply(status=status, json=error_body("cannot handle this response_format"))
        return None

    lm_server.rule = rule
    refusals = SchemaRefusals()

    async def go() -> list[LMResponse]:
        # Behind the retry layer, as a run builds it: a refusal must not cost the retries.
        lm = RetryingLM(make_lm(lm_server, model="openai/gpt-4o-mini", num_retries=3), 3, base_delay=0.0)
        other = make_lm(lm_server, model="openai/gpt-4o-mini", timeout=30.0)
        other.refusals = refusals
        assert isinstance(lm.inner, OpenAICompatLM)
        lm.inner.refusals = refusals
        try:
            return [await lm.complete(ASK_JSON), await lm.complete(ASK_JSON), await other.complete(ASK_JSON)]
        finally:
            await lm.aclose()
            await other.aclose()

    with caplog.at_level(logging.WARNING, logger="dspx_cli"):
        responses = run(go())
    assert [r.completions for r in responses] == [["echo: hello"]] * 3
    formats = [r.body["response_format"]["type"] for r in lm_server.requests]
    assert formats == ["json_schema", "json_object", "json_object", "json_object"]
    warnings = [r.getMessage() for r in caplog.records if "refused response_format json_schema" in r.getMessage()]
    assert len(warnings) == 1 and f"HTTP {status}" in warnings[0]


def test_a_server_failing_in_json_mode_too_is_not_marked_as_refusing_the_schema(lm_server: LMServer) -> None:
    lm_server.rule = lambda request, attempt: Reply(status=503, json=error_body("overloaded"))
    lm = make_lm(lm_server, model="openai/gpt-4o-mini")
    error = failure(lm, ASK_JSON)
    assert error.status == 503 and error.retryable
    assert not lm.refusals.refused(lm.endpoint.url, lm.endpoint.model_name)
    assert [r.body["response_format"]["type"] for r in lm_server.requests] == ["json_schema", "json_object"]


@pytest.mark.parametrize("status", [401, 404, 429])
def test_errors_that_are_not_about_the_schema_are_not_asked_again(lm_server: LMServer, status: int) -> None:
    lm_server.push(Reply(status=status, json=error_body("no")))
    assert failure(make_lm(lm_server, model="openai/gpt-4o-mini"), ASK_JSON).status == status
    assert len(lm_server.requests) == 1


def test_a_schema_the_program_sets_itself_also_falls_back_once_refused(lm_server: LMServer) -> None:
    lm_server.rule = lambda request, attempt: (
        Reply(status=500, json=error_body("no")) if request.body["response_format"]["type"] == "json_schema" else None
    )
    lm = make_lm(lm_server, model="openai/my-finetune", extra={"response_format": SCHEMA})

    async def twice() -> None:
        try:
            await lm.complete(HELLO)
            await lm.complete(HELLO)
        finally:
            await lm.aclose()

    run(twice())
    assert [r.body["response_format"]["type"] for r in lm_server.requests] == [
        "json_schema",
        "json_object",
        "json_object",
    ]
