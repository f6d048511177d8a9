"""Text helpers of the grounded proposer: DSPy's `strip_prefix` (dspy/propose/utils.py).

The prompt model often answers with a label such as `Proposed Instruction:` or wraps its answer in
double quotes. DSPy removes, once, a leading label of one to five words (letters, digits, `_`,
`'` and `-`) ending in a colon, with any `*` and whitespace before it and whitespace after it,
then every double quote at either end. MIPROv2 applies it twice to each proposal; the second pass
can eat a real first clause that happens to end in a colon, and dspx keeps that, since the
instructions must equal DSPy's.
"""

from __future__ import annotations

import re

__all__ = ["strip_prefix"]

_WORD = r"[\w'\-]+"
# Up to four words each followed by whitespace, then a last word and the colon.
_LABEL = re.compile(rf"^[*\s]*((?:{_WORD}\s+){{0,4}}{_WORD}):\s*")


def strip_prefix(text: str) -> str:
    """Drop a short leading `Label:` and the double quotes around the rest."""
    return _LABEL.sub("", text, count=1).strip('"')
