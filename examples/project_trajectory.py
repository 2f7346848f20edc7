"""Project a trajectory onto a trained model's slow collective variables, with the Python API.

Reads a trajectory with MDTraj, turns its positions (nm) into the model's CVs with
`neuralct.model.molecular.project_positions` (alignment, internal coordinates and flow in one
call), writes them as a PLUMED COLVAR file, and prints how each CV relates to the backbone
dihedrals phi and psi (circular correlation and mutual information, as `neuralct analyze` does).

    neuralct quickstart       # once: trains runs/quickstart/model/model.pt on alanine dipeptide
    python examples/project_trajectory.py
    python examples/project_trajectory.py MODEL.pt TRAJ.nc --top topology.pdb --cvs 3 --colvar cvs.colvar

By default it projects the quickstart's held-out trajectory, which the model never saw.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import mdtraj

import neuralct
from neuralct.analysis import circular_correlation, mutual_information, write_colvar
from neuralct.model.molecular import project_positions

QUICKSTART = Path("runs/quickstart")
# MDTraj reads NetCDF through scipy when netCDF4 is not installed, and says so on every load.
warnings.filterwarnings("ignore", message=".*netCDF4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=QUICKSTART / "model" / "model.pt")
    parser.add_argument("trajectory", nargs="?", type=Path, default=QUICKSTART / "trajectories" / "replica-003.nc")
    parser.add_argument("--top", type=Path, help="topology (default: topology.pdb beside the trajectory)")
    parser.add_argument("--cvs", type=int, default=2, help="slowest CVs to compute (default: %(default)s)")
    parser.add_argument("--colvar", type=Path, default=Path("cvs.colvar"), help="output (default: %(default)s)")
    args = parser.parse_args()
    if not args.model.exists():
        raise SystemExit(f"{args.model} not found: run `neuralct quickstart` first, or name a model and a trajectory")

    model = neuralct.load(args.model)
    trajectory = mdtraj.load(str(args.trajectory), top=str(args.top or args.trajectory.parent / "topology.pdb"))
    cvs = project_positions(model, trajectory.xyz, k=args.cvs)  # (frames, cvs), slowest first
    write_colvar(args.colvar, trajectory.time, cvs)
    print(f"{trajectory.n_frames} frames of {trajectory.n_atoms} atoms -> {args.colvar}")

    _, phi = mdtraj.compute_phi(trajectory)
    _, psi = mdtraj.compute_psi(trajectory)
    print("CV   mean     std    R(phi)  R(psi)  MI(phi)  MI(psi), nats")
    for j, cv in enumerate(cvs.T, start=1):
        dependence = [f(cv, angle[:, 0]) for f in (circular_correlation, mutual_information) for angle in (phi, psi)]
        print(f"cv{j}  {cv.mean():+.3f}  {cv.std():.3f}  " + "  ".join(f"{value:6.3f}" for value in dependence))


if __name__ == "__main__":
    main()
