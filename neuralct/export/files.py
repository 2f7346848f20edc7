"""Writing the CV files MD engines load: TorchScript (openmm-torch, PLUMED), torch.export and a manifest."""

from __future__ import annotations

import copy
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..data.periodic import SpanningTree
from ..errors import NeuralCTError
from ..io import atomic_path, atomic_write_bytes, atomic_write_text, publish, sha256, write_json
from ..model.transformation import NeuralCanonicalTransformation
from .cv import CollectiveVariables, collective_variables

__all__ = [
    "export_cvs",
    "write_export_summary",
    "cv_ranges",
    "TorchForceCV",
    "PlumedCV",
    "MANIFEST_FORMAT",
    "PLUMED_BUILD",
]

MANIFEST_FORMAT = "neuralct.export"

#: Width of the fallback range in standard deviations of the latent oscillator, sqrt(kT)/w.
_PRIOR_RANGE_SIGMAS = 4.0

#: How to build a PLUMED that runs ``plumed_model.ptc``: LibTorch and the pytorch module, both.
PLUMED_BUILD = (
    './configure --enable-libtorch --enable-modules=pytorch CPPFLAGS="-I$LIBTORCH/include/torch/csrc/api/include '
    '-I$LIBTORCH/include -I$LIBTORCH/include/torch" LDFLAGS="-L$LIBTORCH/lib -Wl,-rpath,$LIBTORCH/lib"'
)

#: One printf conversion of a real number, as PLUMED's ``PRINT FMT`` takes it.
_REAL_FORMAT = re.compile(r"%[-+ #0]*[0-9]*(\.[0-9]+)?[eEfgG]")


class TorchForceCV(nn.Module):
    """One CV as an energy for openmm-torch's ``TorchForce``: positions (N, 3) nm -> scalar.

    ``forward(positions, boxvectors)`` follows the ``TorchForce`` contract: positions of the
    whole system (float32 or float64), and the box vectors (3, 3) when the force is set to
    use periodic boundary conditions; the returned "energy" is the CV itself (its unit is
    the model's reduced unit, reported as kJ/mol by OpenMM).

    A ``periodic`` module raises without box vectors: ``TorchForce`` passes none unless
    ``setUsesPeriodicBoundaryConditions(True)`` is called, and a molecule split across the box
    would then give a wrong CV without any error.
    """

    def __init__(self, cvs: CollectiveVariables, index: int, periodic: bool = False):
        super().__init__()
        self.cvs = cvs
        self.index = int(index)
        self.periodic = bool(periodic)

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.periodic and boxvectors is None:
            raise RuntimeError(
                "this CV was exported for a periodic system and needs the box vectors: "
                "call TorchForce.setUsesPeriodicBoundaryConditions(True)"
            )
        return self.cvs(positions, boxvectors)[..., self.index]


class PlumedCV(nn.Module):
    """The CVs for PLUMED's ``PYTORCH_MODEL``: features [batch, 3 n] (x, y, z of each atom, nm) -> [batch, k]."""

    def __init__(self, cvs: CollectiveVariables):
        super().__init__()
        self.cvs = cvs

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.cvs(features.reshape(features.shape[0], -1, 3))


def cv_ranges(model: NeuralCanonicalTransformation, k: int) -> tuple[list[dict[str, float]], str]:
    """Each of the ``k`` slowest CVs' range on the training data, and where it comes from.

    Models trained by ``neuralct train`` store the range of every latent position on their
    training frames (``metadata["cv_ranges"]``). Older models do not: then the range is
    ``+-4`` standard deviations ``1 / w`` of the latent oscillator around zero, which is
    where the prior puts the data (a fallback, said so in the manifest).
    """
    stored = model.metadata.get("cv_ranges")
    if stored:
        return [dict(stored[j]) for j in range(k)], "training frames (min, max, 1st and 99th percentile of each CV)"
    frequencies = model.frequencies.detach().double().cpu().numpy()
    ranges = [{"min": float(-_PRIOR_RANGE_SIGMAS / w), "max": float(_PRIOR_RANGE_SIGMAS / w)} for w in frequencies[:k]]
    return ranges, f"latent prior: +-{_PRIOR_RANGE_SIGMAS:g} / w around 0 (the model stores no training ranges)"


