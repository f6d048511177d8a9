"""`python -m dspx_cli.sandbox`: fetch Pyodide if needed and start one interpreter, so a machine
(a CI runner, a container image) pays the download and the first start before any run does."""

from __future__ import annotations

import asyncio
import sys
import time

from dspx_cli.errors import DspxError
from dspx_cli.sandbox import Sandbox, SandboxLimits
from dspx_cli.sandbox.deno import PYODIDE_VERSION


async def _warm() -> str:
    sandbox = Sandbox(SandboxLimits(pool_size=1))
    started = time.perf_counter()
    try:
        async with sandbox.session() as session:
            result = await session.execute("import sys\nsys.version.split()[0]")
    finally:
        await sandbox.aclose()
    if result.error is not None:
        raise DspxError(f"the sandbox started but could not run Python: {result.error}")
    return (
        f"Pyodide {PYODIDE_VERSION} (Python {result.output}) ready in {sandbox.deno_dir}; "
        f"fetch and first start took {time.perf_counter() - started:.1f} s"
    )


def main() -> int:
    try:
        print(asyncio.run(_warm()))
    except DspxError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
