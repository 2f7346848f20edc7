"""The model: a symplectic flow with a harmonic prior, optional latent Langevin dynamics, and what it knows of its molecule.

``transformation`` (the neural canonical transformation, its file format), ``prior`` (independent
harmonic oscillators), ``dynamics`` (the latent Ornstein-Uhlenbeck process of the time-lagged
objective), ``molecular`` (the molecule a model was trained on: atoms, frame, projections to CVs).
"""

from .transformation import DEFAULT_ARCHITECTURE, NeuralCanonicalTransformation, load

__all__ = ["DEFAULT_ARCHITECTURE", "NeuralCanonicalTransformation", "load"]
