"""load_trajectories: both readers agree, phi/psi survive alignment, momenta, lagged pairs, bad input."""

from pathlib import Path

import numpy as np
import pytest

from neuralct.data import lagged_pairs, load_trajectories
from neuralct.data.loading import kinetic_temperature, read_with_mdtraj
from neuralct.data.netcdf import TEMPERATURE_ATTRIBUTE, read_netcdf, write_netcdf
from neuralct.errors import NeuralCTError
from neuralct.md.simulate import SimulationSettings, run_simulation
from neuralct.md.systems import build_system


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    settings = SimulationSettings(length_ns=0.03, report_ps=0.1, equilibration_ps=2.0, platform="Reference", seed=5)
    run_simulation(build_system("alanine-dipeptide"), folder, settings, replicas=2, progress=False)
    return folder


def paths(folder):
    return [folder / "replica-000.nc", folder / "replica-001.nc"]


def test_mdtraj_and_mdanalysis_readers_agree(runs):
    a = load_trajectories(paths(runs), backend="mdtraj")
    b = load_trajectories(paths(runs), backend="mdanalysis")
    assert a.traj_lengths == b.traj_lengths == [300, 300]
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-5)
    np.testing.assert_allclose(a.momenta, b.momenta, atol=1e-4)
    np.testing.assert_allclose(a.time_ps, b.time_ps, atol=1e-4)
    assert a.timestep_ps == pytest.approx(0.1, abs=1e-4)
    assert [atom.element.symbol for atom in a.selection_topology.atoms].count("H") == 0
    assert a.positions.shape == (600, 10, 3) and a.masses.shape == (10,)


def test_phi_psi_of_loaded_data_equal_mdtraj(runs):
    import mdtraj as md

    data = load_trajectories(paths(runs)[0])
    raw = md.load(str(paths(runs)[0]), top=str(runs / "topology.pdb"))
    loaded = md.Trajectory(data.positions, data.selection_topology)
    for compute in (md.compute_phi, md.compute_psi):
        np.testing.assert_allclose(compute(loaded)[1], compute(raw)[1], atol=1e-4)
    assert data.rmsd.max() < 0.1


def test_recorded_momenta_are_on_step_velocities_times_masses(runs):
    data = load_trajectories(paths(runs)[0], selection="all")
    velocities = read_netcdf(paths(runs)[0]).velocities
    assert data.momenta_source == "recorded" and data.velocities_on_step
    rotated = np.einsum("fab,fib->fia", data.rotations, velocities * data.masses[:, None])
    np.testing.assert_allclose(data.momenta, rotated, atol=1e-9)


def test_velocities_not_flagged_on_step_are_used_where_at_the_bath_temperature(runs, tmp_path, capsys):
    """Another engine's velocities (no on-step flag) train as recorded, with their kinetic temperature said."""
    frames = read_netcdf(paths(runs)[0])
    frames.attributes["neuralct_velocities_on_step"] = 0
    del frames.attributes[TEMPERATURE_ATTRIBUTE]  # another engine's file records no temperature
    write_netcdf(tmp_path / "half.nc", frames)
    data = load_trajectories(tmp_path / "half.nc", topology=runs / "topology.pdb", selection="all", seed=1)
    assert data.momenta_source == "recorded" and not data.velocities_on_step
    rotated = np.einsum("fab,fib->fia", data.rotations, frames.velocities * data.masses[:, None])
    np.testing.assert_allclose(data.momenta, rotated, atol=1e-9)
    temperature = kinetic_temperature(frames.velocities, data.masses)
    # 3 degrees of freedom per atom: the 12 constrained X-H bonds take 12 of 66 (and the centre of mass 3).
    assert 0.75 < temperature / 300.0 < 0.85 and "not flagged on-step" in data.momenta_note
    assert f"{temperature:.1f} K" in data.momenta_note
    on_step = load_trajectories(paths(runs)[0], selection="all")
    assert on_step.momenta_note == "" and on_step.velocities_on_step


