"""Export of the learned CVs to MD engines: openmm-torch, PLUMED, torch.export and OpenMM's PythonForce."""

from .cv import CollectiveVariables, collective_variables
from .files import PlumedCV, TorchForceCV, cv_ranges, export_cvs, write_export_summary
from .force import CVComputation, openmm_force
from .numpy_cv import NumpyCollectiveVariables

__all__ = [
    "CollectiveVariables",
    "collective_variables",
    "export_cvs",
    "write_export_summary",
    "cv_ranges",
    "TorchForceCV",
    "PlumedCV",
    "openmm_force",
    "CVComputation",
    "NumpyCollectiveVariables",
]
