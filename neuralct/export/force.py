"""The learned CVs as OpenMM forces: ``openmm.PythonForce`` (no plugin) or openmm-torch's ``TorchForce``.

A CV force's energy is the CV (OpenMM's convention for ``CustomCVForce`` and
``openmm.app.metadynamics.BiasVariable``). Two traps shape this module:

- ``CustomCVForce`` serialises the forces it holds, so the PythonForce's computation must
  be picklable: it is an instance of the module-level class :class:`CVComputation`.
- ``CustomCVForce`` evaluates each CV separately. All CVs of one model share one
  :class:`_SharedEvaluator` (found again by key after unpickling), which runs one forward
  and one backward pass per configuration for all of them.
"""

from __future__ import annotations

import functools
import uuid
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import NeuralCTError
from ..model.transformation import NeuralCanonicalTransformation
from .cv import CollectiveVariables, collective_variables
from .numpy_cv import NumpyCollectiveVariables

__all__ = ["openmm_force", "CVComputation", "torch_force_in_cv_force_problem"]

#: Evaluators by key: the computations of one model's CVs find their shared cache here.
_EVALUATORS: dict[str, "_SharedEvaluator"] = {}


class _SharedEvaluator:
    """CVs and their gradients at the last configuration seen (positions of the selected atoms, nm).

    All CVs asked for so far are differentiated together, in one reverse pass of
    :class:`~neuralct.export.numpy_cv.NumpyCollectiveVariables` that carries one cotangent
    row per CV: its cost is per operation, not per row.
    """

    def __init__(self, cvs: CollectiveVariables):
        self.fast = NumpyCollectiveVariables(cvs)
        self._indices: list[int] = []
        self._key: tuple[bytes, bytes] | None = None
        self._values: dict[int, float] = {}
        self._gradients: dict[int, np.ndarray] = {}

    def _differentiate(self, positions: np.ndarray, box: np.ndarray | None, indices: list[int]) -> None:
        values, gradients = self.fast(positions, indices, box)
        for row, index in enumerate(indices):
            self._gradients[index] = gradients[row]
            self._values[index] = float(values[row])

    def evaluate(self, positions: np.ndarray, box: np.ndarray | None, index: int) -> tuple[float, np.ndarray]:
        """CV ``index`` (0 = slowest) and its gradient (n_selected, 3) per nm at ``positions`` (n_selected, 3), nm."""
        key = (positions.tobytes(), b"" if box is None else box.tobytes())
        if key != self._key and not np.all(np.isfinite(positions)):
            raise NeuralCTError(
                "the positions of the CV's atoms are not finite; the simulation has blown up "
                "(lower the time step or the bias height)"
            )
        if key != self._key:
            self._key, self._gradients, self._values = key, {}, {}
            if index not in self._indices:
                self._indices.append(index)
            self._differentiate(positions, box, self._indices)
        elif index not in self._gradients:
            self._indices.append(index)
            self._differentiate(positions, box, [index])
        value = self._values[index]
        if not np.isfinite(value):
            raise NeuralCTError(
                f"the learned CV {index + 1} is not finite ({value}) at the current configuration; "
                "the molecule may be broken or far outside the training data"
            )
        return value, self._gradients[index]


class CVComputation:
    """Picklable computation of one CV for ``openmm.PythonForce``: energy = CV, forces = -dCV/dx.

    Parameters
    ----------
    cvs : CollectiveVariables
        The CVs of the selected atoms (``select=False``).
    index : int
        Which CV (0 = slowest).
    key : str
        Shared-cache key: computations with the same key share one forward pass, also
        after pickling (the copies find the evaluator by key).
    periodic : bool
        Read the box vectors and make the molecule whole.
    """

    def __init__(self, cvs: CollectiveVariables, index: int, key: str, periodic: bool = False):
        self.cvs, self.index, self.key, self.periodic = cvs, int(index), key, bool(periodic)

    def __call__(self, state: Any) -> tuple[float, np.ndarray]:
        evaluator = _EVALUATORS.get(self.key)
        if evaluator is None:
            evaluator = _EVALUATORS[self.key] = _SharedEvaluator(self.cvs)
        positions = _positions_nm(state)
        box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True)._value, dtype=np.float64) if self.periodic else None
        value, gradient = evaluator.evaluate(positions, box, self.index)
        return value, -gradient