def _cv_ranking(model: NeuralCanonicalTransformation, k: int) -> tuple[dict[str, str], list[dict[str, float]]]:
    """What ranks the ``k`` slowest CVs, and each CV's frequency with the figure that ranks it.

    Returns
    -------
    ranked_by : dict
        ``key`` (the entry of each CV that ranks it), ``order`` (``ascending`` or ``descending``)
        and ``what`` (in words).
    figures : list of dict
        Per CV, slowest first: ``frequency_rad_per_ps`` and, for a kinetic model (trained with
        ``--lag-ps``), ``relaxation_time_ps`` or, for a model ranked by ``--rank-lag-ps``,
        ``autocorrelation``.
    """
    frequencies = (model.frequencies / model.time_unit).detach().double().cpu().tolist()
    figures = [{"frequency_rad_per_ps": w} for w in frequencies[:k]]
    if model.ranked_by == "relaxation time":
        times = (model.relaxation_times * model.time_unit).detach().double().cpu().tolist()
        for entry, time in zip(figures, times):
            entry["relaxation_time_ps"] = time
        return {
            "key": "relaxation_time_ps",
            "order": "descending",
            "what": "relaxation time of the latent Langevin dynamics, the longest first",
        }, figures
    if model.ranked_by == "autocorrelation":
        ranking = model.mode_ranking
        for entry, value in zip(figures, ranking.autocorrelation):
            entry["autocorrelation"] = float(value)
        what = f"autocorrelation at a lag of {ranking.lag_ps:g} ps on the training trajectories, the highest first"
        return {"key": "autocorrelation", "order": "descending", "what": what}, figures
    return {
        "key": "frequency_rad_per_ps",
        "order": "ascending",
        "what": "frequency of the latent oscillator, the lowest first",
    }, figures


def _cv_kinetics(model: NeuralCanonicalTransformation, k: int) -> list[dict[str, Any]]:
    """Per CV, slowest first, its kinetics on the training frames as the model stores them (``metadata["cv_kinetics"]``,
    :func:`neuralct.analysis.kinetics.cv_kinetics`): ``cv_kinetics`` (the lags, the autocorrelation and implied
    timescales at each) and ``oscillating``; empty entries for a model that stores none."""
    stored = model.metadata.get("cv_kinetics")
    if not stored:
        return [{} for _ in range(k)]
    lags = {key: value for key, value in stored.items() if key.startswith("lags_")}
    return [
        {
            "cv_kinetics": {**lags, **{key: value for key, value in cv.items() if key not in ("name", "oscillating")}},
            "oscillating": cv["oscillating"],
        }
        for cv in stored["cvs"][:k]
    ]


def _tree_walk(tree: SpanningTree) -> list[int]:
    """The atoms of a one-rooted ``tree`` in a walk along its edges: each atom, then each of its subtrees in turn,
    stepping back to the atom after each.

    Consecutive entries are always joined by an edge of the tree, which is what PLUMED's ``WHOLEMOLECULES`` needs
    of an entity's list (it moves each entry to the image nearest the one before), so the molecule comes out whole
    by the same parent-image rule as in :class:`~neuralct.export.cv.CollectiveVariables`. The steps back after the
    last new atom are left out: 2 n - 1 entries at most for n atoms.
    """
    children: list[list[int]] = [[] for _ in tree.parents]
    for atom in tree.order:
        if tree.parents[atom] >= 0:
            children[tree.parents[atom]].append(int(atom))
    walk: list[int] = []
    last_new = 0
    stack = [(int(tree.order[0]), False)]
    while stack:
        atom, returning = stack.pop()
        walk.append(atom)
        if not returning:
            last_new = len(walk)
            for child in reversed(children[atom]):
                stack += [(atom, True), (child, False)]
    return walk[:last_new]


