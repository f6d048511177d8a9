"""MIPROv2's grounded instruction proposer: DSPy 3.4.1's prompts on dspx's Predict stack.

- signatures.py: the proposer's signatures (DSPy's exact texts)
- dataset_summary.py: the dataset summary, and DSPy's `repr` of a list of Examples
- program_description.py: `program_code` and the `module` line (docs/mipro-design.md, section 4)
- grounded.py: tips, task demos, the per-proposal flow, `propose_instructions`
- text.py: `strip_prefix`
"""

from __future__ import annotations

from dspx_cli.optimizers.proposer.grounded import TIPS, DemoSetsLike, propose_instructions
from dspx_cli.optimizers.proposer.text import strip_prefix

__all__ = ["TIPS", "DemoSetsLike", "propose_instructions", "strip_prefix"]