def test_velocities_far_from_the_bath_temperature_are_not_used(runs, tmp_path):
    """Velocities in AMBER's internal unit (20.455 times too large) or at another temperature: resampled, or refused."""
    frames = read_netcdf(paths(runs)[0])
    frames.attributes["neuralct_velocities_on_step"] = 0
    del frames.attributes[TEMPERATURE_ATTRIBUTE]  # another engine's file records no temperature
    frames.velocities = frames.velocities * 20.455
    write_netcdf(tmp_path / "scaled.nc", frames)
    data = load_trajectories(tmp_path / "scaled.nc", topology=runs / "topology.pdb", seed=1)
    assert data.momenta_source == "resampled" and "not about 300 K" in data.momenta_note
    assert data.internal_momenta().var() / data.kT == pytest.approx(1.0, rel=0.1)
    with pytest.raises(NeuralCTError, match="`momenta` 'recorded': the files' velocities give the selection a kinetic"):
        load_trajectories(tmp_path / "scaled.nc", topology=runs / "topology.pdb", momenta="recorded")
    # The same velocities at their own temperature are used: the check is against the temperature given.
    hot = load_trajectories(tmp_path / "scaled.nc", topology=runs / "topology.pdb", temperature=300.0 * 20.455**2)
    assert hot.momenta_source == "recorded"


def test_the_temperature_is_the_one_the_files_record(runs, tmp_path):
    """Trajectories of a hot run train at their own temperature; a temperature that contradicts them is refused."""
    import mdtraj as md

    from neuralct.units import kT_kj_per_mol

    assert load_trajectories(paths(runs)[0]).temperature == 300.0  # as `simulate` recorded it
    frames = read_netcdf(paths(runs)[0])
    frames.attributes[TEMPERATURE_ATTRIBUTE] = 600.0
    write_netcdf(tmp_path / "hot.nc", frames)
    hot = load_trajectories(tmp_path / "hot.nc", topology=runs / "topology.pdb")
    assert hot.temperature == 600.0 and hot.kT == pytest.approx(kT_kj_per_mol(600.0))
    assert load_trajectories(tmp_path / "hot.nc", topology=runs / "topology.pdb", temperature=600.0).temperature == 600
    with pytest.raises(
        NeuralCTError,
        match=r"hot.nc ran at 600 K, as its run recorded, not at the 300 K given; leave `temperature` out",
    ):
        load_trajectories(tmp_path / "hot.nc", topology=runs / "topology.pdb", temperature=300.0)
    with pytest.raises(
        NeuralCTError, match=r"ran at different temperatures \(.*replica-000.nc 300 K, .*hot.nc 600 K\)"
    ):
        load_trajectories([paths(runs)[0], tmp_path / "hot.nc"], topology=runs / "topology.pdb")
    # Another engine's file records none: the temperature given is taken on trust, 300 K without one.
    md.load(str(paths(runs)[0]), top=str(runs / "topology.pdb")).save_dcd(str(tmp_path / "plain.dcd"))
    plain = [tmp_path / "plain.dcd"]
    assert load_trajectories(plain, topology=runs / "topology.pdb", frame_ps=0.1).temperature == 300.0
    assert load_trajectories(plain, topology=runs / "topology.pdb", frame_ps=0.1, temperature=350.0).temperature == 350


def test_files_without_velocities_refuse_recorded_momenta(runs, tmp_path):
    import mdtraj as md

    md.load(str(paths(runs)[0]), top=str(runs / "topology.pdb")).save_xtc(str(tmp_path / "plain.xtc"))
    data = load_trajectories(tmp_path / "plain.xtc", topology=runs / "topology.pdb")
    assert data.momenta_source == "resampled" and data.momenta_note == ""
    with pytest.raises(NeuralCTError, match="needs velocities in every frame of every file; .*plain.xtc has none"):
        load_trajectories(tmp_path / "plain.xtc", topology=runs / "topology.pdb", momenta="recorded")


def test_gromacs_trr_velocities_are_read(runs, tmp_path):
    """A TRR holds velocities that MDTraj does not read; the loader reads it with MDAnalysis and uses them."""
    import MDAnalysis as mda

    source = paths(runs)[0]
    universe = mda.Universe(str(runs / "topology.pdb"), str(source))
    with mda.Writer(str(tmp_path / "run.trr"), universe.atoms.n_atoms) as writer:
        for _ in universe.trajectory:
            writer.write(universe.atoms)
    data = load_trajectories(tmp_path / "run.trr", topology=runs / "topology.pdb", selection="all")
    expected = load_trajectories(source, selection="all")
    assert data.momenta_source == "recorded" and "not flagged on-step" in data.momenta_note
    np.testing.assert_allclose(data.momenta, expected.momenta, atol=1e-3)
    assert data.timestep_ps == pytest.approx(expected.timestep_ps)