def _check_plumed_print(stride: int, number_format: str) -> None:
    """Raise a one-line error unless ``stride`` (MD steps) and ``number_format`` suit PLUMED's ``PRINT``."""
    if int(stride) < 1:
        raise NeuralCTError(f"`plumed_stride` must be a positive number of MD steps, not {stride}")
    if not _REAL_FORMAT.fullmatch(number_format):
        raise NeuralCTError(
            f"`plumed_format` {number_format!r} is not one printf conversion of a real number; "
            "give one such as %f, %.8g or %14.8e"
        )


def _plumed_input(
    atom_indices: list[int], n_system_atoms: int, walk: list[int], k: int, model_file: str, stride: int, fmt: str
) -> str:
    """``plumed.dat``: the model's atoms (of a system of ``n_system_atoms``) made whole, their positions as features,
    the model and a COLVAR.

    ``walk`` lists positions in ``atom_indices`` along the edges of the molecule's spanning tree
    (:func:`_tree_walk`). ``POSITION`` takes ``NOPBC``: without it PLUMED returns each atom's image
    nearest the origin, which tears apart again the molecule ``WHOLEMOLECULES`` made whole.
    """
    serials = [i + 1 for i in atom_indices]
    lines = [
        "# The learned CVs in PLUMED (lengths in nm, PLUMED's default units).",
        f"# The ATOM serials are those of a system of {n_system_atoms} atoms; for another, export with --system.",
        "# PYTORCH_MODEL needs PLUMED >= 2.9 built with LibTorch and its pytorch module, with $LIBTORCH the folder",
        "# of the LibTorch (or of the Python torch package) the CVs were exported with:",
        f"#   {PLUMED_BUILD}",
        "# WHOLEMOLECULES walks the atoms along the spanning tree of the model's reference structure (its bonds),",
        "# there and back through each branch, so that each atom goes to the periodic image nearest its neighbour.",
        f"WHOLEMOLECULES ENTITY0={','.join(str(serials[i]) for i in walk)}",
    ]
    lines += [f"p{j + 1}: POSITION NOPBC ATOM={serial}" for j, serial in enumerate(serials)]
    arguments = ",".join(f"p{j + 1}.{axis}" for j in range(len(serials)) for axis in "xyz")
    lines.append(f"cv: PYTORCH_MODEL FILE={model_file} ARG={arguments}")
    outputs = ",".join(f"cv.node-{j}" for j in range(k))
    lines.append(f"PRINT STRIDE={stride} ARG={outputs} FILE=COLVAR FMT={fmt}")
    return "\n".join(lines) + "\n"


