"""Which backend a model string means: the embedded model, a local file or folder, or an HTTP server.

Backends are imported only once chosen, so importing dspx_cli.lm costs nothing: `dspx --help`
never loads httpx, llama_cpp, torch or transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dspx_cli.errors import LMError
from dspx_cli.lm.base import LM
from dspx_cli.lm.config import LMConfig

if TYPE_CHECKING:
    from dspx_cli.lm.structured_outputs import SchemaRefusals

EMBEDDED_NAMES = ("local/smollm2", "smollm2")
LOCAL_PREFIX = "local/"


def create_lm(config: LMConfig, base_dir: Path | None = None, *, refusals: SchemaRefusals | None = None) -> LM:
    """The LM a config names. Relative paths are resolved against `base_dir` (the program's folder).

    `refusals` is where HTTP backends remember endpoints that refused a json_schema response_format;
    a run context shares one among all its LMs.

    Local forms win over `api_base`: `--lm local/smollm2` or `--lm ./checkpoint` replaces only the
    model of a program, which may still carry the api_base of the hosted model it was written for.
    """
    model = config.model.strip()
    if model in EMBEDDED_NAMES:
        from dspx_cli.lm.local_gguf import LocalGGUFLM, embedded_model_path

        return LocalGGUFLM(config, embedded_model_path())
    if model.startswith(LOCAL_PREFIX):
        path = _resolve(model[len(LOCAL_PREFIX) :], base_dir)
        if not path.exists():
            raise LMError(f"local model {model!r}: no such file or folder: {path}")
        return _local(config, path)

    from dspx_cli.lm.openai_compat import PROVIDERS, OpenAICompatLM, split_provider

    if split_provider(model)[0] is not None:
        return OpenAICompatLM(config, refusals=refusals)
    path = _resolve(model, base_dir)
    if (path.is_file() and path.suffix == ".gguf") or (path.is_dir() and (path / "config.json").is_file()):
        return _local(config, path)
    if config.api_base:
        return OpenAICompatLM(config, refusals=refusals)
    if model.endswith(".gguf") or model.startswith((".", "/", "~")):
        raise LMError(f"local model {model!r}: no such file or folder: {path}")
    providers = ", ".join(f"{name}/<model>" for name in PROVIDERS)
    raise LMError(
        f"unknown model {model!r}: use local/smollm2 (the embedded model), a .gguf file or checkpoint folder "
        f"(optionally as local/<path>), {providers}, or any model name with api_base set to an "
        f"OpenAI-compatible server"
    )


def _resolve(text: str, base_dir: Path | None) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path.resolve()


def _local(config: LMConfig, path: Path) -> LM:
    if path.is_file() and path.suffix == ".gguf":
        from dspx_cli.lm.local_gguf import LocalGGUFLM

        return LocalGGUFLM(config, path)
    if path.is_dir() and (path / "config.json").is_file():
        from dspx_cli.lm.local_hf import LocalHFLM

        return LocalHFLM(config, path)
    raise LMError(f"local model {path}: expected a .gguf file or a checkpoint folder with config.json")
