"""Loading trajectories of any MDTraj or MDAnalysis format into aligned phase-space data."""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from ..errors import NeuralCTError, TemperatureMismatch, first_line
from ..units import kT_kj_per_mol
from .frame import RigidBodyFrame
from .pairs import LaggedPairs, lag_in_frames, split_lagged_pairs
from .periodic import box_vectors, make_whole, selection_tree, torn_bond, unbonded_residues

__all__ = [
    "PhaseSpaceData",
    "ION_ELEMENTS",
    "ION_RESIDUES",
    "EXTERNAL_FIELD_TOYS",
    "read_with_mdtraj",
    "VELOCITY_TEMPERATURE_RATIO",
    "DEFAULT_TEMPERATURE_K",
    "kinetic_temperature",
    "recorded_temperature",
    "frame_spacing",
    "topology_file",
    "solute_atom_indices",
    "solute_heavy_atom_indices",
    "load_trajectories",
]

#: Residue names of the particles of the bundled toy systems (``neuralct simulate harmonic-chain``, ...) and the
#: systems they belong to. Their potentials hold particles in an external field (tethered chain ends, a fixed
#: rotation, a one-particle landscape), so they are not invariant to rotating and translating the particles: the
#: rigid-body alignment of molecules would remove coordinates the dynamics depend on.
EXTERNAL_FIELD_TOYS = {
    "CHN": ("harmonic-chain",),
    "RDW": ("rotated-double-well",),
    "PRT": ("double-well", "mueller-brown"),
}

#: Elements of the monovalent monatomic ions (Na+, Cl-, K+, ...): solvent, like water, not solute. Divalent ions
#: (Zn2+, Mg2+, Ca2+) are often bound to the solute and stay with it.
ION_ELEMENTS = frozenset({"Li", "Na", "K", "Rb", "Cs", "F", "Cl", "Br", "I"})

#: Residue names of those ions in GROMACS, AMBER (signs dropped: ``Na+`` is ``NA``), OpenMM and CHARMM files. A
#: GROMACS .gro holds no elements, and MDTraj guesses them from the atom name (``NA`` nitrogen, ``CL`` carbon): the
#: residue name tells the ion.
ION_RESIDUES = frozenset(
    {"LI", "LIT", "NA", "SOD", "K", "POT", "RB", "RUB", "CS", "CES", "F", "CL", "CLA", "BR", "I", "IOD"}
)

#: Ratio of the kinetic temperature of velocities that no ``neuralct simulate`` flagged as on-step to the bath's,
#: outside which they are not used: another unit (AMBER's internal time unit gives 20.455^2 = 418 times the
#: temperature, angstrom for nm 100 times), or zeros. Half-step velocities of a leapfrog engine are inside, and so is
#: a constrained molecule counted with 3 degrees of freedom per atom (alanine dipeptide, all atoms, X-H bonds
#: constrained: 0.80).
VELOCITY_TEMPERATURE_RATIO = (0.5, 2.0)

#: Temperature (K) of trajectories whose files record none and for which none is given.
DEFAULT_TEMPERATURE_K = 300.0

#: File types whose velocities MDAnalysis reads and MDTraj does not (GROMACS TRR): MDAnalysis reads them first.
VELOCITY_FORMATS = frozenset({".trr"})


@dataclass
class PhaseSpaceData:
    """Aligned positions and momenta of the selected atoms of one or more trajectories.

    Attributes
    ----------
    positions : np.ndarray, shape=(n_frames, n_sel, 3)
        Positions in nm, aligned to ``frame.reference``.
    momenta : np.ndarray, shape=(n_frames, n_sel, 3)
        Momenta in amu nm/ps in the same rotated frame: recorded ones when the files hold
        on-step velocities (``momenta_source == "recorded"``), else Maxwell-Boltzmann draws.
    momenta_source : {"recorded", "resampled"}
        Where the momenta come from.
    momenta_note : str
        One line on velocities that are not ``neuralct simulate``'s on-step ones: used as recorded
        (and their kinetic temperature), or not used and why; empty otherwise.
    velocities_on_step : bool
        Whether every file declared on-step velocities.
    masses : np.ndarray, shape=(n_sel,)
        Masses in amu.
    atom_indices : np.ndarray, shape=(n_sel,)
        Indices of the selected atoms in ``topology``.
    topology : mdtraj.Topology
        Topology of the full system.
    selection_topology : mdtraj.Topology
        Topology of the selected atoms.
    traj_lengths : list of int
        Frames per trajectory, in order (frames are concatenated).
    time_ps : np.ndarray, shape=(n_frames,)
        Time stamp of every frame in ps (per trajectory; float32 stamps as the shortest decimals
        that round to them, see :func:`frame_spacing`); frame numbers when a file has none.
    timestep_ps : float or None
        Time between consecutive frames in ps (after striding), common to every trajectory
        (:func:`frame_spacing`); None when the files have no time stamps or uneven ones.
    timestep_note : str or None
        Why ``timestep_ps`` is None (None when it is not).
    temperature : float
        Temperature in K used for kT and resampled momenta.
    rotations : np.ndarray, shape=(n_frames, 3, 3)
        Rotation that aligned each centred frame.
    rmsd : np.ndarray, shape=(n_frames,)
        Mass-weighted RMSD to the reference after fitting, nm.
    frame : RigidBodyFrame
        The reference and rigid-body basis (mean structure of the aligned selection).
    paths : list of str
        The trajectory files.
    selection_note : str
        One line saying what the selection picked (atoms, residues) and what it left out
        (water, ions, other atoms).
    periodic : bool
        Whether any file recorded a periodic box (its molecules were made whole): a model
        trained on these frames exports CVs that refuse to run without the box.
    samples_note : str or None
        Where a file holds Monte Carlo samples (``neuralct sample``'s chains laid end to end), that
        their frames have no time (also ``timestep_note``): nothing is lagged or timed on them.
    biased : list of str
        The files that record frames of biased MD (``neuralct bias``): not Boltzmann's frames.
    box_vectors : np.ndarray, shape=(n_frames, 3, 3), or None
        Each frame's box vectors as rows, nm, in the files' axes: ``positions[f] @ rotations[f]``
        is frame ``f`` in them (up to a translation). NaN for the frames of a file without a box;
        None when no file has one.
    """

    positions: np.ndarray
    momenta: np.ndarray
    momenta_source: str
    momenta_note: str
    velocities_on_step: bool
    masses: np.ndarray
    atom_indices: np.ndarray
    topology: Any
    selection_topology: Any
    traj_lengths: list
    time_ps: np.ndarray
    timestep_ps: float | None
    timestep_note: str | None
    temperature: float
    rotations: np.ndarray
    rmsd: np.ndarray
    frame: RigidBodyFrame
    paths: list
    selection_note: str = ""
    periodic: bool = False
    box_vectors: np.ndarray | None = None
    samples_note: str | None = None
    biased: list = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        """Total number of frames."""
        return self.positions.shape[0]

    @property
    def kT(self) -> float:
        """Thermal energy in kJ/mol."""
        return kT_kj_per_mol(self.temperature)

    def internal_positions(self) -> np.ndarray:
        """Internal coordinates y, shape (n_frames, 3 n_sel - 6), sqrt(amu) nm (see ``RigidBodyFrame``)."""
        return self.frame.aligned_to_internal(self.positions)

    def internal_momenta(self) -> np.ndarray:
        """Conjugate momenta p_y, shape (n_frames, 3 n_sel - 6), sqrt(amu) nm/ps; N(0, kT) at equilibrium."""
        return self.frame.momenta_to_internal(self.momenta)

    def lag_frames(self, lag_ps: float, name: str = "--lag-ps") -> int:
        """``lag_ps`` as a whole number of frames of these trajectories (:func:`~neuralct.data.pairs.lag_in_frames`)."""
        return lag_in_frames(lag_ps, self.timestep_ps, name, self.timestep_note)

    def split_lagged_pairs(
        self,
        lag_ps: float,
        train_index: np.ndarray,
        valid_index: np.ndarray,
        name: str = "`lag_ps`",
        log_rates: np.ndarray | None = None,
    ) -> LaggedPairs:
        """The training and the validation pairs of frames ``lag_ps`` apart (:func:`.pairs.split_lagged_pairs`;
        in rescaled time with ``log_rates``)."""
        return split_lagged_pairs(
            self.traj_lengths, lag_ps, self.timestep_ps, train_index, valid_index, name, self.timestep_note, log_rates
        )


