"""ReAct: an agent loop that thinks, calls tools, reads what they return, and finally answers.

This is DSPy's `dspy.ReAct`, prompt for prompt. Each step is one call of the `react` predictor,
whose signature is the task's inputs plus the `trajectory` so far, and whose outputs are
`next_thought`, `next_tool_name` (one of the tools, or `finish`) and `next_tool_args` (a JSON
object). The chosen tool runs and what it returns (or how it failed) becomes the step's
observation. After `finish`, or `max_iters` steps, the `extract` predictor (a ChainOfThought over
the inputs and the trajectory) writes the task's outputs.

The trajectory is a dict local to one `acall`: `thought_0`, `tool_name_0`, `tool_args_0`,
`observation_0`, `thought_1`, ... It reaches the LM as text, each entry under its own
`[[ ## key ## ]]` header, exactly as DSPy's adapter formats it. Concurrent calls share only the
predictors (and their LM), never a trajectory.

When a prompt no longer fits the model's context window, the oldest step (its four entries) is
dropped and the call is tried again, up to three times, as DSPy's `truncate_trajectory` does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Literal

from dspx_cli.adapters import ChatAdapter
from dspx_cli.core import Field, Prediction, Signature
from dspx_cli.errors import AdapterParseError, LMError, SandboxUnavailableError
from dspx_cli.lm.base import LM, Message, Usage
from dspx_cli.lm.context_window import (
    ContextWindowExceededError,
    is_context_window_error,
)
from dspx_cli.modules.chain_of_thought import ChainOfThought
from dspx_cli.modules.copies import Composite
from dspx_cli.modules.loop_args import check_max_iters
from dspx_cli.modules.predict import Predict
from dspx_cli.modules.tool import Tool, format_tool_error

__all__ = [
    "DEFAULT_MAX_ITERS",
    "FINISH",
    "ReAct",
    "call_with_truncation",
    "extract_signature",
    "format_trajectory",
    "react_instructions",
    "react_signature",
    "tool_table",
    "tools_by_name",
    "truncate_trajectory",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_ITERS = 20  # DSPy's default
FINISH = "finish"
# Attempts per predictor call when the context window overflows (DSPy's constant).
_TRUNCATION_ATTEMPTS = 3
# Every step adds four entries: thought, tool name, tool args, observation.
_STEP_KEYS = 4


def _finish_tool(outputs: str) -> Tool:
    return Tool(
        func=lambda: "Completed.",
        name=FINISH,
        desc=(
            "Marks the task as complete. That is, signals that all information for producing the outputs, "
            f"i.e. {outputs}, are now available to be extracted."
        ),
        args={},
    )


def tools_by_name(tools: Iterable[Tool | Any]) -> dict[str, Tool]:
    """The tools by name. Plain callables are wrapped in Tool; a later name wins, as in DSPy."""
    table: dict[str, Tool] = {}
    for tool in tools:
        wrapped = tool if isinstance(tool, Tool) else Tool(tool)
        table[wrapped.name] = wrapped
    return table


def tool_table(signature: Signature, tools: Iterable[Tool | Any]) -> dict[str, Tool]:
    """The tools by name (see `tools_by_name`), `finish` last."""
    table = tools_by_name(tools)
    table[FINISH] = _finish_tool(", ".join(f"`{name}`" for name in signature.output_fields))
    return table


def react_instructions(signature: Signature, tools: Mapping[str, Tool]) -> str:
    """DSPy's ReAct instructions, word for word: the task's own, the agent's brief, the numbered tools."""
    inputs = ", ".join(f"`{name}`" for name in signature.input_fields)
    outputs = ", ".join(f"`{name}`" for name in signature.output_fields)
    lines = [f"{signature.instructions}\n"] if signature.instructions else []
    lines += [
        (
            f"You are an Agent. In each episode, you will be given the fields {inputs} as input. "
            "And you can see your past trajectory so far."
        ),
        (
            "Your goal is to use one or more of the supplied tools to collect any necessary information for "
            f"producing {outputs}.\n"
        ),
        (
            "To do this, you will interleave next_thought, next_tool_name, and next_tool_args in each turn, "
            "and also when finishing the task."
        ),
        "After each tool call, you receive a resulting observation, which gets appended to your trajectory.\n",
        "When writing next_thought, you may reason about the current situation and plan for future steps.",
        "When selecting the next_tool_name and its next_tool_args, the tool must be one of:\n",
    ]
    lines += [f"({index}) {tool}" for index, tool in enumerate(tools.values(), start=1)]
    lines.append("When providing `next_tool_args`, the value inside the field must be in JSON format")
    return "\n".join(lines)


