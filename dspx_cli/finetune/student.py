"""Which model `dspx finetune` trains: the local model every module of the program runs on."""

from __future__ import annotations

from pathlib import Path

from dspx_cli.errors import UsageError
from dspx_cli.lm.registry import local_model_path
from dspx_cli.program.model import Program

__all__ = ["student_model"]


def student_model(program: Program) -> tuple[str, Path]:
    """(the model as the program names it, its GGUF file or checkpoint folder).

    Training happens here, on this machine's CPU, so the student must be a local model: the
    embedded `local/smollm2`, a .gguf file or a checkpoint folder; and one model, since one is
    trained. A program on a hosted model can still write its training data (--data-only)."""
    models = {definition.lm.model for definition in program.modules.values() if definition.lm is not None}
    paths = {model: local_model_path(program.modules[_first(program, model)].lm, program.base_dir) for model in models}
    remote = sorted(model for model, path in paths.items() if path is None)
    if remote:
        raise UsageError(
            f"{program.path}: dspx finetune trains a local model on this machine, and the program runs on "
            f"{', '.join(repr(m) for m in remote)}; use --lm local/smollm2 (or a .gguf file or checkpoint folder) "
            "for the student, --teacher-lm for the model that writes the traces, or --data-only to write the "
            "training data for training elsewhere"
        )
    distinct = {path for path in paths.values() if path is not None}
    if len(distinct) != 1:
        raise UsageError(
            f"{program.path}: dspx finetune trains one model, and the program's modules run on "
            f"{len(distinct)}: {', '.join(sorted(models))}; give them one local model (--lm MODEL does)"
        )
    (path,) = distinct
    return sorted(models)[0], path


def _first(program: Program, model: str) -> str:
    return next(name for name, definition in program.modules.items() if definition.lm.model == model)
