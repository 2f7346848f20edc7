"""Symplectic flows on phase space: each maps x = (q, p), shape (batch, 2n), to (z, logdet)."""

from .base import SymplecticFlow, SymplecticSequential, join_phase_space, split_phase_space
from .continuous import ContinuousSymplectic
from .coupling import AffineCoupling, CouplingStack
from .frequency import FrequencyScaling
from .linear import LinearSymplectic, symplectic_form
from .point import PointTransformation

__all__ = [
    "SymplecticFlow",
    "SymplecticSequential",
    "LinearSymplectic",
    "PointTransformation",
    "ContinuousSymplectic",
    "FrequencyScaling",
    "AffineCoupling",
    "CouplingStack",
    "symplectic_form",
    "split_phase_space",
    "join_phase_space",
]
