"""Exact sampling of Boltzmann distributions.

HMC in physical and latent coordinates, independence moves from the flow, hydrogens placed on heavy-atom models.
"""

from .chains import iterate, sample_chains, warm_up
from .diagnostics import (
    curvature_spectrum,
    effective_sample_size,
    integrated_autocorrelation_time,
    kish_effective_sample_size,
    mean_standard_error,
    observable_efficiency,
)
from .hmc import ChainState, HamiltonianMonteCarlo, IndependenceMetropolis, evaluate_potential
from .hydrogens import HydrogenPlacement
from .rigid import eckart_matrix, rigid_body_log_jacobian
from .targets import LatentPotential, MolecularPotential, ToyPotential

__all__ = [
    "ChainState",
    "HamiltonianMonteCarlo",
    "IndependenceMetropolis",
    "evaluate_potential",
    "iterate",
    "warm_up",
    "sample_chains",
    "LatentPotential",
    "MolecularPotential",
    "ToyPotential",
    "HydrogenPlacement",
    "eckart_matrix",
    "rigid_body_log_jacobian",
    "integrated_autocorrelation_time",
    "effective_sample_size",
    "kish_effective_sample_size",
    "mean_standard_error",
    "observable_efficiency",
    "curvature_spectrum",
]
