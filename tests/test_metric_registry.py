"""The metric registry: one record per built-in, read by resolve_metric, its messages and the docs;
and the evaluate layer's imports running one way (judge never imports metrics)."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from dspx_cli.core import Example, Prediction
from dspx_cli.errors import ProgramError
from dspx_cli.evaluate.metric_base import METRICS, Metric, MetricOrigin, register_metric
from dspx_cli.evaluate.metrics import BUILTIN_METRICS, describe_metric, resolve_metric
from dspx_cli.program.loader import load_program

ROOT = Path(__file__).resolve().parent.parent
QA = """\
signatures:
  qa:
    inputs: {question: str}
    outputs: {answer: str}
modules:
  answer:
    signature: qa
"""


@pytest.fixture
def length_metric() -> Iterator[str]:
    """A new built-in registered for one test: the recipe for adding a metric."""

    @register_metric("shorter_than", {"limit"}, "1 if the answer has fewer than `limit` characters")
    def build(options: Mapping[str, Any], origin: MetricOrigin) -> Metric:
        limit = options.get("limit", 10)
        if not isinstance(limit, int):
            raise origin.error(f"limit: expected an integer, got {limit!r}", "limit")

        class Shorter:
            name = "shorter_than"

            async def __call__(self, example: Example, prediction: Prediction, trace: Any = None) -> float:
                return float(len(prediction["answer"]) < limit)

        return Shorter()

    try:
        yield "shorter_than"
    finally:
        del METRICS["shorter_than"]


def test_every_builtin_is_one_registry_record_with_a_docs_line() -> None:
    readme = (ROOT / "README.md").read_text()
    assert BUILTIN_METRICS == tuple(METRICS)
    for name, record in METRICS.items():
        assert record.name == name and record.doc and callable(record.build)
        assert f"`{name}`" in readme or f"{{name: {name}," in readme, f"README does not document the metric {name}"


def test_a_registered_metric_resolves_checks_its_options_and_shows_in_messages(
    tmp_path: Path, length_metric: str
) -> None:
    path = tmp_path / "program.yaml"
    path.write_text(QA + "metric: {name: shorter_than, limit: 5}\n")
    metric = resolve_metric(load_program(path, env={}), None)
    assert asyncio.run(metric(Example(question="q"), Prediction(answer="abc"))) == 1.0

    path.write_text(QA + "metric: {name: shorter_than, limt: 5}\n")
    with pytest.raises(ProgramError, match="unknown option 'limt' for metric shorter_than; did you mean 'limit'"):
        resolve_metric(load_program(path, env={}), None)
    path.write_text(QA + "metric: zzzz\n")
    with pytest.raises(ProgramError, match=r"expected a built-in \(exact_match, .*shorter_than\)"):
        resolve_metric(load_program(path, env={}), None)


def test_a_summary_line_reads_the_registry(length_metric: str) -> None:
    assert describe_metric("f1") == f"f1: {METRICS['f1'].doc}"
    assert describe_metric({"name": "shorter_than", "limit": 5}) == (
        "shorter_than (limit: 5): 1 if the answer has fewer than `limit` characters"
    )
    assert describe_metric({"python": "m.py:score"}) == "python m.py:score"
    assert (
        describe_metric({"judge": {"signature": "a, gold_a -> correct: bool"}})
        == "LM judge (a, gold_a -> correct: bool)"
    )


def test_a_name_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_metric("f1", set(), "again")(lambda options, origin: None)  # type: ignore[arg-type, return-value]


def _imports(path: Path) -> set[str]:
    """Every dspx_cli module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.startswith("dspx_cli.")}


def test_the_evaluate_layer_has_no_import_cycle() -> None:
    """metrics -> judge -> metric_base: no evaluate module imports one that imports it back."""
    folder = ROOT / "dspx_cli" / "evaluate"
    modules = {f"dspx_cli.evaluate.{path.stem}": path for path in folder.glob("*.py") if path.stem != "__init__"}
    graph = {name: _imports(path) & modules.keys() for name, path in modules.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for following in graph[start] - seen:
            if following == goal or reaches(following, goal, seen | {following}):
                return True
        return False

    cycles = [name for name in graph if reaches(name, name, set())]
    assert not cycles, f"import cycle through {', '.join(sorted(cycles))}"
    assert "dspx_cli.evaluate.metrics" not in graph["dspx_cli.evaluate.judge"]