def _positions_nm(state: Any) -> np.ndarray:
    """Positions (n, 3) in nm of the particles an ``openmm.PythonForce`` was given.

    ``State.getPositions(asNumpy=True)`` fills the same array but first scans ``dir(state)``
    for a cached copy and wraps the result in units, which costs more than the CVs' own
    arithmetic at every evaluation; its fill call is used directly where it exists.
    """
    fill = getattr(state, "_getVectorAsNumpy", None)
    if fill is None:
        return np.asarray(state.getPositions(asNumpy=True)._value, dtype=np.float64)
    positions = np.empty((state._getNumParticles(), 3), dtype=np.float64)
    fill(type(state).Positions, positions)
    return positions


def _model_particles(model: NeuralCanonicalTransformation, system: Any, topology: Any) -> list[int]:
    """The particle of ``system`` of each atom the model's CVs read (its selection), checked by count, name and mass."""
    from ..model.molecular import molecule_description, system_atoms

    molecule = molecule_description(model)
    if system.getNumParticles() == molecule["n_atoms"]:
        atoms = np.arange(molecule["n_atoms"])
    elif topology is None:
        raise NeuralCTError(
            f"the OpenMM system has {system.getNumParticles()} particles but the model was trained on a system of "
            f"{molecule['n_atoms']} atoms; use the model's own system, or give its `topology` to find the model's "
            "solute in it"
        )
    else:
        import mdtraj

        atoms = system_atoms(model, mdtraj.Topology.from_openmm(topology), "the OpenMM system")
    indices = [int(atoms[i]) for i in molecule["atom_indices"]]
    masses = np.array([system.getParticleMass(i)._value for i in indices])
    trained = molecule["frame"]["masses"].numpy()
    if not np.allclose(masses, trained, rtol=1e-3):
        first = int(np.flatnonzero(~np.isclose(masses, trained, rtol=1e-3))[0])
        raise NeuralCTError(
            f"the OpenMM system's masses of the model's atoms differ from the model's (atom {indices[first]}: "
            f"{masses[first]:.4g} amu in the system, {trained[first]:.4g} in the model's frames); the model was "
            "trained on another system, or with other hydrogen masses (`--hydrogen-mass-amu`, or the topology the "
            "trajectories were run with)"
        )
    return indices


#: One CV module (all modes, selected atoms) and cache key per model object.
_SHARED: "weakref.WeakKeyDictionary[NeuralCanonicalTransformation, tuple[CollectiveVariables, str]]" = (
    weakref.WeakKeyDictionary()
)


def openmm_force(
    model: NeuralCanonicalTransformation, system: Any, k: int, *, topology: Any = None, torch_force: bool = False
) -> Any:
    """An OpenMM force whose energy is the ``k``-th slowest learned CV (``k = 0``: the slowest).

    Usable on its own, in ``openmm.CustomCVForce`` and as the force of an
    ``openmm.app.metadynamics.BiasVariable``. The default is an ``openmm.PythonForce``
    (OpenMM >= 8.5, no plugin) applied to the model's atoms only; all forces made from
    one model object share one forward pass per configuration (built from the model's
    parameters at the first call). With ``torch_force`` it is an openmm-torch
    ``TorchForce`` of the same CV instead (needs ``openmmtorch``).

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        A model trained on molecular trajectories of this system.
    system : openmm.System
        The system the force will be added to (checked against the model's atoms; a
        periodic system makes the force unwrap the molecule with the box vectors).
    k : int
        CV index, 0-based, slowest first.
    topology : openmm.app.Topology, optional
        The system's topology: needed when the system holds more than the model's trajectories did
        (the model's solute in its water box), to find the model's atoms in it.
    torch_force : bool
        An openmm-torch ``TorchForce`` instead of the ``PythonForce``.

    Raises
    ------
    NeuralCTError
        If the system does not match the model or ``k`` is out of range.
    """
    import openmm as mm

    indices = _model_particles(model, system, topology)
    if not 0 <= k < model.dim:
        raise NeuralCTError(f"CV index {k} is out of range: the model has {model.dim} modes (0 to {model.dim - 1})")
    periodic = bool(system.usesPeriodicBoundaryConditions())
    if torch_force:
        return _torch_force(model, k, periodic, indices, system.getNumParticles())
    if model not in _SHARED:
        _SHARED[model] = (collective_variables(model, model.dim, select=False), uuid.uuid4().hex)
    cvs, key = _SHARED[model]
    force = mm.PythonForce(CVComputation(cvs, k, key, periodic))
    force.setParticles(indices)
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