def _float32_decimals(time: np.ndarray) -> np.ndarray:
    """Time stamps that are all float32 values (as AMBER NetCDF, XTC and TRR store them) as the
    shortest decimals that round to them: 399.9 for the float32 399.899994; others unchanged.

    Either is within float32 rounding of the time the writer had; the decimal is the one it
    almost always had (a report interval times a frame number), and it prints as such in COLVAR files.
    """
    if not np.array_equal(time, time.astype(np.float32)):
        return time
    return time.astype(np.float32).astype(str).astype(np.float64)


def frame_spacing(times: Sequence[np.ndarray | None], names: Sequence[str]) -> tuple[float | None, str | None]:
    """The time between consecutive frames, common to every trajectory, or None and why.

    Time stamps carry the rounding of the format that stored them: float32 in AMBER NetCDF,
    XTC and TRR files, 1.2e-4 ps at 2 ns, so that at 400 ps single intervals of frames written
    every 0.1 ps read as 0.09998 to 0.10001 ps. The spacing of a trajectory is therefore taken from
    its first and last stamps (the rounding divided by the number of intervals), every interval
    must agree with it to twice the float32 resolution at the largest stamp (else the frames are
    not evenly spaced), the trajectories must agree with each other within their uncertainties,
    and the spacing is rounded to the shortest decimal inside its uncertainty: 0.1 ps, not
    0.0999985. A lag that is a whole multiple of the interval the frames were written at is then
    a whole number of frames (:func:`lag_in_frames`).

    Parameters
    ----------
    times : sequence of (np.ndarray, shape=(n_frames_i,) or None)
        Time stamps of each trajectory in ps, None for a file without them.
    names : sequence of str
        The trajectories' files, for the reason.

    Returns
    -------
    timestep_ps : float or None
        The spacing in ps; None if a file has no time stamps, a trajectory's frames are not
        evenly spaced or the trajectories' spacings differ, or no trajectory has two frames.
    note : str or None
        Why ``timestep_ps`` is None, ending with what to do (None when it is not).
    """
    estimates = []
    for time, name in zip(times, names):
        if time is None:
            return (
                None,
                f"{name} holds no time stamps; give the trajectories in a format that records them (NetCDF, XTC, TRR), "
                "or the time between their frames (`frame_ps`)",
            )
        if len(time) < 2:
            continue
        intervals = np.diff(time)
        spacing = (time[-1] - time[0]) / (len(time) - 1)
        tolerance = 2.0 * float(np.spacing(np.float32(np.abs(time).max())))
        if not spacing > 0:
            return None, f"the time stamps of {name} do not increase; give trajectories whose frames are in time order"
        if np.any(np.abs(intervals - spacing) > tolerance):
            typical = float(np.median(intervals))
            odd = np.flatnonzero(np.abs(intervals - typical) > tolerance)
            first = int(odd[0]) if odd.size else int(np.argmax(np.abs(intervals - spacing)))
            return None, (
                f"in {name} frame {first + 1} comes {intervals[first]:g} ps after frame {first}, but most frames are "
                f"{typical:g} ps apart; give trajectories with evenly spaced frames"
            )
        estimates.append((spacing, tolerance / (len(time) - 1), name))
    if not estimates:
        return None, "every trajectory has a single frame; give longer ones"
    spacing, uncertainty, name = min(estimates, key=lambda estimate: estimate[1])
    for other, other_uncertainty, other_name in estimates:
        if abs(other - spacing) > uncertainty + other_uncertainty:
            return (
                None,
                f"{name} has frames {spacing:g} ps apart but {other_name} {other:g} ps; "
                "give trajectories of one frame spacing",
            )
    for digits in range(1, 18):
        rounded = float(f"{spacing:.{digits}g}")
        if abs(rounded - spacing) <= uncertainty:
            return rounded, None
    return spacing, None


@dataclass
class _Raw:
    xyz: np.ndarray  # (frames, n_atoms, 3) nm
    velocities: np.ndarray | None  # (frames, n_atoms, 3) nm/ps
    on_step: bool
    time: np.ndarray | None
    topology: Any
    masses: np.ndarray | None = None  # (n_atoms,) amu: the simulation's or a MASS_TOPOLOGIES file's, else None
    box: np.ndarray | None = None  # (frames, 3, 3) nm, box vectors as rows; None without a periodic box
    temperature: float | None = None  # K, as the simulation recorded it; None where the file says nothing
    velocity_frames: int = 0  # frames that hold velocities where only some do (then ``velocities`` is None)
    samples: str | None = None  # what a file of Monte Carlo samples holds (``neuralct sample``); None: MD frames
    biased: bool = False  # frames of biased MD (``neuralct bias``)


class _NetcdfExtras(NamedTuple):
    velocities: np.ndarray | None  # (frames, n_atoms, 3) nm/ps
    on_step: bool
    masses: np.ndarray | None  # (n_atoms,) amu
    temperature: float | None  # K, the thermostat's, as `neuralct simulate` or `bias` recorded it
    samples: str | None  # what a file of Monte Carlo samples (`neuralct sample`) holds; None for MD frames
    biased: bool  # frames of biased MD (`neuralct bias`)


def recorded_temperature(paths: Sequence[str | os.PathLike]) -> float | None:
    """The temperature (K) that trajectory files record (a ``neuralct simulate`` or ``bias`` NetCDF), or None.

    A file that cannot be read says nothing here: :func:`load_trajectories` refuses it in its own words.
    """
    from scipy.io import netcdf_file

    from .netcdf import TEMPERATURE_ATTRIBUTE

    for path in map(Path, paths):
        if path.suffix.lower() in (".nc", ".ncdf", ".netcdf") and path.is_file():
            try:
                with netcdf_file(path, "r", mmap=True) as handle:  # the header only
                    temperature = handle._attributes.get(TEMPERATURE_ATTRIBUTE)
                    temperature = None if temperature is None else float(np.asarray(temperature).ravel()[0])
            except Exception:  # a damaged file: the loader's error follows
                continue
            if temperature is not None:
                return temperature
    return None


def _netcdf_extras(path: Path) -> _NetcdfExtras:
    """Velocities, whether they are on-step, the recorded particle masses and temperature of a NetCDF file, and
    whether it holds Monte Carlo samples or frames of biased MD."""
    from .netcdf import (
        BIASED_ATTRIBUTE,
        CONTENT_ATTRIBUTE,
        MASSES_ATTRIBUTE,
        SAMPLES_CONTENT,
        TEMPERATURE_ATTRIBUTE,
        read_netcdf,
    )

    frames = read_netcdf(path)
    masses = frames.attributes.get(MASSES_ATTRIBUTE)
    masses = None if masses is None else np.atleast_1d(np.asarray(masses, dtype=np.float64))
    temperature = frames.attributes.get(TEMPERATURE_ATTRIBUTE)
    content = frames.attributes.get(CONTENT_ATTRIBUTE)
    content = content.decode() if isinstance(content, bytes) else content
    return _NetcdfExtras(
        frames.velocities,
        bool(frames.attributes.get("neuralct_velocities_on_step", 0)),
        masses,
        None if temperature is None else float(np.asarray(temperature).ravel()[0]),
        content if isinstance(content, str) and content.startswith(SAMPLES_CONTENT) else None,
        bool(np.asarray(frames.attributes.get(BIASED_ATTRIBUTE, 0)).ravel()[0]),
    )


