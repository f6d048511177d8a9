"""Finding Deno, fetching Pyodide once, and the command line of a locked-down interpreter process.

Pyodide is fetched from the npm registry by `deno cache` (the only step with network) into a
DENO_DIR that dspx owns (under the dspx cache dir, or $DENO_DIR when set), so a machine warms it
once. The interpreter itself then runs with `--cached-only` and no permission but reading three
of Pyodide's files.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from importlib import resources
from pathlib import Path

from dspx_cli.core.redact import redact_urls
from dspx_cli.errors import SandboxUnavailableError

PYODIDE_VERSION = "0.29.4"  # pinned in runner.js too
INSTALL_HINT = "pip install 'dspx_cli[sandbox]'"
WARM_TIMEOUT = 600.0

# Deno reads no config or package.json near the working directory, writes no lock file, and makes
# no node_modules folder: the process sees only what its command line says.
_DENO_FLAGS = ["--no-config", "--no-lock", "--node-modules-dir=false"]
# Passed to `deno cache` so it works behind a proxy, a TLS-intercepting CA or a registry mirror
# (~/.npmrc, hence HOME); nothing of the host environment reaches the interpreter processes.
_FETCH_ENV = (
    "HOME",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "NPM_CONFIG_REGISTRY",
    "DENO_CERT",
    "DENO_TLS_CA_STORE",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "DENO_AUTH_TOKENS",
)


def find_deno() -> str:
    """The Deno binary of the `deno` PyPI package, else one on PATH."""
    try:
        from deno import find_deno_bin  # type: ignore[import-untyped,import-not-found,unused-ignore]

        return str(find_deno_bin())
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("deno")
    if found is None:
        raise SandboxUnavailableError(f"the code sandbox needs Deno, which is not installed: {INSTALL_HINT}")
    return found


def default_deno_dir() -> Path:
    if os.environ.get("DENO_DIR"):
        return Path(os.environ["DENO_DIR"]).expanduser()
    from dspx_cli.lm.cache import default_cache_dir

    return default_cache_dir() / "deno"


def runner_path() -> Path:
    return Path(str(resources.files("dspx_cli.sandbox") / "runner.js"))


def pyodide_dir(deno_dir: Path) -> Path | None:
    """Pyodide's package folder in Deno's npm cache, if it was fetched (any registry host)."""
    for found in sorted((deno_dir / "npm").glob(f"*/pyodide/{PYODIDE_VERSION}")):
        if all((found / name).is_file() for name in PYODIDE_FILES):
            return found
    return None


def deno_env(deno_dir: Path, *, fetch: bool = False) -> dict[str, str]:
    env = {"DENO_DIR": str(deno_dir), "DENO_NO_PACKAGE_JSON": "1", "DENO_NO_UPDATE_CHECK": "1", "NO_COLOR": "1"}
    if fetch:
        env.update({k: os.environ[k] for k in _FETCH_ENV if k in os.environ})
    return env


async def ensure_pyodide(deno: str, deno_dir: Path) -> Path:
    """Pyodide's folder, fetched from the npm registry on first use."""
    found = pyodide_dir(deno_dir)
    if found is not None:
        return found
    await asyncio.to_thread(deno_dir.mkdir, parents=True, exist_ok=True)
    try:
        process = await asyncio.create_subprocess_exec(
            deno,
            "cache",
            *_DENO_FLAGS,
            str(runner_path()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=deno_env(deno_dir, fetch=True),
        )
    except OSError as e:
        raise SandboxUnavailableError(f"cannot run Deno ({deno}): {e}; {INSTALL_HINT}") from e
    try:
        async with asyncio.timeout(WARM_TIMEOUT):
            out, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        out = b"timed out"
    found = pyodide_dir(deno_dir)
    if found is None:
        lines = out.decode(errors="replace").strip().splitlines() or ["no output"]
        reason = next((line for line in lines if "error" in line.lower()), lines[-1]).strip()
        reason = redact_urls(reason)  # Deno may name the proxy it was given, user:password@ and all
        raise SandboxUnavailableError(
            f"could not fetch Pyodide {PYODIDE_VERSION} from the npm registry into {deno_dir}: {reason}"
        )
    return found


# What loadPyodide reads from its package folder with Deno's file API, found by granting less:
# without any one of these it fails with NotCapable. pyodide.mjs and pyodide.asm.js come through
# the module loader, which needs no read permission.
PYODIDE_FILES = ("pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json")


def interpreter_command(deno: str, pyodide: Path, *, output_bytes: int, max_line: int) -> list[str]:
    """`deno run` with read access to three of Pyodide's files only: no net, write, env, run, ffi,
    sys, and no remote import (the runner revokes even the read once Pyodide is loaded)."""
    folder = pyodide.resolve()  # Deno matches permissions against real paths
    return [
        deno,
        "run",
        *_DENO_FLAGS,
        "--cached-only",
        "--no-prompt",
        "--allow-read=" + ",".join(str(folder / name) for name in PYODIDE_FILES),
        "--deny-import",
        str(runner_path().resolve()),
        str(output_bytes),
        str(max_line),
    ]
