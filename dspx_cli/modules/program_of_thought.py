"""ProgramOfThought: the LM writes Python that computes the answer, a sandbox runs it, and the LM
answers from the code and its output. DSPy's `dspy.ProgramOfThought`, prompt for prompt.

Three ChainOfThought predictors, with DSPy's signatures and instructions:

- `code_generate`: inputs -> generated_code;
- `code_regenerate`: inputs, previous_code, error -> generated_code, after code that failed to
  parse or to run (its error text is what the sandbox reports, DSPy's wording);
- `generate_output`: inputs, final_generated_code, code_output -> the signature's outputs.

After `max_iters` attempts whose code all failed, the call raises CodeRunError ("Max hops
reached", DSPy's message), which an evaluation counts as a failed example. Every call runs its
attempts in one sandbox session of its own, so nothing a call defines is seen by another.

The result holds `trajectory` (dspx's addition, for `dspx run --trace`: `generated_code_<i>`
and `code_output_<i>` or `error_<i>` per attempt), then the answer step's `reasoning` and outputs,
which are DSPy's whole Prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dspx_cli.core import Field, Prediction, Signature
from dspx_cli.lm.base import LM, Message, Usage
from dspx_cli.modules.chain_of_thought import ChainOfThought
from dspx_cli.modules.code_steps import CodeRunError, CodeSandbox, parse_code, require, run_code
from dspx_cli.modules.copies import Composite
from dspx_cli.modules.loop_args import check_max_iters, task_inputs
from dspx_cli.modules.predict import Predict

__all__ = ["DEFAULT_MAX_ITERS", "ProgramOfThought", "pot_signatures"]

DEFAULT_MAX_ITERS = 3  # DSPy's default

_CODE_DESC = "python code that answers the question"


def _names(fields: tuple[Field, ...]) -> str:
    return ", ".join(f"`{field.name}`" for field in fields)


def pot_signatures(signature: Signature) -> dict[str, Signature]:
    """DSPy's three signatures, by mode (generate, regenerate, answer), with their instructions."""
    inputs = signature.inputs
    code_out = Field("generated_code", str, _CODE_DESC)
    generate = (inputs, (code_out,))
    regenerate = (
        (
            *inputs,
            Field("previous_code", str, "previously-generated python code that errored"),
            Field("error", str, "error message from previously-generated python code"),
        ),
        (code_out,),
    )
    answer = (
        (
            *inputs,
            Field("final_generated_code", str, _CODE_DESC),
            Field("code_output", str, "output of previously-generated python code"),
        ),
        signature.outputs,
    )
    final = _names(signature.outputs)
    instructions = {
        "generate": "\n".join(
            [
                f"You will be given {_names(generate[0])} and you will respond with {_names(generate[1])}.",
                (
                    "Generating executable Python code that programmatically computes the correct "
                    f"{_names(generate[1])}."
                ),
                (
                    "After you're done with the computation and think you have the final output, make sure to "
                    "submit your output by calling the preloaded function `SUBMIT()`."
                ),
                (
                    'You must structure your output in a dict, like {"field_a": value_a, ...}, with the correct '
                    f"value mapping for the field(s): {final}."
                ),
            ]
        ),
        "regenerate": "\n".join(
            [
                f"You are given {_names(regenerate[0])} due to an error in previous code.",
                "Your task is to correct the error and provide the new `generated_code`.",
            ]
        ),
        "answer": f"Given the final code {_names(answer[0])}, provide the final {_names(answer[1])}.",
    }
    shapes = {"generate": generate, "regenerate": regenerate, "answer": answer}
    return {mode: Signature(ins, outs, instructions[mode]) for mode, (ins, outs) in shapes.items()}


class ProgramOfThought(Composite):
    """`ProgramOfThought(signature, lm, sandbox=..., max_iters=3, **predict_options)`.

    `sandbox` gives each call its session (None builds a module that renders prompts only).
    `predict_options` are Predict's and go to all three predictors; `demos` go to `generate_output`,
    whose fields are the task's inputs and outputs.
    """

    parts = ("code_generate", "code_regenerate", "generate_output")

    def __init__(
        self,
        signature: Signature,
        lm: LM | None = None,
        *,
        sandbox: CodeSandbox | None = None,
        max_iters: int = DEFAULT_MAX_ITERS,
        **predict_options: Any,
    ) -> None:
        self._signature = signature
        self.sandbox = sandbox
        self.max_iters = check_max_iters(max_iters, 1)
        demos = predict_options.pop("demos", None)
        modes = pot_signatures(signature)
        self.code_generate = ChainOfThought(modes["generate"], lm, **predict_options)
        self.code_regenerate = ChainOfThought(modes["regenerate"], lm, **predict_options)
        self.generate_output = ChainOfThought(modes["answer"], lm, demos=demos, **predict_options)

    @property
    def signature(self) -> Signature:
        return self._signature

    def named_predictors(self) -> list[tuple[str, Predict]]:
        # DSPy's names, so a state saved by DSPy for a ProgramOfThought lines up.
        return [
            ("code_generate.predict", self.code_generate.predict),
            ("code_regenerate.predict", self.code_regenerate.predict),
            ("generate_output.predict", self.generate_output.predict),
        ]

    def messages(self, inputs: Mapping[str, Any]) -> list[Message]:
        return self.code_generate.messages(task_inputs(self._signature, inputs))

    async def acall(self, **inputs: Any) -> Prediction:
        sandbox = require(self.sandbox)
        task = task_inputs(self._signature, inputs)
        trajectory: dict[str, Any] = {}
        usage = Usage()
        async with sandbox.session() as session:
            step = await self.code_generate.acall(**task)
            usage += step.usage or Usage()
            hop = 0
            while True:
                code, error = parse_code(step.get("generated_code"))
                output: str | None = None
                if error is None:
                    output, error = await run_code(session, code)
                trajectory[f"generated_code_{hop}"] = code
                if error is None:
                    trajectory[f"code_output_{hop}"] = output
                    break
                trajectory[f"error_{hop}"] = error
                hop += 1
                if hop == self.max_iters:
                    raise CodeRunError(f"Max hops reached. Failed to run ProgramOfThought: {error}")
                step = await self.code_regenerate.acall(**task, previous_code=code, error=error)
                usage += step.usage or Usage()
        answered = await self.generate_output.acall(**task, final_generated_code=code, code_output=output)
        result = Prediction(trajectory=trajectory, **{key: answered[key] for key in answered})
        result.usage = usage + (answered.usage or Usage())
        return result
