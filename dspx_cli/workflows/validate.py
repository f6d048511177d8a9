"""`validate` and `inspect`: everything a later command would reject, and the messages a run
would send, without calling any LM."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspx_cli.errors import UsageError
from dspx_cli.program.inputs import parse_cli_inputs
from dspx_cli.program.loader import load_program
from dspx_cli.program.model import Program
from dspx_cli.workflows.context import build_runner

if TYPE_CHECKING:
    from dspx_cli.lm.base import Message
    from dspx_cli.program.model import Step


def validate_program(path: Path) -> Program:
    """Loads and checks the program without running its code or any LM: Python tools, metrics
    and rewards are parsed, not imported; data files are read."""
    program = load_program(path, run_code=False)
    if program.spec.data is not None:
        from dspx_cli.evaluate.datasets import configured_splits, load_examples

        for split in configured_splits(program):
            load_examples(program, split)
    if program.spec.metric is not None:
        from dspx_cli.evaluate.metrics import resolve_metric

        resolve_metric(program, None, run_code=False)
    if any(definition.reward is not None for definition in program.modules.values()):
        from dspx_cli.evaluate.rewards import build_rewards

        build_rewards(program, None, run_code=False)  # each best_of_n/refine reward, checked where it is written
    if program.spec.optimizer is not None:
        from dspx_cli.optimizers.compile import choose_optimizer

        check_teacher(program, choose_optimizer(program, None, ()).teacher)
    if program.spec.finetune is not None:
        from dspx_cli.finetune.section import choose_finetune_settings

        check_teacher(program, choose_finetune_settings(program, ()).teacher, section="finetune")
    return program


def preview(
    path: Path, pairs: list[str], lm_override: str | None, state_file: Path | None = None
) -> tuple[Program, list[tuple[Step, list[Message]]]]:
    """The program and, per step, the messages it would send for these inputs."""
    program = load_program(path, lm_override=lm_override)
    inputs = parse_cli_inputs(program, pairs)
    return program, build_runner(program, None, state_file).preview(inputs)


def check_teacher(program: Program, teacher: Any, flag: str | None = None, section: str = "optimizer") -> None:
    """A teacher model no backend takes fails before compiling, where the file (under `section`)
    or `flag` (--teacher-lm) names it."""
    from dspx_cli.errors import ProgramError
    from dspx_cli.lm.registry import model_problem

    if teacher is None or teacher.lm is None:
        return
    problem = model_problem(teacher.lm, program.base_dir)
    if problem is not None and flag:
        raise UsageError(f"--teacher-lm {flag}: {problem}")
    if problem is not None:
        raise ProgramError(f"teacher: {problem}", program.positions.locate((section, "teacher", "lm")))
