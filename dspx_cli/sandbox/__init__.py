"""A code sandbox: Python run in Pyodide (CPython compiled to WebAssembly) inside Deno.

Layer: after lm, before modules (it imports neither modules nor program). ProgramOfThought,
CodeAct and the `python` tool run LM-written code through it; RunContext.sandbox() owns one.

Each interpreter is a `deno run` process of runner.js talking line-delimited JSON-RPC 2.0 on
stdin/stdout. Its permissions, checked in practice (tests/test_sandbox_security.py):
- `--allow-read` of three files in `<DENO_DIR>/npm/<registry>/pyodide/<version>/` only:
  pyodide.asm.wasm, python_stdlib.zip and pyodide-lock.json, what loadPyodide reads with Deno's
  file API (granting less fails; pyodide.mjs and pyodide.asm.js come through the module loader,
  which needs no permission); nothing else on disk (no home, no /etc, not the rest of DENO_DIR).
  The runner then revokes even that read, so code runs with no Deno permission at all;
- no --allow-net, --allow-write, --allow-env, --allow-run, --allow-ffi, --allow-sys, and
  `--deny-import` (Deno 2 would otherwise allow dynamic imports from a few well-known hosts);
  `--cached-only`: the module graph comes from DENO_DIR, no fetch at run time;
- the process gets an environment of four DENO_* / NO_COLOR variables, none of the host's, so
  there is no secret to read even through /proc; `--no-prompt`, so nothing waits on a terminal;
- the Deno namespace and the console are hidden from Python (`import js` reaches globalThis).
Pyodide itself is fetched once from the npm registry by `deno cache` (the only step with network)
into dspx's DENO_DIR (<dspx cache dir>/deno, or $DENO_DIR when set).

Use (inside a module, with the run's context):

    sandbox = ctx.sandbox()                      # one per RunContext, closed by ctx.aclose()
    async with sandbox.session(tools, outputs=["answer"]) as session:   # one run's globals
        execution = await session.execute(code, variables={"question": q})
        if execution.error is not None: ...      # the text DSPy feeds the LM back
        elif execution.final: ...                # SUBMIT(...) was called: execution.output

Limits (SandboxLimits): a per-execute timeout (the process is killed, the next execute starts a
fresh one), a memory cap (RLIMIT_DATA on the process, so wasm growth past it fails as MemoryError
inside Python, and an RSS watch that kills the process as a backstop), an output cap (inside the
runner, and a bounded line reader on the host), and a restart after any crash.
"""

from __future__ import annotations

from dspx_cli.sandbox.pool import Sandbox, SandboxSession
from dspx_cli.sandbox.types import ErrorKind, Execution, SandboxLimits, SandboxTool

__all__ = ["ErrorKind", "Execution", "Sandbox", "SandboxLimits", "SandboxSession", "SandboxTool"]