def _periodic_box(lengths: np.ndarray, angles: np.ndarray, path: Path, stride: int) -> np.ndarray | None:
    """Box vectors (frames, 3, 3), nm, from edge lengths (frames, 3), nm, and angles (frames, 3), degrees.

    None when the file holds no usable periodic box: a writer without one may fill in zeros, and
    such a box, or a non-finite one, counts as none. (Computed here rather than by MDTraj's
    ``unitcell_vectors``, which checks the angles frame by frame: 0.13 s for 4,000 frames.)

    Raises
    ------
    NeuralCTError
        If some frames of ``path`` (read every ``stride``-th) hold a box and others none: no rule
        makes the latter's molecules whole.
    """
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero angle: no box
        vectors = box_vectors(lengths, angles)
    diagonal = np.diagonal(vectors, axis1=-2, axis2=-1)
    usable = np.isfinite(vectors).all(axis=(1, 2)) & (diagonal > 0).all(axis=1)
    if usable.all():
        return vectors
    if usable.any():
        raise NeuralCTError(
            f"{path}: frame {int(np.argmin(usable)) * stride} holds no periodic box, where frame "
            f"{int(np.argmax(usable)) * stride} holds one; give a file with the box of every frame"
        )
    return None


def read_with_mdtraj(path: str | Path, topology: Any = None, stride: int = 1) -> Any:
    """``mdtraj.load`` of a trajectory file (with its topology, a file or an ``mdtraj.Topology``, if given), quietly.

    MDTraj warns that it reads NetCDF through scipy, "significantly slower" than with netCDF4:
    for these files it is not (a 4,000-frame, 22-atom file of `neuralct simulate` in 2.0 ms with
    scipy, 3.2-4.1 ms with netCDF4 1.7.5 installed), so the warning is noise and is not shown; nor
    are the divisions by zero of the angles of a frame without a box (zero vectors).
    """
    import warnings

    import mdtraj as md

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*netCDF4", category=UserWarning)
        # A frame without a box (zero vectors) has no angles: its 0/0 is refused or read as no box afterwards.
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="mdtraj.utils.unitcell")
        if not topology:
            return md.load(str(path), stride=stride)
        return md.load(str(path), top=topology if isinstance(topology, md.Topology) else str(topology), stride=stride)


def _read_mdtraj(path: Path, topology: str | None, stride: int) -> _Raw:
    with _damage_refused(path):
        traj = read_with_mdtraj(path, topology, stride)
    velocities, on_step, masses, temperature, samples, biased = None, False, None, None, None, False
    if path.suffix.lower() in (".nc", ".ncdf", ".netcdf"):
        velocities, on_step, masses, temperature, samples, biased = _netcdf_extras(path)
        velocities = velocities[::stride] if velocities is not None else None
        if masses is not None and len(masses) != traj.n_atoms:
            raise NeuralCTError(
                f"{path} records {len(masses)} particle masses for {traj.n_atoms} atoms; the file is damaged"
            )
    # MDTraj numbers the frames (integer "times") of a file that holds no time stamps (DCD, PDB).
    has_time = not np.issubdtype(traj.time.dtype, np.integer)
    return _Raw(
        traj.xyz.astype(np.float64),
        velocities,
        on_step,
        traj.time.astype(np.float64) if has_time else None,
        traj.topology,
        masses,
        None
        if traj.unitcell_lengths is None
        else _periodic_box(traj.unitcell_lengths, traj.unitcell_angles, path, stride),
        temperature,
        samples=samples,
        biased=biased,
    )


@contextlib.contextmanager
def _damage_refused(path: Path) -> Iterator[None]:
    """MDTraj's XTC and TRR readers stop at a damaged frame with "XTC read error: ...": that is the file's end.

    Another reader would return the frames before it as if they were the whole file, so the error is final.
    """
    try:
        yield
    except RuntimeError as error:
        if "read error" in str(error):
            raise NeuralCTError(f"trajectory file {path} is damaged or truncated ({first_line(error)})") from None
        raise


#: Where a frame's atom count is in the header of a frame of an XTC and of a TRR file (bytes from its start).
_XDR_ATOM_COUNT_AT = {".xtc": 4, ".trr": 64}

#: Where a TRR frame header's sizes of its blocks are (ir, e, box, vir, pres, top, sym, x, v, f: 10 integers, bytes
#: from its start; the header ends with the time and lambda, each 4 or 8 bytes as the frame's precision).
_TRR_SIZES_AT = 24
#: Where an XTC frame of more than 9 atoms says how many bytes its compressed coordinates take (padded to 4).
_XTC_BYTES_AT = 88


def _xdr_frame_size(header: bytes, suffix: str) -> tuple[int, int, bool]:
    """A frame's atom count, its size in bytes and whether it holds positions, from its header (the first 92 bytes)."""
    import struct

    atoms = struct.unpack(">i", header[_XDR_ATOM_COUNT_AT[suffix] :][:4])[0]
    if suffix == ".xtc":
        if atoms <= 9:  # stored uncompressed: 3 floats per atom after the size
            return atoms, 56 + 12 * atoms, True
        compressed = struct.unpack(">i", header[_XTC_BYTES_AT:][:4])[0]
        return atoms, _XTC_BYTES_AT + 4 + (compressed + 3) // 4 * 4, True
    sizes = struct.unpack(">10i", header[_TRR_SIZES_AT:][:40])
    box, positions, velocities, forces = sizes[2], sizes[7], sizes[8], sizes[9]
    real = box // 9 if box else (positions or velocities or forces) // (3 * max(atoms, 1)) or 4
    return atoms, _TRR_SIZES_AT + 52 + 2 * real + sum(sizes), positions > 0


def _check_xdr_frames(path: Path) -> None:
    """Refuse an XTC or TRR file from its frame headers alone: a last frame cut short (MDAnalysis, which alone reads
    XTC and TRR with a .tpr and is first for a TRR, reads the frames before it), frames that hold different numbers of
    atoms (parts of two runs joined, a saved group changed between them: a reader fills every frame into a buffer
    sized by the first, and one writes past it, crashing the process), or TRR frames without positions (GROMACS writes
    a frame whenever positions, velocities or forces are due: MDTraj reads such a frame as whatever its buffer
    held)."""
    from MDAnalysis.lib.formats.libmdaxdr import TRRFile, XTCFile

    suffix = path.suffix.lower()
    try:
        with (XTCFile if suffix == ".xtc" else TRRFile)(str(path)) as handle:
            offsets = handle.offsets
        counts, positions = [], []
        with open(path, "rb") as raw:
            for offset in offsets:
                raw.seek(int(offset))
                atoms, size, holds_positions = _xdr_frame_size(raw.read(92), suffix)
                counts.append(atoms)
                positions.append(holds_positions)
    except Exception:  # a damaged file: the readers' own checks refuse it
        return
    if len(offsets) and int(offsets[-1]) + size != path.stat().st_size:
        raise NeuralCTError(
            f"trajectory file {path} is damaged or truncated: its frame {len(offsets) - 1} takes {size} bytes, and the "
            f"file holds {path.stat().st_size - int(offsets[-1])} from its start on (a frame cut short)"
        )
    other = next((i for i, count in enumerate(counts) if count != counts[0]), None)
    if other is not None:
        raise NeuralCTError(
            f"{path}: frame {other} holds {counts[other]} atoms where the frames before it hold {counts[0]}; a "
            "trajectory file holds one system: give each part as a file of its own"
        )
    if not all(positions):
        raise NeuralCTError(
            f"{path}: {positions.count(False)} of {len(positions)} frames hold no positions (first: frame "
            f"{positions.index(False)}), as in a TRR that writes velocities or forces more often than positions; give "
            "frames that all hold positions (the run's XTC, or `gmx trjconv` of the TRR with -dt of the positions' "
            "interval)"
        )


