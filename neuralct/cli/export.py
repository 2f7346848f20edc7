"""``neuralct export``: the learned CVs as files MD engines load (openmm-torch, PLUMED, torch.export)."""

from __future__ import annotations

import argparse
import time

from .options import add_common_options, positive_int, result_settings, save_resolved_config

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "export",
        help="write the slowest learned CVs for MD engines (openmm-torch, PLUMED, torch.export)",
        description=(
            "Write the K slowest CVs of a model trained on molecular trajectories as functions of the "
            "atomic positions of the whole system (nm): cv1.pt ... cvK.pt (TorchScript for openmm-torch "
            "TorchForce, periodic boxes handled), plumed_model.ptc with a ready plumed.dat (PLUMED "
            "PYTORCH_MODEL), cvs.pt2 (torch.export) and manifest.json (units, atoms, feature order, file "
            "hashes, each CV's range on the training data and what ranks it: frequency, or relaxation time for a "
            "model trained with --lag-ps) and summary.json (the CVs, the files with hashes, timings). The model file "
            "is verified "
            "(checksums and recorded digest) before use. In Python, neuralct.export.openmm_force gives "
            "the same CV as an OpenMM force without any plugin."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="model.pt written by `neuralct train` on molecular trajectories")
    parser.add_argument(
        "--cvs", type=positive_int, default=2, help="number of CVs, slowest first (default: %(default)s)"
    )
    parser.add_argument(
        "--periodic",
        action="store_true",
        help="the CVs will run in a periodic box: cv1.pt ... cvK.pt then stop with an error when called without "
        "box vectors (openmm-torch passes them only after TorchForce.setUsesPeriodicBoundaryConditions(True)), "
        "instead of reading a molecule split across the box as it stands; on by itself for a model trained on "
        "trajectories with a periodic box and for a --system that holds water or ions",
    )
    parser.add_argument(
        "--system",
        metavar="FILE",
        help="the system the CVs will run in, as a topology or structure MDTraj reads (PDB, prmtop, psf, gro, ...; "
        "e.g. system.pdb of a `neuralct simulate` run in water) or a GROMACS .tpr, where it holds more atoms than "
        "the model's "
        "trajectories: the model's atoms are found in it (its solute, wherever it lies) and the files read them "
        "there (default: the system of the model's trajectories; cv1.pt ... and cvs.pt2 refuse positions of a "
        "system of another atom count)",
    )
    parser.add_argument(
        "--plumed-stride",
        type=positive_int,
        default=100,
        metavar="STEPS",
        help="MD steps between the lines plumed.dat prints to its COLVAR (PRINT STRIDE; default: %(default)s)",
    )
    parser.add_argument(
        "--plumed-format",
        default="%f",
        metavar="FMT",
        help="printf format of the CVs in plumed.dat's COLVAR (PRINT FMT), e.g. %%.8g or %%14.8e "
        "(default: %(default)s, PLUMED's own: 6 decimals)",
    )
    add_common_options(
        parser, output_default="runs/export", cpu_only="export runs on the CPU; the files it writes run on any device"
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Export into ``args.output`` (refused when it holds another export)."""
    from ..export import export_cvs, write_export_summary
    from ..model.transformation import load
    from .runs import RunFolder

    start = time.perf_counter()
    model = load(args.model)
    system = None if args.system is None else _system_topology(args.system)
    loaded = time.perf_counter()
    # Every file of an export is written again from the model, so a damaged one is restored.
    settings = result_settings(args, ignore=["model", "system"])
    inputs = [args.model] + ([args.system] if args.system else [])
    with RunFolder(args.output, "export", settings, inputs=inputs, overwrite=args.overwrite, rebuilt=("*",)) as folder:
        if folder.changed_outputs:
            print(folder.restored_line("the model"))
            folder.remove_outputs()
        elif folder.resuming and (folder.path / "manifest.json").exists():
            print(f"{folder.path} already holds this export")
            return 0
        exporting = time.perf_counter()
        manifest = export_cvs(
            model,
            folder.path,
            args.cvs,
            model_path=args.model,
            periodic=args.periodic,
            plumed_stride=args.plumed_stride,
            plumed_format=args.plumed_format,
            system=system,
            system_source=f"--system {args.system}",
        )
        done = time.perf_counter()
        write_export_summary(
            folder.path,
            {"load_model_seconds": loaded - start, "export_seconds": done - exporting, "wall_seconds": done - start},
        )
        save_resolved_config(args, folder.path)
    ranges = ", ".join(f"{cv['name']} [{cv['range']['min']:.3g}, {cv['range']['max']:.3g}]" for cv in manifest["cvs"])
    print(f"exported {args.cvs} CV(s) to {folder.path}: {ranges}; PLUMED input {folder.path / 'plumed.dat'}")
    if manifest["system"]["periodic"]:
        print(
            f"periodic ({'; '.join(manifest['system']['periodic_because'])}): cv1.pt ... stop without the box vectors "
            "(TorchForce.setUsesPeriodicBoundaryConditions(True)), and molecules are made whole in the box"
        )
    return 0


def _system_topology(path: str):
    """The ``mdtraj.Topology`` of ``--system`` (one-line errors)."""
    from pathlib import Path

    from ..data.loading import read_topology
    from ..errors import NeuralCTError, first_line

    if not Path(path).is_file():
        raise NeuralCTError(f"--system {path} does not exist or is not a file")
    try:
        return read_topology(path)
    except Exception as exc:  # MDTraj and MDAnalysis raise many kinds for a file they cannot read
        raise NeuralCTError(
            f"--system {path} cannot be read as a topology ({first_line(exc)}); give a PDB, prmtop, psf, gro, tpr "
            "or another topology file MDTraj reads"
        ) from None
