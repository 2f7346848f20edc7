"""Reweighting biased runs: frame weights, well-tempered offsets, phi transitions and free-energy differences.

Frame weights come from a COLVAR or a weights file (:func:`frame_weights`) or from a metadynamics
run's ``rbias`` (:func:`metadynamics_weights`); free-energy differences carry block errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NeuralCTError

__all__ = [
    "CORE_A",
    "CORE_B",
    "FREE_ENERGY_BLOCKS",
    "in_core_set",
    "count_transitions",
    "first_entry",
    "FreeEnergyDifference",
    "phi_free_energy_difference",
    "reweighting_offset",
    "metadynamics_weights",
    "frame_weights",
    "frame_log_weights",
]


#: Core sets of phi in rad (benchmarks.md, B3).
CORE_A = (-math.pi, -0.5)


CORE_B = (0.5, 1.6)


#: Contiguous blocks of a run whose spread gives the standard error of a free-energy difference.
FREE_ENERGY_BLOCKS = 10


def in_core_set(phi: np.ndarray, core: tuple[float, float]) -> np.ndarray:
    """Whether each phi (rad) lies inside the core set ``core`` = (low, high), ends excluded; same shape as ``phi``."""
    return (phi > core[0]) & (phi < core[1])


def count_transitions(phi: np.ndarray) -> int:
    """Transitions between the core sets A (phi < -0.5) and B (0.5 < phi < 1.6) of a phi series (rad)."""
    state = np.full(len(phi), -1)
    state[in_core_set(phi, CORE_A)] = 0
    state[in_core_set(phi, CORE_B)] = 1
    visited = state[state >= 0]
    return int(np.count_nonzero(np.diff(visited))) if len(visited) else 0


def first_entry(phi: np.ndarray, core: tuple[float, float]) -> int | None:
    """The index of the first frame of a phi series (rad) inside the core set ``core``; None if it never enters."""
    inside = np.nonzero(in_core_set(phi, core))[0]
    return int(inside[0]) if len(inside) else None


@dataclass(frozen=True)
class FreeEnergyDifference:
    """A reweighted free-energy difference with its standard error, or the reason there is none.

    Attributes
    ----------
    value_kj : float or None
        F(phi > 0) - F(phi <= 0), kJ/mol; None when not computed.
    standard_error_kj : float or None
        Its standard error from the spread between blocks of the run, kJ/mol.
    blocks : int
        Contiguous blocks of frames the standard error comes from.
    reason : str or None
        Why there is no value; None when there is one.
    """

    value_kj: float | None
    standard_error_kj: float | None
    blocks: int
    reason: str | None = None

    def figures(self) -> dict[str, Any]:
        """The difference as a run's ``summary.json`` holds it per phi (the ``delta_F_*`` entries)."""
        return {
            "delta_F_phi_positive_minus_negative_kj": self.value_kj,
            "delta_F_standard_error_kj": self.standard_error_kj,
            "delta_F_blocks": self.blocks,
            "delta_F_not_computed_because": self.reason,
        }

    @classmethod
    def from_figures(cls, figures: dict[str, Any]) -> FreeEnergyDifference:
        """The difference from one phi's figures in a run's ``summary.json`` (:meth:`figures`)."""
        return cls(
            figures["delta_F_phi_positive_minus_negative_kj"],
            figures["delta_F_standard_error_kj"],
            figures["delta_F_blocks"],
            figures["delta_F_not_computed_because"],
        )

    def describe(self) -> str:
        """The difference in words: ``= 9.12 +- 0.80 kJ/mol (...)`` or ``not computed: <reason>``."""
        if self.value_kj is None:
            return f"not computed: {self.reason}"
        return (
            f"= {self.value_kj:.2f} +- {self.standard_error_kj:.2f} kJ/mol (standard error over {self.blocks} blocks)"
        )


