"""The two well-tempered metadynamics biases of ``neuralct bias``, behind one interface.

:class:`JointMetadynamics` is ``openmm.app.Metadynamics``: one bias on the joint grid of its CVs.
That grid needs n^k points, where a learned CV's grid has several hundred, so it stops at two CVs.
:class:`SeparateMetadynamics` gives each CV its own one-dimensional bias: V(s) = V_1(s_1) + ... +
V_k(s_k). A molecule with several separate slow processes (the phi flips of a peptide's residues)
wants one biased CV per process; each CV gets its own well-tempered bias, deposited at its own
value with the height ``h exp(-V_i(s_i) / (kB dT))`` (the well-tempered rule applied to each bias),
and the force is their sum. Each V_i converges to -(dT / (T + dT)) F_i(s_i), CV i's marginal free
energy, where the CVs move independently; where they are coupled it is a bias still, and the
frames reweight exactly once it is held fixed (``neuralct bias --frozen-bias``).

Both have ``openmm.app.Metadynamics``'s public methods (``step``, ``getCollectiveVariables``,
``getFreeEnergy``, the settable ``height``) and what a bias run needs besides: ``step`` in two
parts, ``advance`` and ``deposit_if_due``, so that a report at a deposition step reads the bias
its frame felt, before the Gaussian deposited there (as PLUMED prints it); the grid
(``bias_grid``; the joint grid's axes in reverse CV order, as OpenMM keeps it, or one row per CV on
``n`` points from its ``minValue`` to its ``maxValue``), the force group of the bias
(``force_group``), a deposit of any height (``deposit``) and a grid loaded from a checkpoint or a
frozen run (``set_bias_grid``). :class:`JointMetadynamics` is the one place that reaches into
``openmm.app.Metadynamics``'s private state for these; ``tests/workflows/test_metadynamics.py``
checks each against the energy OpenMM computes.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..analysis.reweighting import reweighting_offset

__all__ = [
    "JOINT_POINTS_PER_WIDTH",
    "JointMetadynamics",
    "SeparateMetadynamics",
    "joint_grid_points",
    "separate_offset",
]

JOINT_POINTS_PER_WIDTH = 2
"""Grid points per Gaussian width on each axis of a joint grid of two learned CVs.

