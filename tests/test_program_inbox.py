"""programs/inbox.yaml, the shipped example of a Python step, a `foreach` and a typed output, run
end to end against the loopback server (DSPX_LM points every module at it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli_inprocess import dspx
from tests.lm_server import LMServer

ROOT = Path(__file__).resolve().parent.parent
QUEUES = {"billed": "billing", "package": "shipping", "send back": "returns", "password": "account"}


def route(body: dict[str, Any]) -> str:
    message = body["messages"][-1]["content"]  # the one being routed (demos come before it)
    queue = next(q for word, q in QUEUES.items() if word in message)
    return json.dumps({"ticket": {"queue": queue, "urgent": queue == "billing"}})


def test_the_inbox_example_routes_every_message_and_counts_the_queues(lm_server: LMServer) -> None:
    lm_server.responder = route
    inbox = (ROOT / "datasets" / "inbox" / "example.txt").read_text()
    done = dspx(
        "run", "programs/inbox.yaml", "-i", f"inbox={inbox}", "--json", "--no-cache",
        cwd=ROOT, DSPX_LM=f"served@{lm_server.api_base}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [t["queue"] for t in out["tickets"]] == ["billing", "shipping", "returns", "account"]
    assert out["tickets"][0]["urgent"] is True and out["tickets"][1]["urgent"] is False
    assert out["counts"] == {"billing": 1, "shipping": 1, "returns": 1, "account": 1}
    # One request per message (the foreach), each showing Ticket's JSON schema in the prompt (a
    # generic OpenAI-compatible endpoint gets no response_format, as in DSPy).
    assert len(lm_server.requests) == 4
    system = lm_server.requests[0].body["messages"][0]["content"]
    assert '\\"urgent\\"' in system and '\\"returns\\"' in system


def test_the_inbox_example_validates() -> None:
    done = dspx("validate", "programs/inbox.yaml", cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "foreach $split.messages" in done.stdout
