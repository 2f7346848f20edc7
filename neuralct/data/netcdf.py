"""AMBER NetCDF trajectories with velocities, written through scipy so MDTraj and MDAnalysis both read them.

Why this format: it stores positions, velocities, time and the periodic box (``cell_lengths``,
``cell_angles``) per frame plus free-form global attributes (we record whether the velocities are
on-step), and both MDTraj (positions, box) and MDAnalysis (positions, velocities, box) read it
without extra packages; MDTraj's HDF5 needs PyTables and H5MD needs h5py, neither of which is a
neuralct dependency. The topology goes next to it as a PDB file. Units follow the AMBER
convention: angstrom, angstrom/ps, ps, degrees.

scipy's writer rewrites the whole file on every flush, so each write goes to a temporary file
that is renamed into place: an interrupted write never damages the frames already on disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import atomic_path
from .periodic import box_vectors

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
    box_vectors : np.ndarray or None, shape=(n_frames, 3, 3)
        Periodic box vectors as rows in nm, ``a`` along x and ``b`` in the xy plane (None: no box).
    """

    positions: np.ndarray
    velocities: np.ndarray | None
    time_ps: np.ndarray
    attributes: dict
    per_frame: dict = field(default_factory=dict)
    box_vectors: np.ndarray | None = None


#: Global attribute with the System's particle masses in amu, one per atom.
MASSES_ATTRIBUTE = "neuralct_masses_amu"

#: Global attribute with the thermostat's temperature in K of the run that wrote the file.
TEMPERATURE_ATTRIBUTE = "neuralct_temperature_K"

#: Global attribute (1) of a trajectory of biased MD (``neuralct bias``): its frames are not Boltzmann's.
BIASED_ATTRIBUTE = "neuralct_biased"

#: Global attribute saying what the frames are, where they are not one trajectory of MD.
CONTENT_ATTRIBUTE = "neuralct_content"

#: How :data:`CONTENT_ATTRIBUTE` begins in a file of Monte Carlo samples (``neuralct sample``): chains laid end to
#: end, whose frames have no time.
SAMPLES_CONTENT = "samples of "


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
        if frames.box_vectors is not None:
            _write_cell(handle, frames.box_vectors)
        for key, values in frames.per_frame.items():
            variable = handle.createVariable(key, "f8", ("frame",))
            if n_frames:
                variable[:] = values
        handle.close()


def _write_cell(handle, box_vectors: np.ndarray) -> None:
    """The box of each frame as AMBER's ``cell_lengths`` (angstrom) and ``cell_angles`` (degrees), as MDTraj reads."""
    from mdtraj.utils import box_vectors_to_lengths_and_angles

    handle.createDimension("cell_spatial", 3)
    handle.createDimension("cell_angular", 3)
    handle.createDimension("label", 5)
    handle.createVariable("cell_spatial", "c", ("cell_spatial",))[:] = np.array(list("abc"), dtype="S1")
    labels = [list(name.ljust(5)) for name in ("alpha", "beta", "gamma")]
    handle.createVariable("cell_angular", "c", ("cell_angular", "label"))[:] = np.array(labels, dtype="S1")
    lengths = handle.createVariable("cell_lengths", "f8", ("frame", "cell_spatial"))
    lengths.units = "angstrom"
    angles = handle.createVariable("cell_angles", "f8", ("frame", "cell_angular"))
    angles.units = "degree"
    if len(box_vectors):
        box = np.asarray(box_vectors, dtype=np.float64) * _NM_TO_ANGSTROM
        *edges, alpha, beta, gamma = box_vectors_to_lengths_and_angles(box[:, 0], box[:, 1], box[:, 2])
        lengths[:] = np.stack(edges, axis=1)
        angles[:] = np.stack([alpha, beta, gamma], axis=1)


def read_netcdf(path: str | os.PathLike) -> NetCDFFrames:
    """Read an AMBER-convention NetCDF trajectory (positions, velocities and box if present, time, attributes).

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
        box = None
        if "cell_lengths" in variables and "cell_angles" in variables:
            lengths = np.array(variables["cell_lengths"][:], dtype=np.float64) / _NM_TO_ANGSTROM
            box = box_vectors(lengths, np.array(variables["cell_angles"][:], dtype=np.float64))
        attributes = {key: _plain(value) for key, value in handle._attributes.items()}
    return NetCDFFrames(positions, velocities, time, attributes, per_frame, box)


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    value = np.asarray(value)
    return value.item() if value.size == 1 else value.tolist()
