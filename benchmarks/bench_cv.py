"""B2: are the learned CVs kinetically slow? VAMP-2 against TICA with error bars, and a toy with exact answers.

Alanine dipeptide in vacuum (6 x 2 ns, 0.5 ps frames, on-step velocities): trajectories 0-2
train, 3 validates (selects the kept state), 4-5 are the test set, which neither trains nor
selects; the reference structure is the mean of the training frames only. Five models on
the same data and settings: maximum likelihood (today's default, modes ranked by frequency),
the time-lagged objective with recorded momenta (phase-space transition density), with
resampled momenta (configuration-only lagged term), the phase-space one plus a VAMP-2
term of the two slowest latent positions (``--vamp-weight``), and the same with the VAMP-2
term averaged over several lags (``--vamp-lags-ps``; the transition density at the longest).
For each, the two slowest CVs are VAMP-2 scored against TICA (2 components) on the same internal
coordinates at lags 0.5, 1, 2, 5 ps: VAMP models fit on the training trajectories, scored on 4
contiguous blocks of each test trajectory (8 blocks; mean and standard error, and the paired
difference learned - TICA).
Also: TICA's eigenvalues with negative ones flagged, implied timescales, mutual information
of the best of the two slowest CVs with psi and phi on the test trajectories.

Reference that knows the answer: the two slowest functions of the backbone dihedrals
(TICA on a Fourier basis of (phi, psi), scored the same way). For it and for the fifth
model, the trade between slowness and information about psi along CV 1 + w psi; and a
control, a random function of a (phi, psi) grid, which carries information about psi
without being slow.

Toy: the rotated double well (6 x 5 ns, 0.5 ps frames; trajectories 0-3 train, 4 validates,
5 tests): correlation of the slowest CV with the barrier coordinate on the test trajectory,
and its fine-grid Markov-model implied timescale against the barrier coordinate's.

    python benchmarks/bench_cv.py --steps 2000 --train-lag-ps 2 --vamp-weight 100 --vamp-lags-ps 0.5 1 \\
        [--output bench_cv.json]

Simulates the trajectories into benchmarks/data/ (git-ignored) unless they are there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import neuralct  # noqa: E402
from neuralct.analysis.information import mutual_information  # noqa: E402
from neuralct.analysis.kinetics import compare_vamp2  # noqa: E402
from neuralct.data import RigidBodyFrame, load_trajectories  # noqa: E402
from neuralct.data.pairs import lag_in_frames  # noqa: E402
from neuralct.md.simulate import SimulationSettings, run_simulation  # noqa: E402
from neuralct.md.systems import build_system  # noqa: E402
from neuralct.model.molecular import internal_coordinates, project_internal  # noqa: E402
from neuralct.model.transformation import DEFAULT_ARCHITECTURE  # noqa: E402
from neuralct.toys.slow_double_well import fit_toy_trajectories, load_toy_trajectories, score_slow_coordinate  # noqa: E402
from neuralct.training.loop import TrainingSettings  # noqa: E402
from neuralct.workflows.train import fit_trajectories  # noqa: E402

LAGS_PS = (0.5, 1.0, 2.0, 5.0)
#: Lag of the toy's time-lagged models and of its Markov-model timescales.
TOY_LAG_PS = 5.0
TRAIN, VALID, TEST = [0, 1, 2], [3], [4, 5]
FOURIER_ORDER = 2
PSI_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
GRID_BINS = 24
VARIANTS = {
    "maximum likelihood (frequency order)": {"lag_ps": None, "momenta": "resample"},
    "lagged, phase space (recorded momenta)": {"lag_ps": "train", "momenta": "recorded"},
    "lagged, configuration only (resampled momenta)": {"lag_ps": "train", "momenta": "resample"},
    "lagged + VAMP-2 term (recorded momenta)": {"lag_ps": "train", "momenta": "recorded", "vamp_weight": "train"},
    "lagged + VAMP-2 term over several lags (recorded momenta)": {
        "lag_ps": "several",
        "momenta": "recorded",
        "vamp_weight": "train",
        "vamp_lags_ps": "several",
    },
}


def simulate(folder: Path, system: str, replicas: int, length_ns: float, timestep_fs: float, seed: int) -> list[Path]:
    if not sorted(folder.glob("replica-*.nc")) or not (folder / "summary.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        settings = SimulationSettings(length_ns=length_ns, timestep_fs=timestep_fs, report_ps=0.5, threads=1, seed=seed)
        run_simulation(build_system(system), folder, settings, replicas=replicas, progress=False)
    return sorted(folder.glob("replica-*.nc"))


def reframe_on_training_frames(data, n_train_frames: int) -> None:
    """Make the reference structure the mean of the training frames only (not validation, never test)."""
    frame = RigidBodyFrame(data.positions[:n_train_frames].mean(axis=0), data.masses)
    aligned, rotations, rmsd = frame.align(data.positions)
    data.positions, data.rmsd, data.frame = aligned, rmsd, frame
    data.momenta = np.einsum("fab,fib->fia", rotations, data.momenta)


def alanine(
    folder: Path,
    steps: int,
    train_lag_ps: float,
    train_vamp_weight: float,
    several_lags_ps: list[float],
    reference_lag_ps: float,
    seed: int,
) -> dict:
    import mdtraj

    paths = [str(p) for p in simulate(folder, "alanine-dipeptide", 6, 2.0, 2.0, seed=1)]
    data = load_trajectories([paths[k] for k in TRAIN + VALID], selection="heavy", momenta="auto", seed=seed)
    reframe_on_training_frames(data, sum(data.traj_lengths[: len(TRAIN)]))
    p = data.internal_momenta()
    results: dict = {
        "split": {
            "train": [paths[k] for k in TRAIN],
            "validation (selects the kept state)": [paths[k] for k in VALID],
            "test": [paths[k] for k in TEST],
        },
        "reference_structure": "mean of the aligned training frames (trajectories 0-2)",
        "recorded_momenta_kinetic_temperature_ratio": float((p**2).mean() / data.kT),
        "variants": {},
    }
    test = [mdtraj.load(paths[k], top=str(Path(paths[k]).parent / "topology.pdb")) for k in TEST]
    train_trajectories = [mdtraj.load(paths[k], top=str(Path(paths[k]).parent / "topology.pdb")) for k in TRAIN]
    angles_train, angles_test = backbone_dihedrals(train_trajectories), backbone_dihedrals(test)
    phi = np.concatenate([a for a, _ in angles_test])
    psi = np.concatenate([b for _, b in angles_test])
    for name, variant in VARIANTS.items():
        lag_ps = {"train": train_lag_ps, "several": max(several_lags_ps), None: None}[variant["lag_ps"]]
        vamp_lags_ps = several_lags_ps if variant.get("vamp_lags_ps") == "several" else None
        settings = TrainingSettings(steps=steps, batch_size=256, progress=False)
        vamp_weight = train_vamp_weight if variant.get("vamp_weight") == "train" else 0.0
        slug = name.split(" (")[0].replace(", ", "-").replace(" + ", "-").replace(" ", "-")
        lags = "" if vamp_lags_ps is None else "-" + "-".join(f"{vamp_lag_ps:g}" for vamp_lag_ps in vamp_lags_ps)
        saved = folder / "models" / f"{slug}-{steps}-{lag_ps}-{vamp_weight}{lags}-seed{seed}.pt"
        if saved.is_file():
            model = neuralct.load(saved)
            summary, wall, cpu = model.metadata["benchmark"], None, None
        else:
            start, cpu = time.perf_counter(), time.process_time()
            model, summary = fit_trajectories(
                data,
                list(DEFAULT_ARCHITECTURE),
                settings,
                validation_trajectories=len(VALID),
                momenta=variant["momenta"],
                lag_ps=lag_ps,
                vamp_weight=vamp_weight,
                vamp_lags_ps=vamp_lags_ps,
                dtype="float32",
                device="cpu",
                seed=seed,
            )
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
            summary = {
                key: summary[key]
                for key in ("kept_step", "frequencies", "relaxation_times_ps", "frictions_per_ps")
                if key in summary
            }
            model.metadata["benchmark"] = summary | {"wall_seconds": wall, "cpu_seconds": cpu}
            saved.parent.mkdir(exist_ok=True)
            model.save(saved)
        features_train = [internal_coordinates(model, t.xyz) for t in train_trajectories]
        features_test = [internal_coordinates(model, t.xyz) for t in test]
        cv_train = [project_internal(model, f, 2) for f in features_train]
        cv_test = [project_internal(model, f, 2) for f in features_test]
        cvs = np.concatenate(cv_test)
        entry = {
            "training": {
                "steps": steps,
                "kept_step": summary["kept_step"],
                "lag_ps": lag_ps,
                "momenta": variant["momenta"],
                "vamp_weight": vamp_weight,
                "vamp_lags_ps": vamp_lags_ps or ([lag_ps] if vamp_weight else None),
                "wall_seconds": summary.get("wall_seconds", wall),
                "cpu_seconds": summary.get("cpu_seconds", cpu),
            },
            "mi_psi_nats": max(mutual_information(cvs[:, k], psi) for k in range(2)),
            "mi_phi_nats": max(mutual_information(cvs[:, k], phi) for k in range(2)),
            "frequencies_two_slowest": summary["frequencies"][:2],
            "relaxation_times_ps": summary.get("relaxation_times_ps", [None] * 4)[:4],
            "frictions_per_ps": summary.get("frictions_per_ps", [None] * 4)[:4],
            "lags": {},
        }
        for lag_ps_score in LAGS_PS:
            entry["lags"][str(lag_ps_score)] = compare_vamp2(
                cv_train,
                cv_test,
                features_train,
                features_test,
                data.lag_frames(lag_ps_score),
                lag_ps_score,
                2,
                blocks_per_trajectory=4,
            )
        results["variants"][name] = entry
        print(json.dumps({name: _digest(entry)}), flush=True)
    # Every model shares the reference structure, so the internal coordinates are the same for all.
    psi_train, psi_test = [b for _, b in angles_train], [b for _, b in angles_test]
    results["dihedral_reference"] = dihedral_reference(
        angles_train, angles_test, features_train, features_test, data.timestep_ps, reference_lag_ps, seed
    )
    results["learned_with_psi"] = {
        "model": name,
        "psi_weights": psi_trade_off(
            cv_train, cv_test, psi_train, psi_test, features_train, features_test, data.timestep_ps, f"{name}, CV 1"
        ),
    }
    return results


def fourier_basis(phi: np.ndarray, psi: np.ndarray, order: int) -> np.ndarray:
    """cos and sin of ``m phi + n psi`` for every non-constant pair up to sign, ``|m|, |n| <= order``.

    Returns
    -------
    np.ndarray, shape=(n_frames, 2 ((2 order + 1)^2 - 1) / 2)
    """
    columns = []
    for m in range(-order, order + 1):
        for n in range(order + 1):
            if n > 0 or m > 0:
                angle = m * phi + n * psi
                columns += [np.cos(angle), np.sin(angle)]
    return np.stack(columns, axis=1)


def backbone_dihedrals(trajectories) -> list[tuple[np.ndarray, np.ndarray]]:
    """(phi, psi) of each trajectory in radians, each of shape (n_frames,)."""
    import mdtraj

    return [(mdtraj.compute_phi(t)[1][:, 0], mdtraj.compute_psi(t)[1][:, 0]) for t in trajectories]


def dihedral_reference(
    angles_train, angles_test, features_train, features_test, timestep_ps: float, fit_lag_ps: float, seed: int
) -> dict:
    """The slow functions of (phi, psi) themselves, and what adding psi to them costs.

    ``angles_train`` and ``angles_test`` are :func:`backbone_dihedrals` of the training and
    test trajectories. TICA on :func:`fourier_basis` of the training (phi, psi) at
    ``fit_lag_ps``; its two components of largest signed eigenvalue are the reference CVs,
    scored like the learned ones, then with psi added (:func:`psi_trade_off`). The control
    is a random function of a ``GRID_BINS`` x ``GRID_BINS`` (phi, psi) grid.
    """
    from deeptime.decomposition import TICA

    tica = (
        TICA(lagtime=lag_in_frames(fit_lag_ps, timestep_ps), scaling=None)
        .fit_from_timeseries([fourier_basis(a, b, FOURIER_ORDER) for a, b in angles_train])
        .fetch_model()
    )
    eigenvalues = np.asarray(tica.singular_values)
    slowest = np.argsort(-eigenvalues, kind="stable")[:2]
    cv_train = [tica.transform(fourier_basis(a, b, FOURIER_ORDER))[:, slowest] for a, b in angles_train]
    cv_test = [tica.transform(fourier_basis(a, b, FOURIER_ORDER))[:, slowest] for a, b in angles_test]
    results = {
        "basis": f"cos and sin of m phi + n psi, |m|, |n| <= {FOURIER_ORDER}",
        "fit_lag_ps": fit_lag_ps,
        "eigenvalues_two_slowest": eigenvalues[slowest].tolist(),
        "psi_weights": psi_trade_off(
            cv_train,
            cv_test,
            [b for _, b in angles_train],
            [b for _, b in angles_test],
            features_train,
            features_test,
            timestep_ps,
            "dihedral reference, CV 1",
        ),
    }
    psi_test = np.concatenate([b for _, b in angles_test])
    grid = np.random.default_rng(seed).normal(size=(GRID_BINS, GRID_BINS))
    phi_test = np.concatenate([a for a, _ in angles_test])
    cells = [
        np.floor((np.mod(angle + np.pi, 2 * np.pi)) / (2 * np.pi) * GRID_BINS).astype(int) % GRID_BINS
        for angle in (phi_test, psi_test)
    ]
    results["random_grid_function_mi_psi_nats"] = mutual_information(grid[cells[0], cells[1]], psi_test)
    print(
        json.dumps(
            {"random function of a (phi, psi) grid": {"mi_psi": round(results["random_grid_function_mi_psi_nats"], 3)}}
        ),
        flush=True,
    )
    return results


def psi_trade_off(
    cv_train, cv_test, psi_train, psi_test, features_train, features_test, timestep_ps: float, label: str
) -> dict:
    """CV 1 plus ``w`` times psi for each ``w`` in ``PSI_WEIGHTS``: information about psi against VAMP-2.

    CV 1 and psi (cut at its least populated 5-degree bin of the training frames, so that
    each basin is one interval) both have unit variance on the training frames; psi enters
    with the sign of CV 1's trend, so that it adds to CV 1's order instead of cancelling it.
    CV 2 is kept as it is. Scored like the learned CVs at ``LAGS_PS``.
    """
    psi_all = np.concatenate(psi_train)
    counts, edges = np.histogram(psi_all, bins=72, range=(-np.pi, np.pi))
    cut = edges[np.argmin(counts)]
    unwrapped_train = np.mod(psi_all - cut, 2 * np.pi)
    cv1_train = np.concatenate(cv_train)[:, 0]
    trend = np.sign(np.corrcoef(cv1_train, unwrapped_train)[0, 1])
    results = {"psi_cut_degrees": float(np.degrees(cut))}
    for weight in PSI_WEIGHTS:

        def with_psi(cvs, angles):
            added = [weight * trend * np.mod(angle - cut, 2 * np.pi) / unwrapped_train.std() for angle in angles]
            return [np.stack([cv[:, 0] / cv1_train.std() + extra, cv[:, 1]], axis=1) for cv, extra in zip(cvs, added)]

        mixed_train, mixed_test = with_psi(cv_train, psi_train), with_psi(cv_test, psi_test)
        both = np.concatenate(mixed_test)
        entry = {
            "mi_psi_nats_per_cv": [mutual_information(both[:, k], np.concatenate(psi_test)) for k in range(2)],
            "lags": {},
        }
        for lag_ps in LAGS_PS:
            entry["lags"][str(lag_ps)] = compare_vamp2(
                mixed_train,
                mixed_test,
                features_train,
                features_test,
                lag_in_frames(lag_ps, timestep_ps),
                lag_ps,
                2,
                blocks_per_trajectory=4,
            )
        results[str(weight)] = entry
        print(
            json.dumps(
                {
                    f"{label} + {weight} psi": {"mi_psi_per_cv": [round(v, 3) for v in entry["mi_psi_nats_per_cv"]]}
                    | _differences(entry)
                }
            ),
            flush=True,
        )
    return results


def _differences(entry: dict) -> dict:
    return {
        lag_ps: {
            key: f"{score[key]['mean']:+.3f} +- {score[key]['standard_error']:.3f}"
            for key in ("difference", "difference_slowest")
        }
        for lag_ps, score in entry["lags"].items()
    }


def _digest(entry: dict) -> dict:
    out = {"mi_psi": round(entry["mi_psi_nats"], 3), "mi_phi": round(entry["mi_phi_nats"], 3)}
    for lag_ps, score in entry["lags"].items():
        out[lag_ps] = {
            key: f"{score[key]['mean']:.3f} +- {score[key]['standard_error']:.3f}"
            for key in ("learned", "tica", "tica_slowest", "difference", "difference_slowest")
        } | {
            "tica_eigenvalues": [round(v, 3) for v in score["tica_spectrum"]["eigenvalues"][:3]],
            "tica_negative": score["tica_spectrum"]["negative"][:3],
            "learned_timescales_ps": [None if t is None else round(t, 2) for t in score["learned_timescales_ps"]],
        }
    return out


def toy(folder: Path, steps: int, seed: int) -> dict:
    simulate(folder, "rotated-double-well", 6, 5.0, 5.0, seed=3)
    data = load_toy_trajectories(folder)
    results = {
        "split": {"train": [0, 1, 2, 3], "validation": [4], "test": [5]},
        "lag_ps": TOY_LAG_PS,
        "variants": {},
    }
    settings = TrainingSettings(steps=steps, batch_size=256, validate_every=100, progress=False)
    for name, lag_ps, momenta in (
        ("maximum likelihood (frequency order)", None, "resample"),
        ("lagged, phase space (recorded momenta)", TOY_LAG_PS, "recorded"),
        ("lagged, configuration only (resampled momenta)", TOY_LAG_PS, "resample"),
    ):
        start, cpu = time.perf_counter(), time.process_time()
        model = fit_toy_trajectories(data, [0, 1, 2, 3], [4], settings, lag_ps, momenta, seed=seed)
        score = score_slow_coordinate(model, data, [5], TOY_LAG_PS)
        score.update(wall_seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu)
        if model.dynamics is not None:
            score["frictions_per_ps"] = model.frictions.detach().double().tolist()
        results["variants"][name] = score
        print(
            json.dumps(
                {
                    f"toy: {name}": {
                        key: score[key]
                        for key in ("correlation", "timescale_cv_ps", "timescale_reference_ps", "timescale_ratio")
                    }
                }
            ),
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="training steps of each alanine model")
    parser.add_argument("--toy-steps", type=int, default=600, help="training steps of each toy model")
    parser.add_argument(
        "--train-lag-ps", type=float, default=2.0, help="lag of the time-lagged objective on alanine dipeptide"
    )
    parser.add_argument(
        "--vamp-weight", type=float, default=20.0, help="weight of the VAMP-2 term of the fourth alanine model"
    )
    parser.add_argument(
        "--vamp-lags-ps",
        type=float,
        nargs="+",
        default=[0.5, 1.0],
        help="lags of the fifth alanine model's VAMP-2 term; its transition lag is the longest",
    )
    parser.add_argument(
        "--reference-lag-ps", type=float, default=1.0, help="lag of the TICA fit of the dihedral reference"
    )
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parent / "data"), help="folder of the simulated trajectories"
    )
    parser.add_argument("--skip-alanine", action="store_true")
    parser.add_argument("--skip-toy", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="write the full results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data)
    results: dict = {"threads": torch.get_num_threads()}
    if not args.skip_toy:
        results["toy"] = toy(data / "rotated-double-well", args.toy_steps, args.seed)
    if not args.skip_alanine:
        results["alanine_dipeptide"] = alanine(
            data / "alanine-dipeptide-6x2ns",
            args.steps,
            args.train_lag_ps,
            args.vamp_weight,
            args.vamp_lags_ps,
            args.reference_lag_ps,
            args.seed,
        )
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
