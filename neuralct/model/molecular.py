"""Models of molecules: from atomic positions (nm) to internal coordinates and to the learned CVs."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data.names import standard_atom_label
from ..errors import NeuralCTError
from .transformation import NeuralCanonicalTransformation

__all__ = [
    "molecule_metadata",
    "rigid_body_frame",
    "check_topology",
    "selected_atoms_in",
    "solvent_kind",
    "check_training_solvent",
    "training_forcefield_note",
    "system_atoms",
    "placed_molecules",
    "internal_coordinates",
    "project_internal",
    "project_positions",
    "is_molecular",
    "molecule_atoms",
    "latent_ranges",
]


def molecule_metadata(data, selection: str) -> dict[str, Any]:
    """What a model must remember about the molecule it was trained on (plain data and tensors).

    Parameters
    ----------
    data : neuralct.data.PhaseSpaceData
        The training data (its selection, topology and rigid-body frame).
    selection : str
        The atom selection as the user gave it.
    """
    from ..data.periodic import molecules_of

    topology = data.topology
    return {
        "kind": "molecule",
        "n_atoms": int(topology.n_atoms),
        "selection": str(selection),
        "atom_indices": [int(i) for i in data.atom_indices],
        "atom_names": [f"{topology.atom(int(i)).residue.name}:{topology.atom(int(i)).name}" for i in data.atom_indices],
        "temperature_K": float(data.temperature),
        "frame": data.frame.state_dict(),
        "periodic": bool(data.periodic),
        # Which molecule each selected atom belongs to: the exported CVs place molecules as the loader does.
        "molecules": molecules_of(topology, data.atom_indices),
    }


def is_molecular(model: NeuralCanonicalTransformation) -> bool:
    """Whether ``model`` was trained on molecular trajectories (and knows its atoms)."""
    return model.metadata.get("molecule", {}).get("kind") == "molecule"


def molecule_description(model: NeuralCanonicalTransformation) -> dict[str, Any]:
    """The molecule a model was trained on (written by :func:`molecule_metadata`): atoms, masses, frame, selection."""
    if not is_molecular(model):
        raise NeuralCTError(
            "this model was not trained on molecular trajectories (it has no atom selection); "
            "train one with `neuralct train TRAJ...`"
        )
    return model.metadata["molecule"]


def rigid_body_frame(model: NeuralCanonicalTransformation):
    """The :class:`~neuralct.data.RigidBodyFrame` stored in a molecular model."""
    from ..data import RigidBodyFrame

    return RigidBodyFrame.from_state(molecule_description(model)["frame"])


def check_topology(model: NeuralCanonicalTransformation, topology, source: str) -> None:
    """Raise a one-line error unless ``topology`` (mdtraj) has the atoms the model was trained on."""
    molecule = molecule_description(model)
    if topology.n_atoms != molecule["n_atoms"]:
        larger = (
            "; a model of frames of a larger system (a solvated run's whole box) is trained again on frames of this "
            "system alone (the solute's, e.g. `gmx trjconv -n` or `neuralct simulate`, which writes the solute)"
            if molecule["n_atoms"] > topology.n_atoms
            else ""
        )
        raise NeuralCTError(
            f"{source} has {topology.n_atoms} atoms but the model was trained on a system of {molecule['n_atoms']}; "
            f"use trajectories of the same system{larger}"
        )
    _check_names(molecule, topology, np.arange(topology.n_atoms), source)


def selected_atoms_in(model: NeuralCanonicalTransformation, topology, source: str) -> np.ndarray:
    """Where the atoms the model's CVs read are in a trajectory's topology (mdtraj), for ``analyze``.

    The trajectory may be of the model's system, of a larger one holding it as its solute (a
    solute-only model's molecule in its water box, :func:`system_atoms`), or of a part of the
    model's system (the solute that ``neuralct simulate`` or ``bias`` saves of a solvated system,
    modelled from the whole system's frames). A part holds the selected atoms at their indices
    (the system's first atoms), else at their indices less the atoms before it (a box whose water
    comes first): the one shift at which every selected atom has the model's name. Names are
    checked in every case.

    Returns
    -------
    np.ndarray, shape=(n_selected,)
        The index in ``topology`` of each of the model's selected atoms (``atom_indices`` order).

    Raises
    ------
    NeuralCTError
        If the topology is none of these, or an atom has another name than the model's.
    """
    molecule = molecule_description(model)
    selected = np.asarray(molecule["atom_indices"], dtype=np.int64)
    if topology.n_atoms >= molecule["n_atoms"]:
        return molecule_atoms(molecule, topology, source)[selected]
    shifts = _shifts_to_part(molecule, topology)
    if 0 in shifts or len(shifts) == 1:
        return selected - min(shifts)
    if len(shifts) > 1:
        raise NeuralCTError(
            f"{source} holds the model's atoms at {len(shifts)} places (from its atoms {shifts[0]} and {shifts[1]} "
            "on); give a trajectory that holds them once"
        )
    if selected.max() >= topology.n_atoms:
        return molecule_atoms(molecule, topology, source)[selected]  # refused, naming the atom counts
    _check_names(molecule, topology, np.arange(topology.n_atoms), source)  # refused, naming the first other atom
    return selected


def _shifts_to_part(molecule: dict[str, Any], topology) -> list[int]:
    """Every ``shift`` at which ``topology`` (a part of the model's system) holds each selected atom at its index less
    ``shift`` under the model's name (standard names, :func:`~neuralct.data.names.standard_atom_label`)."""
    selected = np.asarray(molecule["atom_indices"], dtype=np.int64)
    wanted = [standard_atom_label(name) for name in molecule["atom_names"]]
    labels = [standard_atom_label(f"{atom.residue.name}:{atom.name}") for atom in topology.atoms]
    shifts = []
    for shift in range(max(0, int(selected.max()) - topology.n_atoms + 1), int(selected.min()) + 1):
        if labels[selected[0] - shift] == wanted[0] and all(
            labels[index - shift] == name for index, name in zip(selected, wanted)
        ):
            shifts.append(shift)
    return shifts


def solvent_kind(solvent: str | None) -> str | None:
    """A system's kind of solvent: vacuum, implicit (OBC2, or another generalized Born model of a system prepared
    elsewhere) or explicit water (any model); None where not known."""
    if not isinstance(solvent, str):
        return None
    if solvent.lower().startswith("implicit"):
        return f"implicit solvent ({solvent.split('(', 1)[-1].rstrip(')')})"
    return {"vacuum": "vacuum", "obc2": "implicit solvent (OBC2)"}.get(solvent.lower(), "explicit water")


def check_training_solvent(model: NeuralCanonicalTransformation, settings: dict[str, Any], source: str) -> None:
    """Refuse a system of another kind of solvent than the one the model's training frames were simulated in.

    ``train`` records the kind (:func:`solvent_kind`) where every training trajectory's ``neuralct
    simulate`` summary names it (``training_solvent``); a system whose settings name another is
    refused: a model of frames in water biased or sampled in vacuum runs, and gives numbers of
    another system.

    Raises
    ------
    NeuralCTError
        If both are known and differ.
    """
    trained = model.metadata.get("molecule", {}).get("training_solvent")
    here = solvent_kind(settings.get("solvent"))
    if trained is not None and here is not None and trained != here:
        raise NeuralCTError(
            f"{source} is in {here}, but the model was trained on frames simulated in {trained} (as their "
            "`neuralct simulate` run recorded); build the system as it was simulated (e.g. the same `solvent`)"
        )


def training_forcefield_note(model: NeuralCanonicalTransformation, settings: dict[str, Any], source: str) -> str | None:
    """A line where ``settings`` (an MD system's) name other force-field files than the model's training runs did
    (``training_forcefield``, recorded where every run names the same); None where they agree or either is unknown."""
    trained = model.metadata.get("molecule", {}).get("training_forcefield")
    here = settings.get("forcefield")
    if not isinstance(trained, list) or not isinstance(here, list) or trained == here:
        return None
    return (
        f"{source} is built with {' '.join(here)}, the model's training frames were simulated with "
        f"{' '.join(trained)}: the samples are of {source} (the model only proposes moves, which fit it less well)"
    )


def system_atoms(model: NeuralCanonicalTransformation, topology, source: str) -> np.ndarray:
    """Where the atoms of the model's trajectories are in a system that may hold more: the solute in its water box.

    A model trained on the solute's frames alone (what ``neuralct simulate`` records in explicit
    water) is biased or exported into the whole box; there its atoms are the system's solute (every
    atom but water and monatomic ions, :func:`neuralct.data.loading.solute_atom_indices`).

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        A molecular model.
    topology : mdtraj.Topology
        The system's topology.
    source : str
        How an error names the system.

    Returns
    -------
    np.ndarray, shape=(n_atoms,)
        For each atom of the model's trajectories (``molecule_description(model)["n_atoms"]`` of them), its
        index in ``topology``: the identity for the same system, the solute's atoms for a larger one.

    Raises
    ------
    NeuralCTError
        If neither the system nor its solute has the model's atom count, or the model's atoms have other names.
    """
    return molecule_atoms(molecule_description(model), topology, source)


def molecule_atoms(
    molecule: dict[str, Any], topology, source: str, trained_on: str = "the model was trained on"
) -> np.ndarray:
    """:func:`system_atoms` for a molecule description (``n_atoms``, ``atom_indices``, ``atom_names``).

    Given :func:`molecule_metadata` of training data, it checks before any training that a model of
    those data can be biased in the system of ``topology``; ``trained_on`` then names the data in
    the errors (e.g. "the data are of").
    """
    from ..data.loading import solute_atom_indices

    if topology.n_atoms == molecule["n_atoms"]:
        atoms = np.arange(topology.n_atoms)
    else:
        atoms = solute_atom_indices(topology)
        if len(atoms) != molecule["n_atoms"]:
            solute = "" if len(atoms) == topology.n_atoms else f", and {len(atoms)} besides water and ions"
            raise NeuralCTError(
                f"{source} has {topology.n_atoms} atoms but {trained_on} a system of "
                f"{molecule['n_atoms']}{solute}; use that system"
            )
    _check_names(molecule, topology, atoms, source, trained_on)
    return atoms


def _check_names(
    molecule: dict[str, Any], topology, atoms: np.ndarray, source: str, trained_on: str = "the model was trained on"
) -> None:
    """Raise a one-line error unless the model's atoms, found at ``atoms`` of ``topology``, have the model's names."""
    found = [int(atoms[i]) for i in molecule["atom_indices"]]
    names = [f"{topology.atom(i).residue.name}:{topology.atom(i).name}" for i in found]
    differing = [
        k
        for k, (name, wanted) in enumerate(zip(names, molecule["atom_names"]))
        if standard_atom_label(name) != standard_atom_label(wanted)
    ]
    if differing:
        first = differing[0]
        raise NeuralCTError(
            f"{source}: atom {found[first]} is {names[first]} where {trained_on} a system with "
            f"{molecule['atom_names'][first]}; use that system"
        )


def placed_molecules(model: NeuralCanonicalTransformation, data, atoms: np.ndarray) -> np.ndarray:
    """The model's atoms of loaded frames, its molecules placed relative to each other as its exported CVs place them.

    The loader makes each molecule whole, and places a further molecule at the image nearest the
    first atom it was asked to load; the frames of the whole system (``analyze``) place them
    nearest the system's first atom, where the model's CVs (:func:`neuralct.data.periodic.model_tree`)
    and its training frames place each further molecule of the model nearest the model's first
    atom. Which image of a molecule far from it is nearest differs between the two.

    Parameters
    ----------
    data : neuralct.data.PhaseSpaceData
        Frames of a system that holds the model's atoms (aligned, with their box vectors).
    atoms : np.ndarray, shape=(n_selected,)
        Where the model's atoms are in ``data.positions``, in the model's order.

    Returns
    -------
    np.ndarray, shape=(n_frames, n_selected, 3)
        The model's atoms, nm (in the files' axes, up to a translation, where molecules were
        placed; :func:`internal_coordinates` aligns them).
    """
    from ..data.periodic import make_whole, model_tree

    positions = data.positions[:, atoms]
    molecules = molecule_description(model).get("molecules")
    if data.box_vectors is None or molecules is None or len(set(molecules)) < 2:
        return positions
    boxed = np.isfinite(data.box_vectors).all(axis=(1, 2))
    placed = positions @ data.rotations  # in the files' axes, which the box vectors' reduced form needs
    tree = model_tree(rigid_body_frame(model).reference.numpy(), molecules)
    placed[boxed] = make_whole(placed[boxed], data.box_vectors[boxed], tree)
    return placed


def internal_coordinates(
    model: NeuralCanonicalTransformation, positions: np.ndarray, atoms: np.ndarray | None = None
) -> np.ndarray:
    """The model's input features of frames of the full system.

    Parameters
    ----------
    positions : np.ndarray, shape=(n_frames, n_atoms, 3)
        All atoms of the system, nm (any orientation: frames are aligned here).
    atoms : np.ndarray, shape=(n_selected,), optional
        Where the model's selected atoms are in ``positions`` (:func:`selected_atoms_in`); default
        their indices in the model's system.

    Returns
    -------
    np.ndarray, shape=(n_frames, 3 n_selected - 6)
        Internal coordinates of the selected atoms, sqrt(amu) nm.
    """
    atoms = molecule_description(model)["atom_indices"] if atoms is None else atoms
    return rigid_body_frame(model).to_internal(np.asarray(positions)[:, atoms])


def project_internal(
    model: NeuralCanonicalTransformation, y: np.ndarray, k: int | None = None, chunk: int = 8192
) -> np.ndarray:
    """The ``k`` slowest CVs of internal coordinates ``y`` (n_frames, dim); shape (n_frames, k).

    For a flow of point transformations (the default) the CVs are functions of the
    configuration. A flow with momentum-mixing layers (general linear or continuous)
    has latent positions ``Q(q, p)``; its CVs are taken at ``p = 0``, the most probable
    momentum, which makes them functions of the configuration too.
    """
    parameter = next(model.parameters())
    out = []
    for start in range(0, len(y), chunk):
        block = torch.as_tensor(y[start : start + chunk], dtype=parameter.dtype, device=parameter.device)
        with torch.no_grad():
            out.append(model.cv(block, k, p=torch.zeros_like(block)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, k or model.dim))


def project_positions(model: NeuralCanonicalTransformation, positions: np.ndarray, k: int | None = None) -> np.ndarray:
    """The ``k`` slowest CVs of frames of the full system (see :func:`project_internal`).

    Parameters
    ----------
    positions : np.ndarray, shape=(n_frames, n_atoms, 3)
        All atoms of the system, nm (any orientation: frames are aligned here).
    k : int, optional
        Number of modes (default: all).

    Returns
    -------
    np.ndarray, shape=(n_frames, k)
        Latent positions ``Q``, slowest mode first.
    """
    return project_internal(model, internal_coordinates(model, positions), k)


def latent_ranges(model: NeuralCanonicalTransformation, y: np.ndarray | torch.Tensor) -> list[dict[str, float]]:
    """Range of every latent position on frames ``y`` (n_frames, dim), slowest mode first.

    Stored in the model at training time (``metadata["cv_ranges"]``) so that an exported CV
    knows where its data lay (grid bounds of a bias).

    Returns
    -------
    list of dict
        Per mode: ``min``, ``max``, ``p01`` and ``p99`` (1st and 99th percentiles).
    """
    Q = project_internal(model, np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else y))
    low, high = np.percentile(Q, [1, 99], axis=0)
    return [
        {"min": float(a), "max": float(b), "p01": float(c), "p99": float(d)}
        for a, b, c, d in zip(Q.min(0), Q.max(0), low, high)
    ]