def _check_gro_frames(path: Path, frames_read: int, stride: int) -> None:
    """Refuse a .gro trajectory of which fewer frames were read than it holds (MDAnalysis, which alone reads it with a
    .tpr, reads the first frame of a multi-frame .gro). A frame is a title, an atom count, its atoms and a box line."""
    with open(path, "rb") as handle:
        handle.readline()
        try:
            atoms = int(handle.readline())
        except ValueError:
            return
        lines = 2 + sum(1 for _ in handle)
    frames = lines // (atoms + 3)
    if frames_read < len(range(0, frames, stride)):
        raise NeuralCTError(
            f"{path} holds {frames} frames, of which its reader read {frames_read}: MDAnalysis, the reader of a .gro "
            "with a GROMACS run input (.tpr), reads its first frame only; convert it (`gmx trjconv -f traj.gro -o "
            "traj.xtc`) or give the .gro of the system as `--top`"
        )


def _check_dcd_frames(path: Path, frames_read: int) -> None:
    """Refuse a DCD file that holds fewer whole frames than its header counts (cut short after its writer ended).

    ``frames_read`` is the frames read times the stride (a file short of fewer frames than the stride
    passes). A header that counts none (some writers leave it 0) is not checked.
    """
    with open(path, "rb") as handle:
        header = handle.read(12)
    if len(header) < 12:
        return
    for order in ("<", ">"):
        marker, _, counted = np.frombuffer(header, dtype=f"{order}i4")
        if marker == 84:
            break
    else:
        return
    if 0 < frames_read < counted:
        raise NeuralCTError(
            f"trajectory file {path} is damaged or truncated: its header counts {counted} frames, it holds "
            f"{frames_read}"
        )


def _check_netcdf_length(path: Path) -> None:
    """Refuse a NetCDF file whose data do not fit the records its header declares (cut short while copied or written).

    Called once both readers failed: a file with a classic NetCDF header (``CDF``, version, record
    count) that scipy cannot open is damaged, and the error says so; any other file is left to the
    readers' own error.
    """
    from scipy.io import netcdf_file

    with open(path, "rb") as handle:
        header = handle.read(8)
    if len(header) < 8 or header[:3] != b"CDF" or header[3] not in (1, 2):
        return
    frames = int.from_bytes(header[4:8], "big")
    try:
        with netcdf_file(path, "r", mmap=False):
            return
    except Exception as exc:
        raise NeuralCTError(
            f"trajectory file {path} is damaged or truncated: its NetCDF header declares {frames} frames, whose "
            f"data the file does not hold ({first_line(exc)})"
        ) from None


def read_topology(path: str | os.PathLike) -> Any:
    """The ``mdtraj.Topology`` of a topology file as a trajectory read with it gets it: by MDTraj, or by MDAnalysis for
    a GROMACS run input (:data:`MDANALYSIS_TOPOLOGIES`); an AMBER topology's residues numbered from 1.

    Raises whatever the reader raises for a file it cannot read.
    """
    import mdtraj as md

    if Path(path).suffix.lower() in MDANALYSIS_TOPOLOGIES:
        import warnings

        import MDAnalysis as mda

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _mdtraj_topology_from_universe(mda.Universe(str(path)))
    topology = md.load_topology(str(path))
    if Path(path).suffix.lower() in AMBER_TOPOLOGIES:
        _number_residues_from_one(topology)
    return topology


def _mdtraj_topology_from_universe(universe: Any) -> Any:
    """The MDTraj topology of an MDAnalysis universe: its chains (segments), residues, atoms, elements and bonds (a
    GROMACS run input's; the bonds say which atoms are one molecule, :func:`~neuralct.data.periodic.molecules_of`)."""
    import mdtraj as md

    topology = md.Topology()
    chains: dict = {}
    residues: dict = {}
    for atom in universe.atoms:
        segid = getattr(atom, "segid", "A")
        if segid not in chains:
            chains[segid] = topology.add_chain()
        key = (segid, atom.resid)
        if key not in residues:
            residues[key] = topology.add_residue(atom.resname, chains[segid], resSeq=int(atom.resid))
        try:
            symbol = atom.element
        except Exception:  # MDAnalysis raises NoDataError when the topology has no elements
            symbol = atom.name.lstrip("0123456789")[:1]
        try:
            element = md.element.get_by_symbol(str(symbol).strip().capitalize())
        except KeyError:
            element = md.element.virtual
        topology.add_atom(atom.name, element, residues[key])
    if hasattr(universe, "bonds"):  # a topology without bonds (a coordinates file) has no such attribute
        atoms = list(topology.atoms)
        for first, second in universe.bonds.indices:
            topology.add_bond(atoms[first], atoms[second])
    return topology


def _read_mdanalysis(path: Path, topology: str | None, stride: int) -> _Raw:
    import gc
    import sys
    import warnings

    import MDAnalysis as mda

    # An MDAnalysis reader that fails in __init__ (a truncated file) raises again in its
    # __del__; that second error is only noise, so it is silenced while the first is kept.
    failure = None
    report_unraisable, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                universe = mda.Universe(topology, str(path)) if topology else mda.Universe(str(path))
            except Exception as exc:
                failure = first_line(exc)
        gc.collect()
    finally:
        sys.unraisablehook = report_unraisable
    if failure is not None:
        raise ValueError(failure)
    xyz, velocities, times, boxes = [], [], [], []
    for ts in universe.trajectory[::stride]:
        xyz.append(universe.atoms.positions / 10.0)
        # A GROMACS TRR may write velocities less often than positions: then none are used.
        if ts.has_velocities:
            velocities.append(universe.atoms.velocities / 10.0)
        times.append(ts.time)
        # MDAnalysis refills one array at every frame: each frame's box is a copy of it.
        boxes.append(None if ts.dimensions is None else ts.dimensions.copy())
    boxes = np.array([np.zeros(6) if box is None else box for box in boxes], dtype=np.float64)  # zeros: no box
    on_step, masses, temperature, samples, biased = False, None, None, None, False
    if path.suffix.lower() in (".nc", ".ncdf", ".netcdf"):
        _, on_step, masses, temperature, samples, biased = _netcdf_extras(path)
    if topology:
        import mdtraj as md

        try:
            top = md.load_topology(topology)
        except Exception:
            top = _mdtraj_topology_from_universe(universe)
    else:
        top = _mdtraj_topology_from_universe(universe)
    every = len(velocities) == len(xyz)
    return _Raw(
        np.array(xyz, dtype=np.float64),
        np.array(velocities, dtype=np.float64) if every else None,
        on_step,
        np.array(times, dtype=np.float64),
        top,
        masses,
        _periodic_box(boxes[:, :3] / 10.0, boxes[:, 3:], path, stride),
        temperature,
        0 if every else len(velocities),
        samples,
        biased,
    )


def topology_file(path: Path, topology: str | None) -> str | None:
    """The topology file read with trajectory ``path``: ``topology`` if given, else the
    ``topology.pdb`` that ``neuralct simulate`` writes beside a coordinates-only file, else None."""
    if (
        topology is None
        and path.suffix.lower() in (".nc", ".ncdf", ".netcdf", ".dcd", ".xtc", ".trr")
        and (path.parent / "topology.pdb").is_file()
    ):
        return str(path.parent / "topology.pdb")
    return topology


#: Topologies only MDAnalysis reads (a GROMACS run input).
MDANALYSIS_TOPOLOGIES = (".tpr",)

#: AMBER topologies: they hold no residue numbers, and MDTraj numbers their residues from 0.
AMBER_TOPOLOGIES = (".prmtop", ".parm7")

#: Topology files whose masses are the simulation's (hydrogen mass repartitioning changes them; MDTraj reads the
#: elements only): AMBER's and CHARMM's (a PSF lists every atom's mass), read by OpenMM's readers, and a GROMACS
#: run input (.tpr), read by MDAnalysis.
MASS_TOPOLOGIES = (*AMBER_TOPOLOGIES, ".psf", ".tpr")


def _number_residues_from_one(topology: Any) -> None:
    """Number the residues of an MDTraj ``topology`` read from an AMBER file 1, 2, ... as AMBER, OpenMM and the PDB
    files written from them do (MDTraj numbers them from 0), so that a residue has one name whatever file its
    topology came from (``phi_ALA2``)."""
    for residue in topology.residues:
        residue.resSeq = residue.index + 1


def topology_masses(path: str | os.PathLike) -> np.ndarray:
    """The masses (amu) of an AMBER, CHARMM or GROMACS run-input topology's atoms (:data:`MASS_TOPOLOGIES`), shape
    (n_atoms,), as its simulation used them: with hydrogen mass repartitioning, not the elements'. Read once per file
    state."""
    state = Path(path).stat()
    return _topology_masses(str(Path(path).resolve()), state.st_size, state.st_mtime_ns).copy()


@functools.lru_cache(maxsize=8)
def _topology_masses(path: str, size: int, mtime_ns: int) -> np.ndarray:
    import openmm.app as app

    kind = {".psf": "CHARMM", ".tpr": "GROMACS run-input"}.get(Path(path).suffix.lower(), "AMBER")
    try:
        if kind == "CHARMM":
            masses = [atom.mass for atom in app.CharmmPsfFile(path).atom_list]
        elif kind == "GROMACS run-input":
            import warnings

            import MDAnalysis as mda

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                masses = mda.Universe(path).atoms.masses.tolist()
        else:
            system = app.AmberPrmtopFile(path).createSystem(constraints=None, rigidWater=False)
            masses = [system.getParticleMass(i)._value for i in range(system.getNumParticles())]
    except Exception as exc:  # OpenMM's readers raise many kinds for a damaged file
        raise NeuralCTError(
            f"cannot read the masses of {kind} topology {path}: {first_line(exc)}; the file may be damaged"
        ) from None
    return np.array([getattr(mass, "_value", mass) for mass in masses], dtype=np.float64)


def _read_one(path: Path, topology: str | None, stride: int, backend: str) -> _Raw:
    if not path.is_file():
        raise NeuralCTError(f"trajectory file {path} does not exist; check the path")
    topology = topology_file(path, topology)
    if topology is not None and Path(topology).suffix.lower() in (".top", ".itp"):
        raise NeuralCTError(
            f"topology {topology} is a GROMACS topology, which neither reader takes for a trajectory; give the run "
            "input (.tpr), which holds the masses the run used, or the .gro (or a PDB) of the same system"
        )
    auto = [_read_mdtraj, _read_mdanalysis]
    if path.suffix.lower() in VELOCITY_FORMATS:
        auto.reverse()
    if topology is not None and Path(topology).suffix.lower() in MDANALYSIS_TOPOLOGIES:
        topology_masses(topology)  # a damaged run input is named as such, not as a trajectory the readers fail on
        if backend == "mdtraj":
            raise NeuralCTError(f'MDTraj does not read topology {topology}; use the backend "mdanalysis" or "auto"')
        auto = [_read_mdanalysis]
    readers = {"mdtraj": [_read_mdtraj], "mdanalysis": [_read_mdanalysis], "auto": auto}[backend]
    if path.suffix.lower() in _XDR_ATOM_COUNT_AT:
        _check_xdr_frames(path)
    errors = []
    for reader in readers:
        try:
            raw = reader(path, topology, stride)
        except NeuralCTError:
            raise
        except Exception as exc:
            errors.append(first_line(exc))
            continue
        if raw.xyz.ndim != 3 or raw.xyz.shape[0] == 0:
            errors.append("no frames")
            continue
        if raw.velocities is not None and raw.velocities.shape != raw.xyz.shape:
            raise NeuralCTError(
                f"trajectory file {path} has {raw.velocities.shape[0]} velocity frames but {raw.xyz.shape[0]} "
                "position frames; the file may be truncated"
            )
        if raw.topology.n_atoms != raw.xyz.shape[1]:
            raise NeuralCTError(
                f"topology {topology} has {raw.topology.n_atoms} atoms but {path} has {raw.xyz.shape[1]}; "
                "give the matching topology"
            )
        if path.suffix.lower() == ".dcd":
            _check_dcd_frames(path, raw.xyz.shape[0] * stride)
        if path.suffix.lower() == ".gro":
            _check_gro_frames(path, raw.xyz.shape[0], stride)
        if raw.masses is None and topology is not None and Path(topology).suffix.lower() in MASS_TOPOLOGIES:
            raw = replace(raw, masses=topology_masses(topology))
        if topology is not None and Path(topology).suffix.lower() in AMBER_TOPOLOGIES:
            _number_residues_from_one(raw.topology)
        return raw
    _check_atom_count(path, topology)
    if path.suffix.lower() in (".nc", ".ncdf", ".netcdf"):
        _check_netcdf_length(path)
    hint = f" with topology {topology}" if topology else " (give a topology file if it holds none)"
    raise NeuralCTError(
        f"cannot read trajectory {path}{hint}: {errors[0]}; the file may be truncated or in a format MDTraj and "
        "MDAnalysis do not read"
    )


def _check_atom_count(path: Path, topology: str | None) -> None:
    """Refuse a trajectory that has another number of atoms than ``topology``, when MDTraj can count both.

    The readers report such a mismatch only as a failure to read; the likeliest causes are a solvated
    system's trajectory given with the solute's topology, or a trajectory of the solute alone given
    with the whole system's, which the error tells apart.
    """
    import warnings

    import mdtraj as md

    if topology is None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the readers' warnings were seen when the file was read
            with md.open(str(path)) as handle:
                in_file = handle.read(n_frames=1)[0].shape[1]
            if Path(topology).suffix.lower() in MDANALYSIS_TOPOLOGIES:
                import MDAnalysis as mda

                in_topology = mda.Universe(topology).atoms.n_atoms
            else:
                in_topology = md.load_topology(topology).n_atoms
    except Exception:  # a format either reader does not count: the readers' own error stands
        return
    if in_file > in_topology:
        raise NeuralCTError(
            f"trajectory {path} has {in_file} atoms but topology {topology} has {in_topology}; give the topology of "
            "the whole simulated system (with its water and ions, e.g. the .tpr, .gro, .prmtop or .psf it was run "
            "with): "
            "the selection then picks the solute"
        )
    if in_file < in_topology:
        example = (
            "`gmx convert-tpr -n` of the group the run saved"
            if Path(topology).suffix.lower() == ".tpr"
            else "the topology.pdb written beside it, when only the solute was saved"
        )
        raise NeuralCTError(
            f"trajectory {path} has {in_file} atoms but topology {topology} has {in_topology}; give the topology of "
            f"the atoms the file holds (e.g. {example})"
        )


def _select(topology: Any, selection: str | Sequence[int], path: str) -> np.ndarray:
    if not isinstance(selection, str):
        indices = np.asarray(selection, dtype=int)
        if indices.size and (indices.min() < 0 or indices.max() >= topology.n_atoms):
            raise NeuralCTError(f"atom indices out of range for the {topology.n_atoms} atoms of {path}")
        return indices
    if selection == "heavy":
        return solute_heavy_atom_indices(topology)
    query = "all" if selection == "all" else selection
    try:
        return topology.select(query)
    except Exception as exc:
        raise NeuralCTError(
            f"invalid atom selection {selection!r}: {first_line(exc)}; use heavy, all, or an MDTraj selection"
        ) from None


def load_trajectories(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    topology: str | os.PathLike | None = None,
    selection: str | Sequence[int] = "heavy",
    stride: int = 1,
    temperature: float | None = None,
    momenta: str = "auto",
    backend: str = "auto",
    seed: int = 0,
    frame_ps: float | None = None,
) -> PhaseSpaceData:
    """Read trajectories, select atoms, align them and attach momenta.

    Files are read with MDTraj first and with MDAnalysis when MDTraj cannot read them. For
    ``neuralct simulate`` output (AMBER NetCDF) the topology.pdb next to the file is used when
    none is given, and the recorded velocities with their on-step flag are read too. Molecules
    of a file with a periodic box are made whole before the alignment
    (:mod:`neuralct.data.periodic`), so that atoms wrapped into the box one by one give the
    frames of the whole molecule.

    Parameters
    ----------
    paths : path or sequence of paths
        Trajectory files (one trajectory each; their frames are concatenated in order).
    topology : path, optional
        Topology file (PDB, PSF, prmtop, GRO, ...) for formats that hold none.
    selection : str or sequence of int
        ``heavy`` (default: the solute's atoms that are not hydrogen, see
        :func:`solute_atom_indices`), ``all``, an MDTraj selection string, or atom indices.
    stride : int
        Keep every ``stride``-th frame.
    temperature : float, optional
        Temperature of the trajectories in K (for kT and for resampled momenta). None: the one
        ``neuralct simulate`` and ``neuralct bias`` record in their files, else
        :data:`DEFAULT_TEMPERATURE_K`. A given temperature that differs from a file's record is
        refused, as are files that record different temperatures.
    momenta : {"auto", "recorded", "resample"}
        ``auto``: recorded velocities times masses when every file holds velocities (another
        engine's, not flagged on-step, where their kinetic temperature is within
        ``VELOCITY_TEMPERATURE_RATIO`` of the bath's), otherwise Maxwell-Boltzmann draws; ``recorded``
        requires such velocities; ``resample`` always draws.
    backend : {"auto", "mdtraj", "mdanalysis"}
        Reader to use.
    seed : int
        Seed of the resampled momenta.
    frame_ps : float, optional
        Time between the frames as written (before ``stride``), ps, for files that hold no time
        stamps (DCD, PDB): their frames are stamped 0, ``frame_ps``, ... Files that hold stamps keep
        them, and a spacing of theirs that differs is refused (:func:`frame_spacing`).

    Returns
    -------
    PhaseSpaceData

    Raises
    ------
    NeuralCTError
        Missing, truncated or unreadable files, atom counts that disagree with the topology
        or between files, an empty selection, recorded momenta asked for but not held or not at
        the bath's temperature, molecules torn across a periodic box that the file does not record,
        or a ``frame_ps`` that is not a positive number or disagrees with a file's own stamps, or a
        temperature that differs from the files' record (or records that differ), or a file given
        twice (the same content).
    """
    paths = _checked_paths(paths, topology, stride, momenta, backend)
    if frame_ps is not None and not (np.isfinite(frame_ps) and frame_ps > 0):
        raise NeuralCTError(f"`frame_ps` must be a positive number of ps, got {frame_ps}")
    raws = _read_all(paths, str(topology) if topology else None, stride, backend)
    temperature = _trajectory_temperature(raws, paths, temperature)
    first = raws[0]
    _refuse_external_field_toy(first.topology, paths[0])
    atom_indices, masses = _selected_atoms(first, selection, paths[0])
    positions = _whole_selection(raws, atom_indices, paths, stride)
    frame, aligned, rotations, rmsd = _aligned(positions, masses, paths[0])
    on_step = all(raw.velocities is not None and raw.on_step for raw in raws)
    cartesian, source, momenta_note = _cartesian_momenta(
        raws, atom_indices, masses, on_step, momenta, temperature, seed, paths
    )
    spacing = None if frame_ps is None else frame_ps * stride
    time_ps, timestep, timestep_note = _time_stamps(raws, paths, spacing)
    samples = _monte_carlo_samples(raws, paths)
    if samples is not None:
        if frame_ps is not None:
            raise NeuralCTError(f"{samples}; leave `frame_ps` out")
        timestep, timestep_note = None, samples
    if spacing is not None and timestep is None:
        raise NeuralCTError(timestep_note)
    if spacing is not None and not np.isclose(timestep, spacing, rtol=1e-4, atol=0.0):
        raise NeuralCTError(
            f"the frames of {', '.join(str(path) for path in paths)} are stamped {timestep:g} ps apart, "
            f"not the {spacing:g} ps `frame_ps` gives; leave `frame_ps` out for files with time stamps"
        )
    return PhaseSpaceData(
        positions=aligned,
        momenta=np.einsum("fab,fib->fia", rotations, cartesian),
        momenta_source=source,
        momenta_note=momenta_note,
        velocities_on_step=on_step,
        masses=masses,
        atom_indices=atom_indices,
        topology=first.topology,
        selection_topology=first.topology.subset(atom_indices),
        traj_lengths=[raw.xyz.shape[0] for raw in raws],
        time_ps=time_ps,
        timestep_ps=timestep,
        timestep_note=timestep_note,
        temperature=temperature,
        rotations=rotations,
        rmsd=rmsd,
        frame=frame,
        paths=[str(p) for p in paths],
        selection_note=_selection_note(first.topology, atom_indices, selection),
        periodic=any(raw.box is not None for raw in raws),
        box_vectors=_box_vectors(raws),
        samples_note=samples,
        biased=[str(path) for path, raw in zip(paths, raws) if raw.biased],
    )


def _monte_carlo_samples(raws: list[_Raw], paths: list[Path]) -> str | None:
    """Why the frames have no time, where a file holds Monte Carlo samples (``neuralct sample``); None otherwise."""
    path, raw = next(((path, raw) for path, raw in zip(paths, raws) if raw.samples), (None, None))
    if raw is None:
        return None
    return (
        f"{path} holds Monte Carlo {raw.samples.split(';')[0]} (neuralct sample), not a trajectory: its frames have no "
        "time, so they have free energies but no kinetics"
    )


def _box_vectors(raws: list[_Raw]) -> np.ndarray | None:
    """Every frame's box vectors (n_frames, 3, 3), nm, NaN where its file has none; None where no file has one."""
    if all(raw.box is None for raw in raws):
        return None
    return np.concatenate([np.full((len(raw.xyz), 3, 3), np.nan) if raw.box is None else raw.box for raw in raws])


def _trajectory_temperature(raws: list[_Raw], paths: list[Path], given: float | None) -> float:
    """The temperature (K) of the trajectories: ``given``, checked against the files' records, or the records'.

    A file of ``neuralct simulate`` or ``neuralct bias`` records its thermostat's temperature; a
    file of another engine records none, and ``given`` (or :data:`DEFAULT_TEMPERATURE_K`) is taken
    on trust.
    """
    recorded = {path: raw.temperature for path, raw in zip(paths, raws) if raw.temperature is not None}
    if len({round(value, 6) for value in recorded.values()}) > 1:
        listed = ", ".join(f"{path} {value:g} K" for path, value in recorded.items())
        raise NeuralCTError(
            f"the trajectories ran at different temperatures ({listed})",
            "give trajectories of one temperature",
        )
    if given is None:
        return next(iter(recorded.values()), DEFAULT_TEMPERATURE_K)
    for path, value in recorded.items():
        if not np.isclose(value, given, rtol=1e-6, atol=0.0):
            raise TemperatureMismatch(
                f"{path} ran at {value:g} K, as its run recorded, not at the {given:g} K given",
                "leave `temperature` out to take the files' own",
            )
    return given


def _refuse_external_field_toy(topology: Any, path: str) -> None:
    """Refuse the particles of a bundled toy held by an external field (:data:`EXTERNAL_FIELD_TOYS`)."""
    names = {residue.name for residue in topology.residues}
    if len(names) == 1 and (name := names.pop()) in EXTERNAL_FIELD_TOYS:
        raise NeuralCTError(
            f"{path} holds the particles of the toy {' or '.join(EXTERNAL_FIELD_TOYS[name])}, held by an external "
            "field: training aligns molecules by rotating and translating them, which would remove the coordinates its "
            "potential depends on; learn its CVs with neuralct.toys (e.g. fit_toy_trajectories)"
        )


def solute_heavy_atom_indices(topology: Any) -> np.ndarray:
    """The atoms of selection ``heavy``: the solute's (:func:`solute_atom_indices`) that are not hydrogen, ascending."""
    solute = solute_atom_indices(topology)
    return solute[[topology.atom(int(i)).element.symbol != "H" for i in solute]]


def solute_atom_indices(topology: Any) -> np.ndarray:
    """Indices of the solute's atoms: every atom but water and monatomic ions (:func:`_solvent`).

    Parameters
    ----------
    topology : mdtraj.Topology

    Returns
    -------
    np.ndarray, shape=(n_solute,)
        Atom indices, ascending.
    """
    return np.array([atom.index for atom in topology.atoms if not _solvent(atom)], dtype=np.int64)


def _solvent(atom: Any) -> bool:
    """Whether ``atom`` (mdtraj.Atom) belongs to a water molecule or is a monatomic ion (by its element,
    :data:`ION_ELEMENTS`, or its residue's name, :data:`ION_RESIDUES`)."""
    residue = atom.residue
    ion = residue.n_atoms == 1 and (
        (atom.element is not None and atom.element.symbol in ION_ELEMENTS)
        or residue.name.upper().rstrip("+-") in ION_RESIDUES
    )
    return residue.is_water or ion


def _selection_note(topology: Any, atom_indices: np.ndarray, selection: str | Sequence[int]) -> str:
    """One line: how many atoms and residues ``selection`` picked, and the water, ions and other atoms it left out."""
    chosen = set(int(i) for i in atom_indices)
    picked = {topology.atom(i).residue.index for i in chosen}
    water, ions, other = set(), 0, 0
    for atom in topology.atoms:
        if atom.index in chosen:
            continue
        if atom.residue.is_water:
            water.add(atom.residue.index)
        elif _solvent(atom):
            ions += 1
        else:
            other += 1
    left_out = [
        f"{count} {what}"
        for count, what in ((len(water), "water molecules"), (ions, "ions"), (other, "other atoms"))
        if count
    ]
    name = selection if isinstance(selection, str) else "given indices"
    return (
        f"selection {name!r}: {len(chosen)} of {topology.n_atoms} atoms in {len(picked)} residues; "
        + (f"left out {', '.join(left_out)}" if left_out else "nothing left out")
        + _unbonded_note(topology, picked)
    )


def _unbonded_note(topology: Any, residues: set) -> str:
    """Where a topology with bonds has selected residues of several atoms without any (a ligand of a PDB without CONECT
    records), that each is taken as one molecule in a periodic box (:func:`.periodic.molecules_of`); else empty."""
    unbonded = [residue for residue in unbonded_residues(topology) if residue.index in residues]
    if not unbonded:
        return ""
    return (
        f"; {len(unbonded)} selected residue(s) have no bonds in the topology ({unbonded[0]}"
        + (", ..." if len(unbonded) > 1 else "")
        + "): each is taken as one molecule; a molecule of several such residues needs a topology with its bonds "
        "(CONECT records, .tpr, .prmtop, .psf)"
    )


def _checked_paths(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    topology: str | os.PathLike | None,
    stride: int,
    momenta: str,
    backend: str,
) -> list[Path]:
    """The trajectory files as paths, once the arguments of :func:`load_trajectories` are checked."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise NeuralCTError("no trajectory files given")
    if stride < 1:
        raise NeuralCTError(f"`stride` must be >= 1, got {stride}")
    if momenta not in ("auto", "recorded", "resample"):
        raise NeuralCTError(f"unknown `momenta` {momenta!r}; use auto, recorded or resample")
    if backend not in ("auto", "mdtraj", "mdanalysis"):
        raise NeuralCTError(f"unknown `backend` {backend!r}; use auto, mdtraj or mdanalysis")
    if topology is not None and not Path(topology).is_file():
        raise NeuralCTError(f"topology file {topology} does not exist; check the path")
    _refuse_repeated_files(paths)
    return paths


def _refuse_repeated_files(paths: list[Path]) -> None:
    """Refuse a file given twice, by content (a copy, a link or the same path): its frames would count twice, and one
    file could both train and validate a model, or fit the baselines that are then scored on it."""
    from ..io import sha256

    seen: dict[tuple[int, str], Path] = {}
    sizes = [path.stat().st_size if path.is_file() else None for path in paths]
    for path, size in zip(paths, sizes):
        if size is None or sizes.count(size) < 2:
            continue
        key = (size, sha256(path))
        if key in seen:
            raise NeuralCTError(
                f"trajectory {path} holds the same bytes as {seen[key]}; give each trajectory once (its frames "
                "would count twice)"
            )
        seen[key] = path


def _read_all(paths: list[Path], topology: str | None, stride: int, backend: str) -> list[_Raw]:
    """Every file read, with finite coordinates and one atom count."""
    raws = [_read_one(p, topology, stride, backend) for p in paths]
    for path, raw in zip(paths, raws):
        bad = np.flatnonzero(~np.isfinite(raw.xyz).all(axis=(1, 2)))
        if bad.size:
            raise NeuralCTError(
                f"{path}: {bad.size} frame(s) have NaN or infinite coordinates (first: frame {bad[0] * stride}); "
                "the file is corrupt, drop those frames"
            )
    first = raws[0]
    for path, raw in zip(paths[1:], raws[1:]):
        if raw.xyz.shape[1] != first.xyz.shape[1]:
            raise NeuralCTError(
                f"{path} has {raw.xyz.shape[1]} atoms but {paths[0]} has {first.xyz.shape[1]}; "
                "load trajectories of one system together"
            )
    return raws


def _selected_atoms(first: _Raw, selection: str | Sequence[int], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the selected atoms, shape (n_sel,), and their masses in amu: the simulation's, else the elements'."""
    atom_indices = _select(first.topology, selection, str(path))
    if atom_indices.size < 3:
        raise NeuralCTError(
            f"atom selection {selection!r} picks {atom_indices.size} atom(s) of {path}; at least 3 are needed"
        )
    if first.masses is not None:
        masses = first.masses[atom_indices]
    else:
        masses = np.array([first.topology.atom(int(i)).element.mass for i in atom_indices], dtype=np.float64)
    if not (masses > 0).all():
        raise NeuralCTError(
            f"atom selection {selection!r} includes atoms without a mass (virtual sites?); select real atoms"
        )
    return atom_indices, masses


