"""Adapters turn a signature, demos and inputs into LM messages, and LM replies into fields.

This package imports only `dspx_cli.core` and `dspx_cli.errors`.
"""

from dspx_cli.adapters.chat import ChatAdapter
from dspx_cli.adapters.json import JSONAdapter

__all__ = ["ChatAdapter", "JSONAdapter"]