``openmm.app.metadynamics.BiasVariable`` takes 5; on the default two-CV grid (about 800 x 1,100
points) each deposit then recomputes the whole 2-D spline table, and the run goes at a tenth of
one CV's speed. At 2 points per width the interpolated bias differs from the exact sum of the
deposited Gaussians by at most 0.002 kJ/mol and its force by at most 3% of the force's rms (0.4%
in rms; ``tests/workflows/test_metadynamics.py``), and each deposit costs 8 times less.
"""


def joint_grid_points(low: float, high: float, width: float) -> int:
    """Grid points of one axis of a joint grid of two learned CVs: :data:`JOINT_POINTS_PER_WIDTH` per Gaussian width.

    The rule of ``BiasVariable`` (``ceil(5 (high - low) / width)``) with 2 in place of 5.

    Parameters
    ----------
    low, high : float
        The grid's ends, in the CV's units.
    width : float
        The Gaussian width on this axis, in the CV's units.
    """
    return int(math.ceil(JOINT_POINTS_PER_WIDTH * (high - low) / width))


def separate_offset(bias: np.ndarray, bias_factor: float, kT: float) -> float:
    """Tiwary-Parrinello ``c(t)`` (kJ/mol) of separate biases: the sum of each row's one-dimensional ``c``.

    This is the joint-grid formula applied to the summed bias V_1(s_1) + ... + V_k(s_k): its
    integrands exp(a V) factorise over the CVs. The formula assumes the bias has reached
    -(dT / (T + dT)) F(s), which separate biases reach where the CVs are independent; otherwise it
    is an estimate, as ``c(t)`` of a bias still growing always is.

    Parameters
    ----------
    bias : np.ndarray, shape=(k, n)
        Each CV's bias on its grid, kJ/mol.
    bias_factor : float
        Well-tempered bias factor gamma.
    kT : float
        Thermal energy, kJ/mol.
    """
    return float(sum(reweighting_offset(row, bias_factor, kT, False) for row in np.asarray(bias)))


class _Depositing:
    """``step`` as ``openmm.app.Metadynamics`` has it, in two parts: ``advance``, then ``deposit_if_due``.

    A subclass sets ``frequency`` and defines ``deposit_if_due(simulation)``, which deposits the
    well-tempered Gaussian at the CVs' values when ``simulation.currentStep`` is a multiple of it.
    """

    frequency: int

    def advance(self, simulation: Any, steps: int) -> None:
        """Advance ``simulation`` by ``steps`` integrator steps, depositing at every ``frequency``-th step on the way.

        A deposition due at the last step is left to ``deposit_if_due``: a report made there reads
        the bias its frame felt, without the Gaussian centred on the frame itself (which would give
        the frame up to ``exp(height / kT)`` too much weight when reweighted).
        """
        end = simulation.currentStep + steps
        while simulation.currentStep < end:
            simulation.step(min(end - simulation.currentStep, self.frequency - simulation.currentStep % self.frequency))
            if simulation.currentStep < end:
                self.deposit_if_due(simulation)

    def step(self, simulation: Any, steps: int) -> None:
        """Advance ``simulation`` by ``steps`` integrator steps, depositing every ``frequency`` steps."""
        self.advance(simulation, steps)
        self.deposit_if_due(simulation)


class JointMetadynamics(_Depositing):
    """``openmm.app.Metadynamics`` (one well-tempered bias on the joint grid of its CVs) with the bias run's interface.

    Parameters
    ----------
    system : openmm.System
        The system; OpenMM adds the bias force to it.
    variables : sequence of openmm.app.metadynamics.BiasVariable
        The CVs, with their grids and Gaussian widths.
    temperature : float
        Temperature, K.
    bias_factor : float
        Well-tempered bias factor gamma (> 1).
    height : float
        Initial Gaussian height, kJ/mol.
    frequency : int
        Integrator steps between depositions.
    """

    def __init__(
        self,
        system: Any,
        variables: Sequence[Any],
        temperature: float,
        bias_factor: float,
        height: float,
        frequency: int,
    ):
        from openmm.app.metadynamics import Metadynamics

        self.variables = list(variables)
        self.frequency = frequency
        self._openmm = Metadynamics(system, self.variables, temperature, bias_factor, height, frequency)

    @property
    def height(self) -> Any:
        """The Gaussian height before the well-tempered factor, a Quantity in kJ/mol (settable)."""
        return self._openmm.height

    @height.setter
    def height(self, value: Any) -> None:
        self._openmm.height = value

    @property
    def bias_grid(self) -> np.ndarray:
        """The bias on the joint grid, kJ/mol; axes in reverse CV order (last CV first), as OpenMM keeps it."""
        return self._openmm._totalBias

    @property
    def force_group(self) -> int:
        """The force group of the bias force."""
        return self._openmm._force.getForceGroup()

    def deposit_if_due(self, simulation: Any) -> None:
        """At a ``frequency``-th step, deposit ``openmm.app.Metadynamics``'s well-tempered Gaussian at the CVs."""
        import openmm.unit as unit

        if simulation.currentStep % self.frequency:
            return
        metadynamics = self._openmm
        position = metadynamics._force.getCollectiveVariableValues(simulation.context)
        energy = simulation.context.getState(getEnergy=True, groups={self.force_group}).getPotentialEnergy()
        height = metadynamics.height * np.exp(-energy / (unit.MOLAR_GAS_CONSTANT_R * metadynamics._deltaT))
        metadynamics._addGaussian(position, height, simulation.context)

    def getCollectiveVariables(self, simulation: Any) -> tuple[float, ...]:
        """The CVs' current values."""
        return self._openmm.getCollectiveVariables(simulation)

    def getFreeEnergy(self) -> Any:
        """The free energy estimate -(T + dT)/dT V on the grid, as a Quantity in kJ/mol."""
        return self._openmm.getFreeEnergy()

    def deposit(self, position: Sequence[float], height: float, context: Any) -> None:
        """Add a Gaussian of ``height`` (kJ/mol, any sign or zero) at ``position``; push the grid into ``context``."""
        import openmm.unit as unit

        self._openmm._addGaussian(position, height * unit.kilojoules_per_mole, context)

    def set_bias_grid(self, grid: np.ndarray, context: Any) -> None:
        """Make ``grid`` (kJ/mol, :attr:`bias_grid`'s shape) the bias, in ``context`` too."""
        self._openmm._selfBias[...] = grid
        self._openmm._totalBias[...] = grid
        # A zero-height deposit pushes the grid into the context's tabulated function.
        self.deposit([v.minValue for v in self.variables], 0.0, context)


