"""The `program_of_thought` and `code_act` module types: LM-written Python run in the sandbox.

    modules:
      solve:
        type: program_of_thought
        signature: "question -> answer: float"
        max_iters: 3            # code attempts before the call fails (DSPy's default)
        timeout: 10             # seconds per code run (the sandbox's default: 30)
      agent:
        type: code_act
        signature: question -> answer
        tools: [lookup]         # names from the program's `tools:`, called back on the host
        max_iters: 5

Loading reads these keys only: `dspx validate` neither imports the sandbox nor starts Deno. The
sandbox comes from the run context when the program is built to run: one per run, whose limits
are the largest the program's code modules declare.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dspx_cli.core.spec_model import Field
from dspx_cli.program.module_types import DefineArgs, ModuleType, register, summary_line, typed
from dspx_cli.program.spec_base import Strict

if TYPE_CHECKING:
    from dspx_cli.modules.base import Module
    from dspx_cli.modules.code_steps import CodeSandbox
    from dspx_cli.program.build import Builder
    from dspx_cli.program.model import ModuleDef, Program
    from dspx_cli.sandbox import SandboxLimits

__all__ = ["CodeActSettings", "ProgramOfThoughtSettings", "sandbox_limits"]


class _SandboxKeys(Strict):
    timeout: float | None = Field(default=None, gt=0, description="Seconds each code run may take (30).")
    memory_mb: int | None = Field(default=None, ge=64, description="The sandbox's memory cap in MB (1024).")


class ProgramOfThoughtSettings(_SandboxKeys):
    # None: the module's default (3)
    max_iters: int | None = Field(default=None, ge=1, description="Code attempts at most before the call fails (3).")


class CodeActSettings(_SandboxKeys):
    tools: list[str] | None = Field(
        default=None, description="Names from the program's `tools:` section, callable from the code."
    )
    # None: the module's default (5)
    max_iters: int | None = Field(default=None, ge=0, description="Code iterations at most (5).")


_CODE_TYPES = ("program_of_thought", "code_act")
_LIMIT_KEYS = ("timeout", "memory_mb")


def _sandbox(definition: ModuleDef, builder: Builder) -> CodeSandbox | None:
    """The run context's sandbox; None when building to render prompts."""
    if builder.context is None:
        return None
    return builder.context.sandbox(sandbox_limits(builder.program))


def sandbox_limits(program: Program) -> SandboxLimits:
    """The limits of a run's one sandbox: the program's, not one module's. For each limit, the
    largest any code module declares, or any sandbox tool (`timeout`), so whichever module or tool
    asks first, the sandbox is the same."""
    from dspx_cli.sandbox import SandboxLimits

    declared: dict[str, list[Any]] = {key: [] for key in _LIMIT_KEYS}
    for module in program.modules.values():
        if module.type in _CODE_TYPES:
            settings = typed(module.settings, _SandboxKeys)
            for key in _LIMIT_KEYS:
                if getattr(settings, key) is not None:
                    declared[key].append(getattr(settings, key))
        declared["timeout"] += [t.timeout for t in module.tools if t.kind == "sandbox" and t.timeout is not None]
    return SandboxLimits(**{key: max(values) for key, values in declared.items() if values})


def _build_program_of_thought(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules.program_of_thought import ProgramOfThought

    options = builder.predict_options(definition)
    max_iters = typed(definition.settings, ProgramOfThoughtSettings).max_iters
    if max_iters is not None:
        options["max_iters"] = max_iters
    return ProgramOfThought(
        definition.signature, builder.lm(definition), sandbox=_sandbox(definition, builder), **options
    )


def _define_code_act(args: DefineArgs) -> dict[str, Any]:
    settings = typed(args.settings, CodeActSettings)
    for index, tool in enumerate(settings.tools or ()):
        if tool not in args.tools:
            raise args.error(
                f"module {args.name!r} uses unknown tool {tool!r}; defined tools: {', '.join(args.tools) or 'none'}",
                "tools",
                index,
            )
        if args.tools[tool].kind == "sandbox":
            raise args.error(
                f"module {args.name!r}: tool {tool!r} runs code in the sandbox, where code_act's code already "
                "runs; write the code directly, or give the tool to a react module",
                "tools",
                index,
            )
    return {"tools": tuple(args.tools[tool] for tool in settings.tools or ())}


def _build_code_act(definition: ModuleDef, builder: Builder) -> Module:
    from dspx_cli.modules.code_act import CodeAct

    options = builder.predict_options(definition)
    max_iters = typed(definition.settings, CodeActSettings).max_iters
    if max_iters is not None:
        options["max_iters"] = max_iters
    tools = [builder.tool(tool) for tool in definition.tools]
    return CodeAct(
        definition.signature, tools, builder.lm(definition), sandbox=_sandbox(definition, builder), **options
    )


def _summary_code_act(definition: ModuleDef) -> str:
    tools = ", ".join(tool.name for tool in definition.tools) or "none"
    return summary_line(definition, f"tools {tools}")


register(
    ModuleType(
        "program_of_thought",
        "writes Python that computes the outputs, runs it in the sandbox (rewriting it after an error); then answers",
        _build_program_of_thought,
        predictors=("code_generate.predict", "code_regenerate.predict", "generate_output.predict"),
        aliases=("programofthought", "pot"),
        settings=ProgramOfThoughtSettings,
        leading_outputs=lambda settings: (("trajectory", dict[str, Any]), ("reasoning", str)),
        demo_fields=lambda settings: frozenset({"final_generated_code", "code_output"}),
        key_docs="`max_iters` (3), `timeout` (30), `memory_mb` (1024)",
        outputs_doc="`trajectory`, `reasoning`",
    ),
    ModuleType(
        "code_act",
        "writes Python that may call the tools, runs it in the sandbox, until `finished` or `max_iters`; then extracts",
        _build_code_act,
        predictors=("codeact", "extractor.predict"),
        aliases=("codeact",),
        settings=CodeActSettings,
        leading_outputs=lambda settings: (("trajectory", dict[str, Any]), ("reasoning", str)),
        demo_fields=lambda settings: frozenset({"trajectory", "generated_code", "finished"}),
        define=_define_code_act,
        summary=_summary_code_act,
        key_docs="`tools` (names from `tools:`), `max_iters` (5), `timeout` (30), `memory_mb` (1024)",
        outputs_doc="`trajectory`, `reasoning`",
    ),
)
