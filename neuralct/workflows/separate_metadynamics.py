"""Well-tempered metadynamics with one bias per CV: V(s) = V_1(s_1) + ... + V_k(s_k).

One bias on the joint grid of k CVs (``openmm.app.Metadynamics``) needs n^k grid points, where a
learned CV's grid has several hundred, so it stops at two CVs. A molecule with several separate
slow processes (the phi flips of a peptide's residues) wants one biased CV per process; each CV
here gets its own one-dimensional well-tempered bias, deposited at its own value with the height
``h exp(-V_i(s_i) / (kB dT))`` (the well-tempered rule applied to each bias), and the force is
their sum. Each V_i converges to -(dT / (T + dT)) F_i(s_i), CV i's marginal free energy, where the
CVs move independently; where they are coupled it is a bias still, and the frames reweight
exactly once it is held fixed (``neuralct bias --frozen-bias``).

The class has the interface of ``openmm.app.Metadynamics`` that :mod:`neuralct.workflows.bias`
uses (``step``, ``getCollectiveVariables``, ``getFreeEnergy``, ``height``, the grids
``_totalBias``/``_selfBias``, ``_addGaussian`` and the force ``_force``), with the grid of shape
(k, n): CV i's bias in row i, on ``n`` points from its ``minValue`` to its ``maxValue``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..analysis.reweighting import reweighting_offset

__all__ = ["SeparateMetadynamics", "separate_offset"]


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


class SeparateMetadynamics:
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
        self._deltaT = self.temperature * (bias_factor - 1)
        points = max(v.gridWidth for v in self.variables)
        self._grids = np.array([np.linspace(v.minValue, v.maxValue, points) for v in self.variables])
        self._totalBias = np.zeros((len(self.variables), points))
        self._selfBias = self._totalBias
        names = [f"cv{i}" for i in range(len(self.variables))]
        self._force = mm.CustomCVForce(" + ".join(f"bias{i}({name})" for i, name in enumerate(names)))
        self._tables = []
        for i, (name, variable) in enumerate(zip(names, self.variables)):
            self._force.addCollectiveVariable(name, variable.force)
            table = mm.Continuous1DFunction(self._totalBias[i], variable.minValue, variable.maxValue)
            self._force.addTabulatedFunction(f"bias{i}", table)
            self._tables.append(table)
        free = set(range(32)) - {force.getForceGroup() for force in system.getForces()}
        if not free:
            raise RuntimeError("no force group is free for the metadynamics force (all 32 are used)")
        self._force.setForceGroup(max(free))
        system.addForce(self._force)

    def getCollectiveVariables(self, simulation: Any) -> tuple[float, ...]:
        """The CVs' current values."""
        return tuple(self._force.getCollectiveVariableValues(simulation.context))

    def getFreeEnergy(self) -> Any:
        """Each CV's free energy estimate -(T + dT)/dT V_i on its grid, shape (k, n), as a Quantity in kJ/mol."""
        import openmm.unit as unit

        return -((self.temperature + self._deltaT) / self._deltaT) * self._totalBias * unit.kilojoules_per_mole

    def bias_at(self, position: Sequence[float]) -> np.ndarray:
        """Each CV's bias V_i(s_i) at ``position`` (k values), kJ/mol, interpolated linearly on its grid."""
        return np.array([np.interp(s, grid, row) for s, grid, row in zip(position, self._grids, self._totalBias)])

    def step(self, simulation: Any, steps: int) -> None:
        """Advance ``simulation`` by ``steps`` integrator steps, depositing every ``frequency`` steps."""
        import openmm.unit as unit

        kB_dT = (unit.MOLAR_GAS_CONSTANT_R * self._deltaT).value_in_unit(unit.kilojoules_per_mole)
        left = steps
        while left > 0:
            next_steps = min(left, self.frequency - simulation.currentStep % self.frequency)
            simulation.step(next_steps)
            if simulation.currentStep % self.frequency == 0:
                position = self.getCollectiveVariables(simulation)
                heights = self.height.value_in_unit(unit.kilojoules_per_mole) * np.exp(-self.bias_at(position) / kB_dT)
                self._addGaussian(position, heights, simulation.context)
            left -= next_steps

    def _addGaussian(self, position: Sequence[float], height: Any, context: Any) -> None:
        """Add to each CV's bias a Gaussian at its value ``position[i]`` of height ``height`` (kJ/mol, one or k).

        Any height, zero included, pushes the grids into the context's tabulated functions.
        """
        import openmm.unit as unit

        if unit.is_quantity(height):
            height = height.value_in_unit(unit.kilojoules_per_mole)
        heights = np.broadcast_to(np.asarray(height, dtype=np.float64), (len(self.variables),))
        for i, variable in enumerate(self.variables):
            distance = self._grids[i] - position[i]
            self._totalBias[i] += heights[i] * np.exp(-0.5 * (distance / variable.biasWidth) ** 2)
            self._tables[i].setFunctionParameters(self._totalBias[i], variable.minValue, variable.maxValue)
        self._force.updateParametersInContext(context)
