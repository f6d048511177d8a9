"""DSPy's golden cases (tests/fixtures/), shared by the adapter tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dspx_cli.core import Signature

FIXTURES = Path(__file__).parent / "fixtures"


def format_cases(adapter: str) -> list[dict[str, Any]]:
    return [c for c in json.loads((FIXTURES / "format_cases.json").read_text()) if c["adapter"] == adapter]


def parse_cases(adapter: str) -> list[dict[str, Any]]:
    return [c for c in json.loads((FIXTURES / "parse_cases.json").read_text()) if c["adapter"] == adapter]


def case_signature(case: dict[str, Any]) -> Signature:
    """The case's signature, with `reasoning` prepended as ChainOfThought does."""
    signature = Signature.from_spec(case["signature"])
    if case.get("module") == "chain_of_thought":
        signature = signature.prepend_output("reasoning", str)
    return signature