def test_stride_and_explicit_selection(runs):
    data = load_trajectories(paths(runs), stride=3, selection="resname ALA and (name N or name CA or name C)")
    assert data.traj_lengths == [100, 100]
    assert data.timestep_ps == pytest.approx(0.3, abs=1e-4)
    assert data.positions.shape[1] == 3


def test_lagged_pairs_never_cross_trajectory_boundaries():
    i, j = lagged_pairs([5, 3, 1, 4], 2)
    np.testing.assert_array_equal(i, [0, 1, 2, 5, 9, 10])
    np.testing.assert_array_equal(j - i, 2)
    traj_of = np.repeat(np.arange(4), [5, 3, 1, 4])
    assert np.all(traj_of[i] == traj_of[j])
    assert len(lagged_pairs([5, 3], 0)[0]) == 8


def test_other_formats_through_both_readers(runs, tmp_path):
    import mdtraj as md

    traj = md.load(str(paths(runs)[0]), top=str(runs / "topology.pdb"))
    traj.save_xtc(str(tmp_path / "t.xtc"))
    traj.save_dcd(str(tmp_path / "t.dcd"))
    a = load_trajectories(tmp_path / "t.xtc", topology=runs / "topology.pdb", backend="mdtraj")
    b = load_trajectories(tmp_path / "t.dcd", topology=runs / "topology.pdb", backend="mdanalysis")
    np.testing.assert_allclose(a.positions, b.positions, atol=2e-3)  # xtc stores 1e-3 nm
    assert a.momenta_source == b.momenta_source == "resampled"


