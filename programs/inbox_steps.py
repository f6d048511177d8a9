"""Python steps of programs/inbox.yaml: plain functions, inputs as keyword arguments, a dict out."""

from collections import Counter
from typing import Any


def split_messages(inbox: str) -> dict[str, list[str]]:
    """One message per paragraph (messages are separated by a blank line)."""
    messages = [" ".join(block.split()) for block in inbox.split("\n\n")]
    return {"messages": [m for m in messages if m]}


def count_queues(tickets: list[Any]) -> dict[str, dict[str, int]]:
    """How many tickets each queue got. A ticket arrives as a typed object (attributes)."""
    return {"counts": dict(Counter(ticket.queue for ticket in tickets))}
