"""Toy systems with exact answers: Hamiltonians for training checks, and a slow rotated double well for CV benchmarks.

``hamiltonians`` (harmonic chain, curved double well: energies, exact samples and frequencies),
``slow_double_well`` (trajectories of the rotated double well and the score of a learned slow
coordinate against its known one).
"""

from .hamiltonians import TOY_SYSTEMS, CurvedDoubleWell, HarmonicChain, make_toy_system

__all__ = ["TOY_SYSTEMS", "CurvedDoubleWell", "HarmonicChain", "make_toy_system"]