def test_bad_input(runs, tmp_path):
    with pytest.raises(NeuralCTError, match="does not exist"):
        load_trajectories(tmp_path / "missing.nc")
    data = paths(runs)[0].read_bytes()
    (tmp_path / "truncated.nc").write_bytes(data[: len(data) // 2])
    with pytest.raises(NeuralCTError, match="truncated"):
        load_trajectories(tmp_path / "truncated.nc", topology=runs / "topology.pdb")
    chain = build_system("harmonic-chain")
    import io

    import openmm.app as app
    import openmm.unit as unit

    text = io.StringIO()
    app.PDBFile.writeFile(chain.topology, chain.positions * unit.nanometer, text)
    (tmp_path / "chain.pdb").write_text(text.getvalue())
    with pytest.raises(NeuralCTError, match="atoms"):
        load_trajectories(paths(runs)[0], topology=tmp_path / "chain.pdb")
    with pytest.raises(NeuralCTError, match="picks 0 atom"):
        load_trajectories(paths(runs)[0], selection="name XYZ")


def test_masses_recorded_by_simulate_win_over_the_elements(tmp_path):
    """Toy particles are argon in the topology but 1 amu in the System: training must use the System's masses."""
    from neuralct.cli import main
    from neuralct.data.netcdf import MASSES_ATTRIBUTE, read_netcdf

    free_chain = tmp_path / "chain.yaml"  # untethered: a molecule the loader takes
    free_chain.write_text("kind: harmonic-chain\ntethered: false\n")
    assert (
        main(
            [
                "simulate",
                str(free_chain),
                "--length-ns",
                "0.002",
                "--report-ps",
                "0.1",
                "--platform",
                "Reference",
                "--no-progress",
                "--output",
                str(tmp_path / "chain"),
            ]
        )
        == 0
    )
    path = tmp_path / "chain" / "replica-000.nc"
    assert read_netcdf(path).attributes[MASSES_ATTRIBUTE] == [1.0] * 32
    data = load_trajectories(path)
    assert np.array_equal(data.frame.masses.numpy(), np.ones(32))
    plain = tmp_path / "plain.dcd"
    import mdtraj

    mdtraj.load(str(path), top=str(tmp_path / "chain" / "topology.pdb")).save_dcd(str(plain))
    elements = load_trajectories(plain, topology=tmp_path / "chain" / "topology.pdb")
    assert np.allclose(elements.frame.masses.numpy(), 39.948)  # no record: the elements' masses


def test_the_recorded_masses_of_the_selected_atoms_are_theirs(runs, tmp_path):
    """Hydrogen mass repartitioning (4.032 amu per H, taken from its heavy atom) recorded in the file: the heavy
    atoms selected keep their own reduced masses, and the total mass of the molecule is the elements'."""
    from neuralct.data.netcdf import MASSES_ATTRIBUTE

    frames = read_netcdf(paths(runs)[0])
    data = load_trajectories(paths(runs)[0], selection="all")
    topology = data.topology
    masses = np.array([atom.element.mass for atom in topology.atoms])
    for a, b in topology.bonds:
        for hydrogen, heavy in ((a, b), (b, a)):
            if hydrogen.element.symbol == "H" and heavy.element.symbol != "H":
                masses[heavy.index] -= 4.032 - masses[hydrogen.index]
                masses[hydrogen.index] = 4.032
    assert masses.sum() == pytest.approx(sum(atom.element.mass for atom in topology.atoms))
    frames.attributes[MASSES_ATTRIBUTE] = masses.tolist()
    write_netcdf(tmp_path / "hmr.nc", frames)
    heavy = load_trajectories(tmp_path / "hmr.nc", topology=runs / "topology.pdb")
    assert [topology.atom(int(i)).element.symbol for i in heavy.atom_indices].count("H") == 0
    np.testing.assert_allclose(heavy.masses, masses[heavy.atom_indices], rtol=1e-6)  # stored as float32


def test_amber_velocities_in_its_internal_unit_are_read_in_nm_per_ps(tmp_path):
    """AMBER writes velocities in angstrom per 1/20.455 ps with scale_factor 20.455: 1.0 of them is 2.0455 nm/ps."""
    from scipy.io import netcdf_file

    stored = np.array([[[1.0, -2.0, 0.5], [0.0, 0.25, -1.0]]] * 3, dtype=np.float32)
    handle = netcdf_file(str(tmp_path / "amber.nc"), "w", version=2)
    handle.Conventions = "AMBER"
    handle.createDimension("frame", None)
    handle.createDimension("spatial", 3)
    handle.createDimension("atom", 2)
    handle.createVariable("time", "f4", ("frame",))[:] = [0.0, 1.0, 2.0]
    coordinates = handle.createVariable("coordinates", "f4", ("frame", "atom", "spatial"))
    coordinates[:] = np.ones((3, 2, 3), dtype=np.float32)
    velocities = handle.createVariable("velocities", "f4", ("frame", "atom", "spatial"))
    velocities.scale_factor = 20.455
    velocities[:] = stored
    handle.close()
    frames = read_netcdf(tmp_path / "amber.nc")
    np.testing.assert_allclose(frames.velocities, stored * 2.0455, rtol=1e-6)
    np.testing.assert_allclose(frames.positions, 0.1, rtol=1e-7)


@pytest.mark.parametrize("name", ["harmonic-chain", "double-well", "mueller-brown", "rotated-double-well"])
def test_the_toys_in_an_external_field_are_refused_not_aligned(name, tmp_path):
    """Aligning the particles of a toy whose potential is not rotation invariant would lose its coordinates."""
    from neuralct.data.loading import EXTERNAL_FIELD_TOYS

    md_system = build_system(name)
    residue = {r.name for r in md_system.topology.residues()}
    assert len(residue) == 1 and name in EXTERNAL_FIELD_TOYS[residue.pop()]
    out = tmp_path / name
    out.mkdir()
    run_simulation(md_system, out, SimulationSettings(length_ns=0.001, report_ps=0.1, seed=0), progress=False)
    with pytest.raises(NeuralCTError, match=f"the toy .*{name}.*, held by an external field"):
        load_trajectories([out / "replica-000.nc"])


def test_mdtraj_reads_a_netcdf_file_without_its_netcdf4_warning(alanine_model):
    import warnings

    import mdtraj

    _, paths = alanine_model
    topology = str(Path(paths[0]).parent / "topology.pdb")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = read_with_mdtraj(paths[0], topology)
    assert not [warning for warning in caught if "netCDF4" in str(warning.message)]
    np.testing.assert_array_equal(frames.xyz, mdtraj.load(paths[0], top=topology).xyz)


@pytest.mark.parametrize("suffix", ["xtc", "trr", "dcd"])
def test_a_trajectory_cut_short_is_refused_not_read_up_to_the_cut(runs, tmp_path, suffix):
    """An XTC or TRR with a damaged frame (MDAnalysis reads the frames before it), or a DCD holding fewer frames than
    its header counts."""
    import mdtraj as md

    whole = tmp_path / f"whole.{suffix}"
    md.load(str(paths(runs)[0]), top=str(runs / "topology.pdb"))[:50].save(str(whole))
    assert load_trajectories(whole, topology=runs / "topology.pdb").traj_lengths == [50]
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.53)])
    with pytest.raises(NeuralCTError, match=rf"cut\.{suffix} is damaged or truncated"):
        load_trajectories(cut, topology=runs / "topology.pdb")