def react_signature(signature: Signature, tools: Mapping[str, Tool]) -> Signature:
    """inputs, trajectory -> next_thought, next_tool_name: Literal[tools], next_tool_args: dict[str, Any]."""
    return Signature(
        (*signature.inputs, Field("trajectory", str)),
        (
            Field("next_thought", str),
            Field("next_tool_name", Literal[tuple(tools)]),
            Field("next_tool_args", dict[str, Any]),
        ),
        react_instructions(signature, tools),
    )


def extract_signature(signature: Signature) -> Signature:
    """DSPy's fallback signature: inputs, trajectory -> outputs, with the task's instructions."""
    return Signature((*signature.inputs, Field("trajectory", str)), signature.outputs, signature.instructions)


def format_trajectory(adapter: ChatAdapter, trajectory: Mapping[str, Any]) -> str:
    """The trajectory as the LM reads it: DSPy formats it as the inputs of a `keys -> x` signature."""
    if not trajectory:
        return ""  # DSPy's " -> x" signature has no inputs, so its message is empty
    as_inputs = Signature(tuple(Field(key, str) for key in trajectory), (Field("x", str),))
    return adapter.format_user_message(as_inputs, trajectory)


def truncate_trajectory(trajectory: dict[str, Any]) -> dict[str, Any]:
    """Drop the oldest step (its four entries), in place (DSPy's rule); a single step cannot be dropped."""
    keys = list(trajectory)
    if len(keys) <= _STEP_KEYS:
        raise ContextWindowExceededError(
            "The trajectory is too long so your prompt exceeded the context window, but the trajectory "
            "cannot be truncated because it only has one tool call."
        )
    for key in keys[:_STEP_KEYS]:
        del trajectory[key]
    return trajectory


async def call_with_truncation(
    module: Predict | ChainOfThought,
    inputs: Mapping[str, Any],
    trajectory: dict[str, Any],
    adapter: ChatAdapter,
    truncate: Callable[[dict[str, Any]], dict[str, Any]] = truncate_trajectory,
) -> Prediction:
    """`module` called on the inputs and the trajectory (formatted by `adapter`); on a context-window
    overflow, the oldest step is dropped from `trajectory` (in place) and the call tried again, up to
    DSPy's three attempts. ReAct and CodeAct both follow this rule, as DSPy's CodeAct inherits it."""
    last: LMError | None = None
    for _ in range(_TRUNCATION_ATTEMPTS):
        try:
            return await module.acall(**inputs, trajectory=format_trajectory(adapter, trajectory))
        except LMError as err:
            if not is_context_window_error(err):
                raise
            logger.warning("Trajectory exceeded the context window, truncating the oldest tool call information.")
            last = err
            try:
                trajectory = truncate(trajectory)
            except ContextWindowExceededError as cannot:
                raise cannot from err
    raise ContextWindowExceededError(
        "The context window was exceeded even after 3 attempts to truncate the trajectory."
    ) from last


