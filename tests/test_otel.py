"""OpenTelemetry traces: a real OTLP/HTTP receiver on loopback decodes what `dspx` sends.

The receiver is a plain http.server accepting POST /v1/traces and decoding the protobuf
ExportTraceServiceRequest with opentelemetry-proto's generated classes; the LM is the loopback
server (tests/lm_server.py). Skipped when the `otel` extra is not installed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer, Reply, error_body
from tests.sandbox_helpers import needs_deno
from tests.test_sandbox_tool import act

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-OTEL-SECRET-7f3a"
CLIENT = 3  # SpanKind.SPAN_KIND_CLIENT in the OTLP protobuf


@dataclass
class Received:
    name: str
    span_id: bytes
    parent: bytes
    trace_id: bytes
    kind: int
    attributes: dict[str, Any]
    status: int
    resource: dict[str, Any]


def _value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, which) if which else None


class Receiver:
    """An OTLP/HTTP traces endpoint on 127.0.0.1: keeps every raw body and the decoded spans."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.spans: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with receiver.lock:
                    receiver.bodies.append(body + b"\n" + str(self.headers).encode())
                    for resource_spans in request.resource_spans:
                        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                        for scope in resource_spans.scope_spans:
                            for span in scope.spans:
                                receiver.spans.append(
                                    Received(
                                        span.name,
                                        span.span_id,
                                        span.parent_span_id,
                                        span.trace_id,
                                        span.kind,
                                        {a.key: _value(a.value) for a in span.attributes},
                                        span.status.code,
                                        resource,
                                    )
                                )
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self) -> list[Received]:
        with self.lock:
            spans, self.spans = self.spans, []
            return spans

    def raw(self) -> bytes:
        with self.lock:
            return b"".join(self.bodies)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


QUESTION = re.compile(r"question \d|\d+ words, question \d")


def reply(body: dict) -> str:
    text = body["messages"][-1]["content"]
    reasoning = "[[ ## reasoning ## ]]\ncount\n\n" if "reasoning" in body["messages"][0]["content"] else ""
    return f"{reasoning}[[ ## answer ## ]]\n{len(text.split())} words, {' '.join(re.findall(QUESTION, text))}\n\n[[ ## completed ## ]]"


