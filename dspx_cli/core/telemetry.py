"""The tracing facade: spans for a command, its examples, steps and LM calls, sent nowhere by default.

The engine opens spans through the `Telemetry` it is handed (`RunContext.telemetry`, read by the
runner, the evaluator and the LM stack); the default, `OFF`, records nothing, imports nothing and
costs one method call that returns a shared do-nothing span. The command line builds the
OpenTelemetry one (`core/otel.py`, imported only then) when an OTLP endpoint is configured, so a
run without one never loads the SDK.

Spans nest through context variables (OpenTelemetry's own context), so a step's span is the child
of its example's even when examples and steps run as concurrent asyncio tasks: a task copies the
context it was created in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType

# What OpenTelemetry accepts as an attribute value.
AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
Attributes = Mapping[str, AttributeValue]


class Span:
    """A span being recorded; this base one records nothing. Used as a context manager: the span
    ends when the block does, and an exception leaving the block marks it failed."""

    __slots__ = ()

    def set(self, key: str, value: AttributeValue | None) -> None:
        """One attribute; None leaves it unset (the conventions' "when known")."""

    def update(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        """Several attributes; None values are left unset."""

    def __enter__(self) -> Span:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        return None


_NO_SPAN = Span()


class Telemetry:
    """Where spans go. This base one is off: `span` returns a shared span that records nothing."""

    enabled = False
    # Prompts and completions on LM call spans: only on the user's explicit opt-in.
    capture_content = False

    def span(self, name: str, attributes: Attributes | None = None, *, client: bool = False) -> Span:
        """A span named `name`, child of the current one; `client` marks a call to another service
        (an LM call: span kind CLIENT)."""
        return _NO_SPAN

    def close(self) -> None:
        """Send what is buffered and stop; a sink that cannot be reached is one warning, never an error."""


OFF = Telemetry()
