"""Trajectory data for training: loading any MDTraj/MDAnalysis format, alignment, momenta, lagged pairs."""

from .frame import RigidBodyFrame
from .loading import PhaseSpaceData, load_trajectories
from .pairs import LaggedPairs, lagged_pairs

__all__ = ["RigidBodyFrame", "PhaseSpaceData", "LaggedPairs", "lagged_pairs", "load_trajectories"]
