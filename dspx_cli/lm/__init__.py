"""Language models behind one async interface: `create_lm(LMConfig(...)).complete(LMRequest(...))`.

Importing this package is cheap: backends (httpx, llama_cpp, transformers) load when chosen.
"""

from dspx_cli.lm.base import LM, LMRequest, LMResponse, Message, Usage
from dspx_cli.lm.config import LMConfig
from dspx_cli.lm.registry import create_lm

__all__ = ["LM", "LMConfig", "LMRequest", "LMResponse", "Message", "Usage", "create_lm"]