def _frozen(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose parameters are buffers: a loaded program then gives CVs that need no gradient.

    ``torch.export.load(...).module()`` gives parameters back with ``requires_grad=True`` under
    some torch releases (2.9), whatever they were when saved; buffers stay as they were.
    """
    frozen = copy.deepcopy(module)
    for layer in frozen.modules():
        for name, parameter in list(layer.named_parameters(recurse=False)):
            delattr(layer, name)
            layer.register_buffer(name, parameter.detach())
    return frozen


def _save_script(module: nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.jit.save(torch.jit.script(module), str(tmp))


def _save_exported(module: nn.Module, n_atoms: int, path: Path, periodic: bool) -> None:
    """``module`` as a ``torch.export`` program of positions (batch, ``n_atoms``, 3), and of the box (3, 3) where
    ``periodic`` (it then makes molecules whole in the box, as ``cvN.pt`` does)."""
    batch = torch.export.Dim("batch", min=1)
    example = (
        torch.zeros(2, n_atoms, 3, dtype=torch.float32),
        *((torch.eye(3, dtype=torch.float32),) if periodic else ()),
    )
    shapes = {"positions": {0: batch}, **({"box": None} if periodic else {})}
    program = torch.export.export(_frozen(module), example, dynamic_shapes=shapes)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def export_cvs(
    model: NeuralCanonicalTransformation,
    folder: str | os.PathLike,
    k: int = 2,
    model_path: str | os.PathLike | None = None,
    *,
    periodic: bool = False,
    plumed_stride: int = 100,
    plumed_format: str = "%f",
    system: Any = None,
    system_source: str = "the system",
) -> dict[str, Any]:
    """Write the ``k`` slowest CVs of ``model`` for MD engines into ``folder``.

    Files: ``cv1.pt ... cvK.pt`` (TorchScript, openmm-torch ``TorchForce``), ``plumed_model.ptc``
    and ``plumed.dat`` (PLUMED ``PYTORCH_MODEL``), ``cvs.pt2`` (``torch.export``: positions
    (batch, N, 3) nm float32, and for periodic CVs the box (3, 3) nm, -> (batch, k)) and
    ``manifest.json``. Every file is written
    under a temporary name and moved into place only when all are complete.

    Parameters
    ----------
    periodic : bool
        The CVs will run in a periodic box: ``cvN.pt`` then raises when called without box
        vectors. A model that records training data in a periodic box (``molecule["periodic"]``),
        and a ``system`` that holds water or ions (a solvated system, run in a box), are exported
        so in any case. The manifest says why (``system.periodic_because``).
    plumed_stride : int
        ``PRINT STRIDE`` of ``plumed.dat``, MD steps between lines of its COLVAR.
    plumed_format : str
        ``PRINT FMT`` of ``plumed.dat``: one printf conversion of a real number (PLUMED's default ``%f``).
    system : mdtraj.Topology, optional
        The system the CVs will run in, where it holds more than the model's trajectories did (the
        solute in its water box, wherever the solute lies in it): the model's atoms are found in it
        (:func:`neuralct.model.molecular.system_atoms`) and the files read them there. Default: the
        system of the model's trajectories. ``cvN.pt`` and ``cvs.pt2`` refuse positions of another
        atom count; ``plumed.dat`` names the system's atom count in a comment.
    system_source : str
        How errors name ``system`` (its file).

    Raises
    ------
    NeuralCTError
        If the model is not molecular, mixes positions and momenta, ``k`` is out of range,
        the PRINT settings are not valid, or ``folder`` already holds an export (choose another folder).

    Returns
    -------
    dict
        The manifest.
    """
    from ..data.loading import solute_atom_indices
    from ..model.molecular import molecule_description, system_atoms

    folder = Path(folder)
    molecule = molecule_description(model)
    _check_plumed_print(plumed_stride, plumed_format)
    solvated = system is not None and len(solute_atom_indices(system)) < system.n_atoms
    because = [
        reason
        for reason, holds in (
            ("given", periodic),
            ("the model's training frames had a periodic box", molecule.get("periodic", False)),
            (f"{system_source} holds water or ions", solvated),
        )
        if holds
    ]
    periodic = bool(because)
    cvs = collective_variables(model, k)
    n_system_atoms = int(molecule["n_atoms"])
    atom_indices = [int(i) for i in molecule["atom_indices"]]
    if system is not None:
        in_system = system_atoms(model, system, system_source)
        n_system_atoms, atom_indices = int(system.n_atoms), [int(in_system[i]) for i in atom_indices]
        cvs.for_system(atom_indices, n_system_atoms)
    if (folder / "manifest.json").exists():
        raise NeuralCTError(f"{folder} already holds an export (manifest.json); choose another folder or remove it")
    folder.mkdir(parents=True, exist_ok=True)
    ranges, range_source = cv_ranges(model, k)
    ranked_by, figures = _cv_ranking(model, k)
    kinetics = _cv_kinetics(model, k)
    # Named like an atomic write's temporary, so that the next run into the folder removes
    # what a killed export left.
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".export.", suffix=".tmp"))
    try:
        names = {f"cv{j + 1}.pt": TorchForceCV(cvs, j, periodic) for j in range(k)}
        for name, module in names.items():
            _save_script(module, staging / name)
        _save_script(PlumedCV(collective_variables(model, k, select=False)), staging / "plumed_model.ptc")
        walk = _tree_walk(SpanningTree(cvs.tree_parents.numpy()))
        plumed = _plumed_input(atom_indices, n_system_atoms, walk, k, "plumed_model.ptc", plumed_stride, plumed_format)
        atomic_write_text(staging / "plumed.dat", plumed)
        _save_exported(cvs, n_system_atoms, staging / "cvs.pt2", periodic)
        files = sorted(p.name for p in staging.iterdir())
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": 1,
            "model": {
                "path": str(model_path) if model_path else None,
                "sha256": sha256(model_path) if model_path else None,
            },
            "cvs": [
                {"name": f"cv{j + 1}", "mode": j + 1, **figures[j], "range": ranges[j], **kinetics[j]} for j in range(k)
            ],
            "ranked_by": ranked_by,
            "range_source": range_source,
            "units": {
                "positions": "nm",
                "cv": "latent position Q of the model (reduced units: sqrt(kT) ps)",
                "box": "nm, rows are the box vectors",
            },
            "system": {
                "n_atoms": n_system_atoms,
                "source": system_source if system is not None else "the system of the model's trajectories",
                "atom_indices": atom_indices,
                "atom_names": list(molecule["atom_names"]),
                "periodic": periodic,
                "periodic_because": because,
            },
            "features": {
                "plumed_model.ptc": [f"{name}.{axis}" for name in molecule["atom_names"] for axis in "xyz"],
                "order": "x, y, z of each selected atom in atom_indices order, nm "
                "(PLUMED POSITION NOPBC components after WHOLEMOLECULES)",
            },
            "plumed": {"stride": int(plumed_stride), "format": plumed_format, "build": PLUMED_BUILD},
            "files": {
                "cv<j>.pt": "TorchScript for openmm-torch TorchForce: "
                "forward(positions (N, 3) nm [, boxvectors (3, 3) nm]) -> scalar CV j; float32 or float64; "
                + (
                    "periodic: raises without boxvectors (TorchForce.setUsesPeriodicBoundaryConditions(True))"
                    if periodic
                    else "in a periodic system pass the box (TorchForce.setUsesPeriodicBoundaryConditions(True))"
                ),
                "plumed_model.ptc": "TorchScript for PLUMED PYTORCH_MODEL: float32 [1, 3 n] -> [1, k]",
                "plumed.dat": "PLUMED input defining the features, the model and a COLVAR",
                "cvs.pt2": "torch.export program: positions (batch, N, 3) nm float32, box (3, 3) nm (rows: the box "
                "vectors), molecules made whole in it -> (batch, k)"
                if periodic
                else "torch.export program: positions (batch, N, 3) nm float32 -> (batch, k); molecules must be whole",
            },
            "sha256": {name: sha256(staging / name) for name in files},
            "temperature_K": float(molecule["temperature_K"]),
        }
        write_json(staging / "manifest.json", manifest)
        for name in files:
            publish(staging / name, folder / name)
        publish(staging / "manifest.json", folder / "manifest.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def write_export_summary(folder: str | os.PathLike, seconds: dict[str, float]) -> dict[str, Any]:
    """Write ``summary.json`` of the export in ``folder``: its CVs, ranges and ranking, files and timings.

    Parameters
    ----------
    folder : path
        A folder :func:`export_cvs` wrote (its ``manifest.json`` is read).
    seconds : dict
        Timings of the run, s (e.g. ``load_model_seconds``, ``export_seconds``, ``wall_seconds``).

    Returns
    -------
    dict
        The summary: ``cvs`` (each with its range and ranking figures), ``ranked_by``,
        ``range_source``, ``model``, ``files`` (name: SHA-256, ``manifest.json`` included) and the timings.
    """
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    summary = {
        "cvs": manifest["cvs"],
        "ranked_by": manifest.get("ranked_by"),
        "range_source": manifest["range_source"],
        "model": manifest["model"],
        "files": {**manifest["sha256"], "manifest.json": sha256(folder / "manifest.json")},
        **seconds,
    }
    write_json(folder / "summary.json", summary)
    return summary
