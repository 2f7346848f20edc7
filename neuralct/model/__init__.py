"""The model: a symplectic flow with a harmonic prior, latent Langevin dynamics, what it knows of its molecule.

``transformation`` (the neural canonical transformation, its file format, the ranking of its modes),
``prior`` (independent harmonic oscillators), ``dynamics`` (the latent Ornstein-Uhlenbeck process
of the time-lagged objective), ``molecular`` (the molecule a model was trained on: atoms, frame,
projections to CVs).
"""

from .transformation import DEFAULT_ARCHITECTURE, ModeRanking, NeuralCanonicalTransformation, load

__all__ = ["DEFAULT_ARCHITECTURE", "ModeRanking", "NeuralCanonicalTransformation", "load"]
