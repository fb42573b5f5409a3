"""Moved: the full circuits now live in ``toykit.circuits`` with the other circuit tools.

This name stays only until chapter 04 and its checker import from ``toykit.circuits``.
"""

from toykit.circuits import full_ov_circuit, k_composition_circuit, positional_qk_circuit, top_1_accuracy

__all__ = ["full_ov_circuit", "k_composition_circuit", "positional_qk_circuit", "top_1_accuracy"]
