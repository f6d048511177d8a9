"""The run context: what a run needs that is not in the program file.

It is created once per command from the command line and passed explicitly; nothing in dspx
reads global settings. It owns the LM instances, so modules that share an LM share its
connections (and, in later layers, its cache and rate limits).
"""

from __future__ import annotations

from pathlib import Path

from dspx_cli.lm.base import LM
from dspx_cli.lm.config import LMConfig


class RunContext:
    def __init__(self, *, base_dir: Path | None = None) -> None:
        self.base_dir = base_dir
        self._lms: dict[tuple[object, ...], LM] = {}

    def lm(self, config: LMConfig) -> LM:
        # Sampling settings travel with each request; one instance per endpoint and model.
        key = (config.model, config.api_base, config.api_key, config.timeout)
        if key not in self._lms:
            from dspx_cli.lm.registry import create_lm

            self._lms[key] = create_lm(config, base_dir=self.base_dir)
        return self._lms[key]

    async def aclose(self) -> None:
        for lm in self._lms.values():
            await lm.aclose()
        self._lms.clear()