def phi_free_energy_difference(
    phi: np.ndarray, weights: np.ndarray, kT: float, blocks: int = FREE_ENERGY_BLOCKS
) -> FreeEnergyDifference:
    """Reweighted F(phi > 0) - F(phi <= 0) with a block standard error, when phi visited both basins.

    Visited: phi entered both core sets :data:`CORE_A` and :data:`CORE_B`, which is the same as at
    least one transition between them (:func:`count_transitions`): the system crossed the barrier,
    so each half's weight comes from frames of its own basin. Weight on each side of phi = 0 is no
    test: the beta basin reaches past -pi and wraps to phi near +pi, so a run that never left it
    has frames at phi > 0, and -kT ln of that tail is a number (over 20 kJ/mol) with no basin
    behind it. Such a run gets no value and the reason.

    Standard error: the frames, in time order, are cut into ``blocks`` contiguous blocks. Block b
    holds the weight W_b and the weighted population p_b of phi > 0; with Kish's effective number of
    blocks n = (sum W_b)^2 / sum W_b^2 (blocks need not weigh the same), the population
    p = sum W_b p_b / sum W_b has the variance n/(n - 1) sum W_b (p_b - p)^2 / sum W_b / n, and
    dF = -kT ln(p / (1 - p)) the standard error kT sigma_p / (p (1 - p)) (to first order). Blocks,
    not frames, because consecutive frames are correlated over the time between transitions.
    Ten by default: the spread of n blocks gives the standard error to about 1/sqrt(2(n - 1))
    (24% for ten), and more blocks would be shorter than the time between transitions of a run
    of one to a few ns with tens of transitions (benchmarks.md, B3), underestimating the error.

    Parameters
    ----------
    phi : np.ndarray, shape=(n_frames,)
        Backbone phi in rad, in time order.
    weights : np.ndarray, shape=(n_frames,)
        Non-negative frame weights (e.g. exp((V - c(t)) / kT)).
    kT : float
        Thermal energy in kJ/mol.
    blocks : int
        Contiguous blocks for the standard error (at least 2).

    Returns
    -------
    FreeEnergyDifference
        The value and standard error in kJ/mol, or None and the reason.
    """
    phi, weights = np.asarray(phi, dtype=np.float64), np.asarray(weights, dtype=np.float64)

    def none(reason: str) -> FreeEnergyDifference:
        return FreeEnergyDifference(None, None, blocks, reason)

    for name, core in (("A (phi < -0.5 rad)", CORE_A), ("B (0.5 < phi < 1.6 rad)", CORE_B)):
        if not np.any(in_core_set(phi, core)):
            return none(f"phi never entered core set {name}, so that basin was not visited")
    if len(phi) < blocks:
        return none(f"{len(phi)} frames are fewer than the {blocks} blocks of the standard error")
    parts = list(zip(np.array_split(weights, blocks), np.array_split(phi, blocks)))
    block_weights = np.array([w.sum() for w, _ in parts])
    block_positive = np.array([w[p > 0].sum() for w, p in parts])
    total = block_weights.sum()
    population = float(block_positive.sum() / total) if total > 0 else 0.0
    if not 0 < population < 1:
        return none(f"phi {'> 0' if population == 0 else '<= 0'} has no weight after reweighting")
    effective = kish_blocks(block_weights)
    if effective < 2:
        return none(
            f"the weight of the reweighted frames sits in {effective:.2f} of the {blocks} blocks (Kish), "
            "too few for a standard error; run longer"
        )
    sigma = float(block_population_errors(block_weights, block_positive))
    return FreeEnergyDifference(
        -kT * math.log(population / (1 - population)), kT * sigma / (population * (1 - population)), blocks
    )


def kish_blocks(block_weights: np.ndarray) -> float:
    """Kish's effective number of blocks, (sum W_b)^2 / sum W_b^2, of blocks of total weights ``block_weights``."""
    block_weights = np.asarray(block_weights, dtype=np.float64)
    return float(block_weights.sum() ** 2 / np.sum(block_weights**2))


