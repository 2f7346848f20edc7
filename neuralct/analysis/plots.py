"""PNG figures of the analysis.

Ramachandran plots coloured by the CVs, dependence heat maps, free-energy surface, spectrum, training curves.
"""

from __future__ import annotations

import io
import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import NeuralCTError
from ..io import atomic_write_bytes
from .fes import free_energy_2d

__all__ = [
    "plot_grid_free_energy",
    "plot_ramachandran",
    "plot_dependence",
    "plot_fes",
    "plot_spectrum",
    "plot_training_curves",
]


def _new_figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas (no pyplot state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save_png(figure, path: str | os.PathLike) -> None:
    """Render ``figure`` to PNG in memory and write it atomically (temporary file, then rename)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def plot_ramachandran(
    phi: np.ndarray,
    psi: np.ndarray,
    colour_values: np.ndarray,
    path: str | os.PathLike,
    title: str = "",
    colour_labels: Sequence[str] | None = None,
    residue_labels: Sequence[str] | None = None,
) -> None:
    """Ramachandran scatter plots (phi, psi in degrees) coloured by the slow modes.

    One row per residue, one column per mode.

    Parameters
    ----------
    phi, psi : np.ndarray, shape=(n_frames,) or (n_frames, n_residues)
        Backbone dihedrals in radians, one column per residue.
    colour_values : np.ndarray, shape=(n_frames,) or (n_frames, n_modes)
        Values colouring the points (e.g. the slowest CVs, slowest first).
    path : str or os.PathLike
        Output PNG.
    title : str
        Figure title.
    colour_labels : sequence of str, optional
        Colour-bar label of each column; default ``Q1, Q2, ...`` (latent units).
    residue_labels : sequence of str, optional
        Name of each residue (row), e.g. ``ALA2``.
    """
    phi = np.asarray(phi, dtype=np.float64)
    psi = np.asarray(psi, dtype=np.float64)
    phi = phi[:, None] if phi.ndim == 1 else phi
    psi = psi[:, None] if psi.ndim == 1 else psi
    values = np.asarray(colour_values, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    if phi.ndim != 2 or psi.shape != phi.shape or values.shape[0] != phi.shape[0]:
        raise NeuralCTError(
            f"Ramachandran plot {path}: phi {phi.shape}, psi {psi.shape} and colours {values.shape} "
            "must have one row per frame (and phi, psi one column per residue)"
        )
    n_residues, n_modes = phi.shape[1], values.shape[1]
    labels = [f"Q{k + 1} (latent units)" for k in range(n_modes)] if colour_labels is None else list(colour_labels)
    rows = [f"residue {r + 1}" for r in range(n_residues)] if residue_labels is None else list(residue_labels)
    if len(labels) != n_modes or len(rows) != n_residues:
        raise NeuralCTError(
            f"Ramachandran plot {path}: {len(labels)} colour labels for {n_modes} modes, "
            f"{len(rows)} residue labels for {n_residues} residues"
        )
    figure = _new_figure(4.2 * n_modes, 3.6 * n_residues)
    phi_deg = np.degrees(np.mod(phi + np.pi, 2 * np.pi) - np.pi)
    psi_deg = np.degrees(np.mod(psi + np.pi, 2 * np.pi) - np.pi)
    ticks = np.arange(-180, 181, 60)
    limits = [np.percentile(values[:, k], [1, 99]) for k in range(n_modes)]
    for r in range(n_residues):
        for k in range(n_modes):
            axes = figure.add_subplot(n_residues, n_modes, r * n_modes + k + 1)
            points = axes.scatter(
                phi_deg[:, r],
                psi_deg[:, r],
                c=values[:, k],
                s=2,
                cmap="coolwarm",
                vmin=limits[k][0],
                vmax=limits[k][1],
                rasterized=True,
                linewidths=0,
            )
            figure.colorbar(points, ax=axes, label=labels[k])
            axes.set(
                xlim=(-180, 180),
                ylim=(-180, 180),
                xticks=ticks,
                yticks=ticks,
                aspect="equal",
                xlabel=rf"$\phi$ {rows[r]} (degrees)",
                ylabel=rf"$\psi$ {rows[r]} (degrees)",
                title=f"{rows[r]}, mode {k + 1}",
            )
    if title:
        figure.suptitle(title)
    _save_png(figure, path)


def plot_dependence(table: Mapping[str, Sequence], path: str | os.PathLike) -> None:
    """Heat maps (modes x dihedrals) of the mutual information and circular correlation of each mode with each dihedral.

    Parameters
    ----------
    table : mapping
        As :func:`neuralct.analysis.report.dependence_table` returns it: ``modes``, ``dihedrals``,
        ``mutual_information_nats`` and ``circular_correlation`` of shape (n_modes, n_dihedrals).
    path : str or os.PathLike
        Output PNG.
    """
    information = np.asarray(table["mutual_information_nats"], dtype=np.float64)
    correlation = np.asarray(table["circular_correlation"], dtype=np.float64)
    names, modes = list(table["dihedrals"]), list(table["modes"])
    if information.shape != (len(modes), len(names)) or correlation.shape != information.shape or not names:
        raise NeuralCTError(
            f"dependence heat map {path}: tables of shape {information.shape} for {len(modes)} modes "
            f"and {len(names)} dihedrals"
        )
    figure = _new_figure(max(6.0, 1.0 + 0.45 * len(names)), 2.0 + 0.9 * len(modes))
    for column, (values, label, vmax) in enumerate(
        [
            (information, "mutual information (nats)", max(float(information.max()), 1e-6)),
            (correlation, "circular correlation R", 1.0),
        ]
    ):
        axes = figure.add_subplot(2, 1, column + 1)
        image = axes.imshow(values, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
        figure.colorbar(image, ax=axes, label=label)
        axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        axes.set_yticks(range(len(modes)), [f"mode {m}" for m in modes])
        if values.size <= 200:
            for (k, j), value in np.ndenumerate(values):
                axes.text(
                    j, k, f"{value:.2f}", ha="center", va="center", fontsize=6, color="w" if value < 0.6 * vmax else "k"
                )
    _save_png(figure, path)


def plot_fes(
    cv1: np.ndarray,
    cv2: np.ndarray,
    path: str | os.PathLike,
    kT: float = 1.0,
    energy_unit: str = "kT",
    labels: tuple[str, str] = ("CV 1 (latent units)", "CV 2 (latent units)"),
    bins: int | None = None,
) -> None:
    """Free-energy surface of two CVs (filled contours; empty bins left blank).

    Parameters
    ----------
    cv1, cv2 : np.ndarray, shape=(n_frames,)
        The two CVs (e.g. the two slowest modes).
    path : str or os.PathLike
        Output PNG.
    kT : float
        Thermal energy in ``energy_unit`` (1.0 for F in kT; 2.494 for kJ/mol at 300 K).
    energy_unit : str
        Unit named on the colour bar.
    labels : (str, str)
        Axis labels with units.
    bins : int, optional
        Histogram bins per axis; default ``sqrt(n_frames / 10)`` clipped to [15, 60],
        about 10 frames per bin on the populated part of the plane.
    """
    from matplotlib.ticker import MaxNLocator

    if bins is None:
        bins = int(np.clip(np.sqrt(np.size(cv1) / 10), 15, 60))
    free, x_edges, y_edges = free_energy_2d(cv1, cv2, bins=bins, kT=kT)
    x_mid = 0.5 * (x_edges[1:] + x_edges[:-1])
    y_mid = 0.5 * (y_edges[1:] + y_edges[:-1])
    levels = MaxNLocator(nbins=15).tick_values(0.0, max(float(np.nanmax(free)), 1e-12))
    figure = _new_figure(5.6, 4.6)
    axes = figure.add_subplot()
    filled = axes.contourf(x_mid, y_mid, free.T, levels=levels, cmap="viridis")
    figure.colorbar(filled, ax=axes, label=f"free energy ({energy_unit})")
    axes.set(xlabel=labels[0], ylabel=labels[1], title="free-energy surface (empty bins blank)")
    _save_png(figure, path)


def plot_spectrum(
    frequencies: np.ndarray,
    path: str | os.PathLike,
    unit: str = "rad/ps",
    n_highlight: int = 2,
) -> None:
    """Learned mode frequencies in ascending order on a log scale; the slowest ``n_highlight`` marked.

    Parameters
    ----------
    frequencies : np.ndarray, shape=(n_modes,)
        Positive frequencies w_k (any order; they are sorted).
    path : str or os.PathLike
        Output PNG.
    unit : str
        Unit of the frequencies, named on the axis.
    n_highlight : int
        How many of the slowest modes to mark as the CVs.
    """
    frequencies = np.sort(np.asarray(frequencies, dtype=np.float64).ravel())
    if frequencies.size == 0 or not np.all(frequencies > 0):
        raise NeuralCTError(f"spectrum plot {path}: frequencies must be positive and non-empty")
    modes = np.arange(1, frequencies.size + 1)
    figure = _new_figure(6.0, 3.8)
    axes = figure.add_subplot()
    axes.semilogy(modes, frequencies, "o", color="0.4", markersize=4, label="modes")
    axes.semilogy(
        modes[:n_highlight],
        frequencies[:n_highlight],
        "o",
        color="C3",
        markersize=7,
        label=f"{n_highlight} slowest (CVs)",
    )
    axes.set(
        xlabel="mode index k (slowest first)",
        ylabel=f"frequency $\\omega_k$ ({unit})",
        title="learned frequency spectrum",
    )
    axes.legend()
    _save_png(figure, path)


def plot_training_curves(history: Mapping[str, Sequence[float]], path: str | os.PathLike) -> None:
    """Loss curves, one line per series, against the record index (or the ``step`` series when given).

    Parameters
    ----------
    history : mapping of str to sequence of float
        Series by name (e.g. ``train_nll``, ``val_nll``); an optional ``step``
        series is used as the x axis of every series of its length.
    path : str or os.PathLike
        Output PNG.
    """
    series = {name: np.asarray(values, dtype=np.float64) for name, values in history.items() if name != "step"}
    if not series or not any(v.size for v in series.values()):
        raise NeuralCTError(f"training-curve plot {path}: the history has no loss values")
    steps = np.asarray(history["step"], dtype=np.float64) if "step" in history else None
    figure = _new_figure(6.0, 3.8)
    axes = figure.add_subplot()
    for name, values in series.items():
        x = steps if steps is not None and steps.size == values.size else np.arange(values.size)
        axes.plot(x, values, label=name)
    axes.set(
        xlabel="training step" if steps is not None else "record",
        ylabel="loss (nats per sample)",
        title="training curves",
    )
    axes.legend()
    _save_png(figure, path)


def plot_grid_free_energy(
    surface: np.ndarray,
    axes_info: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    title: str = "",
    energy_unit: str = "kJ/mol",
) -> None:
    """A free energy tabulated on a uniform grid of one or two variables (line or filled contours).

    Parameters
    ----------
    surface : np.ndarray, shape=(n_x,) or (n_x, n_y)
        Values on the grid (NaN where unknown), first index along the first variable.
    axes_info : sequence of mapping
        Per variable: ``name`` (axis label with unit), ``min`` and ``max`` (grid ends, inclusive).
    path : str or os.PathLike
        Output PNG.
    """
    surface = np.asarray(surface, dtype=np.float64)
    if surface.ndim != len(axes_info) or surface.ndim not in (1, 2):
        raise NeuralCTError(
            f"free-energy plot {path}: a grid of {surface.ndim} dimensions for {len(axes_info)} variables"
        )
    grids = [np.linspace(info["min"], info["max"], n) for info, n in zip(axes_info, surface.shape)]
    figure = _new_figure(5.6, 4.6)
    axes = figure.add_subplot()
    if surface.ndim == 1:
        axes.plot(grids[0], surface)
        axes.set(xlabel=axes_info[0]["name"], ylabel=f"free energy ({energy_unit})")
    else:
        from matplotlib.ticker import MaxNLocator

        levels = MaxNLocator(nbins=15).tick_values(0.0, max(float(np.nanmax(surface)), 1e-12))
        filled = axes.contourf(grids[0], grids[1], surface.T, levels=levels, cmap="viridis")
        figure.colorbar(filled, ax=axes, label=f"free energy ({energy_unit})")
        axes.set(xlabel=axes_info[0]["name"], ylabel=axes_info[1]["name"])
    axes.set_title(title, fontsize=9)
    _save_png(figure, path)
