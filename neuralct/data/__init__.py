"""Trajectory data for training: loading any MDTraj/MDAnalysis format, alignment, momenta, lagged pairs."""

from .frame import RigidBodyFrame
from .loading import PhaseSpaceData, load_trajectories
from .pairs import lagged_pairs

__all__ = ["RigidBodyFrame", "PhaseSpaceData", "lagged_pairs", "load_trajectories"]