def block_population_errors(block_weights: np.ndarray, block_hits: np.ndarray) -> np.ndarray:
    """Block standard errors of weighted populations (of one set, or of every bin of a histogram).

    Block b holds the weight W_b, of which H_b lies in the set; the population p = sum H_b / sum W_b
    has the variance n/(n - 1) sum W_b (H_b/W_b - p)^2 / sum W_b / n, with n Kish's effective number of
    blocks (:func:`kish_blocks`, blocks need not weigh the same); blocks without weight are left out.

    Parameters
    ----------
    block_weights : np.ndarray, shape=(n_blocks,)
        Each block's total weight (some positive, n >= 2 for an error).
    block_hits : np.ndarray, shape=(n_blocks, ...)
        Each block's weight in the set, or in every bin.

    Returns
    -------
    np.ndarray, shape=block_hits.shape[1:]
        The standard error of each population.
    """
    block_weights = np.asarray(block_weights, dtype=np.float64)
    block_hits = np.asarray(block_hits, dtype=np.float64)
    total, effective = block_weights.sum(), kish_blocks(block_weights)
    population = block_hits.sum(axis=0) / total
    held = block_weights > 0
    shape = (-1,) + (1,) * (block_hits.ndim - 1)
    held_weights = block_weights[held].reshape(shape)
    spread = np.sum(held_weights * (block_hits[held] / held_weights - population) ** 2, axis=0) / total
    return np.sqrt(effective / (effective - 1) * spread / effective)


def reweighting_offset(bias_grid: np.ndarray, bias_factor: float, kT: float, periodic: bool) -> float:
    """Tiwary-Parrinello ``c(t)`` (kJ/mol) of a well-tempered bias tabulated on a uniform grid.

    The last grid point of a periodic axis repeats the first and is left out.
    """
    grid = np.asarray(bias_grid, dtype=np.float64)
    if periodic:
        grid = grid[(slice(0, -1),) * grid.ndim]
    beta_v = grid.ravel() / kT
    top = _logsumexp(bias_factor / (bias_factor - 1) * beta_v)
    bottom = _logsumexp(beta_v / (bias_factor - 1))
    return kT * (top - bottom)


def metadynamics_weights(rbias: np.ndarray, kT: float) -> np.ndarray:
    """Frame weights ``exp((V(s, t) - c(t)) / kT)`` of a well-tempered metadynamics run, the largest 1.

    Parameters
    ----------
    rbias : np.ndarray, shape=(n_frames,)
        The bias less the offset c(t) at each frame (the COLVAR's ``rbias``), kJ/mol.
    kT : float
        Thermal energy in kJ/mol.

    Returns
    -------
    np.ndarray, shape=(n_frames,)
        Unnormalised weights; the largest is 1, so none overflows.
    """
    return np.exp((rbias - rbias.max()) / kT)


