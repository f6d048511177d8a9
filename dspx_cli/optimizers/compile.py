"""Choose and run an optimizer from the program's `optimizer:` section and the command line."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspx_cli.core.spec_mirror import validate_dataclass
from dspx_cli.core.spec_model import Field, SpecModel, SpecValidationError, field_validator
from dspx_cli.errors import ProgramError, UsageError
from dspx_cli.lm.config import LMConfig
from dspx_cli.optimizers.registry import OPTIMIZERS, CompileJob, OptimizerType
from dspx_cli.optimizers.settings_checks import check_cross_fields
from dspx_cli.program.diagnostics import to_program_error
from dspx_cli.program.loader import lm_config
from dspx_cli.program.model import Program
from dspx_cli.program.schema import LMSpec

if TYPE_CHECKING:
    # Only annotations here: `dspx validate` reads a program's optimizer settings through this
    # module, and the runner (asyncio), run context and state loader cost it ~25 ms.
    from dspx_cli.core import Example
    from dspx_cli.evaluate.metrics import Metric
    from dspx_cli.lm.base import LM
    from dspx_cli.program.context import RunContext
    from dspx_cli.program.runner import ProgramRunner


@dataclass(frozen=True)
class Teacher:
    """Who runs the training examples while bootstrapping (DSPy's `teacher=`).

    `lm` replaces the LM of every module (a stronger model writes the demos the student learns
    from); `state` loads a compiled state into the teacher, whose demos are then used as they are,
    like DSPy's compiled teacher. Either alone, or both."""

    lm: LMConfig | None = None
    state: Path | None = None

    def describe(self) -> dict[str, Any]:
        # What the summary and state metadata record: never the key.
        return {"lm": self.lm.model if self.lm else None, "state": str(self.state) if self.state else None}


class _TeacherSpec(SpecModel, extra="forbid"):
    lm: LMSpec | None = Field(default=None, description="Replaces every module's LM while bootstrapping.")
    state: str | None = Field(default=None, description="A compiled state loaded into the teacher (path).")

    _shorthand = field_validator("lm", mode="before")(lambda cls, v: {"model": v} if isinstance(v, str) else v)


# Public for `dspx schema`: the `teacher:` key of optimizer settings and of `finetune:`.
TeacherSpec = _TeacherSpec


class _TeacherSection(SpecModel, extra="allow"):
    # Only for error locations: the teacher is checked where it was written, optimizer.teacher.
    teacher: _TeacherSpec | None = None


class _TeacherRoot(SpecModel, extra="allow"):
    optimizer: _TeacherSection


class _FinetuneTeacherRoot(SpecModel, extra="allow"):
    finetune: _TeacherSection


@dataclass
class OptimizerChoice:
    name: str
    settings: dict[str, Any] = field(default_factory=dict)  # JSON-able, as recorded in the state
    teacher: Teacher | None = None


def choose_optimizer(
    program: Program,
    override: str | None,
    assignments: Sequence[str],
    *,
    teacher_lm: str | None = None,
    teacher_state: Path | None = None,
) -> OptimizerChoice:
    """`optimizer:` in the file, `--optimizer` replacing its type, `--set key=value` its settings;
    `--teacher-lm` / `--teacher-state` replace the file's `teacher:` parts."""
    section = dict(program.spec.optimizer or {})
    written = section.pop("type", None)
    name = override or written
    if override and override != written:
        section = {}  # the file's settings belong to another optimizer
    known = ", ".join(OPTIMIZERS)
    if name is None:
        raise UsageError(f"{program.path} has no `optimizer:` section; pass --optimizer with one of: {known}")
    if name not in OPTIMIZERS:
        if override:
            raise UsageError(f"--optimizer {name}: unknown optimizer; expected one of: {known}")
        raise ProgramError(
            f"unknown optimizer {name!r}; expected one of: {known}", program.positions.locate(("optimizer", "type"))
        )
    record = OPTIMIZERS[name]
    settings = record.defaults()
    for key, value in section.items():
        if key not in settings:
            raise ProgramError(
                f"optimizer {name} has no setting {key!r}; expected one of: {', '.join(settings)}",
                program.positions.locate(("optimizer", key)),
            )
        settings[key] = value
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or key not in settings:
            raise UsageError(f"--set {assignment}: expected KEY=VALUE with KEY one of: {', '.join(settings)}")
        try:
            settings[key] = json.loads(text)
        except json.JSONDecodeError:
            settings[key] = text
    settings = _checked_settings(program, record, settings, section, assignments)
    teacher = _teacher(program, name, settings.get("teacher"), teacher_lm, teacher_state)
    if teacher is not None:
        settings["teacher"] = teacher.describe()
    return OptimizerChoice(name, settings, teacher)


def _checked_settings(
    program: Program,
    record: OptimizerType,
    settings: dict[str, Any],
    section: dict[str, Any],
    assignments: Sequence[str],
) -> dict[str, Any]:
    """Each setting against the type its record declares, blamed on the `--set` or the line that gave it."""
    try:
        checked: Any = validate_dataclass(record.settings, settings)
    except SpecValidationError as exc:
        first = exc.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else "?"
        expected = first["msg"].replace("Input should be", "expected")
        message = f"optimizer {record.name}: {key}: {expected}, got {settings.get(key)!r}"
        given = [a for a in assignments if a.partition("=")[0] == key]
        if given:
            raise UsageError(f"--set {given[-1]}: {message}") from None
        where = ("optimizer", key) if key in section else ("optimizer",)
        raise ProgramError(message, program.positions.locate(where)) from None
    values = {key: getattr(checked, key) for key in settings}
    check_cross_fields(program, record.name, values, section, assignments)
    return values


def _teacher(
    program: Program, optimizer: str, raw: Any, lm_text: str | None, state_path: Path | None
) -> Teacher | None:
    if (lm_text or state_path) and not OPTIMIZERS[optimizer].takes_teacher:
        raise UsageError(f"--teacher-lm/--teacher-state: {optimizer} takes no teacher")
    return resolve_teacher(program, raw, lm_text, state_path, at="optimizer")


def resolve_teacher(
    program: Program, raw: Any, lm_text: str | None, state_path: Path | None, *, at: str
) -> Teacher | None:
    """The teacher written under `<at>.teacher` in the file (`raw`, checked there), with
    `--teacher-lm` / `--teacher-state` replacing its parts; None when neither names one."""
    lm: LMConfig | None = None
    state: Path | None = None
    if raw is not None:
        root = _TeacherRoot if at == "optimizer" else _FinetuneTeacherRoot
        data = {at: {"teacher": raw}}
        try:
            checked = root.model_validate(data)
        except SpecValidationError as exc:
            raise to_program_error(exc, data, program.positions) from None
        spec = getattr(checked, at).teacher
        assert spec is not None
        lm = lm_config(spec.lm, None) if spec.lm else None
        # Written in the file: relative to the file, like data paths.
        state = program.base_dir / spec.state if spec.state else None
    if lm_text:
        lm = LMConfig.from_model_string(lm_text)
    if state_path:
        state = state_path
    if state is not None and not state.is_file():
        raise UsageError(f"teacher state {state}: no such file")
    return Teacher(lm, state) if lm or state else None


def build_teacher(program: Program, teacher: Teacher | None, context: RunContext) -> ProgramRunner | None:
    """The teacher's runner: the same modules, on the teacher's LM and/or with its state."""
    if teacher is None:
        return None
    if teacher.lm is not None:
        modules = {}
        for name, definition in program.modules.items():
            spec = program.spec.modules[name]
            # The module's own sampling settings stay; those it inherited come from the teacher's LM.
            modules[name] = replace(
                definition,
                lm=teacher.lm,
                n=spec.n or teacher.lm.n,
                temperature=spec.temperature if spec.temperature is not None else teacher.lm.temperature,
                max_tokens=spec.max_tokens or teacher.lm.max_tokens,
            )
        program = replace(program, modules=modules)
    from dspx_cli.evaluate.rewards import build_rewards
    from dspx_cli.optimizers.state import load_state, read_state_file
    from dspx_cli.program.runner import ProgramRunner

    runner = ProgramRunner(program, context, rewards=build_rewards(program, context))
    if teacher.state is not None:
        load_state(
            runner,
            read_state_file(teacher.state),
            source=str(teacher.state),
            context=context,
            base_dir=teacher.state.parent,
        )
    return runner


async def optimize(
    runner: ProgramRunner,
    choice: OptimizerChoice,
    trainset: Sequence[Example],
    metric: Metric,
    *,
    concurrency: int,
    valset: Sequence[Example] | None = None,
    teacher: ProgramRunner | None = None,
    study: StudyJob | None = None,
) -> dict[str, Any]:
    """Sets the demos (and, for instruction optimizers, the instructions) of `runner` in place;
    returns what the optimizer reports.

    `valset` is used by the optimizers that select among candidates (random search, mipro_v2);
    the others see only the trainset, as in DSPy. `study` carries what instruction optimizers
    need besides (CompileJob's prompt_lm ... on_trial); the others ignore it."""
    settings = dict(choice.settings)
    settings.pop("teacher", None)  # its description; the runner comes in `teacher`
    # A loaded state makes the teacher compiled: its demos are used as they are, as in DSPy.
    teacher_compiled = bool(choice.teacher and choice.teacher.state)
    job = CompileJob(trainset, metric, concurrency, valset, teacher, teacher_compiled)
    if study is not None:
        job = replace(job, **{f.name: getattr(study, f.name) for f in fields(StudyJob)})
    return await OPTIMIZERS[choice.name].entry_point()(runner, settings, job)


@dataclass(frozen=True)
class StudyJob:
    """CompileJob's fields for instruction optimizers, as the compile workflow fills them."""

    prompt_lm: LM | None = None
    prompt_lm_config: LMConfig | None = None
    program_text: str = ""
    run_dir: Path | None = None
    storage: str | None = None
    study_name: str | None = None
    resume: bool = False
    notice: Callable[[str], None] | None = None
    on_trial: Callable[[dict[str, Any]], None] | None = None


def prompt_lm_config(program: Program, optimizer: str, flag: str | None) -> LMConfig | None:
    """The proposer's LM: --prompt-lm (a path in it relative to the working directory), else the
    file's `prompt_lm:`, else the program's default LM (DSPy: the task model). None for an
    optimizer that proposes nothing; --prompt-lm with one is a usage error."""
    if not OPTIMIZERS[optimizer].takes_prompt_lm:
        if flag:
            raise UsageError(f"--prompt-lm: {optimizer} uses no prompt LM (mipro_v2 and copro do)")
        return None
    if flag:
        from dspx_cli.lm.registry import anchor_model_path, model_problem

        config = LMConfig.from_model_string(anchor_model_path(flag, Path.cwd()))
        problem = model_problem(config, program.base_dir)
        if problem is not None:
            raise UsageError(f"--prompt-lm {flag}: {problem}")
        return config
    return program.prompt_lm or program.default_lm


def call_counts(usage: dict[str, Any]) -> dict[str, int]:
    """The LM calls of a run as the compile summary reports them, from a `UsageMeter.to_dict()`:
    replies that were used (fresh, cached) apart from replies that did not fit the signature
    (DSPy's JSON fallback and bootstrap rounds that failed make those)."""
    total = usage["total"]
    unusable = usage.get("unusable_replies", 0)
    unusable_cached = usage.get("unusable_cached_replies", 0)
    return {
        "fresh": total["calls"] - total["cached_calls"] - (unusable - unusable_cached),
        "cached": total["cached_calls"] - unusable_cached,
        "unusable_replies": unusable,
        "failed": total.get("failed_calls", 0),
        "retries": total.get("retries", 0),
    }


def describe_calls(counts: dict[str, int]) -> str:
    """`12 fresh, 3 cached + 2 replies that did not fit the signature`"""
    text = f"{counts['fresh']} fresh, {counts['cached']} cached"
    if counts["unusable_replies"]:
        text += f" + {counts['unusable_replies']} replies that did not fit the signature"
    if counts.get("failed"):
        text += f" + {counts['failed']} failed"
    if counts.get("retries"):
        text += f" ({counts['retries']} retried attempts)"
    return text
