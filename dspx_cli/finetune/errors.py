"""The one error the finetune layer raises for bad input or an unusable base model."""

from __future__ import annotations

from dspx_cli.errors import DspxError


class FinetuneError(DspxError):
    """Training could not start or finish: bad records, an unusable base model, a resume mismatch."""