def frame_weights(path: str | Path, kind: str, n_frames: int, kT: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Normalised frame weights for weighted maximum likelihood, and how they were made.

    The weights are ``exp`` of :func:`frame_log_weights`, scaled to sum to 1.

    Returns
    -------
    weights : np.ndarray, shape=(n_frames,)
    record : dict
        ``source``, ``kish_effective_frames`` and ``frames``.
    """
    log_w, source = frame_log_weights(path, kind, n_frames, kT)
    weights = np.exp(log_w - log_w.max())
    weights /= weights.sum()
    return weights, {
        "source": source,
        "kish_effective_frames": float(1.0 / np.sum(weights**2)),
        "frames": int(n_frames),
    }


def frame_log_weights(path: str | Path, kind: str, n_frames: int, kT: float) -> tuple[np.ndarray, str]:
    """The log of each frame's weight, read from a weights file or a bias run's COLVAR, and where it came from.

    Parameters
    ----------
    path : path
        A weights file (one non-negative number per frame, ``kind="file"``) or the COLVAR of
        a ``neuralct bias`` run or a PLUMED bias (``kind="colvar"``): ``w = exp((V - c(t)) / kT)``
        from its ``rbias`` column (or ``LABEL.rbias``), else ``exp(V / kT)`` from its ``bias`` (or
        ``LABEL.bias``), which must then be a static bias (it is refused where it grows through the run).
    kind : {"file", "colvar"}
        What ``path`` is; the errors name it as the argument ``weights`` or ``bias_colvar``.
    n_frames : int
        Frames loaded for training (the weights must match them one to one).
    kT : float
        Thermal energy in kJ/mol.

    Raises
    ------
    NeuralCTError
        If the file is unreadable, has the wrong length or non-finite or negative values, or a COLVAR has no bias
        column or a growing bias without its rbias.
    """
    option = "`weights`" if kind == "file" else "`bias_colvar`"
    if not Path(path).is_file():
        raise NeuralCTError(f"{option} {path} does not exist or is not a file; check the path")
    if kind == "colvar":
        from .colvar import read_colvar

        fields, table = read_colvar(path)
        column = bias_column(fields, "rbias") or bias_column(fields, "bias")
        if column is None:
            raise NeuralCTError(
                f"{option} {path} has no bias or rbias column (nor one LABEL.bias or LABEL.rbias, as PLUMED names a "
                "bias's); give the COLVAR of a `neuralct bias` run or of a PLUMED bias"
            )
        log_w = table[:, fields.index(column)] / kT
        source = f"exp({column}/kT) from {Path(path).name}"
        if not column.endswith("rbias"):
            _refuse_growing_bias(table[:, fields.index(column)], kT, f"{option} {path}", column)
            source += " (no rbias column: a static bias, e.g. an umbrella or a frozen one)"
    else:
        try:
            values = np.loadtxt(path, dtype=np.float64, ndmin=1)
        except (OSError, ValueError) as exc:
            raise NeuralCTError(
                f"{option} {path} cannot be read as one number per line ({type(exc).__name__})"
            ) from None
        if values.ndim != 1 or np.any(values < 0):
            raise NeuralCTError(f"{option} {path} must hold one non-negative number per frame")
        if not np.any(values > 0):
            raise NeuralCTError(f"{option} {path} holds only zeros; give the frames to train on a positive weight")
        with np.errstate(divide="ignore"):
            log_w = np.log(values)
        source = f"weights file {Path(path).name}"
    if len(log_w) != n_frames:
        raise NeuralCTError(
            f"{option} {path} has {len(log_w)} values for the {n_frames} frames loaded; "
            "give one weight per loaded frame (with `stride` N, one for every N-th frame of each trajectory)"
        )
    if np.any(np.isnan(log_w)) or np.any(np.isposinf(log_w)) or not np.any(np.isfinite(log_w)):
        raise NeuralCTError(f"{option} {path} holds non-finite values; check the file")
    return log_w, source


#: A COLVAR's bias column whose mean over its last quarter of rows exceeds that over its first quarter by more than
#: this many kT is a growing bias (metadynamics): under a static bias the frames' bias values are stationary.
GROWING_BIAS_KT = 4.0


def bias_column(fields: list[str], name: str) -> str | None:
    """The column of a COLVAR holding ``name`` (``bias`` or ``rbias``): so named (a ``neuralct bias`` COLVAR), or the
    one ``LABEL.name`` (PLUMED's ``metad.rbias``); None where there is none, or more than one such."""
    if name in fields:
        return name
    labelled = [field for field in fields if field.endswith(f".{name}")]
    return labelled[0] if len(labelled) == 1 else None


def _refuse_growing_bias(bias: np.ndarray, kT: float, source: str, column: str) -> None:
    """Refuse a bias column that grows through the run (:data:`GROWING_BIAS_KT`): its frames need V - c(t)."""
    quarter = max(len(bias) // 4, 1)
    first, last = float(np.mean(bias[:quarter])), float(np.mean(bias[-quarter:]))
    if len(bias) >= 8 and last - first > GROWING_BIAS_KT * kT:
        raise NeuralCTError(
            f"{source}: its {column} column grows through the run (mean {first:.3g} kJ/mol over its first quarter, "
            f"{last:.3g} over its last), a bias still being deposited, whose frames are weighted by V - c(t), not V; "
            "give a COLVAR with that column (rbias: a `neuralct bias` COLVAR, or PLUMED's METAD with CALC_RCT)"
        )


def _logsumexp(values: np.ndarray) -> float:
    """``log(sum(exp(values)))`` without overflow."""
    peak = float(values.max())
    return peak + math.log(float(np.exp(values - peak).sum()))
