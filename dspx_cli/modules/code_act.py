"""CodeAct: an agent that acts by writing Python. Each iteration the LM writes code (which may call
the program's tools) and says whether it is `finished`; the code runs in the sandbox and its output
or error joins the trajectory; at the end an extractor answers from the trajectory. DSPy's
`dspy.CodeAct`, prompt for prompt.

Predictors, named as DSPy names them:

- `codeact` (Predict): inputs, trajectory -> generated_code, finished: bool. Its instructions are
  the task's, DSPy's agent brief and the numbered tools (each as `str(dspy.Tool)` writes it).
  The trajectory reaches it as a JSON object, as DSPy's adapter renders the dict it is given.
- `extractor` (ChainOfThought): inputs, outputs, trajectory (as `[[ ## key ## ]]` sections), with
  the task's instructions; a context-window overflow drops the oldest entries, as in ReAct.

Per iteration `i` the trajectory gets `generated_code_i` and `code_output_i`, or
`observation_i` when the code failed to parse or to run. A reply that fails to parse ends the
iteration without looking at `finished` (DSPy's rule).

Where dspx differs from DSPy: DSPy defines each tool inside its interpreter by running the
function's source there (only plain functions qualify); dspx runs the declared tools on the host
and the sandboxed code calls them back, so any tool (Python function, calculator, retrieve)
works and keeps its host-side timeout. All iterations of one call share one sandbox session:
variables persist from one iteration to the next, never from one call to another.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dspx_cli.core import Field, Prediction, Signature
from dspx_cli.lm.base import LM, Message, Usage
from dspx_cli.modules.chain_of_thought import ChainOfThought
from dspx_cli.modules.code_steps import CodeSandbox, parse_code, require, run_code
from dspx_cli.modules.copies import Composite
from dspx_cli.modules.loop_args import check_max_iters, task_inputs
from dspx_cli.modules.predict import Predict
from dspx_cli.modules.react import call_with_truncation, extract_signature, tools_by_name
from dspx_cli.modules.tool import Tool

__all__ = ["DEFAULT_MAX_ITERS", "CodeAct", "code_act_instructions", "code_act_signature"]

DEFAULT_MAX_ITERS = 5  # DSPy's default


def code_act_instructions(signature: Signature, tools: Iterable[Tool]) -> str:
    """DSPy's CodeAct instructions, word for word: the task's own, the brief, the numbered tools."""
    inputs = ", ".join(f"`{name}`" for name in signature.input_fields)
    outputs = ", ".join(f"`{name}`" for name in signature.output_fields)
    lines = [f"{signature.instructions}\n"] if signature.instructions else []
    lines.append(
        f"You are an intelligent agent. For each episode, you will receive the fields {inputs} as input.\n"
        "Your goal is to generate executable Python code that collects any necessary information for "
        f"producing {outputs}.\n"
        "For each iteration, you will generate a code snippet that either solves the task or progresses "
        "towards the solution.\n"
        "Ensure any output you wish to extract from the code is printed to the console. The code should be "
        "enclosed in a fenced code block.\n"
        f"When all information for producing the outputs ({outputs}) are available to be extracted, mark "
        "`finished=True` besides the final Python code.\n"
        "You have access to the Python Standard Library and the following functions:"
    )
    lines += [f"({index}) {tool}" for index, tool in enumerate(tools, start=1)]
    return "\n".join(lines)


def code_act_signature(signature: Signature, tools: Iterable[Tool]) -> Signature:
    """inputs, trajectory -> generated_code, finished: bool."""
    return Signature(
        (*signature.inputs, Field("trajectory", str)),
        (
            Field(
                "generated_code",
                str,
                "Python code that when executed, produces output relevant to answering the question",
            ),
            Field("finished", bool, "a boolean flag to determine if the process is done"),
        ),
        code_act_instructions(signature, tools),
    )


class CodeAct(Composite):
    """`CodeAct(signature, tools, lm, sandbox=..., max_iters=5, **predict_options)`.

    `tools` are Tools or plain callables, called back from the sandbox by name. `predict_options`
    are Predict's and go to both predictors; `demos` go to `codeact` only (as ReAct's go to
    `react`). The result holds `trajectory`, then the extractor's `reasoning` and outputs.
    """

    parts = ("codeact", "extractor")

    def __init__(
        self,
        signature: Signature,
        tools: Iterable[Tool | Any],
        lm: LM | None = None,
        *,
        sandbox: CodeSandbox | None = None,
        max_iters: int = DEFAULT_MAX_ITERS,
        **predict_options: Any,
    ) -> None:
        self._signature = signature
        self.sandbox = sandbox
        self.max_iters = check_max_iters(max_iters, 0)
        self.tools = table = tools_by_name(tools)
        demos = predict_options.pop("demos", None)
        self.codeact = Predict(code_act_signature(signature, table.values()), lm, demos=demos, **predict_options)
        self.extractor = ChainOfThought(extract_signature(signature), lm, **predict_options)

    @property
    def signature(self) -> Signature:
        return self._signature

    def named_predictors(self) -> list[tuple[str, Predict]]:
        return [("codeact", self.codeact), ("extractor.predict", self.extractor.predict)]

    def messages(self, inputs: Mapping[str, Any]) -> list[Message]:
        """The first iteration's prompt (empty trajectory), for `dspx inspect`."""
        return self.codeact.messages({**task_inputs(self._signature, inputs), "trajectory": {}})

    async def acall(self, **inputs: Any) -> Prediction:
        max_iters = inputs.pop("max_iters", self.max_iters)
        sandbox = require(self.sandbox)
        task = task_inputs(self._signature, inputs)
        trajectory: dict[str, Any] = {}
        usage = Usage()
        async with sandbox.session(tools=self.tools) as session:
            for idx in range(max_iters):
                # A copy: the trace keeps what this call saw, not the trajectory's later entries.
                step = await self.codeact.acall(**task, trajectory=dict(trajectory))
                usage += step.usage or Usage()
                code, error = parse_code(step.get("generated_code"))
                if error is not None:
                    trajectory[f"observation_{idx}"] = f"Failed to parse the generated code: {error}"
                    continue
                trajectory[f"generated_code_{idx}"] = code
                output, error = await run_code(session, code)
                if error is None:
                    trajectory[f"code_output_{idx}"] = output
                else:
                    trajectory[f"observation_{idx}"] = f"Failed to execute the generated code: {error}"
                if step.get("finished"):
                    break
        extracted = await self._extract(trajectory, task)
        result = Prediction(trajectory=trajectory, **{key: extracted[key] for key in extracted})
        result.usage = usage + (extracted.usage or Usage())
        return result

    async def _extract(self, trajectory: dict[str, Any], inputs: dict[str, Any]) -> Prediction:
        """The extractor's call, by ReAct's truncation rule; a copy is truncated, so the result keeps every step."""
        return await call_with_truncation(self.extractor, inputs, dict(trajectory), self.extractor.predict.adapter)
