"""Optimizers that compile a program (demos, instructions) and the saved state they produce."""
