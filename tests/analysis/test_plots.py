"""The analysis figures are written as real PNGs, atomically."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from neuralct.analysis.plots import plot_dependence, plot_fes, plot_ramachandran, plot_spectrum, plot_training_curves  # noqa: E402
from neuralct.errors import NeuralCTError  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes=10000):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > min_bytes
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_all_figures_are_written(tmp_path):
    rng = np.random.default_rng(0)
    phi = rng.uniform(-np.pi, np.pi, 3000)
    psi = rng.uniform(-np.pi, np.pi, 3000)
    modes = np.column_stack([np.cos(phi), np.sin(psi), rng.normal(size=3000)])
    plot_ramachandran(phi, psi, modes, tmp_path / "rama.png", title="slow modes")
    three = np.column_stack([phi, psi, -phi])
    plot_ramachandran(three, three[:, ::-1], modes, tmp_path / "rama3.png", residue_labels=["ALA2", "ALA3", "ALA4"])
    table = {
        "modes": [1, 2],
        "dihedrals": ["phi ALA2", "psi ALA2", "phi ALA3"],
        "mutual_information_nats": [[0.1, 1.5, 0.0], [0.9, 0.2, 0.3]],
        "circular_correlation": [[0.2, 0.9, 0.0], [0.7, 0.1, 0.3]],
    }
    plot_dependence(table, tmp_path / "dependence.png")
    plot_fes(modes[:, 0], modes[:, 1], tmp_path / "fes.png")
    plot_spectrum(np.exp(rng.normal(size=30)), tmp_path / "spectrum.png")
    plot_training_curves(
        {"step": [0, 10, 20, 30], "train_nll": [5.0, 3.0, 2.5, 2.4], "val_nll": [5.1, 3.2, 2.7, 2.6]},
        tmp_path / "curves.png",
    )
    for name in ("rama.png", "rama3.png", "dependence.png", "fes.png", "spectrum.png", "curves.png"):
        assert_png(tmp_path / name)


def test_a_failed_plot_leaves_no_file(tmp_path):
    with pytest.raises(NeuralCTError, match="one row per frame"):
        plot_ramachandran(np.zeros(5), np.zeros(5), np.zeros((4, 2)), tmp_path / "rama.png")
    with pytest.raises(NeuralCTError, match="positive"):
        plot_spectrum(np.array([1.0, -1.0]), tmp_path / "spectrum.png")
    assert list(tmp_path.iterdir()) == []
