"""The application layer: what a command does, between the command line and the engine.

A workflow loads a program, builds its run context (LMs, cache mode, compiled state, rewards),
runs, evaluates or compiles it, writes what the run leaves behind (run folder, JUnit, state, usage
file) and returns result objects. It never prints: text for people, progress bars and exit codes
belong to `dspx_cli.cli`, which passes in what it wants to hear about (`hooks.Hooks`). Nothing
here imports typer, rich or the cli package, so tests (and other front ends) call a workflow
in-process.

Submodules are imported where used: `validate` must not pull in every module type.
"""
