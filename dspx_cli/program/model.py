"""A loaded, checked program: signatures built, references resolved, steps in run order."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dspx_cli.core import Field, Signature
from dspx_cli.core.spec_model import SpecModel
from dspx_cli.errors import Location
from dspx_cli.lm.config import LMConfig
from dspx_cli.program.schema import ProgramSpec
from dspx_cli.program.source import Positions
from dspx_cli.program.spec_base import NoSettings

INPUT = "input"  # the source name of `$input.<field>` references


@dataclass(frozen=True)
class Ref:
    """`$input.question` or `$answer.answer`: a value produced elsewhere in the program."""

    source: str
    field: str

    def __str__(self) -> str:
        return f"${self.source}.{self.field}"


@dataclass(frozen=True)
class EmbeddingsDef:
    """The embeddings endpoint of a retriever, resolved from the program's `embeddings:` key."""

    model: str
    api_base: str | None
    api_key: str | None = field(repr=False)
    batch_size: int
    timeout: float


@dataclass(frozen=True)
class RetrieverDef:
    """A corpus and how to search it; equal definitions share one retriever (and its index) per run."""

    corpus: Path
    text_field: str
    k: int
    embeddings: EmbeddingsDef | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        e = self.embeddings
        return (str(self.corpus), self.text_field, e and (e.model, e.api_base, e.api_key, e.batch_size, e.timeout))


@dataclass(frozen=True)
class ToolDef:
    """A tool a `react` module may call: the checked `Tool` of a Python function, or the
    `retriever` of a `retrieve` tool (its Tool needs a run context)."""

    name: str
    kind: str  # calculator | retrieve | python | sandbox
    location: Location
    desc: str | None = None
    timeout: float | None = None
    tool: Any = None  # dspx_cli.modules.Tool; typed loosely so this module stays import-light
    retriever: RetrieverDef | None = None


@dataclass(frozen=True)
class ModuleDef:
    """A module of the program, checked: signature built, LM resolved, its type's keys validated."""

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
    # Outputs the module adds before the signature's: ChainOfThought's reasoning, ReAct's trajectory.
    leading_outputs: tuple[tuple[str, Any], ...] = ()
    # The keys only this type takes, checked by its record's settings model (program/module_types.py);
    # read them with `module_types.typed(definition.settings, ThatModel)`.
    settings: SpecModel = field(default_factory=NoSettings)
    tools: tuple[ToolDef, ...] = ()  # react: its tools, resolved
    wraps: str | None = None  # best_of_n, refine: the module run N times
    reward: Any = None  # their metric spec; the evaluate layer turns it into a reward function
    retriever: RetrieverDef | None = None  # retrieve
    # What a record's `define` derives beyond its settings, for a type without a field of its own here.
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def output_names(self) -> list[str]:
        return [name for name, _ in self.leading_outputs] + list(self.signature.output_fields)

    @property
    def default_outputs(self) -> list[str]:
        """The program's outputs when it declares none: a trajectory is shown by `--trace` instead."""
        return [name for name in self.output_names if name != "trajectory"]

    def output_annotation(self, name: str) -> Any:
        return dict(self.leading_outputs).get(name) or self.signature.output_fields[name].annotation


@dataclass(frozen=True)
class ItemRef:
    """`$item` (or `$item.key`, a key of an object item) in the `with` of a `foreach` step: the
    list item the current call runs on."""

    name: str
    key: str | None = None

    def __str__(self) -> str:
        return f"${self.name}" + (f".{self.key}" if self.key is not None else "")


@dataclass(frozen=True)
class Step:
    """A flow step: which module runs and where each of its inputs comes from."""

    id: str
    module: str
    bindings: dict[str, Ref | ItemRef | Any]  # signature input -> Ref, ItemRef or a literal value
    location: Location
    foreach: Ref | None = None  # run once per item of this list; outputs become lists in item order
    max_errors: int = 1  # foreach: failed items that fail the step (fewer: those items are null)
    when: Ref | None = None  # run only when this bool is true (false when `when_not`); else outputs null
    when_not: bool = False

    @property
    def depends_on(self) -> set[str]:
        refs = [*self.bindings.values(), self.foreach, self.when]
        return {v.source for v in refs if isinstance(v, Ref) and v.source != INPUT}


@dataclass
class Program:
    """The loaded program: what `load_program` returns and every command works from."""

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
    # The top-level `lm:` (with --lm applied): what modules without their own LM use.
    default_lm: LMConfig | None = None
    # `prompt_lm:` as written (not changed by --lm), the proposer's LM of mipro_v2/copro; None: default_lm.
    prompt_lm: LMConfig | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent
