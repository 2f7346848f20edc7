"""Well-tempered metadynamics in OpenMM on the learned CVs (or on phi/psi), with reweighting and transition counts.

The bias is ``openmm.app.Metadynamics`` (a ``CustomCVForce`` of a tabulated bias on a grid)
over :func:`neuralct.export.openmm_force` CVs or backbone torsions. The bias force sits in
its own force group; with ``bias_every = n > 1`` a multiple-time-step Langevin integrator
(``MTSLangevinIntegrator``, RESPA) evaluates it once per n steps of the other forces, as an
n-times larger impulse.

Reweighting (Tiwary & Parrinello, J. Phys. Chem. B 119, 736, 2015): each frame gets the
weight ``exp(beta (V(s, t) - c(t)))`` with the bias ``V`` at the time of the frame and

    c(t) = (1/beta) ln [ int ds exp(gamma/(gamma-1) beta V(s,t)) / int ds exp(beta V(s,t)/(gamma-1)) ],

the time-dependent offset of well-tempered metadynamics (gamma the bias factor), computed
on the bias grid at every deposition. The COLVAR holds ``bias = V`` and ``rbias = V - c``.

Every backbone phi and psi of the molecule is recorded beside the CVs (``phi`` and ``psi`` for a
dipeptide, ``phi_A_ALA2``, ``psi_A_ALA2``, ... (kind, chain and residue) for longer peptides, none
for other molecules).
Transitions of each phi are counted between core sets (B3 in benchmarks.md): A = phi < -0.5 rad,
B = 0.5 < phi < 1.6 rad; a transition is a change of the last core set visited. The reweighted
F(phi > 0) - F(phi <= 0) is given only when phi entered both core sets, with a standard error from
blocks of the run (:func:`phi_free_energy_difference`).

Ctrl-C (SIGINT) is held until the end of the report interval under way, where a checkpoint is
written and ``KeyboardInterrupt`` raised (:mod:`neuralct.md.interrupt`).
"""

from __future__ import annotations

import copy
import io
import math
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..analysis.colvar import write_colvar
from ..analysis.dihedrals import Dihedral, dihedral_angles, find_dihedrals
from ..analysis.kinetics import oscillation_notes
from ..analysis.reweighting import (
    CORE_A,
    CORE_B,
    FREE_ENERGY_BLOCKS,
    count_transitions,
    first_entry,
    metadynamics_weights,
    phi_free_energy_difference,
    reweighting_offset,
)
from ..errors import NeuralCTError, RunBrokeDown, first_line
from ..io import ArrayCheckpoint, atomic_write_bytes, write_json
from ..md.interrupt import InterruptedBeforeCheckpoint, sigint_held
from ..md.platform import available_platforms, platform_properties
from ..md.simulate import (
    check_sane,
    check_whole_steps,
    degrees_of_freedom,
    divergence_as_error,
    kinetic_temperature,
    openmm_seeds,
)
from ..md.systems import barostat_index
from ..units import kT_kj_per_mol
from .metadynamics import JointMetadynamics, SeparateMetadynamics, joint_grid_points, separate_offset

__all__ = [
    "BiasSettings",
    "CV_FORCES",
    "MAX_SEPARATE_CVS",
    "backbone_torsions",
    "check_slow_cvs",
    "default_bias_every",
    "phi_psi_pairs",
    "run_metadynamics",
    "steep_cvs",
    "write_phi_psi_surface",
]

#: How a learned CV can be computed inside OpenMM (:attr:`BiasSettings.cv_force`).
CV_FORCES = ("auto", "python", "torch")

#: Most learned CVs biased with separate biases (:attr:`BiasSettings.separate_biases`).
MAX_SEPARATE_CVS = 6

#: Steepness (:func:`neuralct.export.cv.cv_steepness`, training ranges per nm) from which a learned CV is biased every
#: step: it changes by its whole range when one atom moves 0.005 nm. In the foreign-data loops the five runs that
#: blew up within 400 ps biased CVs of 821-2,130 on their training frames, those that did not at most 430, and no CV
#: retrained in simulation time reached 46 (benchmarks/README.md, B3).
STEEP_CV_SPANS_PER_NM = 200.0

#: Platforms on which openmm-torch's TorchForce is taken over the PythonForce by ``cv_force="auto"``.
_GPU_PLATFORMS = ("CUDA", "OpenCL", "HIP")


#: Bins of each reweighted phi/psi surface along each angle.
_PHI_PSI_BINS = 40

#: The entries of a run's checkpoint (:class:`~neuralct.io.ArrayCheckpoint`) and how each is read: the OpenMM state,
#: the bias grid (kJ/mol), the COLVAR rows, the frames and their boxes (nm, periodic systems) so far, and the
#: integrator's step.
_CHECKPOINT_ENTRIES = {
    "state": bytes,
    "bias": np.asarray,
    "rows": np.asarray,
    "frames": np.asarray,
    "boxes": np.asarray,
    "step": int,
}


#: Settings of the Gaussians deposited: they do nothing under a frozen bias.
DEPOSITION_SETTINGS = ("height_kj", "bias_factor", "pace_ps")


@dataclass
class BiasSettings:
    """Settings of one ``neuralct bias`` run (OpenMM units: K, ns, fs, ps, kJ/mol).

    Attributes
    ----------
    equilibration_ps : float
        MD after minimisation and before the first COLVAR row, under the starting bias (zero, or an
        earlier run's) with no Gaussian deposited and nothing recorded: the structure, and a periodic
        box's volume under the barostat, relax before the bias starts to grow. The run's time counts
        from its end.
    cv : str
        ``learned`` (the model's slowest CVs), or one or two backbone torsions by their COLVAR names
        (:func:`backbone_torsions`): ``phi``, ``psi`` or ``phi,psi`` of a dipeptide, ``phi_A_ALA3``,
        ``phi_A_ALA3,psi_A_ALA3``, ... of a longer peptide, as references.
    n_cvs : int
        Learned CVs biased: 1 or 2 on one joint grid, up to :data:`MAX_SEPARATE_CVS` with ``separate_biases``.
    separate_biases : bool
        Each learned CV its own one-dimensional well-tempered bias, the force their sum
        (:class:`~neuralct.workflows.metadynamics.SeparateMetadynamics`): one CV per separate slow
        process, for more CVs than a joint grid holds. False: one bias on the joint grid of the CVs.
    height_kj : float
        Initial Gaussian height, kJ/mol.
    width_fraction : float
        Gaussian width of a learned CV as a fraction of its training range (1st to 99th percentile).
    width_rad : float
        Gaussian width of phi and psi, rad.
    bias_factor : float
        Well-tempered bias factor gamma (> 1).
    pace_ps : float
        Time between depositions.
    grid_margin : float
        Grid of a learned CV: its training range (min to max) widened by this fraction of it on each side.
    bias_every : int
        MD steps per evaluation of the bias force (1: every step; n > 1: multiple time steps).
    platform : str
        OpenMM platform, or ``auto``: CPU for a periodic system (PME), Reference otherwise (the
        fastest for a small molecule without a box).
    threads : int or None
        CPU threads of the CPU platform (None: OpenMM's default).
    cv_force : str
        How a learned CV is computed inside OpenMM: ``python`` (the NumPy ``openmm.PythonForce``),
        ``torch`` (openmm-torch's ``TorchForce``) or ``auto``: the TorchForce on a GPU platform where
        openmm-torch is installed, the PythonForce otherwise (the faster on the CPU, as measured).
    allow_oscillating_cvs : bool
        Bias learned CVs that the model records as oscillating on its training frames (refused otherwise:
        :func:`check_slow_cvs`).
    frozen_bias_from : str or None
        Folder of a finished earlier run on the same CVs and grids (the same model or torsions and
        grid settings): its final bias (``bias.npy``) acts unchanged through this run and no Gaussian
        is deposited, so each frame's weight exp(V(s)/kT) is exact, not the Tiwary-Parrinello estimate of
        a bias still growing (a production run after metadynamics). None: metadynamics from a zero bias.
    continued_bias_from : str or None
        Folder of a finished earlier run on the same CVs and grids whose final bias this run starts
        from and keeps growing (well-tempered metadynamics continued from new initial velocities).
        None: from a zero bias. At most one of ``frozen_bias_from`` and ``continued_bias_from``.
    end_at_breakdown : bool
        A run that blows up, or whose CV turns non-finite or leaves its grid, ends there with its
        results over the frames before it and the summary's ``ended_early`` saying what happened
        (``neuralct explore``, which learns a new CV from them). False: an error (the frames before
        it are written, no results).
    """

    cv: str = "learned"
    n_cvs: int = 1
    separate_biases: bool = False
    temperature: float = 300.0
    length_ns: float = 1.0
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    report_ps: float = 1.0
    equilibration_ps: float = 10.0
    height_kj: float = 1.2
    width_fraction: float = 0.06
    width_rad: float = 0.35
    bias_factor: float = 8.0
    pace_ps: float = 1.0
    grid_margin: float = 3.0
    bias_every: int = 4
    platform: str = "auto"
    threads: int | None = None
    cv_force: str = "auto"
    seed: int = 0
    checkpoint_seconds: float = 60.0
    allow_oscillating_cvs: bool = False
    frozen_bias_from: str | None = None
    continued_bias_from: str | None = None
    end_at_breakdown: bool = False

    def validate(self) -> None:
        """Raise NeuralCTError for values that cannot make a run."""
        names = self.cv.split(",")
        if self.cv != "learned" and (len(names) > 2 or len(set(names)) != len(names) or not all(names)):
            raise NeuralCTError(
                f"`cv` must be learned or one or two backbone torsions by name (phi,psi; phi_A_ALA3,psi_A_ALA3), "
                f"got {self.cv!r}"
            )
        if self.separate_biases:
            if self.cv != "learned":
                raise NeuralCTError("`separate_biases` biases learned CVs; phi and psi share one grid")
            if not 1 <= self.n_cvs <= MAX_SEPARATE_CVS:
                raise NeuralCTError(f"`n_cvs` must be 1 to {MAX_SEPARATE_CVS} with separate biases, got {self.n_cvs}")
        elif self.n_cvs not in (1, 2):
            raise NeuralCTError(
                f"`n_cvs` must be 1 or 2 on one joint grid, got {self.n_cvs}; more take `separate_biases`"
            )
        if not self.equilibration_ps >= 0:
            raise NeuralCTError(f"`equilibration_ps` must be >= 0, got {self.equilibration_ps}")
        if not self.bias_factor > 1:
            raise NeuralCTError(f"`bias_factor` must be > 1, got {self.bias_factor}")
        if not 0 < self.width_fraction < 1:
            raise NeuralCTError(f"`width_fraction` must be > 0 and < 1, got {self.width_fraction}")
        platforms = available_platforms()
        if self.platform != "auto" and self.platform not in platforms:
            raise NeuralCTError(
                f"`platform` {self.platform!r} is not an OpenMM platform of this installation; "
                f"use one of {', '.join(platforms)}, or auto"
            )
        if self.cv_force not in CV_FORCES:
            raise NeuralCTError(f"`cv_force` must be one of {', '.join(CV_FORCES)}, got {self.cv_force!r}")
        if self.threads is not None and self.threads < 1:
            raise NeuralCTError(f"`threads` must be >= 1, got {self.threads}")
        for name in ("report_ps", "pace_ps"):
            try:
                check_whole_steps(
                    name,
                    getattr(self, name),
                    self.timestep_fs * self.bias_every,
                    f"{self.bias_every} x {self.timestep_fs} fs bias ",
                )
            except NeuralCTError as error:
                nearest = " or ".join(f"{value:.6g}" for value in self._whole_steps_near(getattr(self, name)))
                raise NeuralCTError(f"{error}; the nearest that work: {nearest} ps") from None
        if self.n_reports < 1:
            raise NeuralCTError(
                f"`length_ns` {self.length_ns} is shorter than one report interval ({self.report_ps} ps)"
            )
        if self.frozen_bias_from is not None and self.continued_bias_from is not None:
            raise NeuralCTError(
                "a run either holds an earlier bias fixed (`frozen_bias_from`) or continues it, not both"
            )
        if self.earlier_bias is not None:
            name, folder = self.earlier_bias
            missing = [file for file in ("summary.json", "bias.npy") if not (folder / file).is_file()]
            if missing:
                raise NeuralCTError(f"`{name}` {folder} holds no finished bias run: no {' or '.join(missing)}")

    @property
    def earlier_bias(self) -> tuple[str, Path] | None:
        """The setting that names an earlier run whose final bias this run starts from, and its folder (None: none)."""
        for name in ("frozen_bias_from", "continued_bias_from"):
            if getattr(self, name) is not None:
                return name, Path(getattr(self, name))
        return None

    def _whole_steps_near(self, interval_ps: float) -> list[float]:
        """The whole numbers of bias steps (ps) next to ``interval_ps``, at least one step."""
        steps = interval_ps / self.outer_step_ps
        return [n * self.outer_step_ps for n in sorted({max(1, math.floor(steps)), max(1, math.ceil(steps))})]

    @property
    def outer_step_ps(self) -> float:
        """Time step of the bias force, ps."""
        return self.timestep_fs * self.bias_every / 1000.0

    @property
    def equilibration_steps(self) -> int:
        """Integrator steps (of the bias force) of the equilibration, rounded up."""
        return math.ceil(self.equilibration_ps / self.outer_step_ps - 1e-9)

    @property
    def n_reports(self) -> int:
        """COLVAR rows of the whole run."""
        return int(round(self.length_ns * 1000.0 / self.report_ps))

    @property
    def steps_per_report(self) -> int:
        """Integrator steps (of the bias force) between COLVAR rows."""
        return int(round(self.report_ps / self.outer_step_ps))

    @property
    def steps_per_deposit(self) -> int:
        """Integrator steps (of the bias force) between Gaussian depositions."""
        return int(round(self.pace_ps / self.outer_step_ps))


def _backbone_torsions(topology: Any) -> dict[str, Dihedral]:
    """Backbone phi and psi of every residue (MDTraj's definitions), by COLVAR name.

    A dipeptide's are named ``phi`` and ``psi``; a longer peptide's ``phi_A_ALA2``, ``psi_A_ALA2``,
    ... (kind, chain and residue); a molecule without a protein backbone has none.
    """
    import mdtraj

    backbone = [d for d in find_dihedrals(mdtraj.Topology.from_openmm(topology)) if d.kind in ("phi", "psi")]
    if [d.kind for d in backbone] == ["phi", "psi"]:
        return {d.kind: d for d in backbone}
    torsions = {f"{d.kind}_{d.residue.label.replace(':', '_')}": d for d in backbone}
    if len(torsions) != len(backbone):
        raise NeuralCTError(
            "two backbone torsions of this system have one name (the same chain, residue name and number); "
            "give its chains distinct identifiers or its residues distinct numbers"
        )
    return torsions


def phi_psi_pairs(torsions: dict[str, Dihedral]) -> dict[str, str | None]:
    """Each backbone phi's name with the name of its residue's psi (None where the residue has none).

    Parameters
    ----------
    torsions : dict of str to Dihedral
        Backbone torsions by COLVAR name (:func:`backbone_torsions`).
    """
    return {
        name: next((other for other, d in torsions.items() if d.kind == "psi" and d.residue == dihedral.residue), None)
        for name, dihedral in torsions.items()
        if dihedral.kind == "phi"
    }


def check_slow_cvs(model: Any, settings: BiasSettings) -> None:
    """Refuse to bias a learned CV that the model records as oscillating on its training frames.

    An oscillation (a fast vibration seen at the training lag) is no slow process: a bias on it
    fills a basin that is not there. A model without ``metadata["cv_kinetics"]`` (trained by an
    older neuralct, or on a toy) is not checked.

    Raises
    ------
    NeuralCTError
        If one of the ``settings.n_cvs`` slowest CVs oscillates and ``settings.allow_oscillating_cvs`` is False.
    """
    kinetics = model.metadata.get("cv_kinetics")
    if settings.cv != "learned" or settings.allow_oscillating_cvs or not kinetics:
        return
    notes = oscillation_notes(kinetics, settings.n_cvs)
    if notes:
        instead = "bias cv1 alone (`n_cvs` 1)" if 0 not in notes else "retrain the model at another lag"
        raise NeuralCTError(
            f"{'; '.join(notes.values())} on the model's training frames: not a slow "
            f"process; {instead}, or add `allow_oscillating_cvs` to bias it anyway"
        )


def backbone_torsions(topology: Any, settings: BiasSettings) -> dict[str, Dihedral]:
    """The backbone torsions of ``topology`` by COLVAR name, checked against what ``settings`` biases.

    Raises
    ------
    NeuralCTError
        If ``settings.cv`` names torsions the system does not have (phi/psi references need a dipeptide).
    """
    torsions = _backbone_torsions(topology)
    unknown = [name for name in settings.cv.split(",") if settings.cv != "learned" and name not in torsions]
    if unknown:
        known = ", ".join(torsions) if torsions else "none (no protein backbone): bias the learned CVs"
        raise NeuralCTError(
            f"`cv` {settings.cv}: this system has no torsion {unknown[0]}; its backbone torsions: {known}"
        )
    return torsions


def _torsion_force(atoms: Sequence[int]) -> Any:
    """A force whose energy is the torsion angle (rad) of the four ``atoms``: a CV for OpenMM."""
    import openmm as mm

    force = mm.CustomTorsionForce("theta")
    force.addTorsion(*atoms, [])
    return force


def default_bias_every(md_system: Any, model: Any = None, n_cvs: int = 1) -> int:
    """MD steps per bias evaluation for ``md_system``: 4 without a box, 1 in a periodic box or on a steep CV.

    Without a box (a small molecule on the Reference platform) the learned CV costs several times
    the molecule's own forces, and a multiple-time-step integrator that evaluates it every 4 steps
    reproduces the phi reference (benchmarks B3). In explicit water PME costs far more than the CV,
    and ``MTSLangevinIntegrator`` (a CustomIntegrator) makes every inner step slower than
    ``LangevinMiddleIntegrator`` does: on the CPU platform, 2,041 atoms, 87 against 157 steps per
    second at one step per bias, 137 at four (``benchmarks/bench_cv_force.py``). A learned CV that
    :func:`steep_cvs` names is biased every step: as one impulse every 4 steps its force blew runs up
    (B3: 12 of 24 runs from frames before two such blow-ups, against 0 of 24 every step).

    Parameters
    ----------
    md_system : neuralct.md.systems.MDSystem
    model : NeuralCanonicalTransformation, optional
        The model whose ``n_cvs`` slowest CVs are biased (None: torsions, or not known).
    n_cvs : int
    """
    steep = model is not None and steep_cvs(model, n_cvs)
    return 1 if md_system.periodic or steep else 4


def steep_cvs(model: Any, n_cvs: int) -> list[str]:
    """The biased CVs of ``model`` that training recorded as steep, each with its steepness, for a line.

    Steep: at some training frame the CV changes by its whole 1st-99th percentile range when one atom moves
    ``1 / STEEP_CV_SPANS_PER_NM`` nm or less (:func:`neuralct.export.cv.cv_steepness`). Models trained before
    the record have none.
    """
    recorded = model.metadata.get("cv_steepness") or []
    return [
        f"cv{j + 1} ({value:.0f} ranges per nm)"
        for j, value in enumerate(recorded[:n_cvs])
        if value >= STEEP_CV_SPANS_PER_NM
    ]


def run_platform(settings: BiasSettings, md_system: Any, checkpoint: Path | None = None) -> tuple[str, str]:
    """The OpenMM platform a run of ``md_system`` uses, and why (``settings.platform``, or the rule of ``auto``).

    A resumed run takes the platform of its ``checkpoint``, whatever is asked: a checkpoint loads
    only on the platform that wrote it. One of an older run that records none takes the platform
    asked, or the one that version's ``auto`` chose. A new run takes the platform asked, or with
    ``auto`` :func:`~neuralct.md.platform.automatic_platform`: the fastest of a short probe of the
    system (the Reference platform for alanine dipeptide in vacuum, the CPU platform for
    tri-alanine in OBC2, 3x faster there), never the Reference platform for a periodic system (PME).
    """
    from ..md.platform import automatic_platform

    if checkpoint is not None and checkpoint.exists():
        try:
            platform = ArrayCheckpoint.load(checkpoint, {"platform": str}, "")["platform"]
        except NeuralCTError:  # an older run's (none recorded), or a damaged one, refused where the run loads it
            platform = None
        if platform is not None:
            asked = "" if settings.platform in ("auto", platform) else f" (not {settings.platform}, as asked)"
            return platform, f"the platform of the run's checkpoint{asked}"
        if settings.platform == "auto":
            return ("CPU" if md_system.periodic else "Reference"), "auto: the platform of the run's checkpoint"
    if settings.platform != "auto":
        return settings.platform, "as asked"
    name, _, choice = automatic_platform(
        md_system, settings.temperature, settings.friction_per_ps, settings.timestep_fs, settings.threads
    )
    return name, choice


def cv_force_kind(settings: BiasSettings, platform: str) -> tuple[str, str]:
    """Which force computes a learned CV (``PythonForce`` or ``TorchForce``) on ``platform``, and why.

    Raises
    ------
    NeuralCTError
        If the TorchForce is asked for and cannot serve as a metadynamics CV here
        (:func:`neuralct.export.force.torch_force_in_cv_force_problem`).
    """
    from ..export.force import torch_force_in_cv_force_problem

    if settings.cv_force == "python":
        return "PythonForce", "as asked"
    if settings.cv_force == "torch":
        problem = torch_force_in_cv_force_problem()
        if problem is not None:
            raise NeuralCTError(f"`cv_force` torch: {problem}; use `cv_force` python (the NumPy PythonForce)")
        return "TorchForce", "as asked"
    if platform not in _GPU_PLATFORMS:
        return "PythonForce", (
            "auto: the NumPy PythonForce, faster than openmm-torch's TorchForce on the CPU "
            "(benchmarks/bench_cv_force.py)"
        )
    problem = torch_force_in_cv_force_problem()
    if problem is None:
        return "TorchForce", f"auto: openmm-torch's TorchForce, which runs on the {platform} device beside the MD"
    return "PythonForce", f"auto: the NumPy PythonForce, because {problem}"


def _bias_variables(
    settings: BiasSettings, model: Any, md_system: Any, torsions: dict[str, Dihedral], torch_force: bool
) -> tuple[list[Any], list[str], list[dict]]:
    """The BiasVariables, their names and their grid description (learned CVs as TorchForces with ``torch_force``)."""
    from openmm.app.metadynamics import BiasVariable

    variables, names, grids = [], [], []
    if settings.cv == "learned":
        from ..export import cv_ranges, openmm_force

        ranges, source = cv_ranges(model, settings.n_cvs)
        for j, limits in enumerate(ranges):
            span = limits["max"] - limits["min"]
            low, high = limits["min"] - settings.grid_margin * span, limits["max"] + settings.grid_margin * span
            width = settings.width_fraction * (limits.get("p99", limits["max"]) - limits.get("p01", limits["min"]))
            force = openmm_force(model, md_system.system, j, topology=md_system.topology, torch_force=torch_force)
            variables.append(BiasVariable(force, low, high, width, False))
            names.append(f"cv{j + 1}")
            grids.append(
                {
                    "name": f"cv{j + 1}",
                    "min": low,
                    "max": high,
                    "width": width,
                    "grid_points": variables[-1].gridWidth,
                    "range_source": source,
                }
            )
        if settings.separate_biases:
            # The biases are rows of one (k, n) grid: every CV gets as many points as the finest needs.
            points = max(variable.gridWidth for variable in variables)
            for variable, grid in zip(variables, grids):
                variable.gridWidth = grid["grid_points"] = points
        elif len(variables) == 2:
            for variable, grid in zip(variables, grids):
                variable.gridWidth = grid["grid_points"] = joint_grid_points(grid["min"], grid["max"], grid["width"])
    else:
        for name in settings.cv.split(","):
            variables.append(
                BiasVariable(_torsion_force(torsions[name].atoms), -math.pi, math.pi, settings.width_rad, True)
            )
            names.append(name)
            grids.append(
                {
                    "name": name,
                    "min": -math.pi,
                    "max": math.pi,
                    "width": settings.width_rad,
                    "grid_points": variables[-1].gridWidth,
                }
            )
    return variables, names, grids


def run_metadynamics(
    md_system: Any, model: Any, folder: Path, settings: BiasSettings, progress: bool = True
) -> dict[str, Any]:
    """Run (or resume) well-tempered metadynamics and write its results into ``folder``.

    Writes ``COLVAR`` (time in ps, the biased CVs, phi, psi, bias and rbias in kJ/mol),
    ``bias.npy`` and ``fes.npy`` (the final bias and free energy on the grid, kJ/mol, axes
    in ``summary.json``), ``fes.png``, ``fes_phi_psi_reweighted.npy``/``.png`` and
    ``summary.json``; ``checkpoint.npz`` lets an interrupted run resume. ``md_system`` is not changed:
    the bias is added to a copy of its OpenMM System. Ctrl-C stops the run at
    the end of the report interval under way, with a checkpoint, as ``KeyboardInterrupt``.

    Raises
    ------
    NeuralCTError
        If the simulation blows up, a CV leaves its grid or is not finite, or the platform cannot run the system.
    """
    settings.validate()
    check_slow_cvs(model, settings)
    # The bias force and the barostat's seed go into a copy: the caller's System stays as it was.
    md_system = replace(md_system, system=copy.deepcopy(md_system.system))
    torsions = backbone_torsions(md_system.topology, settings)
    platform = run_platform(settings, md_system, folder / "checkpoint.npz")
    cv_force = cv_force_kind(settings, platform[0]) if settings.cv == "learned" else None
    variables = _bias_variables(
        settings, model, md_system, torsions, cv_force is not None and cv_force[0] == "TorchForce"
    )
    earlier = settings.earlier_bias
    start_bias = None if earlier is None else _earlier_bias(*earlier, settings.separate_biases, *variables[1:])
    run = _MetadynamicsRun(md_system, folder, settings, torsions, platform, cv_force, *variables, start_bias=start_bias)
    with sigint_held() as interrupted:
        run.start_or_resume(interrupted)
        timing = run.run_reports(interrupted, progress)
    return run.write_results(timing)


def _earlier_bias(setting: str, folder: Path, separate: bool, names: list[str], grids: list[dict]) -> np.ndarray:
    """The final bias of the finished run in ``folder``, checked to lie on the CVs and grids of a new run.

    Parameters
    ----------
    setting : str
        The setting that names the run (``frozen_bias_from`` or ``continued_bias_from``), for the errors.
    folder : Path
        A finished ``neuralct bias`` run (``summary.json`` and ``bias.npy``).
    separate : bool
        Whether the new run has separate biases (:attr:`BiasSettings.separate_biases`).
    names, grids : list
        The new run's CV names and grids (:func:`_bias_variables`).

    Returns
    -------
    np.ndarray
        The bias in kJ/mol on the grid: axis order reversed (last CV first), as ``openmm.app.Metadynamics``;
        with separate biases shape (k, n), CV i's in row i.

    Raises
    ------
    NeuralCTError
        If the earlier run biased other CVs, had other grids (another model or grid settings) or the
        other kind of bias (separate or joint), or its
        bias is not finite or not of its grid's shape.
    """
    import json

    earlier = json.loads((folder / "summary.json").read_text())
    theirs, ours = earlier["grids"], grids
    same = (
        earlier["settings"].get("separate_biases", False) == separate
        and earlier["cvs"] == names
        and [(g["name"], g["grid_points"]) for g in theirs] == [(g["name"], g["grid_points"]) for g in ours]
    )
    bounds = [[[g["min"], g["max"]] for g in run] for run in (theirs, ours)]
    if not (same and np.allclose(*bounds, rtol=1e-9, atol=1e-12)):
        raise NeuralCTError(
            f"`{setting}` {folder} biased other CVs, grids or kind of bias than this run (CVs "
            f"{', '.join(earlier['cvs'])}, separate biases {earlier['settings'].get('separate_biases', False)}, "
            f"bounds {np.round(bounds[0], 4).tolist()}, grid points {[g['grid_points'] for g in theirs]} against "
            f"{', '.join(names)}, {separate}, {np.round(bounds[1], 4).tolist()}, {[g['grid_points'] for g in ours]}); "
            "give a run of the same model and grid settings (Gaussian width included: it sets the grid's points)"
        )
    try:
        bias = np.load(folder / "bias.npy", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise NeuralCTError(f"`{setting}` {folder}: bias.npy cannot be read ({first_line(error)})") from None
    shape = (len(grids), grids[0]["grid_points"]) if separate else tuple(g["grid_points"] for g in reversed(grids))
    if bias.shape != shape or not np.all(np.isfinite(bias)):
        raise NeuralCTError(
            f"`{setting}` {folder}: bias.npy is damaged (shape {bias.shape}, its grid's {shape}, or values not finite)"
        )
    return np.asarray(bias, dtype=np.float64)


class _MetadynamicsRun:
    """One metadynamics run: the simulation with its bias, the reports so far, checkpoints and results.

    Parameters
    ----------
    md_system : MDSystem
        The system; the bias force is added to its OpenMM System.
    folder : Path
        The run's output folder.
    settings : BiasSettings
        The run's settings (validated).
    torsions : dict of str to Dihedral
        The backbone torsions by COLVAR name (:func:`backbone_torsions`).
    platform : tuple of str
        The OpenMM platform and why it was chosen (:func:`run_platform`).
    cv_force : tuple of str or None
        The force of the learned CVs and why it was chosen (:func:`cv_force_kind`); None for phi/psi.
    variables, names, grids
        The biased CVs as ``BiasVariable``, their COLVAR names and their grids (:func:`_bias_variables`).
    start_bias : np.ndarray or None
        The bias the run starts from (:func:`_earlier_bias`), held fixed with ``settings.frozen_bias_from``
        (no Gaussian is deposited), grown further with ``settings.continued_bias_from``. None: metadynamics
        from a zero bias.
    """

    def __init__(
        self,
        md_system: Any,
        folder: Path,
        settings: BiasSettings,
        torsions: dict[str, Dihedral],
        platform: tuple[str, str],
        cv_force: tuple[str, str] | None,
        variables: list[Any],
        names: list[str],
        grids: list[dict],
        start_bias: np.ndarray | None = None,
    ):
        import openmm.unit as unit

        from ..md.systems import select_atoms

        self.md_system, self.folder, self.settings, self.torsions = md_system, folder, settings, torsions
        self.platform, self.cv_force = platform, cv_force
        # The frames record the solute (all atoms without a solvent): what the CVs were learned from.
        self.saved = select_atoms(md_system)
        self.variables, self.names, self.grids = variables, names, grids
        self.kT = kT_kj_per_mol(settings.temperature)
        bias_kind = SeparateMetadynamics if settings.separate_biases else JointMetadynamics
        self.metadynamics = bias_kind(
            md_system.system,
            variables,
            settings.temperature,
            settings.bias_factor,
            settings.height_kj,
            settings.steps_per_deposit,
        )
        self.start_bias = start_bias
        frozen = settings.frozen_bias_from is not None
        self.weighting = "frozen bias, exact weights" if frozen else "Tiwary-Parrinello c(t)"
        # What ended the run before its length (``settings.end_at_breakdown``), None while it has not.
        self.ended_early: str | None = None
        if frozen:
            # Depositions of zero height leave the bias as it is.
            self.metadynamics.height = 0.0 * unit.kilojoule_per_mole
        self.bias_group = self.metadynamics.force_group
        _seed_barostat(md_system.system, settings.seed)
        integrator = _integrator(settings, md_system.system, self.bias_group)
        self.simulation = _simulation(md_system, integrator, platform[0], settings.threads)
        self.masses, self.dof = md_system.masses(), degrees_of_freedom(md_system.system)
        self.checkpoint_file = folder / "checkpoint.npz"
        # The backbone torsions are recorded beside the biased CVs, unless they are the biased CVs.
        self.observed = [name for name in torsions if name not in names]
        self.fields = names + self.observed + ["bias", "rbias"]
        self.rows: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        self.boxes: list[np.ndarray] = []

    def save_checkpoint(self) -> None:
        """Write the integrator state, the bias grid and the reports so far to ``checkpoint.npz``."""
        state = {
            "platform": self.platform[0],
            "state": self.simulation.context.createCheckpoint(),
            "bias": self.metadynamics.bias_grid,
            "rows": np.array(self.rows),
            "frames": np.array(self.frames),
            "boxes": np.array(self.boxes),
            "step": self.simulation.currentStep,
        }
        ArrayCheckpoint(state, asdict(self.settings) | {"checkpoint_seconds": None}).save(self.checkpoint_file)

    def start_or_resume(self, interrupted: threading.Event) -> None:
        """Continue from the checkpoint, or minimise and draw velocities for a fresh run."""
        import openmm as mm

        simulation = self.simulation
        if self.checkpoint_file.exists():
            checkpoint = ArrayCheckpoint.load(
                self.checkpoint_file, _CHECKPOINT_ENTRIES, "rerun with `overwrite` to start again"
            )
            simulation.context.loadCheckpoint(checkpoint["state"])
            simulation.currentStep = checkpoint["step"]
            self.metadynamics.set_bias_grid(checkpoint["bias"], simulation.context)
            self.rows, self.frames = list(checkpoint["rows"]), list(checkpoint["frames"])
            self.boxes = list(checkpoint["boxes"])
            return
        simulation.context.setPositions(self.md_system.positions)
        if self.start_bias is not None:
            self.metadynamics.set_bias_grid(self.start_bias, simulation.context)
        mm.LocalEnergyMinimizer.minimize(simulation.context, 10.0, 1000)
        simulation.context.setVelocitiesToTemperature(self.settings.temperature, self.settings.seed + 1)
        self._equilibrate(interrupted)

    def _equilibrate(self, interrupted: threading.Event) -> None:
        """``settings.equilibration_ps`` of MD under the starting bias, nothing deposited or recorded; then the run's
        time (and the deposition schedule) starts from zero. Ctrl-C stops it before the first checkpoint: a rerun starts
        the run again (:class:`~neuralct.md.interrupt.InterruptedBeforeCheckpoint`)."""
        settings, simulation = self.settings, self.simulation
        left = settings.equilibration_steps
        while left and not interrupted.is_set():
            chunk = min(left, settings.steps_per_report)
            _checked_steps(
                lambda: simulation.step(chunk), simulation, settings, self.masses, self.dof, "the equilibration"
            )
            left -= chunk
        if interrupted.is_set():
            raise InterruptedBeforeCheckpoint("the equilibration")
        simulation.currentStep = 0
        simulation.context.setTime(0.0)

    def run_reports(self, interrupted: threading.Event, progress: bool) -> dict[str, Any]:
        """Run the remaining report intervals, with a checkpoint every ``checkpoint_seconds``, at the end and on Ctrl-C.

        Returns
        -------
        dict
            This run's wall and CPU time (s), its MD steps and the report it resumed from (None: a fresh run).
        """
        from tqdm import tqdm

        settings = self.settings
        first_report = len(self.rows)
        start, cpu_start, last_save = time.perf_counter(), time.process_time(), time.perf_counter()
        with tqdm(
            total=settings.n_reports,
            initial=first_report,
            unit="ps" if settings.report_ps == 1 else "report",
            desc=f"bias {settings.cv}",
            disable=not progress,
            mininterval=0.5,
        ) as bar:
            for _ in range(first_report, settings.n_reports):
                if not self._report():
                    break
                bar.update(1)
                if interrupted.is_set() or time.perf_counter() - last_save >= settings.checkpoint_seconds:
                    self.save_checkpoint()
                    last_save = time.perf_counter()
                if interrupted.is_set():
                    raise KeyboardInterrupt
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        self.save_checkpoint()
        if interrupted.is_set():
            raise KeyboardInterrupt
        return {
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "md_steps_this_run": (len(self.rows) - first_report) * settings.steps_per_report * settings.bias_every,
            "resumed_from_report": first_report or None,
        }

    def _report(self) -> bool:
        """One report interval of metadynamics, then its COLVAR row and frame.

        Returns
        -------
        bool
            True; False where the run broke down and ends here (``settings.end_at_breakdown``, after
            at least one report): ``ended_early`` says what happened, and this interval adds no report.

        Raises
        ------
        RunBrokeDown
            If the simulation blew up, or a CV left its grid or is not finite, and the run does not
            end there; the reports before it are written first.
        """
        settings, simulation = self.settings, self.simulation
        try:
            positions, box = _advance(self.metadynamics, simulation, settings, self.masses, self.dof, len(self.rows))
            values = np.array(self.metadynamics.getCollectiveVariables(simulation), dtype=np.float64)
            _check_inside(values, self.variables, self.names, simulation)
        except RunBrokeDown as error:
            if settings.end_at_breakdown and self.rows:
                self.ended_early = f"{error.what} after {len(self.rows)} reports"
                return False
            if self.rows:
                self.write_reports()
                kept = f"the {len(self.rows)} reports before it are in COLVAR and trajectory.nc"
                raise RunBrokeDown(error.what, kept if error.advice is None else f"{error.advice}; {kept}") from None
            raise
        bias = simulation.context.getState(getEnergy=True, groups={self.bias_group}).getPotentialEnergy()._value
        if settings.separate_biases:
            offset = separate_offset(self.metadynamics.bias_grid, settings.bias_factor, self.kT)
        else:
            periodic = settings.cv != "learned"
            offset = reweighting_offset(self.metadynamics.bias_grid, settings.bias_factor, self.kT, periodic)
        time_ps = simulation.currentStep * settings.outer_step_ps
        angles = dihedral_angles(positions[None], [self.torsions[name] for name in self.observed])[0]
        self.rows.append(np.concatenate([[time_ps], values, angles, [bias, bias - offset]]))
        self.frames.append(positions[self.saved])
        if box is not None:
            self.boxes.append(box)
        # The row holds the bias the frame felt; the Gaussian due at this step comes after it.
        self.metadynamics.deposit_if_due(simulation)
        return True

    def write_reports(self) -> None:
        """Write the frames so far (``trajectory.nc`` with ``topology.pdb``) and their COLVAR."""
        table = np.array(self.rows)
        boxes = np.array(self.boxes) if self.boxes else None
        _write_trajectory(
            self.folder, self.md_system, self.saved, np.array(self.frames), boxes, table[:, 0], self.settings
        )
        write_colvar(self.folder / "COLVAR", table[:, 0], table[:, 1:], self.fields)

    def write_results(self, timing: dict) -> dict[str, Any]:
        """Write the reports, the bias and free-energy grids, the reweighted phi/psi surfaces and ``summary.json``.

        Parameters
        ----------
        timing : dict
            This run's figures from :meth:`run_reports`.

        Returns
        -------
        dict
            The summary.
        """
        self.write_reports()
        table = np.array(self.rows)
        _write_bias_grids(self.folder, self.metadynamics, self.grids, self.names, self.settings.separate_biases)
        column = {name: table[:, 1 + self.fields.index(name)] for name in self.torsions}
        weights = metadynamics_weights(table[:, -1], self.kT)
        ns = len(table) * self.settings.report_ps / 1000.0
        by_torsion, surfaces, pairs = {}, {}, phi_psi_pairs(self.torsions)
        for name, psi_name in pairs.items():
            if psi_name is not None:
                surfaces.update(
                    write_phi_psi_surface(
                        self.folder, name, psi_name, column[name], column[psi_name], weights, self.kT, self.weighting
                    )
                )
            by_torsion[name] = _phi_figures(column[name], table[:, 0], weights, self.kT, ns)
        engine = {"platform": self.platform[0], "platform_choice": self.platform[1]}
        if self.cv_force is not None:
            engine |= {"cv_force": self.cv_force[0], "cv_force_choice": self.cv_force[1]}
        if self.md_system.periodic:
            # The diagonal of the reduced box vectors (a triclinic box's is not its edges), and the vectors (rows).
            engine["box_nm_last"] = np.diag(self.boxes[-1]).tolist()
            engine["box_vectors_nm_last"] = self.boxes[-1].tolist()
        summary = _summary(self.settings, self.names, self.grids, ns, by_torsion, surfaces, timing | engine)
        summary["ended_early"] = self.ended_early
        write_json(self.folder / "summary.json", summary)
        return summary


def _integrator(settings: BiasSettings, system: Any, bias_group: int) -> Any:
    """The Langevin integrator, seeded from ``settings.seed``: with ``bias_every > 1`` multiple time steps (RESPA).

    The bias force (force group ``bias_group``) gets the outer step; every other force group of
    ``system`` is evaluated ``bias_every`` times in it.
    """
    import openmm as mm

    if settings.bias_every > 1:
        groups = sorted({force.getForceGroup() for force in system.getForces()} - {bias_group})
        integrator = mm.MTSLangevinIntegrator(
            settings.temperature,
            settings.friction_per_ps,
            settings.outer_step_ps,
            [(bias_group, 1)] + [(g, settings.bias_every) for g in groups],
        )
    else:
        integrator = mm.LangevinMiddleIntegrator(settings.temperature, settings.friction_per_ps, settings.outer_step_ps)
    integrator.setRandomNumberSeed(openmm_seeds(settings.seed, 1)[0])
    return integrator


def _seed_barostat(system: Any, seed: int) -> None:
    """Seed the Monte Carlo barostat of ``system`` (if any) from the run's ``seed``, so that a run repeats."""
    index = barostat_index(system)
    if index is not None:
        system.getForce(index).setRandomNumberSeed(openmm_seeds([seed, 1], 1)[0])


def _simulation(md_system: Any, integrator: Any, platform: str, threads: int | None) -> Any:
    """An ``openmm.app.Simulation`` of ``md_system`` on ``platform`` (``threads`` CPU threads on the CPU platform).

    Raises
    ------
    NeuralCTError
        If the platform cannot run the system.
    """
    import openmm as mm
    import openmm.app as app

    try:
        return app.Simulation(
            md_system.topology,
            md_system.system,
            integrator,
            mm.Platform.getPlatformByName(platform),
            platform_properties(platform, threads),
        )
    except Exception as exc:
        raise NeuralCTError(
            f"OpenMM platform {platform} cannot run this system ({first_line(exc)}); choose another `platform` (a "
            "resumed run takes its checkpoint's: start it again with `overwrite`)"
        ) from None


def _advance(
    metadynamics: Any, simulation: Any, settings: BiasSettings, masses: np.ndarray, dof: int, frame: int | str
) -> tuple[np.ndarray, np.ndarray | None]:
    """One report interval of metadynamics; the positions (n_atoms, 3) and box vectors (3, 3) in nm after it.

    A Gaussian due at its last step is not yet deposited (``metadynamics.deposit_if_due`` follows the report).
    See :func:`_checked_steps`.
    """
    return _checked_steps(
        lambda: metadynamics.advance(simulation, settings.steps_per_report), simulation, settings, masses, dof, frame
    )


def _checked_steps(
    steps: Any, simulation: Any, settings: BiasSettings, masses: np.ndarray, dof: int, frame: int | str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run ``steps()`` (MD steps of ``simulation``); the positions (n_atoms, 3) and box vectors (3, 3) in nm after them.

    The box is None without periodic boundary conditions; the positions are OpenMM's unwrapped ones
    (molecules whole).

    Raises
    ------
    NeuralCTError
        If the simulation blew up: non-finite positions or a kinetic temperature over 1000 times
        the bath's (the test of ``neuralct simulate``) at ``frame`` (an index, or words), before a
        blown-up CV is taken for a CV that left its grid.
    """

    def checked_positions() -> tuple[np.ndarray, np.ndarray | None]:
        state = simulation.context.getState(getPositions=True, getVelocities=True)
        positions = state.getPositions(asNumpy=True)._value
        check_sane(
            positions,
            float(kinetic_temperature(state.getVelocities(asNumpy=True)._value, masses, dof)),
            settings,
            frame,
        )
        periodic = simulation.system.usesPeriodicBoundaryConditions()
        return positions, np.asarray(state.getPeriodicBoxVectors(asNumpy=True)._value) if periodic else None

    # The bias force as an impulse every few steps kicks hard where a learned CV is steep: benchmarks B3.
    every = settings.bias_every
    impulse = f"`bias_every` 1 (now {every}: the bias acts as an impulse every {every} steps)" if every > 1 else ""
    with divergence_as_error(settings, impulse):
        try:
            steps()
        except Exception:
            # OpenMM re-raises an error from inside a step (a learned CV's, on non-finite positions) as its
            # own: the state says whether it blew up.
            checked_positions()
            raise
        return checked_positions()


def _write_trajectory(
    folder: Path,
    md_system: Any,
    atoms: np.ndarray,
    positions: np.ndarray,
    boxes: np.ndarray | None,
    time_ps: np.ndarray,
    settings: BiasSettings,
) -> None:
    """The biased frames (one per COLVAR row) as AMBER NetCDF with topology.pdb, for retraining with weights.

    Parameters
    ----------
    atoms : np.ndarray, shape=(n_saved,)
        The system's atoms the frames hold (the solute).
    positions : np.ndarray, shape=(n_frames, n_saved, 3)
        Positions in nm.
    boxes : np.ndarray or None, shape=(n_frames, 3, 3)
        Box vectors (rows, nm) of a periodic system.
    time_ps : np.ndarray, shape=(n_frames,)
        Simulation time.
    """
    from ..data.netcdf import BIASED_ATTRIBUTE, MASSES_ATTRIBUTE, TEMPERATURE_ATTRIBUTE, NetCDFFrames, write_netcdf
    from ..md.simulate import write_topology

    attributes = {
        "neuralct_system": md_system.name,
        TEMPERATURE_ATTRIBUTE: float(settings.temperature),
        BIASED_ATTRIBUTE: 1,
        "neuralct_report_ps": float(settings.report_ps),
        MASSES_ATTRIBUTE: md_system.masses()[atoms],
    }
    write_netcdf(folder / "trajectory.nc", NetCDFFrames(positions, None, time_ps, attributes, box_vectors=boxes))
    # The system is the user's input (with the bias force added here, it could not be read back without this model).
    write_topology(md_system, folder, atoms, whole_system=False)


def _check_inside(values: np.ndarray, variables: list[Any], names: list[str], simulation: Any) -> None:
    """Refuse CV ``values`` that are not finite or lie off their (non-periodic) grid (:class:`RunBrokeDown`)."""
    for value, variable, name in zip(values, variables, names):
        if not np.isfinite(value):
            what = f"{name} is not finite ({value}) at step {simulation.currentStep}"
            raise RunBrokeDown(what, "the molecule may be broken or the model unusable here")
        if not variable.periodic and not variable.minValue <= value <= variable.maxValue:
            what = (
                f"{name} = {value:.4g} left its grid [{variable.minValue:.4g}, {variable.maxValue:.4g}] "
                f"at step {simulation.currentStep}"
            )
            raise RunBrokeDown(what, "rerun with a larger `grid_margin` and `overwrite`")


def _write_bias_grids(folder: Path, metadynamics: Any, grids: list[dict], names: list[str], separate: bool) -> None:
    """The final bias and free energy on the grid (``bias.npy``, ``fes.npy``, kJ/mol) and their plots.

    One plot ``fes.png`` of the joint grid, or with ``separate`` biases one per CV, ``fes_cvN.png``.
    """
    from ..analysis.plots import plot_grid_free_energy

    bias = np.asarray(metadynamics.bias_grid)
    free = np.asarray(metadynamics.getFreeEnergy()._value)
    for name, array in (("bias.npy", bias), ("fes.npy", free)):
        _save_array(folder / name, array)
    title = "well-tempered metadynamics on {}: -(gamma/(gamma-1)) V"
    if not separate:
        plot_grid_free_energy((free - free.min()).T, grids, folder / "fes.png", title.format(", ".join(names)))
        return
    for row, grid, name in zip(free, grids, names):
        plot_grid_free_energy(row - row.min(), [grid], folder / f"fes_{name}.png", title.format(f"{name} alone"))


def write_phi_psi_surface(
    folder: Path,
    phi_name: str,
    psi_name: str,
    phi: np.ndarray,
    psi: np.ndarray,
    weights: np.ndarray,
    kT: float,
    weighting: str,
) -> dict[str, str]:
    """Write the reweighted free energy of one residue's phi and psi (``.npy`` and ``.png``); its file and description.

    Parameters
    ----------
    folder : Path
        Where the files go (``fes_phi_psi_reweighted[_RESIDUE].npy`` and ``.png``).
    phi_name, psi_name : str
        The torsions' COLVAR names.
    phi, psi : np.ndarray, shape=(n_frames,)
        The residue's backbone torsions in rad.
    weights : np.ndarray, shape=(n_frames,)
        The frames' weights.
    kT : float
        Thermal energy in kJ/mol.
    weighting : str
        How the weights were made, for the plot's title.
    """
    from ..analysis.fes import free_energy_2d, free_energy_2d_errors
    from ..analysis.plots import plot_grid_free_energy

    suffix = "" if phi_name == "phi" else "_" + phi_name.removeprefix("phi_")
    angles = ((-math.pi, math.pi), (-math.pi, math.pi))
    surface, _, _ = free_energy_2d(phi, psi, bins=_PHI_PSI_BINS, kT=kT, range=angles, weights=weights)
    errors = free_energy_2d_errors(
        phi, psi, bins=_PHI_PSI_BINS, kT=kT, range=angles, weights=weights, blocks=FREE_ENERGY_BLOCKS
    )
    _save_array(folder / f"fes_phi_psi_reweighted{suffix}.npy", surface)
    _save_array(folder / f"fes_phi_psi_reweighted{suffix}_error.npy", errors)
    # The surface holds bins: the plot's grid is their centres.
    centres = {"min": -math.pi + math.pi / _PHI_PSI_BINS, "max": math.pi - math.pi / _PHI_PSI_BINS}
    axes = [{"name": f"{phi_name} (rad)", **centres}, {"name": f"{psi_name} (rad)", **centres}]
    plot_grid_free_energy(
        surface, axes, folder / f"fes_phi_psi_reweighted{suffix}.png", f"reweighted free energy ({weighting})"
    )
    return {
        f"fes_phi_psi_reweighted{suffix}.npy": (
            f"reweighted free energy F({phi_name}, {psi_name}), kJ/mol, minimum 0, NaN in bins without frames; "
            f"shape ({_PHI_PSI_BINS}, {_PHI_PSI_BINS}): first index {phi_name}, second {psi_name}, "
            f"{_PHI_PSI_BINS} equal bins each over [-pi, pi] rad (bin i from -pi + 2 pi i/{_PHI_PSI_BINS})"
        ),
        f"fes_phi_psi_reweighted{suffix}_error.npy": (
            f"standard error of each bin's free energy, kJ/mol, from the spread between {FREE_ENERGY_BLOCKS} "
            "contiguous blocks of the frames (NaN in bins without frames); same bins"
        ),
    }


def _phi_figures(phi: np.ndarray, time_ps: np.ndarray, weights: np.ndarray, kT: float, ns: float) -> dict[str, Any]:
    """One backbone phi's transitions between the core sets, its first entry into B and its reweighted F difference.

    Parameters
    ----------
    phi, time_ps, weights : np.ndarray, shape=(n_frames,)
        The torsion in rad, the frames' times in ps and their weights.
    kT : float
        Thermal energy in kJ/mol.
    ns : float
        The run's length in ns.
    """
    transitions = count_transitions(phi)
    entry = first_entry(phi, CORE_B)
    return {
        "phi_transitions": transitions,
        "phi_transitions_per_ns": transitions / ns,
        "first_entry_into_B_ps": None if entry is None else float(time_ps[entry]),
        **phi_free_energy_difference(phi, weights, kT).figures(),
    }


def _summary(
    settings: BiasSettings,
    names: list[str],
    grids: list[dict],
    ns: float,
    by_torsion: dict[str, dict],
    surfaces: dict[str, str],
    timing: dict,
) -> dict[str, Any]:
    """The run's ``summary.json``: CVs and grids, settings, phi figures, what each file holds, timing."""
    steps = timing["md_steps_this_run"]
    return {
        "cvs": names,
        "grids": grids,
        "settings": asdict(settings),
        "ns_simulated": ns,
        # A molecule with one phi (a dipeptide) has its figures here too, as the benchmark reads them.
        **(next(iter(by_torsion.values())) if len(by_torsion) == 1 else {}),
        "phi_torsions": by_torsion,
        "core_sets_rad": {"A": list(CORE_A), "B": list(CORE_B)},
        "reweighted_phi_psi_surfaces": list(surfaces),
        "reweighting": (
            "Tiwary-Parrinello: w = exp((V(s,t) - c(t))/kT) per COLVAR frame (all frames), "
            + (
                "c(t) the sum of each CV's one-dimensional c(t) from its bias at each report "
                "(exact for independent CVs)"
                if settings.separate_biases
                else "c(t) from the bias grid at each report"
            )
            + (
                ""
                if settings.continued_bias_from is None
                else f", the bias continued from the final one of {settings.continued_bias_from}"
            )
            if settings.frozen_bias_from is None
            else f"static: w = exp((V(s) - c)/kT) per COLVAR frame (all frames), exact for the bias of "
            f"{settings.frozen_bias_from} held fixed (c constant)"
        ),
        "steps_per_second": steps / timing["wall_seconds"] if steps and timing["wall_seconds"] > 0 else None,
        "steps_per_cpu_second": steps / timing["cpu_seconds"] if steps and timing["cpu_seconds"] > 0 else None,
        "step_unit": f"MD steps of {settings.timestep_fs} fs (the bias is evaluated every {settings.bias_every})",
        "bias_files": {
            "bias.npy": (
                "final bias of each CV on its grid, kJ/mol, shape (CVs, grid points): CV i's in row i, on "
                "grid_points equal steps from its grid's min to max (the force is the rows' sum)"
                if settings.separate_biases
                else "final bias V on the grid, kJ/mol, axis order reversed (last CV first), as openmm.app.Metadynamics"
            ),
            "fes.npy": "-(T + dT)/dT V, kJ/mol, same grid",
            **surfaces,
        },
        "delta_F": (
            "F(phi > 0) - F(phi <= 0) from the reweighted frames, only where phi entered both core sets "
            "(at least one transition); "
            f"standard error from the spread between {FREE_ENERGY_BLOCKS} contiguous blocks of the run"
        ),
        **timing,
    }


def _save_array(path: Path, array: np.ndarray) -> None:
    """``numpy.save`` of ``array`` to ``path`` atomically."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())