class ReAct(Composite):
    """`ReAct(signature, tools, lm, max_iters=20, **predict_options)`; `await react.acall(**inputs)`.

    `tools` are Tools or plain callables. `predict_options` are Predict's (adapter, n, temperature,
    max_tokens, extra, on_fallback) and go to both predictors; `demos` go to `react` only. The
    result holds `trajectory`, then the extract step's `reasoning` and the signature's outputs,
    like DSPy's Prediction; its `usage` adds up every LM call of the run.
    """

    def __init__(
        self,
        signature: Signature,
        tools: Iterable[Tool | Any],
        lm: LM | None = None,
        *,
        max_iters: int = DEFAULT_MAX_ITERS,
        **predict_options: Any,
    ) -> None:
        self.signature = signature
        self.max_iters = check_max_iters(max_iters, 0)
        self.tools = tool_table(signature, tools)
        demos = predict_options.pop("demos", None)
        self.react = Predict(react_signature(signature, self.tools), lm, demos=demos, **predict_options)
        self.extract = ChainOfThought(extract_signature(signature), lm, **predict_options)

    parts = ("react", "extract")

    def named_predictors(self) -> list[tuple[str, Predict]]:
        # DSPy's names, so a state saved by DSPy for a ReAct module lines up.
        return [("react", self.react), ("extract.predict", self.extract.predict)]

    def messages(self, inputs: Mapping[str, Any]) -> list[Message]:
        """The first step's prompt (empty trajectory), for `dspx inspect`."""
        return self.react.messages({**inputs, "trajectory": self.format_trajectory({})})

    def format_trajectory(self, trajectory: Mapping[str, Any]) -> str:
        return format_trajectory(self.react.adapter, trajectory)

    def truncate_trajectory(self, trajectory: dict[str, Any]) -> dict[str, Any]:
        """Drop the oldest step, in place (DSPy's rule); a single step cannot be dropped."""
        return truncate_trajectory(trajectory)

    async def acall(self, **inputs: Any) -> Prediction:
        max_iters = inputs.pop("max_iters", self.max_iters)
        trajectory: dict[str, Any] = {}
        async with AsyncExitStack() as stack:
            # Each run has its own copy of a tool with per-run state (the sandbox's variables),
            # closed when the loop ends.
            tools = {name: await stack.enter_async_context(tool.per_run()) for name, tool in self.tools.items()}
            usage = await self._loop(tools, trajectory, inputs, max_iters)

        extracted = await self._call(self.extract, trajectory, inputs)
        result = Prediction(trajectory=trajectory, **{key: extracted[key] for key in extracted})
        # Calls that overflowed the context window reported no usage; every other call is counted.
        result.usage = usage + (extracted.usage or Usage())
        return result

    async def _loop(
        self, tools: Mapping[str, Tool], trajectory: dict[str, Any], inputs: dict[str, Any], max_iters: int
    ) -> Usage:
        """Think, act, observe until `finish` or `max_iters`; fills `trajectory`, returns the usage."""
        usage = Usage()
        for idx in range(max_iters):
            try:
                step = await self._call(self.react, trajectory, inputs)
            except ContextWindowExceededError as err:
                logger.warning("Ending the trajectory: %s", err)
                break
            except (ValueError, AdapterParseError) as err:
                # DSPy 3.4.1 ends the loop on a ValueError but lets a reply that does not parse fail
                # the whole run. dspx ends the loop on both: the extract step still answers from
                # the trajectory so far, which is worth more to a batch or an evaluation than an error.
                logger.warning("Ending the trajectory: Agent failed to select a valid tool: %s", err)
                break
            usage += step.usage or Usage()

            name, args = step.next_tool_name, step.next_tool_args
            trajectory[f"thought_{idx}"] = step.next_thought
            trajectory[f"tool_name_{idx}"] = name
            trajectory[f"tool_args_{idx}"] = args
            try:
                trajectory[f"observation_{idx}"] = await tools[name].acall(**args)
            except SandboxUnavailableError:
                raise  # no Deno or Pyodide: the machine's problem, which no next step of the LM can fix
            except Exception as err:  # noqa: BLE001 - a tool failure is news for the LM, not the end of the run
                trajectory[f"observation_{idx}"] = f"Execution error in {name}: {format_tool_error(err)}"
            if name == FINISH:
                break
        return usage

    async def _call(
        self, module: Predict | ChainOfThought, trajectory: dict[str, Any], inputs: dict[str, Any]
    ) -> Prediction:
        """One predictor call; on a context-window overflow, drop the oldest step and try again."""
        # Through the method: a subclass may override it, as DSPy's ReAct allows.
        return await call_with_truncation(module, inputs, trajectory, self.react.adapter, self.truncate_trajectory)
