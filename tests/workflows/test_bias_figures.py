"""What a bias run reports of its phi series, checked by hand without MD: transitions and their rate, the time of
the first entry into core set B, the reweighted F(phi > 0) - F(phi <= 0), the phi/psi surface's orientation, and the
joint grid's points per width."""

import math

import numpy as np
import pytest

from neuralct.units import kT_kj_per_mol
from neuralct.workflows import bias
from neuralct.workflows.metadynamics import joint_grid_points

KT = kT_kj_per_mol(300.0)


def test_a_runs_phi_figures_by_hand():
    # A (2 frames), B from frame 2, A again from frame 5, B at frame 9: three transitions, first in B at 0.6 ps.
    phi = np.array([-1.2, -1.0, 1.0, 1.1, 0.2, -1.3, -1.1, -1.2, -0.2, 0.9, 1.0, 1.2])
    time_ps = 0.2 + 0.2 * np.arange(len(phi))
    rbias = np.linspace(0.0, 6.0, len(phi))
    weights = np.exp(rbias / KT)
    figures = bias._phi_figures(phi, time_ps, weights, KT, ns=0.0024)
    assert figures["phi_transitions"] == 3
    assert figures["phi_transitions_per_ns"] == pytest.approx(3 / 0.0024, rel=1e-12)
    assert figures["first_entry_into_B_ps"] == pytest.approx(0.6, rel=1e-12)
    # Weights exp(V/kT) enter: F(phi > 0) - F(phi <= 0) = -kT ln(W_+ / W_-), not the unweighted -kT ln(6/6) = 0.
    expected = -KT * math.log(weights[phi > 0].sum() / weights[phi <= 0].sum())
    assert abs(expected) > 0.5
    assert figures["delta_F_phi_positive_minus_negative_kj"] == pytest.approx(expected, rel=1e-12)


def test_the_phi_psi_surface_has_phi_along_its_first_index(tmp_path):
    # Three frames in the bin of phi = -2.0, psi = 1.0 and one in that of phi = 0.5, psi = -2.5, weighed 1:1:1:3.
    phi, psi = np.array([-2.0, -2.0, -2.0, 0.5]), np.array([1.0, 1.0, 1.0, -2.5])
    weights = np.array([1.0, 1.0, 1.0, 3.0])
    bias.write_phi_psi_surface(tmp_path, "phi", "psi", phi, psi, weights, KT, "test weights")
    surface = np.load(tmp_path / "fes_phi_psi_reweighted.npy")
    width = 2 * math.pi / 40

    def index(angle):
        return int((angle + math.pi) // width)

    assert surface.shape == (40, 40) and np.count_nonzero(np.isfinite(surface)) == 2
    assert surface[index(-2.0), index(1.0)] == 0.0 and surface[index(0.5), index(-2.5)] == 0.0
    plain = np.ones(4)
    bias.write_phi_psi_surface(tmp_path, "phi_2", "psi_2", phi, psi, plain, KT, "no weights")
    unweighted = np.load(tmp_path / "fes_phi_psi_reweighted_2.npy")
    assert unweighted[index(0.5), index(-2.5)] == pytest.approx(KT * math.log(3.0), rel=1e-12)


def test_a_joint_grid_has_two_points_per_width_rounded_up():
    # openmm.app.metadynamics.BiasVariable's rule, ceil(5 (max - min) / width), with 2 for 5.
    assert joint_grid_points(0.0, 1.0, 0.3) == 7
    assert joint_grid_points(-1.0, 2.0, 0.5) == 12
