"""The `tools:` section: built-in and Python tools for `react` modules, checked where they are written.

    tools:
      calculator: {type: calculator}
      search: {type: retrieve, corpus: ../datasets/rag/corpus.jsonl, k: 3}
      lookup: {python: "tools.py:lookup_order", timeout: 5}
      python: {type: sandbox, timeout: 10}    # runs LM-written code in the sandbox

`python:` inside a tool names a Python function on the host; `type: sandbox` is a tool that runs
the code the LM writes, isolated (dspx_cli/sandbox). A tool named `python` with no `python:` key
is the sandbox, as a tool named `calculator` is the calculator. Loading a sandbox tool imports
nothing of the sandbox: it starts only when a run calls it.

A Python tool's file is imported and its signature turned into a JSON schema at load time, so a
missing file, a missing function or a parameter type with no JSON schema is an error at the
line that names it, before any LM call. `dspx validate` loads without running code: it checks
that the file exists, parses and defines the function, and builds no tool.
"""

from __future__ import annotations

from pathlib import Path

from dspx_cli.core.pyfile import PyFileError, find_function, load_function
from dspx_cli.errors import ProgramError
from dspx_cli.lm.registry import names_provider
from dspx_cli.program.model import EmbeddingsDef, RetrieverDef, ToolDef
from dspx_cli.program.schema import TOOL_TYPES, ToolSpec
from dspx_cli.program.source import KeyPath, Positions
from dspx_cli.program.spec_base import RetrievalKeys

DEFAULT_K = 3  # DSPy's Retrieve default
_RETRIEVAL_KEYS = ("corpus", "k", "text_field", "embeddings")
# Built-in tools that need no `type:` when the tool has this name.
_TYPE_OF_NAME = {"python": "sandbox"}


def build_tools(
    tools: dict[str, ToolSpec], base_dir: Path, positions: Positions, *, run_code: bool = True
) -> dict[str, ToolDef]:
    """`run_code=False` checks Python tools by parsing their files; their `tool` stays None."""
    return {name: _build_tool(name, spec, base_dir, positions, run_code) for name, spec in tools.items()}


def _build_tool(name: str, spec: ToolSpec, base_dir: Path, positions: Positions, run_code: bool) -> ToolDef:
    key_path: KeyPath = ("tools", name)
    kind = spec.type or ("python" if spec.python else _TYPE_OF_NAME.get(name, name))
    if kind not in TOOL_TYPES:
        raise ProgramError(
            f"tool {name!r}: no type; expected `type: calculator`, `type: retrieve`, `type: sandbox` "
            "or `python: file.py:function`",
            positions.locate(key_path),
        )
    if kind == "python" and not spec.python:
        raise ProgramError(
            f"tool {name!r}: a python tool needs `python: file.py:function` (a function on the host); "
            "for a tool that runs the LM's code in the sandbox, write `type: sandbox`",
            positions.locate(key_path),
        )
    if kind != "python" and spec.python:
        raise ProgramError(
            f"tool {name!r}: `python` goes with type python, not {kind}", positions.locate((*key_path, "python"))
        )
    if kind != "retrieve":
        for key in _RETRIEVAL_KEYS:
            if getattr(spec, key) is not None:
                raise ProgramError(
                    f"tool {name!r}: {key!r} applies to retrieve tools only", positions.locate((*key_path, key))
                )
    where = positions.locate(key_path)
    if kind in ("calculator", "sandbox"):
        return ToolDef(name, kind, where, desc=spec.desc, timeout=spec.timeout)
    if kind == "retrieve":
        retriever = build_retriever(spec, base_dir, key_path, positions)
        return ToolDef(name, kind, where, desc=spec.desc, timeout=spec.timeout, retriever=retriever)
    python_at = positions.locate((*key_path, "python"))
    if not run_code:
        try:
            find_function(spec.python, base_dir)
        except PyFileError as exc:
            raise ProgramError(f"tool {name!r}: python: {exc}", python_at) from None
        return ToolDef(name, kind, where, desc=spec.desc, timeout=spec.timeout)
    from dspx_cli.modules.tool import (  # only programs with Python tools pay for it
        Tool,
        ToolSchemaError,
    )

    try:
        function, _ = load_function(spec.python, base_dir, prefix="dspx_tool")
    except PyFileError as exc:
        raise ProgramError(f"tool {name!r}: python: {exc}", python_at) from None
    try:
        # Built now, so a parameter without a JSON schema is reported here; runs reuse it.
        tool = Tool(function, name=name, desc=spec.desc, timeout=spec.timeout)
    except ToolSchemaError as exc:
        raise ProgramError(f"tool {name!r}: {exc}", python_at) from None
    return ToolDef(name, kind, where, desc=spec.desc, timeout=spec.timeout, tool=tool)


def build_retriever(spec: RetrievalKeys, base_dir: Path, key_path: KeyPath, positions: Positions) -> RetrieverDef:
    """`corpus`, `k`, `text_field`, `embeddings` of a retrieve module or tool."""
    if spec.corpus is None:
        raise ProgramError("retrieve needs `corpus: path/to/corpus.jsonl` (or .txt)", positions.locate(key_path))
    corpus = Path(spec.corpus).expanduser()
    corpus = corpus if corpus.is_absolute() else base_dir / corpus
    if not corpus.is_file():
        raise ProgramError(f"corpus file not found: {corpus}", positions.locate((*key_path, "corpus")))
    embeddings = None
    if spec.embeddings is not None:
        e = spec.embeddings
        if not e.api_base and not names_provider(e.model):
            raise ProgramError(
                f"embeddings model {e.model!r} names no server: give api_base, or use a provider prefix (openai/...)",
                positions.locate((*key_path, "embeddings")),
            )
        embeddings = EmbeddingsDef(e.model, e.api_base, e.api_key, e.batch_size, e.timeout)
    return RetrieverDef(corpus, spec.text_field or "text", spec.k or DEFAULT_K, embeddings)
