"""The optimizers `dspx compile` offers: one `OptimizerType` record each, registered in `OPTIMIZERS`.

A record names the optimizer, describes it in one line (`--optimizer` help, docs), declares its
settings as a dataclass (the fields and DSPy's defaults; `optimizer:` keys and `--set` are checked
against it), and points at its entry point, imported only when a compile runs. Importing this file
is cheap (no pydantic, no optimizer code), though not free: `dspx --help` names the optimizers from a
copy of their names in cli/typer_app.py (OPTIMIZER_NAMES), which a test keeps equal to OPTIMIZERS.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dspx_cli.core import Example
    from dspx_cli.evaluate.metrics import Metric
    from dspx_cli.lm.base import LM
    from dspx_cli.lm.config import LMConfig
    from dspx_cli.program.runner import ProgramRunner

__all__ = [
    "OPTIMIZERS",
    "CompileJob",
    "CoproSettings",
    "MiproV2Settings",
    "OptimizerType",
    "optimizer_names",
    "study_optimizers",
]


@dataclass(frozen=True)
class CompileJob:
    """What every optimizer is given besides the runner it changes and its own settings."""

    trainset: Sequence[Example]
    metric: Metric
    concurrency: int
    valset: Sequence[Example] | None = None  # for optimizers that select among candidates
    teacher: ProgramRunner | None = None
    teacher_compiled: bool = False  # a loaded teacher state: its demos are used as they are
    # Instruction optimizers (mipro_v2, copro). Compile fills prompt_lm with the program's default
    # LM when neither `prompt_lm:` nor --prompt-lm names one, so they may assume it is set.
    prompt_lm: LM | None = None  # the proposer's LM
    # Its config: the sampling settings (temperature, max_tokens, n) the file gave it, which the LM
    # object does not carry (they travel with each request, as for modules).
    prompt_lm_config: LMConfig | None = None
    program_text: str = ""  # the program file's text as written, secrets redacted (proposer's program_code)
    run_dir: Path | None = None  # the compile run folder (exists before the optimizer runs)
    storage: str | None = None  # --storage URL; None: sqlite:///{run_dir}/study.db
    study_name: str | None = None  # --study NAME; None: the optimizer derives one
    resume: bool = False  # --resume RUN_DIR was given (run_dir is that folder)
    notice: Callable[[str], None] | None = None  # one warning/progress line for stderr (newline optional)
    # Called once per finished trial with {"number", "kind", "params", "score", "best_score", "trial", "of"}.
    on_trial: Callable[[dict[str, Any]], None] | None = None


# `await entry(runner, settings, job)`: sets the runner's demos in place, returns what to report.
EntryPoint = Callable[["ProgramRunner", dict[str, Any], CompileJob], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class OptimizerType:
    name: str
    doc: str  # one line
    settings: type  # a dataclass whose fields are the settings, with DSPy's defaults
    entry: str  # "module:function", an EntryPoint
    # Keeps an optuna study in the run folder: takes --storage, --study and --resume.
    takes_study: bool = False
    # Writes instructions with a prompt LM (`prompt_lm:` / --prompt-lm).
    takes_prompt_lm: bool = False

    def defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in dataclasses.fields(self.settings)}

    @property
    def takes_teacher(self) -> bool:
        return "teacher" in self.defaults()

    def entry_point(self) -> EntryPoint:
        module, _, function = self.entry.partition(":")
        return getattr(importlib.import_module(module), function)


def _setting(default: Any, description: str) -> Any:
    """A setting's default and its description (`dspx schema` shows it; the dataclass takes the default)."""
    return dataclasses.field(default=default, metadata={"description": description})


_TEACHER = "{lm, state}: who runs the training examples while bootstrapping."


@dataclass
class LabeledFewShotSettings:
    k: int = _setting(16, "Training examples sampled as every predictor's demos.")
    seed: int = _setting(0, "Seed of the sampling and shuffling.")


@dataclass
class BootstrapFewShotSettings:
    max_bootstrapped_demos: int = _setting(4, "Demos taken from traces that pass the metric.")
    max_labeled_demos: int = _setting(16, "Labeled training examples as demos.")
    max_rounds: int = _setting(1, "Bootstrapping rounds over the trainset.")
    metric_threshold: float | None = _setting(
        None, "A trace counts only at this score or above (null: any truthy score)."
    )
    max_errors: int | None = _setting(10, "Stop after this many failed examples (null: never).")
    seed: int = _setting(0, "Seed of the sampling and shuffling.")
    teacher: Any = dataclasses.field(
        default=None, metadata={"description": _TEACHER}
    )  # {lm: ..., state: ...}; checked by optimizers/compile.py (Teacher)


