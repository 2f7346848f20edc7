"""Analysis of learned collective variables: pure functions on arrays (no model code)."""

from .colvar import read_colvar, write_colvar
from .dihedrals import Dihedral, Residue, dihedral_angles, find_dihedrals, ramachandran_residues, select_residues
from .fes import free_energy_1d, free_energy_2d
from .information import circular_correlation, mutual_information
from .plots import plot_dependence, plot_fes, plot_ramachandran, plot_spectrum, plot_training_curves
from .report import cv_quality_report, dependence_table
from .states import (
    STATE_NAMES,
    STATE_REGIONS_DESCRIPTION,
    UNASSIGNED,
    conformational_states,
    state_classification_accuracy,
)
from .vamp import VAMP2_CONVENTION, pca_baseline, tica_baseline, vamp2_score

__all__ = [
    "Dihedral",
    "Residue",
    "STATE_NAMES",
    "STATE_REGIONS_DESCRIPTION",
    "UNASSIGNED",
    "VAMP2_CONVENTION",
    "circular_correlation",
    "conformational_states",
    "cv_quality_report",
    "dependence_table",
    "dihedral_angles",
    "find_dihedrals",
    "free_energy_1d",
    "free_energy_2d",
    "mutual_information",
    "pca_baseline",
    "plot_dependence",
    "plot_fes",
    "plot_ramachandran",
    "plot_spectrum",
    "plot_training_curves",
    "ramachandran_residues",
    "read_colvar",
    "select_residues",
    "state_classification_accuracy",
    "tica_baseline",
    "vamp2_score",
    "write_colvar",
]
