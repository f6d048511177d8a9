"""The `Telemetry` that sends spans to an OTLP/HTTP collector with the OpenTelemetry SDK.

Imported only when an endpoint is configured (`core/telemetry.py` says why); it needs the `otel`
extra (`opentelemetry-sdk`, `opentelemetry-exporter-otlp-proto-http`). The SDK's own environment
variables keep their meaning: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _ENDPOINT, _HEADERS, _TIMEOUT,
_COMPRESSION, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*.

No global tracer provider is installed: the provider is this object's, and spans are made from its
tracer. What is global is OpenTelemetry's current-span context variable, which is how a span finds
its parent across asyncio tasks.

A collector that cannot be reached (or refuses the spans) is one warning through `warn`; later
batches are dropped without trying, so a run is never slowed more than once by its traces, and
the SDK's own log lines (retries, tracebacks) are kept off stderr.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from dspx_cli import __version__
from dspx_cli.core.redact import redact_text, redact_urls
from dspx_cli.core.telemetry import Attributes, AttributeValue, Span, Telemetry

# The SDK's default export timeout is 10 s, retried with backoff until then: a command would wait
# that long at exit for a collector that is down. Used unless the timeout variables say otherwise.
DEFAULT_TIMEOUT_S = 3.0
_TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")


class OtelTelemetry(Telemetry):
    enabled = True

    def __init__(self, endpoint: str | None, *, capture_content: bool, warn: Callable[[str], object]) -> None:
        """`endpoint`: the traces URL itself (…/v1/traces); None lets the SDK read its variables."""
        # The SDK logs every failed export (with retries and tracebacks) through `logging`; the
        # user hears about it once, from the exporter below.
        sdk_log = logging.getLogger("opentelemetry")
        if not sdk_log.handlers:
            sdk_log.addHandler(logging.NullHandler())
        sdk_log.propagate = False
        self.capture_content = capture_content
        attributes: dict[str, str] = {"service.version": __version__}
        if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
            "OTEL_RESOURCE_ATTRIBUTES", ""
        ):
            attributes["service.name"] = "dspx"
        timeout = None if any(os.environ.get(name) for name in _TIMEOUT_VARIABLES) else DEFAULT_TIMEOUT_S
        exporter = OTLPSpanExporter(endpoint=endpoint, timeout=timeout)
        # The URL it resolved (from `endpoint` or the variables), for the warning.
        self._exporter = _WarnOnce(exporter, str(getattr(exporter, "_endpoint", "the OTLP endpoint")), warn)
        self._provider = TracerProvider(resource=Resource.create(attributes))
        self._provider.add_span_processor(BatchSpanProcessor(self._exporter))
        self._tracer = self._provider.get_tracer("dspx_cli", __version__)

    def span(self, name: str, attributes: Attributes | None = None, *, client: bool = False) -> Span:
        kind = trace.SpanKind.CLIENT if client else trace.SpanKind.INTERNAL
        return _OtelSpan(self._tracer, name, attributes, kind)

    def close(self) -> None:
        # Exports what is queued (bounded by the export timeout), then stops the exporting thread.
        self._provider.shutdown()


class _OtelSpan(Span):
    __slots__ = ("_attributes", "_kind", "_manager", "_name", "_span", "_tracer")

    def __init__(self, tracer: trace.Tracer, name: str, attributes: Attributes | None, kind: trace.SpanKind) -> None:
        self._tracer = tracer
        self._name = name
        self._attributes = attributes
        self._kind = kind
        self._span: trace.Span = trace.INVALID_SPAN
        self._manager: Any = None

    def set(self, key: str, value: AttributeValue | None) -> None:
        if value is not None:
            self._span.set_attribute(key, value)

    def update(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        self._span.set_attributes({key: value for key, value in attributes.items() if value is not None})

    def __enter__(self) -> Span:
        # The exception is recorded below, as a type and a one-line message without secrets: an
        # exception event would carry the traceback's text.
        self._manager = self._tracer.start_as_current_span(
            self._name,
            kind=self._kind,
            attributes=self._attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        self._span = self._manager.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if error is not None:
            self._span.set_attribute("error.type", _error_type(error))
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, _message(error)))
        self._manager.__exit__(kind, error, tb)


def _message(error: BaseException) -> str:
    """One line of the error for the span's status, without what could be a secret: `key: value`
    pairs (core/redact.py), a URL's user:password@ and its query (`?key=...`)."""
    message = " ".join(str(error).split())[:500]
    return redact_text(redact_urls(message)) or type(error).__name__


def _error_type(error: BaseException) -> str:
    name = type(error).__name__
    return "cancelled" if name in ("CancelledError", "KeyboardInterrupt") else name


class _WarnOnce(SpanExporter):
    """The OTLP exporter, giving up (with one warning) after its first failed export."""

    def __init__(self, inner: OTLPSpanExporter, endpoint: str, warn: Callable[[str], object]) -> None:
        self._inner = inner
        self._endpoint = _without_secrets(endpoint)
        self._warn = warn
        self._failed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._failed:
            return SpanExportResult.FAILURE
        try:
            result = self._inner.export(spans)
        except Exception:  # noqa: BLE001 - traces are never worth a failed command
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._failed = True
            self._warn(f"warning: could not send traces to {self._endpoint}; the run goes on without them\n")
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _without_secrets(url: str) -> str:
    """The URL without user:password@ and without a query (either may hold a token)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "the OTLP endpoint"