def program(tmp_path: Path, count: int = 3) -> Path:
    """Two independent steps (run as concurrent tasks) and a third that reads both."""
    rows = [{"text": f"question {i}", "answer": "x"} for i in range(count)]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "p.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            name: traced
            lm: {model: openai/m, api_base: "${BASE}", api_key: "${KEY}", num_retries: 0, temperature: 0.3, max_tokens: 64}
            modules:
              first: {signature: "text -> answer"}
              second: {type: chain_of_thought, signature: "text -> answer"}
              both: {signature: "a, b -> answer"}
            flow:
              - {id: one, module: first, with: {text: $input.text}}
              - {id: two, module: second, with: {text: $input.text}}
              - {id: join, module: both, with: {a: $one.answer, b: $two.answer}}
            output: {answer: $join.answer}
            data: {dev: dev.jsonl}
            metric: exact_match
            """
        )
    )
    return path


def children(spans: list[Received], parent: Received) -> list[Received]:
    return [s for s in spans if s.parent == parent.span_id]


def parent_of(spans: list[Received], span: Received) -> Received:
    (parent,) = [s for s in spans if s.span_id == span.parent]
    return parent


def check_run_subtree(spans: list[Received], run: Received) -> list[Received]:
    """run -> three steps (one, two, join) -> one LM call each; returns the LM call spans."""
    assert run.name == "run traced" and run.attributes["dspx.program.name"] == "traced"
    steps = sorted(children(spans, run), key=lambda s: s.name)
    assert [s.name for s in steps] == ["step join", "step one", "step two"]
    types = {s.attributes["dspx.step.id"]: s.attributes["dspx.module.type"] for s in steps}
    assert types == {"join": "predict", "one": "predict", "two": "chain_of_thought"}
    calls = []
    for step in steps:
        (call,) = children(spans, step)
        calls.append(call)
    return calls


def test_evaluate_sends_the_span_tree_with_genai_attributes_and_no_secret(
    lm_server: LMServer, receiver: Receiver, tmp_path: Path
) -> None:
    lm_server.responder = reply
    path = program(tmp_path)
    env = {"BASE": lm_server.api_base, "KEY": SECRET, "DSPX_CACHE_DIR": str(tmp_path / "cache")}
    receiver.take()
    done = dspx(
        "evaluate", str(path), "-j", "3", "--output", str(tmp_path / "run1"),
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_EXPORTER_OTLP_HEADERS="x-collector-key=hdr-123", **env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    spans = receiver.take()

    (root,) = [s for s in spans if not s.parent]
    assert root.name == "dspx evaluate"
    assert root.attributes["dspx.command"] == "evaluate" and root.attributes["process.exit.code"] == 0
    assert root.attributes["dspx.args.program"] == str(path)
    assert root.resource["service.name"] == "dspx"
    assert {s.trace_id for s in spans} == {root.trace_id}
    examples = children(spans, root)
    assert sorted(s.name for s in examples) == ["example 0", "example 1", "example 2"]
    calls = []
    for example in examples:
        assert example.attributes["dspx.example.score"] == 0.0  # "N words" is never "x"
        (run,) = children(spans, example)
        calls += check_run_subtree(spans, run)
    assert len(spans) == 1 + 3 * (1 + 1 + 3 + 3)

    assert len(calls) == 9 == len(lm_server.requests)
    for call in calls:
        assert call.name == "chat m" and call.kind == CLIENT
        a = call.attributes
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "openai"
        assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "m"
        assert a["gen_ai.request.temperature"] == 0.3 and a["gen_ai.request.max_tokens"] == 64
        assert a["gen_ai.response.finish_reasons"] == ["stop"]
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == int(lm_server.api_base.split(":")[2][:-3])
        assert a["dspx.cache.hit"] is False
        assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    # The token counts are the server's (it counts words).
    sent = [r.body for r in lm_server.requests]
    prompt_words = sum(len(str(m["content"]).split()) for body in sent for m in body["messages"])
    assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in calls) == prompt_words
    assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in calls) == sum(len(reply(b).split()) for b in sent)
    assert SECRET.encode() not in receiver.raw()
    assert b"question 0" not in receiver.raw()  # no prompt without the opt-in
    assert b"x-collector-key: hdr-123" in receiver.raw().lower()  # the SDK's variables work as it defines them

    # Again from the cache, with the content opt-in given on the command line (typer's path).
    done = dspx(
        "evaluate", str(path), "-j", "3", "--output", str(tmp_path / "run2"), "--otlp", receiver.url,
        "--otlp-content", "--limit", "3", **env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(lm_server.requests) == 9  # nothing new was asked
    calls = [s for s in receiver.take() if s.name == "chat m"]
    assert len(calls) == 9 and all(c.attributes["dspx.cache.hit"] is True for c in calls)
    one = next(c for c in calls if "question 1" in c.attributes["gen_ai.input.messages"])
    messages = json.loads(one.attributes["gen_ai.input.messages"])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["parts"][0]["type"] == "text" and "question 1" in messages[1]["parts"][0]["content"]
    (output,) = json.loads(one.attributes["gen_ai.output.messages"])
    assert output["role"] == "assistant" and output["finish_reason"] == "stop"
    assert output["parts"][0]["content"].startswith("[[ ## ")
    assert SECRET.encode() not in receiver.raw()


def test_run_with_the_global_option_traces_one_run(lm_server: LMServer, receiver: Receiver, tmp_path: Path) -> None:
    lm_server.responder = reply
    receiver.take()
    done = dspx(
        "--otlp", receiver.url, "run", str(program(tmp_path)), "-i", "text=hello there", "-i", f"api_key={SECRET}",
        "--no-cache", BASE=lm_server.api_base, KEY=SECRET,
    )  # fmt: skip
    # An unknown input is refused (exit 2): the command's span still goes out, with its exit code.
    assert done.returncode == 2, done.stderr
    (root,) = receiver.take()
    assert root.name == "dspx run" and root.attributes["process.exit.code"] == 2
    assert root.attributes["dspx.args.inputs"] == ["text=hello there", "api_key=<redacted>"]
    assert root.status == 2  # STATUS_CODE_ERROR
    assert SECRET.encode() not in receiver.raw()

    done = dspx(
        "--otlp", receiver.url, "run", str(program(tmp_path)), "-i", "text=hello there", "--no-cache",
        BASE=lm_server.api_base, KEY=SECRET,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spans = receiver.take()
    (root,) = [s for s in spans if not s.parent]
    assert root.name == "dspx run" and root.attributes["process.exit.code"] == 0
    (run,) = children(spans, root)
    calls = check_run_subtree(spans, run)
    assert all(c.attributes["dspx.cache.hit"] is False for c in calls)
    assert len(spans) == 1 + 1 + 3 + 3
    assert SECRET.encode() not in receiver.raw()

    # A call the server refuses: its span, its step's, the run's and the command's are failed.
    lm_server.push(Reply(status=400, json=error_body("no such model")))
    done = dspx(
        "run", str(program(tmp_path)), "-i", "text=hello again", "--no-cache", "--otlp", receiver.url,
        BASE=lm_server.api_base, KEY=SECRET, OTEL_SERVICE_NAME="my-service",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    spans = receiver.take()
    failed = [s for s in spans if s.status == 2]
    names = {s.name for s in failed}
    assert {"chat m", "run traced", "dspx run"} <= names and any(n.startswith("step ") for n in names)
    call = next(s for s in failed if s.name == "chat m")
    assert call.attributes["error.type"] == "LMRequestError" and "gen_ai.usage.input_tokens" not in call.attributes
    assert {s.resource["service.name"] for s in spans} == {"my-service"}


def test_an_unreachable_collector_is_one_warning_and_loses_nothing(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = reply
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = dspx(
        "evaluate", str(program(tmp_path, count=2)), "--output", str(tmp_path / "run"), "--no-cache",
        BASE=lm_server.api_base, KEY=SECRET, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://user:pw@127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_TIMEOUT="1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "traces" in line]
    assert warnings == [
        f"warning: could not send traces to http://127.0.0.1:{port}/v1/traces; the run goes on without them"
    ]
    assert "Traceback" not in done.stderr and "pw" not in done.stderr
    assert len((tmp_path / "run" / "examples.jsonl").read_text().splitlines()) == 2


def test_without_an_endpoint_opentelemetry_is_never_imported(lm_server: LMServer, tmp_path: Path) -> None:
    """A real `dspx run` and `dspx --help`, each in a fresh interpreter; OTEL_* variables unset."""
    lm_server.responder = reply
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DSPX_OTLP"))}
    env.update(BASE=lm_server.api_base, KEY=SECRET, NO_COLOR="1", DSPX_CACHE_DIR=str(tmp_path / "cache"))
    path = program(tmp_path)
    for argv in (["run", str(path), "-i", "text=hi"], ["--help"], ["evaluate", "--help"]):
        script = (
            "import sys, json, atexit\n"
            f"sys.argv = ['dspx', *{argv!r}]\n"
            "atexit.register(lambda: print(json.dumps(sorted(m for m in sys.modules if m.startswith("
            "('opentelemetry', 'google.protobuf', 'dspx_cli.core.otel', 'dspx_cli.lm.spans')))), file=sys.stderr))\n"
            "from dspx_cli.cli.app import main\n"
            "main()\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stderr.strip().splitlines()[-1]) == [], argv
    assert len(lm_server.requests) == 3


def test_ctrl_c_still_sends_the_spans_of_what_ran(lm_server: LMServer, receiver: Receiver, tmp_path: Path) -> None:
    """A real process and a real SIGINT: the command's span (exit code 130) and the finished
    examples' spans reach the collector before the process leaves (os._exit(130) comes after)."""
    lm_server.responder = reply
    lm_server.default_delay = 0.2
    receiver.take()
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DSPX_"))}
    env.update(BASE=lm_server.api_base, KEY=SECRET, NO_COLOR="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "dspx_cli", "evaluate", str(program(tmp_path, count=40)), "-j", "2", "--no-cache",
         "--output", str(out), "--otlp", receiver.url],  # a plain command line: cli/fast_path.py parses it
        env=env, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    examples = out / "examples.jsonl"
    deadline = time.monotonic() + 60
    while not (examples.exists() and len(examples.read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline and process.poll() is None, "no example finished"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "warning" not in stderr
    spans = receiver.take()
    (root,) = [s for s in spans if not s.parent]
    assert root.name == "dspx evaluate" and root.attributes["process.exit.code"] == 130
    scored = [s for s in spans if s.name.startswith("example ") and "dspx.example.score" in s.attributes]
    assert len(scored) >= len(examples.read_text().splitlines()) >= 3
    assert all(s.parent == root.span_id for s in scored)


def test_compile_traces_its_dev_evaluations_and_its_teacher_runs(
    lm_server: LMServer, receiver: Receiver, tmp_path: Path
) -> None:
    lm_server.responder = reply
    path = program(tmp_path, count=4)
    path.write_text(path.read_text().replace("data: {dev: dev.jsonl}", "data: {dev: dev.jsonl, train: dev.jsonl}"))
    receiver.take()
    done = dspx(
        "compile", str(path), "--optimizer", "bootstrap_few_shot", "-o", str(tmp_path / "state.json"),
        "--otlp", receiver.url, "--no-cache", BASE=lm_server.api_base, KEY=SECRET,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spans = receiver.take()
    (root,) = [s for s in spans if not s.parent]
    assert root.name == "dspx compile" and root.attributes["dspx.args.optimizer"] == "bootstrap_few_shot"
    # Its phases (tests/test_otel_phases.py checks them in detail): dev before and dev after, 4
    # examples each, and the optimizer's, holding the teacher's bootstrap runs.
    phases = {s.name: s for s in children(spans, root)}
    assert sorted(phases) == ["dev after", "dev before", "optimize bootstrap_few_shot"]
    for dev in ("dev before", "dev after"):
        assert sorted(s.name for s in children(spans, phases[dev])) == [f"example {i}" for i in range(4)]
    (bootstrap,) = children(spans, phases["optimize bootstrap_few_shot"])
    assert len([s for s in spans if s.name == "run traced" and parent_of(spans, s).parent == bootstrap.span_id]) == 4
    calls = [s for s in spans if s.name == "chat m"]
    assert len(calls) == len(lm_server.requests) == 36  # --no-cache: every call is a request
    assert SECRET.encode() not in receiver.raw()


def test_tracing_changes_nothing_an_optimizer_reads_from_an_lm(tmp_path: Path) -> None:
    """The traced LM is the outermost wrapper: what mipro_v2's proposer reads from the prompt LM
    (its config's max_tokens and extras) must be the same with tracing on."""
    from dspx_cli.core.telemetry import Telemetry
    from dspx_cli.lm.config import LMConfig
    from dspx_cli.lm.spans import TracedLM
    from dspx_cli.optimizers.proposer.grounded import _prompt_options
    from dspx_cli.program.context import RunContext

    class On(Telemetry):
        enabled = True

    config = LMConfig(model="openai/m", api_base="http://127.0.0.1:9/v1", max_tokens=77, extra={"top_p": 0.5})
    traced = RunContext(cache_dir=tmp_path, telemetry=On()).lm(config)
    plain = RunContext(cache_dir=tmp_path).lm(config)
    assert isinstance(traced, TracedLM) and not isinstance(plain, TracedLM)
    assert _prompt_options(traced) == _prompt_options(plain) == {"max_tokens": 77, "extra": {"top_p": 0.5}}


def test_a_failed_spans_message_keeps_no_url_credentials_nor_query() -> None:
    from dspx_cli.core.otel import _message

    error = ValueError(f"cannot connect to https://user:{SECRET}@host:1/v1?api-key={SECRET}&v=1 (refused)")
    assert _message(error) == "cannot connect to https://<redacted>@host:1/v1?<redacted> (refused)"
    assert _message(ValueError("")) == "ValueError"


def test_retrieval_embeddings_calls_are_spans_of_their_step(
    lm_server: LMServer, receiver: Receiver, tmp_path: Path
) -> None:
    (tmp_path / "corpus.jsonl").write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in ("Paris is in France.", "Rome is in Italy."))
    )
    lm_server.responder = lambda body: "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
    path = tmp_path / "rag.yaml"
    path.write_text(
        'lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}\n'
        "modules:\n"
        '  search: {type: retrieve, corpus: corpus.jsonl, k: 1, embeddings: {model: openai/emb, api_base: "${BASE}", '
        'api_key: "${KEY}"}}\n'
        '  answer: {signature: "context: list[str], question -> answer"}\n'
        "flow:\n"
        "  - {id: search, module: search, with: {query: $input.question}}\n"
        "  - {id: answer, module: answer, with: {context: $search.passages, question: $input.question}}\n"
        "output: {answer: $answer.answer}\n"
    )
    receiver.take()
    done = dspx(
        "run", str(path), "-i", "question=capital of France?", "--otlp", receiver.url,
        BASE=lm_server.api_base, KEY=SECRET, DSPX_CACHE_DIR=str(tmp_path / "cache"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spans = receiver.take()
    by_id = {s.span_id: s for s in spans}
    embeddings = [s for s in spans if s.name == "embeddings emb"]
    assert len(embeddings) == 2  # the corpus, then the query
    for span in embeddings:
        assert by_id[span.parent].name == "step search" and span.kind == CLIENT
        assert span.attributes["gen_ai.operation.name"] == "embeddings"
        assert span.attributes["gen_ai.request.model"] == "emb" and span.attributes["gen_ai.usage.input_tokens"] > 0
    (chat,) = [s for s in spans if s.name == "chat m"]
    assert by_id[chat.parent].name == "step answer"
    assert SECRET.encode() not in receiver.raw()


def test_an_agents_tool_calls_are_execute_tool_spans(lm_server: LMServer, receiver: Receiver, tmp_path: Path) -> None:
    from tests.test_program_agents import AGENT, agent_responder, write

    lm_server.responder = agent_responder
    receiver.take()
    done = dspx(
        "run", str(write(tmp_path, AGENT)), "-i", "question=How many euros is 250 dollars?", "--no-cache",
        "--otlp", receiver.url, BASE=lm_server.api_base, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true",
    )  # fmt: skip  # the conventions' own opt-in variable
    assert done.returncode == 0, done.stderr
    spans = receiver.take()
    (step,) = [s for s in spans if s.name == "step agent"]
    assert step.attributes["dspx.module.type"] == "react"
    tools = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "execute_tool"]
    assert [s.name for s in tools] == ["execute_tool exchange_rate", "execute_tool calculator", "execute_tool slow"]
    assert all(s.parent == step.span_id and s.attributes["gen_ai.tool.type"] == "function" for s in tools)
    calculator = tools[1].attributes
    assert json.loads(calculator["gen_ai.tool.call.arguments"]) == {"expression": "250 * 0.5"}
    assert calculator["gen_ai.tool.call.result"] == "125.0"  # the value the tool returned
    assert tools[2].status == 2 and tools[2].attributes["error.type"] == "TimeoutError"  # its 0.2 s timeout
    calls = [s for s in spans if s.name == "chat m"]
    assert len(calls) == 5 and all(s.parent == step.span_id for s in calls)  # four steps of the loop, then extract


def test_without_the_extra_an_endpoint_is_one_warning_and_the_run_goes_on(lm_server: LMServer, tmp_path: Path) -> None:
    lm_server.responder = reply
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DSPX_"))}
    env.update(BASE=lm_server.api_base, KEY=SECRET, NO_COLOR="1", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    script = (
        "import sys\n"
        "sys.modules['opentelemetry.sdk'] = None  # as if the otel extra were not installed\n"
        f"sys.argv = ['dspx', 'run', {str(program(tmp_path))!r}, '-i', 'text=hi', '--no-cache']\n"
        "from dspx_cli.cli.app import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == (
        "warning: traces are not sent: the OpenTelemetry SDK is not installed (pip install 'dspx_cli[otel]')"
    )
    assert "answer:" in done.stdout


@needs_deno
def test_the_sandbox_tool_keeps_its_run_session_when_traced(
    lm_server: LMServer, receiver: Receiver, tmp_path: Path
) -> None:
    # The sandbox tool hands each agent run its own copy (Tool.per_run); tracing wraps that copy,
    # so a variable set in one step is still there in the next and both calls are spans.
    steps = iter(
        [
            act("python", {"code": "x = 6 * 7"}),
            act("python", {"code": "print(x)"}),
            act("finish"),
            "[[ ## reasoning ## ]]\nok\n\n[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]",
        ]
    )
    lm_server.responder = lambda request: next(steps)
    path = tmp_path / "agent.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            lm: {model: openai/m, api_base: "${BASE}", num_retries: 0}
            tools:
              python: {}
            modules:
              agent: {type: react, signature: "question -> answer", tools: [python], max_iters: 4}
            """
        )
    )
    receiver.take()
    done = dspx(
        "run", str(path), "-i", "question=q", "--json", "--no-cache", "--otlp", receiver.url,
        BASE=lm_server.api_base, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == "42"
    tools = [s for s in receiver.take() if s.attributes.get("gen_ai.operation.name") == "execute_tool"]
    assert [s.name for s in tools] == ["execute_tool python", "execute_tool python"]
    assert tools[1].attributes["gen_ai.tool.call.result"].strip() == "42"  # x survived between the steps
