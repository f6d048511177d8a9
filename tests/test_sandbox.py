"""The code sandbox against the real Deno + Pyodide: DSPy's execute semantics, tools, variables,
SUBMIT, sessions isolated across a pool, and the RunContext that owns it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from dspx_cli.errors import SandboxUnavailableError
from dspx_cli.program.context import RunContext
from dspx_cli.sandbox import Execution, Sandbox, SandboxLimits
from dspx_cli.sandbox.pool import LOST_STATE
from tests.sandbox_helpers import Box, needs_deno, open_box

pytestmark = needs_deno


@pytest.fixture(scope="module")
def box() -> Iterator[Box]:
    yield from open_box(SandboxLimits(timeout=20, pool_size=2))


# What DSPy 3.4.1's PythonInterpreter returns (as output, FinalOutput or exception text) for the same
# code, recorded with its runner on this machine.
DSPY_CASES = [
    ("def f(:", None, "Invalid Python syntax. message: ", "syntax"),
    ("x", None, "NameError: [\"name 'x' is not defined\"]", "execution"),
    ("print(1)\n3", 3, None, None),
    ("print('hi')", "hi\n", None, None),
    ("1/0", None, "ZeroDivisionError: ['division by zero']", "execution"),
    ("raise ValueError('a', 2)", None, "ValueError: ['a', 2]", "execution"),
    ("{'a': (1,2)}", {"a": [1, 2]}, None, None),
    ("[1,2]", [1, 2], None, None),
    ("print('a')\nNone", "a\n", None, None),
    ("import numpy", None, "ModuleNotFoundError: [\"No module named 'numpy'\"]", "execution"),
    ("raise KeyError('k')", None, "KeyError: ['k']", "execution"),
]


@pytest.mark.parametrize(("code", "output", "error", "kind"), DSPY_CASES)
def test_execute_matches_dspy(box: Box, code: str, output: Any, error: str | None, kind: str | None) -> None:
    result = box.execute(code)
    assert (result.output, result.error, result.error_kind, result.final) == (output, error, kind, False)


def test_submit_is_final_with_dspy_shape(box: Box) -> None:
    assert box.execute("SUBMIT(3)") == Execution(
        output={"output": 3}, final=True, error=None, error_kind=None, stdout=""
    )
    printed = box.execute("print('work')\nSUBMIT(answer=4, note='n')")
    assert (printed.output, printed.final, printed.stdout) == ({"answer": 4, "note": "n"}, True, "work\n")
    # SUBMIT is not an Exception: the code's own `except Exception` does not swallow it.
    assert box.execute("try:\n    SUBMIT(1)\nexcept Exception:\n    pass\n'swallowed'").final


def test_submit_with_declared_outputs_binds_by_position_or_name(box: Box) -> None:
    async def go() -> list[Execution]:
        async with box.sandbox.session(outputs=["answer", "confidence"]) as session:
            return [
                await session.execute("SUBMIT('Paris', 0.9)"),
                await session.execute("SUBMIT('Rome', confidence=0.5)"),
                await session.execute("SUBMIT('Oslo')"),
            ]

    by_position, mixed, missing = box.run(go())
    assert by_position.output == {"answer": "Paris", "confidence": 0.9} and by_position.final
    assert mixed.output == {"answer": "Rome", "confidence": 0.5}
    assert missing.error == "TypeError: [\"SUBMIT() missing required argument: 'confidence'\"]"
    assert not missing.final


def test_state_persists_within_a_session_and_variables_are_injected(box: Box) -> None:
    async def go() -> list[Execution]:
        async with box.sandbox.session() as session:
            first = await session.execute("total = sum(numbers)\ntotal", {"numbers": (1, 2, 3), "tag": {"a"}})
            second = await session.execute("total * 2, tag, name", {"name": "Ünïcode 🙂"})
            return [first, second]

    first, second = box.run(go())
    assert first.output == 6
    assert second.output == [12, ["a"], "Ünïcode 🙂"]


def test_bad_variables_raise_before_running(box: Box) -> None:
    with pytest.raises(ValueError, match="invalid variable name"):
        box.execute("1", {"not a name": 1})
    with pytest.raises(ValueError, match="not JSON"):
        box.execute("1", {"x": object()})


class Recorder:
    """A host tool: records its calls; fails on request."""

    def __init__(self, name: str, params: list[str]) -> None:
        self.name = name
        self.args = {p: {"type": "string"} for p in params}
        self.calls: list[dict[str, Any]] = []

    async def acall(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if kwargs.get("query") == "fail":
            raise KeyError("no such entry")
        await asyncio.sleep(0)
        return {"query": kwargs.get("query"), "hits": [1, 2], "limit": kwargs.get("limit")}


def test_tools_run_on_the_host(box: Box) -> None:
    search = Recorder("search", ["query", "limit"])
    result = box.execute(
        "r = search('cats', limit=3)\nprint(r['hits'])\nr['query'] + str(r['limit'])", tools={"search": search}
    )
    assert (result.output, result.stdout, result.error) == ("cats3", "[1, 2]\n", None)
    assert search.calls == [{"query": "cats", "limit": 3}]


def test_tool_errors_reach_the_code_as_exceptions(box: Box) -> None:
    search = Recorder("search", ["query"])
    caught = box.execute(
        "try:\n    search('fail')\nexcept RuntimeError as e:\n    seen = str(e)\nseen", tools={"search": search}
    )
    assert caught.output == "KeyError: 'no such entry'"
    raised = box.execute("search('fail')", tools={"search": search})
    assert raised.error == "RuntimeError: [\"KeyError: 'no such entry'\"]"
    too_many = box.execute("search('a', 'b')", tools={"search": search})
    assert too_many.error is not None and too_many.error.startswith("TypeError:")
    assert len(search.calls) == 2  # the bad call never reached the host


def test_sixteen_concurrent_sessions_are_isolated(box: Box) -> None:
    async def one(i: int) -> tuple[Any, Any]:
        async with box.sandbox.session() as session:
            await session.execute(f"x = {i}\nmine = 'run{i}'")
            await asyncio.sleep(0.01 * (i % 3))  # interleave the sessions' executes
            seen = await session.execute("[x, mine]")
            other = await session.execute("[k for k in globals() if k.startswith('run')]")
            return seen.output, other.output

    async def go() -> list[tuple[Any, Any]]:
        return await asyncio.gather(*(one(i) for i in range(16)))

    results = box.run(go())
    assert [r[0] for r in results] == [[i, f"run{i}"] for i in range(16)]
    assert all(r[1] == [] for r in results)
    assert all(slot.alive for slot in box.sandbox._slots)  # the sessions were spread over the pool


def test_a_reused_process_gives_a_new_session_fresh_globals(box: Box) -> None:
    async def go() -> Execution:
        async with box.sandbox.session() as first:
            await first.execute("leaked = 'secret'\ndef helper(): return 1")
        async with box.sandbox.session() as second:
            return await second.execute("[n for n in ('leaked', 'helper') if n in globals()]")

    assert box.run(go()).output == []


def test_one_sessions_tampering_does_not_break_the_next_execute(box: Box) -> None:
    # Interpreter-wide state is put back after every execute; exits are errors, not a dead process.
    async def go() -> list[Execution]:
        async with box.sandbox.session() as bad, box.sandbox.session() as good:
            await good.execute("kept = 'still here'")
            results = [
                await bad.execute(
                    "import builtins, sys\nbuiltins.len = None\nsys.stdout = None\nsys.setrecursionlimit(50)"
                ),
                await bad.execute("import sys\nsys.exit(3)"),
                await bad.execute("exit()"),
            ]
            results.append(await good.execute("import sys\nprint(len([1, 2]))\n[kept, sys.getrecursionlimit() > 50]"))
            results.append(await good.execute("print(len('abc'))"))
            return results

    tampered, exited, exited_again, seen, printed = box.run(go())
    assert tampered.error is None
    assert (exited.error, exited.error_kind) == ("SystemExit: [3]", "execution")
    assert exited_again.error == "SystemExit: [None]"
    assert (seen.output, seen.error) == (["still here", True], None)
    assert printed.output == "3\n"


def test_timeout_restarts_the_interpreter(box: Box) -> None:
    fast = Sandbox(SandboxLimits(timeout=1.5, pool_size=1), deno_dir=box.sandbox.deno_dir)

    async def with_fast() -> list[Execution]:
        try:
            async with fast.session() as session:
                await session.execute("kept = 1")
                return [
                    await session.execute("while True: pass"),
                    await session.execute("1 + 1"),
                    await session.execute("kept"),
                ]
        finally:
            await fast.aclose()

    looped, after, kept = box.run(with_fast())
    assert looped.error_kind == "timeout"
    assert looped.error is not None and looped.error.startswith("TimeoutError: the code ran longer than 1.5 s")
    assert (after.output, after.error) == (2, None)
    # A fresh interpreter, and the error says why the name is gone.
    assert kept.error == "NameError: [\"name 'kept' is not defined\"]" + LOST_STATE


def test_a_neighbours_timeout_is_named_when_it_loses_a_sessions_variables(box: Box) -> None:
    shared = Sandbox(SandboxLimits(timeout=1.5, pool_size=1), deno_dir=box.sandbox.deno_dir)

    async def go() -> list[Execution]:
        try:
            async with shared.session() as calm, shared.session() as runaway:
                await calm.execute("kept = 1")
                await runaway.execute("while True: pass")  # kills the one process both live in
                lost = await calm.execute("kept")
            async with shared.session() as fresh:  # started after the restart: lost nothing
                return [lost, await fresh.execute("undefined_name")]
        finally:
            await shared.aclose()

    lost, later = box.run(go())
    assert lost.error == "NameError: [\"name 'kept' is not defined\"]" + LOST_STATE
    assert later.error == "NameError: [\"name 'undefined_name' is not defined\"]"


def test_a_cancelled_execute_leaves_no_half_run_interpreter(box: Box) -> None:
    async def go() -> Execution:
        async with box.sandbox.session() as session:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(session.execute("while True:\n    pass"), timeout=0.5)
            return await session.execute("'next'")

    assert box.run(go()).output == "next"


def test_run_context_owns_one_sandbox_and_closes_it(tmp_path: Any) -> None:
    async def go() -> tuple[bool, Any]:
        ctx = RunContext(cache_dir=tmp_path)
        sandbox = ctx.sandbox(SandboxLimits(pool_size=1))
        same = ctx.sandbox() is sandbox
        async with sandbox.session() as session:
            output = (await session.execute("6 * 7")).output
        await ctx.aclose()
        assert not any(slot.alive for slot in sandbox._slots)
        return same, output

    assert asyncio.run(go()) == (True, 42)


def test_fetch_failure_is_one_line_unavailable_error(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty DENO_DIR and a registry that refuses connections: Pyodide cannot be fetched.
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "http://127.0.0.1:9/")
    sandbox = Sandbox(SandboxLimits(pool_size=1), deno_dir=tmp_path / "deno")

    async def go() -> None:
        try:
            async with sandbox.session() as session:
                await session.execute("1")
        finally:
            await sandbox.aclose()

    with pytest.raises(SandboxUnavailableError, match=r"could not fetch Pyodide 0\.29\.4 from the npm registry") as e:
        asyncio.run(go())
    assert "\n" not in str(e.value) and e.value.exit_code == 1
