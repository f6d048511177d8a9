"""What every run needs before its first LM call: the run context and the program's modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dspx_cli.core.telemetry import OFF, Telemetry
from dspx_cli.errors import UsageError
from dspx_cli.program.model import Program

if TYPE_CHECKING:
    # Imported where used: the run context pulls in the cache (hashlib, orjson, logging), the
    # runner every module type; `dspx validate` needs neither (it imports this for CacheOptions).
    from dspx_cli.program.context import RunContext
    from dspx_cli.program.runner import ProgramRunner


@dataclass(frozen=True)
class CacheOptions:
    """--cache-dir, --no-cache, --cache-only and --refresh, as given."""

    directory: Path | None = None
    no_cache: bool = False
    cache_only: bool = False
    refresh: bool = False
    # Where the run's spans go (the command line's --otlp); carried here because this builds the run context.
    telemetry: Telemetry = OFF

    def context(self, program: Program) -> RunContext:
        chosen = [
            name
            for name, on in (
                ("--no-cache", self.no_cache),
                ("--cache-only", self.cache_only),
                ("--refresh", self.refresh),
            )
            if on
        ]
        if len(chosen) > 1:
            raise UsageError(f"{' and '.join(chosen)} contradict each other; pick one")
        from dspx_cli.lm.cache import CacheMode
        from dspx_cli.program.context import RunContext

        mode = (
            CacheMode.OFF
            if self.no_cache
            else CacheMode.ONLY
            if self.cache_only
            else CacheMode.REFRESH
            if self.refresh
            else CacheMode.ON
        )
        return RunContext(
            base_dir=program.base_dir, cache_dir=self.directory, cache_mode=mode, telemetry=self.telemetry
        )


def build_runner(program: Program, context: RunContext | None, state_file: Path | None) -> ProgramRunner:
    """The program's modules, with a compiled state (demos, instructions) applied when given."""
    from dspx_cli.program.runner import ProgramRunner

    rewards = None
    if any(definition.reward is not None for definition in program.modules.values()):
        # Imported only then: the evaluate layer (metrics, datasets) is not needed to run a program.
        from dspx_cli.evaluate.rewards import build_rewards

        rewards = build_rewards(program, context)
    runner = ProgramRunner(program, context, rewards=rewards)
    if state_file is not None:
        from dspx_cli.optimizers.state import load_state, read_state_file

        load_state(
            runner, read_state_file(state_file), source=str(state_file), context=context, base_dir=state_file.parent
        )
    return runner