def test_each_frame_of_a_trr_keeps_its_own_box(runs, tmp_path):
    """A TRR of a box that changes every frame (NPT), atoms wrapped into it: read through MDAnalysis, each frame
    is made whole in its own box (MDAnalysis refills one box array per frame), as the whole molecule is."""
    import MDAnalysis as mda
    from MDAnalysis.coordinates.TRR import TRRWriter

    source = paths(runs)[0]
    universe = mda.Universe(str(runs / "topology.pdb"), str(source))
    edges = 1.2 + 0.05 * np.arange(len(universe.trajectory))
    with TRRWriter(str(tmp_path / "npt.trr"), universe.atoms.n_atoms) as writer:
        for ts, edge in zip(universe.trajectory, edges):
            centred = universe.atoms.positions - universe.atoms.positions.mean(axis=0)
            universe.atoms.positions = np.mod(centred, 10.0 * edge)  # every atom into [0, edge) on its own
            ts.dimensions = [10.0 * edge] * 3 + [90.0] * 3
            writer.write(universe.atoms)
    data = load_trajectories(tmp_path / "npt.trr", topology=runs / "topology.pdb", selection="all")
    expected = load_trajectories(source, selection="all")
    np.testing.assert_allclose(data.positions, expected.positions, atol=1e-4)


@pytest.mark.parametrize("backend", ["mdtraj", "mdanalysis"])
def test_a_file_with_the_box_of_some_frames_only_is_one_line_naming_the_first_without(runs, tmp_path, backend):
    import mdtraj as md

    traj = md.load(str(paths(runs)[0]), top=str(runs / "topology.pdb"))[:40]
    lengths = np.full((40, 3), 2.5, dtype=np.float32)
    lengths[25:] = 0.0  # a writer without the box fills in zeros from frame 25 on
    traj.unitcell_lengths, traj.unitcell_angles = lengths, np.full((40, 3), 90.0, dtype=np.float32)
    traj.save_xtc(str(tmp_path / "part.xtc"))
    with pytest.raises(NeuralCTError, match="part.xtc: frame 25 holds no periodic box, where frame 0 holds one"):
        load_trajectories(tmp_path / "part.xtc", topology=runs / "topology.pdb", backend=backend)


def test_a_trajectory_given_twice_is_one_line_whatever_its_name(runs, tmp_path):
    copy = tmp_path / "copy.nc"
    copy.write_bytes(paths(runs)[0].read_bytes())
    for given in ([paths(runs)[0], paths(runs)[0]], [paths(runs)[0], paths(runs)[1], copy]):
        with pytest.raises(NeuralCTError, match=r"holds the same bytes as .*replica-000.nc; give each trajectory once"):
            load_trajectories(given, topology=runs / "topology.pdb")


def test_a_netcdf_cut_short_is_one_line_saying_so(runs, tmp_path):
    cut = tmp_path / "cut.nc"
    cut.write_bytes(paths(runs)[0].read_bytes()[:60000])
    with pytest.raises(NeuralCTError, match=r"cut.nc is damaged or truncated: its NetCDF header declares 300 frames"):
        load_trajectories(cut, topology=runs / "topology.pdb")
