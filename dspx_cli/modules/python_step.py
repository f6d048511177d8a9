"""PythonStep: a flow step that runs a function from the program's own Python file.

The function gets the step's inputs as keyword arguments and returns its outputs as a mapping (a
dict, or a Prediction). It calls no LM and has no predictor, so optimizers see nothing to tune
and leave no trace of it, as with Retrieve. An async function runs in the event loop; a plain one
runs in a thread of its own (as a Python tool does), so a slow one does not hold up the other
examples of a batch. Its outputs are checked against the signature's types; whatever goes wrong
is a `PythonStepError` naming the module and the function, which fails that example only.
"""

from __future__ import annotations

import copy
import inspect
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

from dspx_cli.adapters.values import describe_error, parse_value
from dspx_cli.core import Prediction, Signature, annotation_name
from dspx_cli.errors import DspxError
from dspx_cli.lm.base import Message, Usage
from dspx_cli.modules.tool import in_thread

__all__ = ["PythonStep", "PythonStepError"]


class PythonStepError(DspxError):
    """A Python step raised, or returned outputs that do not fit its signature (exit code 1)."""


class PythonStep:
    """`await PythonStep(signature, fn, name="clean", label="steps.py:clean").acall(**inputs)`."""

    def __init__(
        self, signature: Signature, function: Callable[..., Any], *, name: str, label: str, path: Path | None = None
    ) -> None:
        self.signature = signature
        self.function = function
        self.name = name  # the module's name in the program
        self.label = label  # `file.py:function`, as the program file writes it
        self.path = path.resolve() if path is not None else None  # to point at the line that raised
        # An object with an async __call__ is awaited in the loop too.
        self._is_async = inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(type(function).__call__)

    def named_predictors(self) -> list[tuple[str, Any]]:
        return []

    def messages(self, inputs: Mapping[str, Any]) -> list[Message]:
        return []  # runs Python; no LM call

    def copy(self) -> Self:
        return copy.copy(self)  # nothing to tune

    async def acall(self, **inputs: Any) -> Prediction:
        try:
            if self._is_async:
                result = self.function(**inputs)
            else:
                result = await in_thread(self.name, self.function, inputs)
            if inspect.isawaitable(result):  # a plain function that returned a coroutine
                result = await result
        except DspxError:
            raise
        except (Exception, SystemExit) as exc:  # sys.exit() in a step fails its example, not dspx
            raise self.error(f"raised {type(exc).__name__}: {exc}{self._where(exc)}") from exc
        prediction = Prediction(self._outputs(result))
        prediction.usage = Usage()  # no LM tokens
        return prediction

    def error(self, message: str) -> PythonStepError:
        return PythonStepError(f"python step {self.name!r} ({self.label}) {message}")

    def _where(self, exc: BaseException) -> str:
        """` at file.py:12`: the last line of the step's own file the error passed through."""
        if self.path is None:
            return ""
        lines = [
            frame.lineno
            for frame in traceback.extract_tb(exc.__traceback__)
            if frame.filename and Path(frame.filename).resolve() == self.path
        ]
        return f" at {self.path}:{lines[-1]}" if lines else ""

    def _outputs(self, result: Any) -> dict[str, Any]:
        """The returned mapping checked against the signature: same keys, values of the declared types."""
        items = getattr(result, "items", None)
        if isinstance(result, str | bytes) or not callable(items):
            raise self.error(
                f"returned {type(result).__name__}; expected a dict with {', '.join(self.signature.output_fields)}"
            )
        try:
            # A dict, a Prediction (dspx's or DSPy's: not Mappings, but they have items()), any mapping.
            result = dict(items())
        except Exception as exc:  # noqa: BLE001 - an `items` that is not a mapping's
            raise self.error(f"returned {type(result).__name__}, whose items() is not a mapping's: {exc}") from None
        expected = self.signature.output_fields
        missing = [name for name in expected if name not in result]
        extra = [str(name) for name in result if name not in expected]
        if missing or extra:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unexpected {', '.join(extra)}"] if extra else []
            )
            raise self.error(f"returned keys that do not fit its signature: {'; '.join(parts)}")
        outputs: dict[str, Any] = {}
        for name, field in expected.items():
            value = result[name]
            annotation = field.annotation
            try:
                # A str output takes only text: str() of a list would hide a mistake.
                if annotation is str and not isinstance(value, str):
                    raise ValueError(f"expected str, got {type(value).__name__}")
                outputs[name] = parse_value(value, annotation)
            except Exception as exc:  # noqa: BLE001 - pydantic's and the enum/literal checks' errors alike
                raise self.error(
                    f"returned {name}={_short(value)}, not a valid {annotation_name(annotation)}: {describe_error(exc)}"
                ) from None
        return outputs


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