def _torch_force(
    model: NeuralCanonicalTransformation, k: int, periodic: bool, particles: list[int], n_particles: int
) -> Any:
    """openmm-torch's ``TorchForce`` of CV ``k``, reading ``particles`` (the model's selected atoms) of a system
    of ``n_particles``."""
    try:
        import openmmtorch
    except ImportError:
        raise NeuralCTError(
            "`torch_force=True` needs openmm-torch (pip install openmmtorch, built against your torch); "
            "the default PythonForce needs no plugin"
        ) from None
    _check_torch_kernels()
    from .files import TorchForceCV

    cvs = collective_variables(model, k + 1).for_system(particles, n_particles)
    force = openmmtorch.TorchForce(torch.jit.script(TorchForceCV(cvs, k, periodic)))
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force


def _check_torch_kernels() -> None:
    """Raise a one-line error if openmm-torch's kernels failed to load.

    ``import openmm`` loads every plugin it finds, once; openmm-torch's kernel libraries link
    against LibTorch, which is found only once torch is imported. A script that imports openmm
    before torch (or neuralct) therefore gets a ``TorchForce`` that no platform can run, and
    OpenMM says so only when a Context is made ("does not support all required kernels").
    """
    import openmm as mm

    # A platform's own missing library (no CUDA driver on a CPU machine) is not this trap.
    failed = [
        failure
        for failure in mm.Platform.getPluginLoadFailures()
        if "OpenMMTorch" in failure and ("libtorch" in failure or "libc10" in failure)
    ]
    if failed:
        raise NeuralCTError(
            "openmm-torch's kernels did not load because openmm was imported before torch "
            f"({failed[0].splitlines()[0]}); import torch (or neuralct) before openmm"
        )


#: A TorchForce inside a CustomCVForce, as ``openmm.app.Metadynamics`` holds a CV, evaluated once (run as a child).
_TORCH_FORCE_IN_CV_FORCE = """
import sys
import torch
import openmm as mm
import openmmtorch


class Sum(torch.nn.Module):
    def forward(self, positions):
        return positions.sum()


torch.jit.script(Sum()).save(sys.argv[1])
system = mm.System()
system.addParticle(1.0)
cv = mm.CustomCVForce("2 * x")
cv.addCollectiveVariable("x", openmmtorch.TorchForce(sys.argv[1]))
system.addForce(cv)
context = mm.Context(system, mm.VerletIntegrator(0.001), mm.Platform.getPlatformByName("Reference"))
context.setPositions([mm.Vec3(0.1, 0.2, 0.3)])
assert abs(context.getState(getEnergy=True).getPotentialEnergy()._value - 1.2) < 1e-6
"""


@functools.lru_cache(maxsize=1)
def torch_force_in_cv_force_problem() -> str | None:
    """Why openmm-torch's ``TorchForce`` cannot serve as a metadynamics CV here, or None where it can.

    ``openmm.app.Metadynamics`` puts each CV in a ``CustomCVForce``, which copies the forces it
    holds by serialising them. With the registry wheels of openmm 8.6.1 and openmmtorch 1.5 that
    copy crashes the process (a segmentation fault, not an exception); with openmm 8.4.0.post2 it
    works. The case is run once, in a child process, so that a crash costs one line and not the run.

    Returns
    -------
    str or None
        One line saying what failed, with the versions; None if the TorchForce works in a CustomCVForce.
    """
    import importlib.metadata
    import subprocess
    import sys
    import tempfile

    try:
        import openmm
        import openmmtorch
    except ImportError:
        return "openmm-torch is not installed (pip install openmmtorch, built against your torch)"
    versions = f"openmm {openmm.__version__}, openmmtorch {importlib.metadata.version(openmmtorch.__name__)}"
    with tempfile.TemporaryDirectory() as folder:
        # A file, not ``python -c``: TorchScript compiles a module from its source file.
        script = Path(folder) / "torch_force_in_cv_force.py"
        script.write_text(_TORCH_FORCE_IN_CV_FORCE)
        try:
            child = subprocess.run(
                [sys.executable, str(script), str(Path(folder) / "sum.pt")],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            return f"a TorchForce inside a CustomCVForce did not finish in 300 s ({versions})"
    if child.returncode == 0:
        return None
    how = f"signal {-child.returncode}" if child.returncode < 0 else (child.stderr.strip().splitlines() or ["?"])[-1]
    return f"openmm-torch's TorchForce inside a CustomCVForce (a metadynamics CV) fails here ({how}; {versions})"
