"""A loaded, checked program: signatures built, references resolved, steps in run order."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dspx_cli.core import Field, Signature
from dspx_cli.errors import Location
from dspx_cli.lm.config import LMConfig
from dspx_cli.program.schema import ProgramSpec
from dspx_cli.program.source import Positions

INPUT = "input"  # the source name of `$input.<field>` references


@dataclass(frozen=True)
class Ref:
    """`$input.question` or `$answer.answer`: a value produced elsewhere in the program."""

    source: str
    field: str

    def __str__(self) -> str:
        return f"${self.source}.{self.field}"


@dataclass(frozen=True)
class ModuleDef:
    name: str
    type: str
    signature: Signature  # as declared; ChainOfThought adds `reasoning` when built
    demos: list[dict[str, Any]]
    lm: LMConfig
    n: int
    temperature: float | None
    max_tokens: int | None
    location: Location
    adapter: str = "chat"

    @property
    def output_names(self) -> list[str]:
        names = list(self.signature.output_fields)
        return ["reasoning", *names] if self.type == "chain_of_thought" else names


@dataclass(frozen=True)
class Step:
    id: str
    module: str
    bindings: dict[str, Ref | Any]  # signature input -> Ref or a literal value
    location: Location

    @property
    def depends_on(self) -> set[str]:
        return {v.source for v in self.bindings.values() if isinstance(v, Ref) and v.source != INPUT}


@dataclass
class Program:
    path: Path
    name: str
    description: str | None
    spec: ProgramSpec
    positions: Positions
    signatures: dict[str, Signature]
    modules: dict[str, ModuleDef]
    steps: list[Step]  # in an order where every step comes after the steps it reads
    outputs: dict[str, Ref]
    inputs: dict[str, Field] = field(default_factory=dict)  # program inputs and their declared types

    @property
    def base_dir(self) -> Path:
        return self.path.parent
