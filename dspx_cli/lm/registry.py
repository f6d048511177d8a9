"""Which backend a model string means: the embedded model, a local file or folder, or an HTTP server.

Backends are imported only once chosen, so importing dspx_cli.lm costs nothing: `dspx --help`
never loads httpx, llama_cpp, torch or transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dspx_cli.core.redact import UnsetSecret
from dspx_cli.errors import LMError
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.providers import OPENAI_COMPATIBLE, PROVIDERS, load_backend, split_provider

if TYPE_CHECKING:
    from dspx_cli.lm.base import LM
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
    problem = model_problem(config, base_dir)
    if problem is not None:
        raise LMError(problem)
    model = config.model.strip()
    if model in EMBEDDED_NAMES:
        from dspx_cli.lm.local_gguf import LocalGGUFLM, embedded_model_path

        return LocalGGUFLM(config, embedded_model_path())
    if model.startswith(LOCAL_PREFIX):
        return _local(config, _resolve(model[len(LOCAL_PREFIX) :], base_dir))
    path = _resolve(model, base_dir)
    if not names_provider(model) and _is_local_model(path):
        return _local(config, path)
    if isinstance(config.api_key, UnsetSecret):
        # `api_key: ${VAR:?...}` with VAR unset: loading the program deferred the error to here,
        # where a call would need the key.
        raise config.api_key.error
    # A provider's own backend; any other name with api_base set speaks OpenAI's API.
    provider_name, _ = split_provider(model)
    backend = PROVIDERS[provider_name].backend if provider_name else OPENAI_COMPATIBLE
    return load_backend(backend)(config, refusals=refusals)


def model_problem(config: LMConfig, base_dir: Path | None = None) -> str | None:
    """Why `create_lm` would refuse this model, or None; loads and imports no backend, so
    programs can be checked where they are loaded, with the line that names the model."""
    model = config.model.strip()
    if model in EMBEDDED_NAMES:
        return None
    if model.startswith(LOCAL_PREFIX):
        path = _resolve(model[len(LOCAL_PREFIX) :], base_dir)
        if not path.exists():
            return f"local model {model!r}: no such file or folder: {path}"
        if not _is_local_model(path):
            return f"local model {path}: expected a .gguf file or a checkpoint folder with config.json"
        return None
    if names_provider(model):
        return None
    path = _resolve(model, base_dir)
    if _is_local_model(path) or config.api_base:
        return None
    if _looks_like_path(model):
        return f"local model {model!r}: no such file or folder: {path}"
    providers = ", ".join(f"{name}/<model>" for name in PROVIDERS)
    return (
        f"unknown model {model!r}: use local/smollm2 (the embedded model), a .gguf file or checkpoint folder "
        f"(optionally as local/<path>), {providers}, or any model name with api_base set to an "
        f"OpenAI-compatible server"
    )


def local_model_path(config: LMConfig, base_dir: Path | None = None) -> Path | None:
    """The file or folder a local model string names (the embedded model's GGUF included), or None
    for a model served over HTTP. Assumes `model_problem(config, base_dir)` found nothing."""
    model = config.model.strip()
    if model in EMBEDDED_NAMES:
        from dspx_cli.lm.local_gguf import embedded_model_path

        return embedded_model_path()
    if model.startswith(LOCAL_PREFIX):
        return _resolve(model[len(LOCAL_PREFIX) :], base_dir)
    if names_provider(model):
        return None
    path = _resolve(model, base_dir)
    return path if _is_local_model(path) else None


def anchor_model_path(model: str, base_dir: Path) -> str:
    """A model string naming a file or folder, made absolute against `base_dir`; others unchanged.

    `--lm ./my.gguf` means the working directory's file, not one next to the program, so the
    command line anchors its paths before the program's folder could."""
    text = model.strip()
    if text in EMBEDDED_NAMES:
        return text
    prefix = LOCAL_PREFIX if text.startswith(LOCAL_PREFIX) else ""
    rest = text[len(prefix) :]
    if not prefix and (names_provider(text) or not (_looks_like_path(text) or (base_dir / text).exists())):
        return text
    path = Path(rest).expanduser()
    return prefix + str(path if path.is_absolute() else (base_dir / path).resolve())


def _looks_like_path(model: str) -> bool:
    return model.endswith(".gguf") or model.startswith((".", "/", "~"))


def names_provider(model: str) -> bool:
    """`openai/gpt-4o-mini`: a prefix naming a known OpenAI-compatible provider."""
    return split_provider(model)[0] is not None


def _is_local_model(path: Path) -> bool:
    return (path.is_file() and path.suffix == ".gguf") or (path.is_dir() and (path / "config.json").is_file())


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
