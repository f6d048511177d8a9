"""dspx: declarative LM programs, DSPy-exact prompts, from the shell."""

__version__ = "0.1.0"
