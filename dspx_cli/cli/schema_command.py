"""`dspx schema`: the program-file format as JSON Schema, on stdout or into `-o FILE`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dspx_cli.errors import UsageError


def run(output: Path | None) -> None:
    # Imported here: `dspx --help` pays nothing for the models the schema is built from.
    from dspx_cli.workflows.program_schema import program_json_schema

    text = json.dumps(program_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {output}: cannot write: {exc.strerror or exc}") from None
