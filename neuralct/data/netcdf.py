"""AMBER NetCDF trajectories with velocities, written through scipy so MDTraj and MDAnalysis both read them.

Why this format: it stores positions, velocities and time per frame plus free-form global
attributes (we record whether the velocities are on-step), and both MDTraj (positions) and
MDAnalysis (positions and velocities) read it without extra packages; MDTraj's HDF5 needs
PyTables and H5MD needs h5py, neither of which is a neuralct dependency. The topology goes
next to it as a PDB file. Units follow the AMBER convention: angstrom, angstrom/ps, ps.

scipy's writer rewrites the whole file on every flush, so each write goes to a temporary file
that is renamed into place: an interrupted write never damages the frames already on disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import atomic_path

__all__ = ["NetCDFFrames", "write_netcdf", "read_netcdf"]

_NM_TO_ANGSTROM = 10.0


@dataclass
class NetCDFFrames:
    """Frames of one trajectory in OpenMM units.

    Attributes
    ----------
    positions : np.ndarray, shape=(n_frames, n_atoms, 3)
        Positions in nm.
    velocities : np.ndarray or None, shape=(n_frames, n_atoms, 3)
        Velocities in nm/ps.
    time_ps : np.ndarray, shape=(n_frames,)
        Simulation time in ps.
    attributes : dict
        Global attributes (str, int or float values).
    per_frame : dict of str to np.ndarray, shape=(n_frames,)
        Extra per-frame observables stored as float64 variables (e.g. kinetic temperature).
    """

    positions: np.ndarray
    velocities: np.ndarray | None
    time_ps: np.ndarray
    attributes: dict
    per_frame: dict = field(default_factory=dict)


#: Global attribute with the System's particle masses in amu, one per atom.
MASSES_ATTRIBUTE = "neuralct_masses_amu"


def write_netcdf(path: str | os.PathLike, frames: NetCDFFrames) -> None:
    """Write ``frames`` as an AMBER-convention NetCDF file, atomically."""
    from scipy.io import netcdf_file

    path = Path(path)
    n_frames, n_atoms, _ = frames.positions.shape
    with atomic_path(path) as tmp:
        handle = netcdf_file(str(tmp), "w", version=2)
        handle.Conventions = "AMBER"
        handle.ConventionVersion = "1.0"
        handle.program = "neuralct"
        handle.programVersion = "0.1.0"
        for key, value in frames.attributes.items():
            setattr(handle, key, value)
        handle.createDimension("frame", None)
        handle.createDimension("spatial", 3)
        handle.createDimension("atom", n_atoms)
        handle.createVariable("spatial", "c", ("spatial",))[:] = np.array(list("xyz"), dtype="S1")
        time = handle.createVariable("time", "f4", ("frame",))
        time.units = "picosecond"
        coordinates = handle.createVariable("coordinates", "f4", ("frame", "atom", "spatial"))
        coordinates.units = "angstrom"
        if n_frames:
            time[:] = frames.time_ps
            coordinates[:] = frames.positions * _NM_TO_ANGSTROM
        if frames.velocities is not None:
            velocities = handle.createVariable("velocities", "f4", ("frame", "atom", "spatial"))
            velocities.units = "angstrom/picosecond"
            if n_frames:
                velocities[:] = frames.velocities * _NM_TO_ANGSTROM
        for key, values in frames.per_frame.items():
            variable = handle.createVariable(key, "f8", ("frame",))
            if n_frames:
                variable[:] = values
        handle.close()


def read_netcdf(path: str | os.PathLike) -> NetCDFFrames:
    """Read an AMBER-convention NetCDF trajectory (positions, velocities if present, time, attributes).

    Velocities with a ``scale_factor`` attribute (AMBER's internal units) are scaled to angstrom/ps.
    """
    from scipy.io import netcdf_file

    with netcdf_file(path, "r", mmap=False) as handle:
        variables = handle.variables
        positions = np.array(variables["coordinates"][:], dtype=np.float64) / _NM_TO_ANGSTROM
        n_frames = positions.shape[0]
        time = (
            np.array(variables["time"][:], dtype=np.float64)
            if "time" in variables
            else np.arange(n_frames, dtype=np.float64)
        )
        velocities = None
        if "velocities" in variables:
            raw = variables["velocities"]
            scale = float(getattr(raw, "scale_factor", 1.0))
            velocities = np.array(raw[:], dtype=np.float64) * scale / _NM_TO_ANGSTROM
        per_frame = {
            key: np.array(variable[:], dtype=np.float64)
            for key, variable in variables.items()
            if variable.dimensions == ("frame",) and key != "time"
        }
        attributes = {key: _plain(value) for key, value in handle._attributes.items()}
    return NetCDFFrames(positions, velocities, time, attributes, per_frame)


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    value = np.asarray(value)
    return value.item() if value.size == 1 else value.tolist()
