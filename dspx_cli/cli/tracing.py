"""Whether a command sends OpenTelemetry traces, and its root span.

Tracing is on when `--otlp URL` is given (on the command or before it: `dspx --otlp URL evaluate`;
DSPX_OTLP is the same) or the SDK's own OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set,
and OTEL_SDK_DISABLED is not true. Otherwise nothing of OpenTelemetry is imported.

`--otlp URL` is a base URL, like OTEL_EXPORTER_OTLP_ENDPOINT: spans are posted to URL/v1/traces.
Prompts and completions go on LM call spans only with `--otlp-content`, DSPX_OTEL_CAPTURE_CONTENT=1
or OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true (the GenAI instrumentations' opt-in).

The command's span (`dspx evaluate`, ...) wraps the whole action, so the engine's spans are its
descendants; it ends, and every span is sent, before the command's exit code is decided, also
when the command fails or is interrupted (cli/interrupt.py leaves with os._exit after the action
returns or raises, so the flush happens inside it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from dspx_cli.cli.interrupt import EXIT_INTERRUPTED
from dspx_cli.core.redact import REDACTED, is_secret_name, redact_urls
from dspx_cli.core.telemetry import OFF, Telemetry
from dspx_cli.errors import EXIT_RUNTIME

_TRUE = ("1", "true", "yes", "on")
CONTENT_VARIABLES = ("DSPX_OTEL_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")


class CommandTrace:
    """A command's telemetry and the root span it runs in."""

    def __init__(self, telemetry: Telemetry, command: str, attributes: dict[str, Any]) -> None:
        self.telemetry = telemetry
        self.command = command
        self.attributes = attributes

    def wrap(self, action: Callable[[], None]) -> Callable[[], None]:
        def call() -> None:
            try:
                with self.telemetry.span(f"dspx {self.command}", self.attributes) as span:
                    try:
                        action()
                    except BaseException as error:
                        span.set("process.exit.code", _exit_code(error))
                        raise
                    span.set("process.exit.code", 0)
            finally:
                try:
                    self.telemetry.close()
                except Exception as error:  # noqa: BLE001 - traces are never worth a failed command
                    sys.stderr.write(f"warning: traces may be incomplete: {type(error).__name__}: {error}\n")

        return call


def _exit_code(error: BaseException) -> int:
    """The code the command is about to exit with (cli/actions.guard, cli/interrupt.py)."""
    if isinstance(error, KeyboardInterrupt) or type(error).__name__ == "CancelledError":
        return EXIT_INTERRUPTED
    if isinstance(error, SystemExit):
        if error.code is None:  # sys.exit() exits 0
            return 0
        return error.code if isinstance(error.code, int) else EXIT_RUNTIME
    code = getattr(error, "exit_code", None)  # a DspxError
    return code if isinstance(code, int) else EXIT_RUNTIME


def command_trace(command: str, otlp: str | None, content: bool, **arguments: Any) -> CommandTrace | None:
    """The command's trace, or None when tracing is off. `arguments` are the command's parsed
    options, recorded on its span (secret-looking ones redacted; None and False left out)."""
    endpoint = _endpoint(otlp)
    if endpoint is None:
        return None
    content = content or any(os.environ.get(name, "").strip().lower() in _TRUE for name in CONTENT_VARIABLES)
    try:
        from dspx_cli.core.otel import OtelTelemetry
    except ImportError:
        sys.stderr.write(
            "warning: traces are not sent: the OpenTelemetry SDK is not installed (pip install 'dspx_cli[otel]')\n"
        )
        return None
    try:
        telemetry = OtelTelemetry(endpoint or None, capture_content=content, warn=sys.stderr.write)
    except Exception as error:  # noqa: BLE001 - a bad OTEL_* setting must not fail the command
        sys.stderr.write(f"warning: traces are not sent: {type(error).__name__}: {error}\n")
        return None
    return CommandTrace(telemetry, command, {"dspx.command": command, **_attributes(arguments)})


def telemetry_of(trace: CommandTrace | None) -> Telemetry:
    return OFF if trace is None else trace.telemetry


def _endpoint(otlp: str | None) -> str | None:
    """The traces URL for --otlp, "" when the SDK's variables name it, None when tracing is off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    otlp = (otlp or os.environ.get("DSPX_OTLP") or "").strip()
    if otlp:
        base = otlp.rstrip("/")
        return base if base.endswith("/v1/traces") else base + "/v1/traces"
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return ""
    return None


def _attributes(arguments: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for name, value in arguments.items():
        if value is None or value is False or value == [] or value == ():
            continue
        key = f"dspx.args.{name}"
        if is_secret_name(name):
            attributes[key] = REDACTED
        elif isinstance(value, list | tuple):
            attributes[key] = [_pair(str(item)) for item in value]
        elif isinstance(value, bool | int | float):
            attributes[key] = value
        else:
            attributes[key] = redact_urls(str(value))
    return attributes


def _pair(text: str) -> str:
    """FIELD=VALUE (an input, a --set) with the value redacted when the field names a secret."""
    name, sep, _ = text.partition("=")
    return f"{name}={REDACTED}" if sep and is_secret_name(name.strip().split(".")[-1]) else text
