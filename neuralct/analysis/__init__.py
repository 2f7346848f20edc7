"""Analysis of learned collective variables: pure functions on arrays (no model code)."""

from .colvar import read_colvar, write_colvar
from .dihedrals import backbone_dihedrals
from .fes import free_energy_1d, free_energy_2d
from .information import circular_correlation, mutual_information
from .plots import plot_fes, plot_ramachandran, plot_spectrum, plot_training_curves
from .report import cv_quality_report
from .states import STATE_NAMES, UNASSIGNED, conformational_states, state_classification_accuracy
from .vamp import VAMP2_CONVENTION, pca_baseline, tica_baseline, vamp2_score

__all__ = [
    "STATE_NAMES",
    "UNASSIGNED",
    "VAMP2_CONVENTION",
    "backbone_dihedrals",
    "circular_correlation",
    "conformational_states",
    "cv_quality_report",
    "free_energy_1d",
    "free_energy_2d",
    "mutual_information",
    "pca_baseline",
    "plot_fes",
    "plot_ramachandran",
    "plot_spectrum",
    "plot_training_curves",
    "read_colvar",
    "state_classification_accuracy",
    "tica_baseline",
    "vamp2_score",
    "write_colvar",
]