@dataclass
class BootstrapRandomSearchSettings:
    num_candidate_programs: int = _setting(16, "Candidate programs tried.")
    max_bootstrapped_demos: int = _setting(4, "Demos taken from traces that pass the metric.")
    max_labeled_demos: int = _setting(16, "Labeled training examples as demos.")
    max_rounds: int = _setting(1, "Bootstrapping rounds over the trainset.")
    metric_threshold: float | None = _setting(
        None, "A trace counts only at this score or above (null: any truthy score)."
    )
    max_errors: int | None = _setting(10, "Stop after this many failed examples (null: never).")
    num_threads: int | None = _setting(
        None, "Examples in flight (null: the command's -j)."
    )  # None: the command's --concurrency (DSPy: settings.num_threads)
    stop_at_score: float | None = _setting(None, "Stop the search at this dev score.")
    seed: int = _setting(0, "Seed of the sampling and shuffling.")
    teacher: Any = dataclasses.field(default=None, metadata={"description": _TEACHER})


@dataclass
class MiproV2Settings:
    # DSPy 3.4.1's MIPROv2 defaults (constructor and compile()); docs/mipro-design.md section 1.
    auto: str | None = _setting(
        "light", "light, medium or heavy (the budget), or null with num_candidates and num_trials."
    )
    num_candidates: int | None = _setting(None, "Instruction and demo-set candidates per predictor (with auto: null).")
    num_trials: int | None = _setting(None, "Search trials (with auto: null).")
    max_bootstrapped_demos: int = _setting(4, "Demos taken from traces that pass the metric.")
    max_labeled_demos: int = _setting(4, "Labeled training examples as demos.")
    seed: int = _setting(9, "Seed of the sampling and shuffling.")
    init_temperature: float = _setting(1.0, "The proposer's temperature.")
    minibatch: bool = _setting(True, "Score trials on minibatches of the dev set.")
    minibatch_size: int = _setting(35, "Dev examples per minibatch trial.")
    minibatch_full_eval_steps: int = _setting(5, "Trials between full dev evaluations.")
    view_data_batch_size: int = _setting(10, "Examples per batch when the proposer summarises the data.")
    program_aware_proposer: bool = _setting(True, "The proposer sees the program's code.")
    data_aware_proposer: bool = _setting(True, "The proposer sees a summary of the data.")
    tip_aware_proposer: bool = _setting(True, "The proposer gets a random tip.")
    fewshot_aware_proposer: bool = _setting(True, "The proposer sees demo sets.")
    metric_threshold: float | None = _setting(
        None, "A trace counts only at this score or above (null: any truthy score)."
    )
    max_errors: int | None = _setting(10, "Stop after this many failed examples (null: never).")
    num_threads: int | None = _setting(None, "Examples in flight (null: the command's -j).")
    teacher: Any = dataclasses.field(default=None, metadata={"description": _TEACHER})


@dataclass
class CoproSettings:
    # DSPy 3.4.1's COPRO defaults; docs/mipro-design.md section 2.
    breadth: int = _setting(10, "Candidate instructions per round (> 1).")
    depth: int = _setting(3, "Refinement rounds.")
    init_temperature: float = _setting(1.4, "The proposer's temperature.")
    num_threads: int | None = _setting(None, "Examples in flight (null: the command's -j).")
    max_errors: int | None = _setting(10, "Stop after this many failed examples (null: never).")


def _registry(*records: OptimizerType) -> dict[str, OptimizerType]:
    return {record.name: record for record in records}


OPTIMIZERS: dict[str, OptimizerType] = _registry(
    OptimizerType(
        "labeled_few_shot",
        "k training examples, sampled, as every predictor's demos",
        LabeledFewShotSettings,
        "dspx_cli.optimizers.labeled:compile_labeled_few_shot",
    ),
    OptimizerType(
        "bootstrap_few_shot",
        "demos from the traces of training runs that pass the metric, plus labeled ones",
        BootstrapFewShotSettings,
        "dspx_cli.optimizers.bootstrap:compile_bootstrap_few_shot",
    ),
    OptimizerType(
        "bootstrap_random_search",
        "bootstrap_few_shot with shuffled seeds; keeps the candidate best on the dev set",
        BootstrapRandomSearchSettings,
        "dspx_cli.optimizers.random_search:compile_bootstrap_random_search",
    ),
    OptimizerType(
        "mipro_v2",
        "MIPROv2: proposed instructions and demo sets, searched with optuna's TPE on the dev set",
        MiproV2Settings,
        "dspx_cli.optimizers.mipro:compile_mipro_v2",
        takes_study=True,
        takes_prompt_lm=True,
    ),
    OptimizerType(
        "copro",
        "COPRO: instructions proposed and refined by the prompt LM, scored on the trainset",
        CoproSettings,
        "dspx_cli.optimizers.copro:compile_copro",
        takes_prompt_lm=True,
    ),
)


def study_optimizers() -> list[str]:
    """The optimizers that take --storage, --study and --resume."""
    return [name for name, record in OPTIMIZERS.items() if record.takes_study]


def optimizer_names(last: str = "or") -> str:
    """`labeled_few_shot, bootstrap_few_shot or bootstrap_random_search`"""
    names = list(OPTIMIZERS)
    return f"{', '.join(names[:-1])} {last} {names[-1]}" if len(names) > 1 else names[0]
