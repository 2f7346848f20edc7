"""Training: the loop with exact resumption, the objectives it minimises, devices and data parallelism.

``loop`` (settings, checkpoints, divergence checks), ``objectives`` (maximum likelihood, variational
free energy, time-lagged likelihood with VAMP-2 terms), ``device`` (choosing and checking the
torch device), ``distributed`` (DDP process groups).
"""

from .loop import TrainingDiverged, TrainingResult, TrainingSettings, train
from .objectives import LaggedLikelihood, MaximumLikelihood, Objective, VariationalFreeEnergy

__all__ = [
    "LaggedLikelihood",
    "MaximumLikelihood",
    "Objective",
    "TrainingDiverged",
    "TrainingResult",
    "TrainingSettings",
    "VariationalFreeEnergy",
    "train",
]
