"""The response cache on a real SQLite folder, through the real CLI and a loopback server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from dspx_cli.lm.base import LMRequest, LMResponse, Usage
from dspx_cli.lm.cache import ResponseCache, request_key
from dspx_cli.lm.config import LMConfig
from dspx_cli.program.context import RunContext
from tests.cli_inprocess import dspx
from tests.lm_server import LMServer, Reply, error_body

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-SECRET-7d1e0c9a55"
REPLY = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"


def program(tmp_path: Path, extra_lm: str = "") -> Path:
    path = tmp_path / "qa.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            lm:
              model: openai/test-model
              api_base: ${{BASE}}
              api_key: ${{KEY:-}}
              num_retries: 0
            {extra_lm}
            modules:
              answer: {{signature: "question -> answer"}}
            """
        )
    )
    return path


def test_hit_after_miss_in_a_fresh_process(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: REPLY
    path = program(tmp_path)
    first = dspx("run", str(path), "-i", "question=Capital?", BASE=lm_server.api_base)
    second = dspx("run", str(path), "-i", "question=Capital?", BASE=lm_server.api_base)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout == "answer: Paris\n"
    assert len(lm_server.requests) == 1  # the second process read the first one's entry
    assert "(1 cached)" in second.stderr and "(1 cached)" not in first.stderr
    third = dspx("run", str(path), "-i", "question=Other?", BASE=lm_server.api_base)
    assert third.returncode == 0 and len(lm_server.requests) == 2


def test_no_cache_neither_reads_nor_writes(lm_server: LMServer, tmp_path: Path, isolated_cache: Path) -> None:
    lm_server.responder = lambda body: REPLY
    path = program(tmp_path)
    for _ in range(2):
        assert dspx("run", str(path), "-i", "question=q", "--no-cache", BASE=lm_server.api_base).returncode == 0
    assert len(lm_server.requests) == 2
    stats = dspx("cache", "stats", "--json")
    assert json.loads(stats.stdout)["entries"] == 0


def test_cache_only_replays_and_fails_on_a_miss(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: REPLY
    path = program(tmp_path)
    assert dspx("run", str(path), "-i", "question=q", BASE=lm_server.api_base).returncode == 0
    replay = dspx("run", str(path), "-i", "question=q", "--cache-only", BASE=lm_server.api_base)
    assert replay.returncode == 0 and replay.stdout == "answer: Paris\n"
    miss = dspx("run", str(path), "-i", "question=new", "--cache-only", BASE=lm_server.api_base)
    assert miss.returncode == 1
    assert "--cache-only: no cached response" in miss.stderr and len(miss.stderr.strip().splitlines()) == 1
    assert len(lm_server.requests) == 1
    both = dspx("run", str(path), "-i", "question=q", "--cache-only", "--no-cache", BASE=lm_server.api_base)
    assert both.returncode == 2


def test_errors_are_never_cached(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: REPLY
    lm_server.push(Reply(status=500, json=error_body("boom")))
    path = program(tmp_path)
    assert dspx("run", str(path), "-i", "question=q", BASE=lm_server.api_base).returncode == 1
    assert dspx("run", str(path), "-i", "question=q", BASE=lm_server.api_base).returncode == 0
    assert len(lm_server.requests) == 2


def test_the_api_key_reaches_no_file(lm_server: LMServer, tmp_path: Path, isolated_cache: Path) -> None:
    lm_server.responder = lambda body: REPLY
    path = program(tmp_path, extra_lm="  prices: {input: 0.15, output: 0.6}")
    usage_file = tmp_path / "usage.json"
    done = dspx(
        "run", str(path), "-i", "question=q", "--usage-file", str(usage_file), BASE=lm_server.api_base, KEY=SECRET
    )
    assert done.returncode == 0, done.stderr
    assert lm_server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    files = [p for p in isolated_cache.rglob("*") if p.is_file()]
    assert any(p.name == "history.jsonl" for p in files) and len(files) >= 2
    for file in [*files, usage_file]:
        assert SECRET.encode() not in file.read_bytes(), file
    assert SECRET not in done.stdout + done.stderr


def test_usage_file_splits_fresh_and_cached_and_prices_them(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: REPLY
    path = program(tmp_path, extra_lm="  prices: {input: 1.0, output: 2.0}")
    usage_file = tmp_path / "usage.json"
    for _ in range(2):
        done = dspx("run", str(path), "-i", "question=q", "--usage-file", str(usage_file), BASE=lm_server.api_base)
        assert done.returncode == 0, done.stderr
    usage = json.loads(usage_file.read_text())["models"]["openai/test-model"]
    served = lm_server.requests[0]
    assert usage["calls"] == usage["cached_calls"] == 1
    assert usage["prompt_tokens"] == 0 and usage["cost"] is None  # nothing paid on the replay
    assert usage["cached_prompt_tokens"] > 0
    expected = (usage["cached_prompt_tokens"] * 1.0 + usage["cached_completion_tokens"] * 2.0) / 1e6
    assert abs(usage["saved_cost"] - expected) < 1e-12
    assert served.body["model"] == "test-model"


def test_history_shows_the_last_calls(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: REPLY
    path = program(tmp_path)
    for question in ("one", "two", "one"):
        assert dspx("run", str(path), "-i", f"question={question}", BASE=lm_server.api_base, KEY=SECRET).returncode == 0
    done = dspx("history", "-n", "2", "--json")
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["cached"] for r in records] == [False, True]
    assert records[-1]["messages"][-1]["content"].startswith("[[ ## question ## ]]\none")
    assert records[-1]["outputs"] == [REPLY]
    assert records[0]["lm"]["model"] == "openai/test-model" and "api_key" not in records[0]["lm"]
    text = dspx("history").stdout
    assert "User message:" in text and "Response:" in text and "cached" in text
    assert SECRET not in done.stdout + text


def test_key_ignores_secrets_and_transport_but_not_sampling() -> None:
    request = LMRequest(messages=({"role": "user", "content": "hi"},), temperature=0.0, max_tokens=10)
    base = request_key("openai/m", request)
    assert request_key("openai/m", LMRequest(messages=request.messages, temperature=0.0, max_tokens=10)) == base
    variants = [
        LMRequest(messages=request.messages, temperature=0.5, max_tokens=10),
        LMRequest(messages=request.messages, temperature=0.0, max_tokens=11),
        LMRequest(messages=request.messages, temperature=0.0, max_tokens=10, n=2),
        LMRequest(messages=request.messages, temperature=0.0, max_tokens=10, rollout_id=1),
        LMRequest(
            messages=request.messages,
            temperature=0.0,
            max_tokens=10,
            extra={"response_format": {"type": "json_object"}},
        ),
    ]
    assert len({base, *(request_key("openai/m", v) for v in variants)}) == 1 + len(variants)
    assert request_key("openai/other", request) != base


def test_same_model_on_another_endpoint_or_key_hits_the_cache(tmp_path: Path) -> None:
    with LMServer() as first, LMServer() as second:
        first.responder = second.responder = lambda body: REPLY

        async def ask(server: LMServer, key: str) -> LMResponse:
            context = RunContext(cache_dir=tmp_path)
            config = LMConfig("openai/m", api_base=server.api_base, api_key=key, timeout=30)
            try:
                return await context.lm(config).complete(LMRequest(messages=({"role": "user", "content": "x"},)))
            finally:
                await context.aclose()

        assert asyncio.run(ask(first, "key-a")).cached is False
        assert asyncio.run(ask(second, "key-b")).cached is True
        assert (len(first.requests), len(second.requests)) == (1, 0)


WRITER = """
import sys
from pathlib import Path
from dspx_cli.lm.base import LMResponse, Usage
from dspx_cli.lm.cache import ResponseCache
cache = ResponseCache(Path(sys.argv[1]))
worker = int(sys.argv[2])
for i in range(150):
    cache.put(f"own-{worker}-{i}", LMResponse([f"w{worker} {i}"], Usage(3, 4), "m"))
    cache.put(f"shared-{i}", LMResponse([f"shared {i}"], Usage(3, 4), "m"))
    assert cache.get(f"shared-{i}").completions == [f"shared {i}"]
cache.close()
"""


def test_four_processes_write_one_directory_at_once(tmp_path: Path) -> None:
    workers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n)], stderr=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    cache = ResponseCache(tmp_path)
    try:
        assert cache.stats()["entries"] == 4 * 150 + 150
        hit = cache.get("own-3-149")
        assert hit is not None and hit.completions == ["w3 149"] and hit.cached and hit.usage == Usage(3, 4)
    finally:
        cache.close()


def test_memory_lru_evicts_but_disk_keeps(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path, memory_items=2)
    for i in range(3):
        cache.put(f"k{i}", LMResponse([str(i)], Usage(1, 1), "m"))
    assert "k0" not in cache._memory and cache.get("k0") is not None  # back from disk
    cache.close()


def test_cache_path_stats_and_clear(lm_server: LMServer, tmp_path: Path, isolated_cache: Path) -> None:
    lm_server.responder = lambda body: REPLY
    assert dspx("cache", "path").stdout.strip() == str(isolated_cache)
    path = program(tmp_path)
    for question in ("a", "b"):
        assert dspx("run", str(path), "-i", f"question={question}", BASE=lm_server.api_base).returncode == 0
    assert json.loads(dspx("cache", "stats", "--json").stdout)["entries"] == 2
    assert "removed 2 cached responses" in dspx("cache", "clear").stdout
    assert json.loads(dspx("cache", "stats", "--json").stdout)["entries"] == 0
    assert dspx("run", str(path), "-i", "question=a", BASE=lm_server.api_base).returncode == 0
    assert len(lm_server.requests) == 3  # cleared entries are fetched again
    other = tmp_path / "elsewhere"
    assert dspx("cache", "path", "--cache-dir", str(other)).stdout.strip() == str(other)


BAD = "I think the answer is Paris."  # well formed text, but no [[ ## answer ## ]] field


def test_a_reply_that_does_not_parse_is_not_cached(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: BAD
    path = program(tmp_path)
    first = dspx("run", str(path), "-i", "question=q", BASE=lm_server.api_base)
    assert first.returncode == 1 and "the LM replied" in first.stderr
    assert len(lm_server.requests) == 2  # the chat call and its JSON fallback
    assert json.loads(dspx("cache", "stats", "--json").stdout)["entries"] == 0
    # Next time the model answers properly: the failure is not replayed, the LM is asked again.
    lm_server.responder = lambda body: REPLY
    second = dspx("run", str(path), "-i", "question=q", BASE=lm_server.api_base)
    assert second.returncode == 0 and second.stdout == "answer: Paris\n", second.stderr
    assert len(lm_server.requests) == 3
    assert json.loads(dspx("cache", "stats", "--json").stdout)["entries"] == 1


def test_the_json_fallback_answer_is_cached_but_the_bad_chat_reply_is_not(lm_server: LMServer, tmp_path: Path) -> None:
    # A custom server gets no response_format (as in DSPy): the JSON fallback shows in its prompt.
    def asks_json(body: dict) -> bool:
        return "Respond with a JSON object" in json.dumps(body)

    lm_server.responder = lambda body: '{"answer": "Paris"}' if asks_json(body) else BAD
    path = program(tmp_path)
    for _ in range(2):
        done = dspx("run", str(path), "-i", "question=q", BASE=lm_server.api_base)
        assert done.returncode == 0 and done.stdout == "answer: Paris\n", done.stderr
    asked_json = [asks_json(r.body) for r in lm_server.requests]
    assert asked_json == [False, True, False]  # the replay asks chat again, the JSON answer is a hit


def test_cache_rm_evicts_by_the_key_history_shows(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = lambda body: REPLY
    path = program(tmp_path)
    for question in ("a", "b"):
        assert dspx("run", str(path), "-i", f"question={question}", BASE=lm_server.api_base).returncode == 0
    records = [json.loads(line) for line in dspx("history", "-n", "2", "--json").stdout.splitlines()]
    key = records[0]["cache_key"]
    assert len(key) == 64 and key != records[1]["cache_key"]
    assert f"key {key[:16]}" in dspx("history", "-n", "2").stdout
    removed = dspx("cache", "rm", key[:10])
    assert removed.returncode == 0 and "removed 1 cached response " in removed.stdout, removed.stderr
    assert dspx("run", str(path), "-i", "question=a", BASE=lm_server.api_base).returncode == 0
    assert dspx("run", str(path), "-i", "question=b", BASE=lm_server.api_base).returncode == 0
    assert len(lm_server.requests) == 3  # only the evicted call was made again
    assert dspx("cache", "rm", key[:10]).returncode == 0  # stored again by the rerun
    missing = dspx("cache", "rm", key)
    assert missing.returncode == 1 and "no cached response has a key starting with" in missing.stderr
    wrong = dspx("cache", "rm", "not-a-key")
    assert wrong.returncode == 2 and "is not a cache key" in wrong.stderr


def test_cache_rm_refuses_an_ambiguous_prefix(isolated_cache: Path) -> None:
    cache = ResponseCache(isolated_cache)
    for key in ("abcd01", "abcd02", "ef"):
        cache.put(key, LMResponse(["x"], Usage(1, 1), "m"))
    cache.close()
    ambiguous = dspx("cache", "rm", "abcd")
    assert ambiguous.returncode == 2 and "matches more than one" in ambiguous.stderr
    both = dspx("cache", "rm", "abcd01", "ABCD02")
    assert both.returncode == 0 and "removed 2 cached responses" in both.stdout
    assert json.loads(dspx("cache", "stats", "--json").stdout)["entries"] == 1


def test_refresh_asks_again_and_stores_the_new_answer(lm_server: LMServer, tmp_path: Path) -> None:
    answers = iter(["Paris", "Lyon"])
    lm_server.responder = lambda body: f"[[ ## answer ## ]]\n{next(answers)}\n\n[[ ## completed ## ]]"
    path = program(tmp_path)
    assert dspx("run", str(path), "-i", "question=q", BASE=lm_server.api_base).stdout == "answer: Paris\n"
    fresh = dspx("run", str(path), "-i", "question=q", "--refresh", BASE=lm_server.api_base)
    assert fresh.returncode == 0 and fresh.stdout == "answer: Lyon\n" and "cached" not in fresh.stderr
    replay = dspx("run", str(path), "-i", "question=q", "--cache-only", BASE=lm_server.api_base)
    assert replay.stdout == "answer: Lyon\n" and len(lm_server.requests) == 2
    clash = dspx("run", str(path), "-i", "question=q", "--refresh", "--cache-only", BASE=lm_server.api_base)
    assert clash.returncode == 2 and "--cache-only and --refresh" in clash.stderr
    for command in ("evaluate", "compile"):
        assert "--refresh" in dspx(command, "--help").stdout