class SeparateMetadynamics(_Depositing):
    """Well-tempered metadynamics with a one-dimensional bias on each of several (non-periodic) CVs.

    Parameters
    ----------
    system : openmm.System
        The system; a ``CustomCVForce`` of the summed biases is added to it, in the highest free
        force group (as ``openmm.app.Metadynamics`` does).
    variables : sequence of openmm.app.metadynamics.BiasVariable
        The CVs, with their grids' ends and Gaussian widths; none periodic.
    temperature : float
        Temperature, K.
    bias_factor : float
        Well-tempered bias factor gamma (> 1): each CV is sampled as at temperature gamma T.
    height : float
        Initial Gaussian height, kJ/mol.
    frequency : int
        Integrator steps between depositions.

    Raises
    ------
    ValueError
        For a periodic variable, a bias factor not above 1, or no variable.
    """

    def __init__(
        self,
        system: Any,
        variables: Sequence[Any],
        temperature: float,
        bias_factor: float,
        height: float,
        frequency: int,
    ):
        import openmm as mm
        import openmm.unit as unit

        if not variables:
            raise ValueError("separate metadynamics needs at least one CV")
        if any(v.periodic for v in variables):
            raise ValueError("separate metadynamics takes non-periodic CVs only")
        if not bias_factor > 1:
            raise ValueError(f"bias factor must be > 1, got {bias_factor}")
        self.variables = list(variables)
        self.temperature = temperature * unit.kelvin
        self.biasFactor = bias_factor
        self.height = height * unit.kilojoules_per_mole
        self.frequency = frequency
        self._delta_t = self.temperature * (bias_factor - 1)
        points = max(v.gridWidth for v in self.variables)
        self._grids = np.array([np.linspace(v.minValue, v.maxValue, points) for v in self.variables])
        self.bias_grid = np.zeros((len(self.variables), points))
        names = [f"cv{i}" for i in range(len(self.variables))]
        self._force = mm.CustomCVForce(" + ".join(f"bias{i}({name})" for i, name in enumerate(names)))
        self._tables = []
        for i, (name, variable) in enumerate(zip(names, self.variables)):
            self._force.addCollectiveVariable(name, variable.force)
            table = mm.Continuous1DFunction(self.bias_grid[i], variable.minValue, variable.maxValue)
            self._force.addTabulatedFunction(f"bias{i}", table)
            self._tables.append(table)
        free = set(range(32)) - {force.getForceGroup() for force in system.getForces()}
        if not free:
            raise RuntimeError("no force group is free for the metadynamics force (all 32 are used)")
        self._force.setForceGroup(max(free))
        system.addForce(self._force)

    @property
    def force_group(self) -> int:
        """The force group of the bias force."""
        return self._force.getForceGroup()

    def getCollectiveVariables(self, simulation: Any) -> tuple[float, ...]:
        """The CVs' current values."""
        return tuple(self._force.getCollectiveVariableValues(simulation.context))

    def getFreeEnergy(self) -> Any:
        """Each CV's free energy estimate -(T + dT)/dT V_i on its grid, shape (k, n), as a Quantity in kJ/mol."""
        import openmm.unit as unit

        return -((self.temperature + self._delta_t) / self._delta_t) * self.bias_grid * unit.kilojoules_per_mole

    def bias_at(self, position: Sequence[float]) -> np.ndarray:
        """Each CV's bias V_i(s_i) at ``position`` (k values), kJ/mol, interpolated linearly on its grid."""
        return np.array([np.interp(s, grid, row) for s, grid, row in zip(position, self._grids, self.bias_grid)])

    def deposit_if_due(self, simulation: Any) -> None:
        """At a ``frequency``-th step, deposit on each CV's bias its well-tempered Gaussian at the CV's value."""
        import openmm.unit as unit

        if simulation.currentStep % self.frequency:
            return
        kB_dT = (unit.MOLAR_GAS_CONSTANT_R * self._delta_t).value_in_unit(unit.kilojoules_per_mole)
        position = self.getCollectiveVariables(simulation)
        heights = self.height.value_in_unit(unit.kilojoules_per_mole) * np.exp(-self.bias_at(position) / kB_dT)
        self.deposit(position, heights, simulation.context)

    def deposit(self, position: Sequence[float], height: float | Sequence[float], context: Any) -> None:
        """Add to each CV's bias a Gaussian at its value ``position[i]`` of height ``height`` (kJ/mol, one or k).

        Any height, zero included, pushes the grids into the context's tabulated functions.
        """
        heights = np.broadcast_to(np.asarray(height, dtype=np.float64), (len(self.variables),))
        for i, variable in enumerate(self.variables):
            distance = self._grids[i] - position[i]
            self.bias_grid[i] += heights[i] * np.exp(-0.5 * (distance / variable.biasWidth) ** 2)
            self._tables[i].setFunctionParameters(self.bias_grid[i], variable.minValue, variable.maxValue)
        self._force.updateParametersInContext(context)

    def set_bias_grid(self, grid: np.ndarray, context: Any) -> None:
        """Make ``grid`` (kJ/mol, shape (k, n)) the bias, in ``context`` too."""
        self.bias_grid[...] = grid
        self.deposit([v.minValue for v in self.variables], 0.0, context)