def _whole_selection(raws: list[_Raw], atom_indices: np.ndarray, paths: list[Path], stride: int) -> np.ndarray:
    """The selected atoms of every frame, shape (n_frames, n_sel, 3), nm, in whole molecules.

    A file with a periodic box is made whole by the parent-image rule of :mod:`.periodic`; one
    without must hold whole molecules already. Either way a torn bond between selected atoms
    (:func:`.periodic.torn_bond`) is refused: the frames would be torn molecules.
    """
    atoms, tree = None, None
    selected = []
    for path, raw in zip(paths, raws):
        if raw.box is None:
            whole = raw.xyz[:, atom_indices]
        else:
            if tree is None:
                atoms, tree = selection_tree(raw.topology, atom_indices, raw.xyz[0], raw.box[0])
            whole = make_whole(raw.xyz[:, atoms], raw.box, tree)[:, np.searchsorted(atoms, atom_indices)]
        _check_whole(whole, raw, atom_indices, path, stride)
        selected.append(whole)
    return np.concatenate(selected)


def _check_whole(whole: np.ndarray, raw: _Raw, atom_indices: np.ndarray, path: Path, stride: int) -> None:
    """Refuse frames (n_frames, n_sel, 3) of ``path`` in which a bond between selected atoms is torn."""
    torn = torn_bond(whole, raw.topology, atom_indices)
    if torn is None:
        return
    length, frame, first, second = torn
    atoms = f"bonded atoms {raw.topology.atom(first)} and {raw.topology.atom(second)} are {length:.2f} nm apart"
    if raw.box is None:
        raise NeuralCTError(
            f"{path}: {atoms} in frame {frame * stride} and the file holds no periodic box: its molecules are split "
            "across the box; make them whole first (`gmx trjconv -pbc mol`, cpptraj `autoimage`) or give a trajectory "
            "file that records the periodic box"
        )
    raise NeuralCTError(
        f"{path}: {atoms} in frame {frame * stride} even after making molecules whole with the file's periodic box; "
        "check that the box and the topology match the coordinates"
    )


def _aligned(
    positions: np.ndarray, masses: np.ndarray, path: Path
) -> tuple[RigidBodyFrame, np.ndarray, np.ndarray, np.ndarray]:
    """The reference frame (the mean structure after a first alignment to the first frame) and the frames aligned to it.

    Returns
    -------
    frame, aligned, rotations, rmsd
        As :class:`PhaseSpaceData` holds them.
    """
    provisional = RigidBodyFrame(positions[0], masses)
    frame = RigidBodyFrame(provisional.align(positions)[0].mean(axis=0), masses)
    try:
        aligned, rotations, rmsd = frame.align(positions)
    except RuntimeError as exc:
        raise NeuralCTError(f"alignment of {path}: {exc}") from None
    return frame, aligned, rotations, rmsd


def _cartesian_momenta(
    raws: list[_Raw],
    atom_indices: np.ndarray,
    masses: np.ndarray,
    on_step: bool,
    momenta: str,
    temperature: float,
    seed: int,
    paths: list[Path],
) -> tuple[np.ndarray, str, str]:
    """Momenta of the selected atoms before alignment, shape (n_frames, n_sel, 3), amu nm/ps, their source and a note.

    Recorded (velocities times masses) when every file holds velocities and ``momenta`` allows
    it, else Maxwell-Boltzmann draws. Velocities that no ``neuralct simulate`` flagged as on-step
    (another engine's: a leapfrog engine writes them half a step from the positions) are used as
    they are where their kinetic temperature over the selection is within
    ``VELOCITY_TEMPERATURE_RATIO`` of the bath's; otherwise (other units, another temperature, zeros)
    ``auto`` resamples and says so, and ``recorded`` is refused.
    """
    held, note = all(raw.velocities is not None for raw in raws), ""
    partial = next(((raw_path, raw) for raw_path, raw in zip(paths, raws) if raw.velocity_frames), None)
    if partial is not None:
        note = (
            f"{partial[0]} holds velocities in {partial[1].velocity_frames} of {len(partial[1].xyz)} frames (written "
            "less often than positions): momenta drawn from Maxwell-Boltzmann"
        )
    if momenta == "recorded" and not held:
        missing = next(raw_path for raw_path, raw in zip(paths, raws) if raw.velocities is None)
        why = f"{missing} has none" if partial is None else f"{partial[0]} has them in some frames only"
        raise NeuralCTError(
            f"`momenta` 'recorded' needs velocities in every frame of every file; {why}; use 'resample'"
        )
    if held and momenta != "resample":
        velocities = np.concatenate([raw.velocities[:, atom_indices] for raw in raws])
        if on_step:
            return velocities * masses[:, None], "recorded", ""
        measured = kinetic_temperature(velocities, masses)
        low, high = VELOCITY_TEMPERATURE_RATIO
        if low <= measured / temperature <= high:
            note = (
                f"velocities of the files used as recorded: not flagged on-step (a leapfrog engine's are half a step "
                f"from the positions), kinetic temperature of the selection {measured:.1f} K"
            )
            if raws[0].masses is None:
                note += (
                    ", with the elements' masses (the topology holds none: a run that repartitioned hydrogen masses "
                    f"needs its {', '.join(MASS_TOPOLOGIES[:-1])} or {MASS_TOPOLOGIES[-1]} as `--top`)"
                )
            return velocities * masses[:, None], "recorded", note
        why = (
            f"the files' velocities give the selection a kinetic temperature of {measured:.4g} K, not about "
            f"{temperature:g} K (other units, or another temperature?)"
        )
        if momenta == "recorded":
            raise NeuralCTError(f"`momenta` 'recorded': {why}; use 'resample' or give the right `temperature`")
        note = f"{why}: not used, momenta drawn from Maxwell-Boltzmann"
    rng = np.random.default_rng(seed)
    shape = (sum(raw.xyz.shape[0] for raw in raws), len(atom_indices), 3)
    return rng.normal(size=shape) * np.sqrt(masses * kT_kj_per_mol(temperature))[:, None], "resampled", note


def kinetic_temperature(velocities: np.ndarray, masses: np.ndarray) -> float:
    """Mean kinetic temperature in K of ``velocities`` (n_frames, n_atoms, 3), nm/ps, of atoms of ``masses``, amu.

    Three degrees of freedom per atom (constraints and the centre of mass are not subtracted: for a
    selection of a larger system their share is small).
    """
    kinetic = 0.5 * np.einsum("a,fai->", masses, velocities**2) / velocities.shape[0]  # kJ/mol per frame
    return float(2.0 * kinetic / (3 * len(masses) * kT_kj_per_mol(1.0)))


def _time_stamps(
    raws: list[_Raw], paths: list[Path], spacing_ps: float | None
) -> tuple[np.ndarray, float | None, str | None]:
    """Every frame's time stamp in ps, the frame spacing and why it is unknown.

    A file whose stamps are all equal holds none (a writer that fills in a constant). A file
    without stamps gets its frame numbers times ``spacing_ps`` (the read frames' spacing, ps),
    or its frame numbers where that is None.
    """
    stamps = [
        None if raw.time is None or (len(raw.time) > 1 and np.ptp(raw.time) == 0) else _float32_decimals(raw.time)
        for raw in raws
    ]
    if spacing_ps is not None:
        stamps = [
            time if time is not None else np.arange(raw.xyz.shape[0], dtype=np.float64) * spacing_ps
            for time, raw in zip(stamps, raws)
        ]
    timestep, timestep_note = frame_spacing(stamps, [str(path) for path in paths])
    times = [
        time if time is not None else np.arange(raw.xyz.shape[0], dtype=np.float64) for time, raw in zip(stamps, raws)
    ]
    return np.concatenate(times), timestep, timestep_note
