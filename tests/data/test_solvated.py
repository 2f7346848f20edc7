"""Solvated trajectories of other engines: the default selection is the solute's heavy atoms, with a note."""

import numpy as np
import pytest

from neuralct.cli import main
from neuralct.data import load_trajectories
from neuralct.errors import NeuralCTError

from tests.data.test_periodic import nearest_image_length
from tests.md.test_inputs import solvated_dipeptide, write_inputs

#: (trajectory suffix, topology suffix) as GROMACS, AMBER and CHARMM/NAMD users hold them.
ENGINES = [("xtc", "gro"), ("nc", "prmtop"), ("dcd", "psf")]


@pytest.fixture(scope="module")
def solvated(tmp_path_factory):
    """A solvated alanine dipeptide: its topology files and 20 jittered frames in each trajectory format."""
    import mdtraj as md
    import parmed

    folder = tmp_path_factory.mktemp("solvated")
    topology, system, positions = solvated_dipeptide()
    write_inputs(folder, topology, system, positions, "system")
    parmed.load_file(str(folder / "system.prmtop"), xyz=str(folder / "system.rst7")).save(str(folder / "system.psf"))
    first = md.load(str(folder / "system.pdb"))
    first.atom_slice(np.arange(22)).save_pdb(str(folder / "solute.pdb"))
    rng = np.random.default_rng(0)
    xyz = first.xyz + 0.005 * rng.normal(size=(20, *first.xyz.shape[1:]))
    frames = md.Trajectory(
        xyz.astype(np.float32),
        first.topology,
        time=np.arange(20) * 0.1,
        unitcell_lengths=np.repeat(first.unitcell_lengths, 20, axis=0),
        unitcell_angles=np.repeat(first.unitcell_angles, 20, axis=0),
    )
    for suffix, _ in ENGINES:
        frames.save(str(folder / f"traj.{suffix}"))
    return folder


@pytest.mark.parametrize("trajectory,topology", ENGINES)
def test_the_default_selection_is_the_heavy_atoms_of_the_solute(solvated, trajectory, topology):
    data = load_trajectories(solvated / f"traj.{trajectory}", topology=solvated / f"system.{topology}")
    assert data.atom_indices.size == 10 and {a.residue.name for a in data.selection_topology.atoms} == {
        "ACE",
        "ALA",
        "NME",
    }
    waters = sum(residue.is_water for residue in data.topology.residues)
    assert data.selection_note == (
        f"selection 'heavy': 10 of {data.topology.n_atoms} atoms in 3 residues; "
        f"left out {waters} water molecules, 2 ions, 12 other atoms"
    )


def test_a_residue_has_one_number_whatever_the_topology_file(solvated):
    """MDTraj numbers an AMBER topology's residues from 0; the PDB, GROMACS and CHARMM files written from it, and
    OpenMM's reader of it, from 1: the alanine is ALA2 in every one (its torsions phi_ALA2, psi_ALA2)."""
    numbers = {
        topology: [
            (residue.name, residue.resSeq)
            for residue in load_trajectories(
                solvated / f"traj.{trajectory}", topology=solvated / f"system.{topology}"
            ).selection_topology.residues
        ]
        for trajectory, topology in ENGINES
    }
    assert all(found == [("ACE", 1), ("ALA", 2), ("NME", 3)] for found in numbers.values()), numbers


def test_a_selection_given_keeps_its_atoms(solvated):
    data = load_trajectories(solvated / "traj.xtc", topology=solvated / "system.gro", selection="protein")
    assert (
        data.atom_indices.size == 22 and "left out" in data.selection_note and "other atoms" not in data.selection_note
    )


def test_the_solute_topology_with_a_solvated_trajectory_is_one_line(solvated, tmp_path, capsys):
    with pytest.raises(NeuralCTError, match="has 22; give the topology of the whole simulated system"):
        load_trajectories(solvated / "traj.xtc", topology=solvated / "solute.pdb")
    out = tmp_path / "model"
    args = ["train", str(solvated / "traj.dcd"), "--top", str(solvated / "solute.pdb"), "--output", str(out)]
    assert main([*args, "--steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "traj.dcd has" in err and "solute.pdb has 22" in err, err
    assert not out.exists()


def test_a_solute_trajectory_with_the_solvated_topology_is_one_line_pointing_the_other_way(solvated, tmp_path):
    import mdtraj as md

    md.load(str(solvated / "traj.dcd"), top=str(solvated / "system.pdb")).atom_slice(range(22)).save_dcd(
        str(tmp_path / "solute.dcd")
    )
    with pytest.raises(NeuralCTError, match="has 22 atoms but topology .*; give the topology of the atoms the file"):
        load_trajectories(tmp_path / "solute.dcd", topology=solvated / "system.prmtop")


def test_a_model_of_the_solvated_frames_analyzes_the_solute_saved_alone(solvated, tmp_path):
    """A model trained on whole-box frames reads its solute's frames alone (as `simulate` and `bias` save them): the
    same CVs; a solute topology whose atoms have other names is refused."""
    import mdtraj as md

    first = md.load(str(solvated / "system.pdb"))
    xyz = first.xyz + 0.005 * np.random.default_rng(1).normal(size=(60, *first.xyz.shape[1:]))
    box = {name: np.repeat(getattr(first, name), 60, axis=0) for name in ("unitcell_lengths", "unitcell_angles")}
    frames = md.Trajectory(xyz.astype(np.float32), first.topology, time=np.arange(60) * 0.1, **box)
    frames.save_netcdf(str(tmp_path / "box.nc"))
    frames.atom_slice(range(22)).save_netcdf(str(tmp_path / "solute.nc"))
    frames[0].atom_slice(range(22)).save_pdb(str(tmp_path / "solute.pdb"))

    small = ["--steps", "2", "--batch-size", "8", "--couplings", "1", "--hidden", "8", "--no-progress"]
    box_files = [str(tmp_path / "box.nc"), "--top", str(solvated / "system.prmtop")]
    assert main(["train", *box_files, *small, "--output", str(tmp_path / "model")]) == 0
    analyze = ["analyze", str(tmp_path / "model" / "model.pt"), "--no-progress", "--output"]
    assert main([*analyze, str(tmp_path / "a"), *box_files]) == 0
    solute_files = [str(tmp_path / "solute.nc"), "--top", str(tmp_path / "solute.pdb")]
    assert main([*analyze, str(tmp_path / "b"), *solute_files]) == 0
    whole, alone = np.loadtxt(tmp_path / "a" / "box.colvar"), np.loadtxt(tmp_path / "b" / "solute.colvar")
    np.testing.assert_allclose(alone, whole, rtol=0, atol=1e-9)

    renamed = frames[0].atom_slice(range(22))
    next(atom for atom in renamed.topology.atoms if atom.name == "CA").name = "CX"  # one of the model's atoms
    renamed.save_pdb(str(tmp_path / "renamed.pdb"))
    args = [*analyze, str(tmp_path / "c"), str(tmp_path / "solute.nc"), "--top", str(tmp_path / "renamed.pdb")]
    assert main(args) == 2 and not (tmp_path / "c").exists()


def test_a_model_of_a_box_whose_water_comes_first_analyzes_the_solute_saved_alone(solvated, tmp_path):
    """Some tools write the water before the solute: the solute's frames alone hold the model's atoms at their indices
    less the atoms before them, and give the CVs of the whole box's frames."""
    import mdtraj as md

    first = md.load(str(solvated / "system.pdb"))
    order = np.r_[np.arange(22, first.n_atoms), np.arange(22)]  # water and ions, then the solute
    topology = md.Topology()
    chain = topology.add_chain()
    residues = {}
    for index in order:
        atom = first.topology.atom(int(index))
        if atom.residue.index not in residues:
            residues[atom.residue.index] = topology.add_residue(atom.residue.name, chain, atom.residue.resSeq)
        topology.add_atom(atom.name, atom.element, residues[atom.residue.index])
    xyz = first.xyz[:, order] + 0.005 * np.random.default_rng(2).normal(size=(60, first.n_atoms, 3))
    box = {name: np.repeat(getattr(first, name), 60, axis=0) for name in ("unitcell_lengths", "unitcell_angles")}
    frames = md.Trajectory(xyz.astype(np.float32), topology, time=np.arange(60) * 0.1, **box)
    frames.save_netcdf(str(tmp_path / "box.nc"))
    frames[0].save_pdb(str(tmp_path / "box.pdb"))
    solute = np.arange(first.n_atoms - 22, first.n_atoms)
    frames.atom_slice(solute).save_netcdf(str(tmp_path / "solute.nc"))
    frames[0].atom_slice(solute).save_pdb(str(tmp_path / "solute.pdb"))

    small = ["--steps", "2", "--batch-size", "8", "--couplings", "1", "--hidden", "8", "--no-progress"]
    assert (
        main(["train", str(tmp_path / "box.nc"), "--top", str(tmp_path / "box.pdb"), *small, "-o", str(tmp_path / "m")])
        == 0
    )
    analyze = ["analyze", str(tmp_path / "m" / "model.pt"), "--no-progress", "--output"]
    assert main([*analyze, str(tmp_path / "a"), str(tmp_path / "box.nc"), "--top", str(tmp_path / "box.pdb")]) == 0
    assert (
        main([*analyze, str(tmp_path / "b"), str(tmp_path / "solute.nc"), "--top", str(tmp_path / "solute.pdb")]) == 0
    )
    whole, alone = np.loadtxt(tmp_path / "a" / "box.colvar"), np.loadtxt(tmp_path / "b" / "solute.colvar")
    np.testing.assert_allclose(alone, whole, rtol=0, atol=1e-9)


def test_a_gromacs_top_given_as_a_trajectorys_topology_is_one_line_naming_the_gro(solvated):
    with pytest.raises(
        NeuralCTError, match="system.top is a GROMACS topology, .*give the run input \\(.tpr\\).*or the .gro"
    ):
        load_trajectories(solvated / "traj.xtc", topology=solvated / "system.top")


@pytest.mark.parametrize("suffix", ["prmtop", "psf"])
def test_another_engines_trajectory_takes_the_masses_of_its_amber_or_charmm_topology(tmp_path, suffix):
    """Hydrogen mass repartitioning lives in the prmtop or PSF: the frames' masses are its, not the elements'."""
    import mdtraj
    import parmed
    from parmed.tools import HMassRepartition

    from tests.md.test_inputs import vacuum_dipeptide

    topology, system, positions = vacuum_dipeptide()
    structure = parmed.openmm.load_topology(topology, system, positions * 10.0)
    HMassRepartition(structure).execute()
    structure.save(str(tmp_path / f"hmr.{suffix}"))
    expected = np.array([atom.mass for atom in structure.atoms])
    assert expected[[a.element == 1 for a in structure.atoms]].min() > 2.5  # repartitioned hydrogens
    frames = positions[None] + np.random.default_rng(0).normal(scale=0.002, size=(5, *positions.shape))
    mdtraj.Trajectory(frames, mdtraj.Topology.from_openmm(topology)).save_dcd(str(tmp_path / "hmr.dcd"))
    data = load_trajectories([tmp_path / "hmr.dcd"], topology=tmp_path / f"hmr.{suffix}", selection="all")
    np.testing.assert_allclose(data.masses, expected, rtol=1e-5)  # a PSF writes 4 decimals


def test_a_gromacs_run_input_gives_the_masses_the_run_used(gromacs_run):
    """The .tpr holds the repartitioned masses: each hydrogen 3 x 1.008 amu, the molecule's total the elements'; the
    recorded velocities are weighed with them (kinetic energy per frame as the file's velocities give it)."""
    import MDAnalysis as mda

    data = load_trajectories(gromacs_run / "solute.trr", topology=gromacs_run / "solute.tpr", selection="all")
    elements = np.array([atom.element.mass for atom in data.selection_topology.atoms])
    hydrogens = np.array([atom.element.symbol == "H" for atom in data.selection_topology.atoms])
    np.testing.assert_allclose(data.masses[hydrogens], 3 * 1.008, rtol=1e-6)
    assert np.all(data.masses[~hydrogens] < elements[~hydrogens] + 0.01)  # AMBER's oxygen is 16.00
    assert data.masses.sum() == pytest.approx(elements.sum(), rel=1e-4)
    assert data.momenta_source == "recorded" and "elements' masses" not in data.momenta_note

    universe = mda.Universe(str(gromacs_run / "solute.tpr"), str(gromacs_run / "solute.trr"))
    kinetic = [
        0.5 * (universe.atoms.masses[:, None] * (universe.atoms.velocities / 10.0) ** 2).sum()
        for _ in universe.trajectory
    ]
    np.testing.assert_allclose(0.5 * (data.momenta**2 / data.masses[:, None]).sum(axis=(1, 2)), kinetic, rtol=1e-5)


def test_a_gromacs_run_read_with_its_gro_weighs_velocities_with_the_elements_and_says_so(gromacs_run):
    """A .gro holds no masses: the note names the files that do; an XTC read with the .tpr holds the TRR's frames and
    residues numbered as every other format's."""
    by_gro = load_trajectories(gromacs_run / "solute.trr", topology=gromacs_run / "solute.gro", selection="all")
    by_tpr = load_trajectories(gromacs_run / "solute.xtc", topology=gromacs_run / "solute.tpr", selection="all")
    elements = np.array([atom.element.mass for atom in by_gro.selection_topology.atoms])
    np.testing.assert_allclose(by_gro.masses, elements)
    assert "with the elements' masses" in by_gro.momenta_note and ".tpr" in by_gro.momenta_note
    assert [(r.name, r.resSeq) for r in by_tpr.selection_topology.residues] == [("ACE", 1), ("ALA", 2), ("NME", 3)]
    assert by_tpr.momenta_source == "resampled"  # an XTC holds no velocities
    recorded = load_trajectories(gromacs_run / "solute.trr", topology=gromacs_run / "solute.tpr", selection="all")
    np.testing.assert_allclose(by_tpr.positions, recorded.positions, atol=2e-3)  # the XTC's 0.001 nm precision


@pytest.mark.parametrize("box", ["box", "dodecahedron"])
def test_a_gromacs_box_with_the_solute_split_across_its_faces_gives_the_whole_solutes_frames(gromacs_run, box):
    """GROMACS frames of alanine dipeptide in TIP3P, in a cube and in a rhombic dodecahedron (a triclinic box), once
    made whole (`trjconv -pbc mol`) and once shifted and wrapped atom by atom (`trjconv -trans ... -pbc atom`, the
    solute torn across the box): one set of frames."""
    import MDAnalysis as mda

    split = mda.Universe(str(gromacs_run / f"{box}.tpr"), str(gromacs_run / f"{box}_split.xtc"))
    assert all(np.ptp(split.atoms[:22].positions, axis=0).max() > 20.0 for _ in split.trajectory)  # Angstrom: torn
    assert (split.dimensions[3:] != 90.0).any() == (box == "dodecahedron")
    whole = load_trajectories(gromacs_run / f"{box}_whole.xtc", topology=gromacs_run / f"{box}.tpr")
    wrapped = load_trajectories(gromacs_run / f"{box}_split.xtc", topology=gromacs_run / f"{box}.tpr")
    assert whole.periodic and wrapped.periodic and whole.positions.shape == wrapped.positions.shape
    assert len(whole.positions) >= 8
    np.testing.assert_allclose(wrapped.positions, whole.positions, rtol=0, atol=2e-3)  # the XTC's 0.001 nm precision


def test_a_gromacs_run_input_of_other_atoms_than_the_trajectorys_is_one_line_each_way(gromacs_run):
    with pytest.raises(
        NeuralCTError, match=r"solute.xtc has 22 atoms but topology .*box.tpr has 2284; .*convert-tpr -n"
    ):
        load_trajectories(gromacs_run / "solute.xtc", topology=gromacs_run / "box.tpr")
    with pytest.raises(NeuralCTError, match=r"box_whole.xtc has 2284 atoms but topology .*solute.tpr has 22; .*whole"):
        load_trajectories(gromacs_run / "box_whole.xtc", topology=gromacs_run / "solute.tpr")
    with pytest.raises(NeuralCTError, match="MDTraj does not read topology"):
        load_trajectories(gromacs_run / "solute.xtc", topology=gromacs_run / "solute.tpr", backend="mdtraj")


def test_the_ions_of_a_gro_file_are_told_by_their_residue_names(gromacs_run, tmp_path):
    """A .gro holds no elements and MDTraj guesses NA as nitrogen and CL as carbon: GROMACS's sodium and chloride
    (`gmx genion`) are still ions, not solute heavy atoms."""
    import mdtraj

    from neuralct.data.loading import solute_atom_indices, solute_heavy_atom_indices

    lines = (gromacs_run / "solute.gro").read_text().splitlines()
    ions = ["   23NA      NA   23   0.500   0.500   0.500", "   24CL      CL   24   2.000   2.000   2.000"]
    (tmp_path / "ions.gro").write_text("\n".join([lines[0], " 24", *lines[2:-1], *ions, lines[-1]]) + "\n")
    topology = mdtraj.load_topology(str(tmp_path / "ions.gro"))
    assert [atom.element.symbol for atom in topology.atoms][-2:] == ["N", "C"]  # the guess
    np.testing.assert_array_equal(solute_atom_indices(topology), np.arange(22))
    assert len(solute_heavy_atom_indices(topology)) == 10


@pytest.mark.parametrize("topology", ["vacuum.tpr", "solute.gro"])
def test_a_trr_with_frames_of_velocities_only_is_one_line_not_frames_at_the_origin(gromacs_run, topology):
    """GROMACS writes a TRR frame whenever positions, velocities or forces are due: with `nstvout` below `nstxout`
    some frames hold no positions, of which MDTraj makes frames of whatever its buffer held."""
    import mdtraj

    read = mdtraj.load(str(gromacs_run / "positions_every_other_frame.trr"), top=str(gromacs_run / "solute.gro"))
    assert len(read) == 11  # MDTraj counts the frames of velocities alone, with positions from its buffer
    message = r"positions_every_other_frame.trr: 5 of 11 frames hold no positions \(first: frame 1\)"
    for backend in ("auto", "mdtraj") if topology.endswith(".gro") else ("auto",):
        with pytest.raises(NeuralCTError, match=message):
            load_trajectories(
                gromacs_run / "positions_every_other_frame.trr", topology=gromacs_run / topology, backend=backend
            )


def test_a_water_far_from_the_solute_in_a_gromacs_dodecahedron_keeps_its_place_through_the_run_input(gromacs_run):
    """The solute's heavy atoms and a water oxygen 1.8-2.0 nm from its first atom (beyond half the box's narrowest
    width, 1.02 nm), read with the .tpr from GROMACS's whole and torn frames: the run input's bonds make the water a
    molecule of its own, placed at the image nearest the solute, so both files give one geometry."""
    from neuralct.data.periodic import box_vectors, half_narrowest_width, molecules_of, reduced_box

    selection = "(resname ACE ALA NME and not element H) or index 412"
    frames = {
        name: load_trajectories(
            gromacs_run / f"dodecahedron_{name}.xtc", topology=gromacs_run / "dodecahedron.tpr", selection=selection
        )
        for name in ("whole", "split")
    }
    whole, split = (frames[name].positions - frames[name].positions[:, :1] for name in ("whole", "split"))
    np.testing.assert_allclose(split, whole, atol=3e-3)  # two XTC roundings of 0.001 nm
    # The water's distance from the first atom is its nearest image's in each frame as GROMACS wrote it.
    import MDAnalysis as mda

    universe = mda.Universe(str(gromacs_run / "dodecahedron.tpr"), str(gromacs_run / "dodecahedron_split.xtc"))
    first = frames["whole"].atom_indices[0]
    nearest = []
    for _ in universe.trajectory:
        box = reduced_box(box_vectors(universe.dimensions[:3] / 10.0, universe.dimensions[3:]))
        nearest.append(nearest_image_length((universe.atoms[412].position - universe.atoms[first].position) / 10, box))
    water = np.linalg.norm(whole[:, -1], axis=-1)
    np.testing.assert_allclose(water, nearest, atol=3e-3)
    assert water.min() > half_narrowest_width(box) + 0.4
    assert frames["whole"].topology.n_bonds == 21 + 2 * 535  # the solute's and 2 in each water (SETTLE's O-H)
    assert molecules_of(frames["whole"].topology, frames["whole"].atom_indices) == [0] * 10 + [1]


def test_an_xtc_whose_atom_count_changes_halfway_is_one_line(gromacs_run, tmp_path):
    """The solute's frames and then the whole box's in one file (`cat` of two parts): the reader would write the
    box's frames into a buffer for the solute's atoms."""
    joined = tmp_path / "joined.xtc"
    joined.write_bytes((gromacs_run / "solute.xtc").read_bytes() + (gromacs_run / "box_whole.xtc").read_bytes())
    message = r"joined.xtc: frame 41 holds 2284 atoms where the frames before it hold 22; a trajectory file holds one"
    for topology in ("solute.tpr", "solute.gro"):
        with pytest.raises(NeuralCTError, match=message):
            load_trajectories(joined, topology=gromacs_run / topology)


def test_a_trr_with_velocities_in_some_frames_only_resamples_the_momenta_and_says_why(gromacs_run):
    """`nstvout` above `nstxout`: 6 of 11 frames hold velocities. Momenta are drawn, with a note; asked to use the
    recorded ones, the refusal says which file has them in some frames only."""
    path = gromacs_run / "velocities_every_other_frame.trr"
    data = load_trajectories(path, topology=gromacs_run / "vacuum.tpr", selection="all")
    assert data.momenta_source == "resampled"
    assert data.momenta_note == (
        f"{path} holds velocities in 6 of 11 frames (written less often than positions): momenta drawn from "
        "Maxwell-Boltzmann"
    )
    with pytest.raises(NeuralCTError, match="velocities_every_other_frame.trr has them in some frames only"):
        load_trajectories(path, topology=gromacs_run / "vacuum.tpr", selection="all", momenta="recorded")


def test_a_model_of_the_solute_exports_into_its_box_given_by_the_gromacs_run_input(gromacs_run, tmp_path):
    """`export --system box.tpr`: the .tpr read as `train --top` reads it, the model's atoms found as its solute."""
    import json

    small = ["--steps", "2", "--batch-size", "8", "--couplings", "1", "--hidden", "8", "--no-progress"]
    trajectories = [str(gromacs_run / "solute.xtc"), str(gromacs_run / "solute.trr")]
    assert (
        main(["train", *trajectories, "--top", str(gromacs_run / "solute.tpr"), *small, "-o", str(tmp_path / "m")]) == 0
    )
    export = ["export", str(tmp_path / "m" / "model.pt"), "--system", str(gromacs_run / "box.tpr")]
    assert main([*export, "--output", str(tmp_path / "x")]) == 0
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["system"]["n_atoms"] == 2284


def test_a_gro_trajectory_read_with_a_run_input_is_refused_not_cut_to_its_first_frame(gromacs_run, tmp_path):
    """MDAnalysis, which alone reads a .tpr, reads the first frame of a .gro of several; MDTraj reads them all."""
    text = (gromacs_run / "solute.gro").read_text()
    (tmp_path / "frames.gro").write_text(text * 3)
    with pytest.raises(NeuralCTError, match=r"frames.gro holds 3 frames, of which its reader read 1: MDAnalysis"):
        load_trajectories(tmp_path / "frames.gro", topology=gromacs_run / "solute.tpr", selection="all")
    read = load_trajectories(tmp_path / "frames.gro", topology=gromacs_run / "solute.gro", selection="all")
    assert len(read.positions) == 3


def test_a_damaged_run_input_is_named_as_the_file_at_fault(gromacs_run, tmp_path):
    (tmp_path / "cut.tpr").write_bytes((gromacs_run / "solute.tpr").read_bytes()[:3000])
    with pytest.raises(
        NeuralCTError, match=r"^cannot read the masses of GROMACS run-input topology .*cut.tpr: .*damaged"
    ):
        load_trajectories(gromacs_run / "solute.xtc", topology=tmp_path / "cut.tpr")


@pytest.mark.parametrize("suffix", ["xtc", "trr"])
def test_a_gromacs_file_cut_short_is_refused_with_its_run_input(gromacs_run, tmp_path, suffix):
    """GROMACS's XTC and TRR cut within a frame: MDAnalysis, the one reader of a .tpr, reads the whole frames before
    the cut (21 of the XTC's 41), so the file's frame sizes are checked against its length."""
    import MDAnalysis as mda

    cut = tmp_path / f"cut.{suffix}"
    whole = (gromacs_run / f"solute.{suffix}").read_bytes()
    frame = len(whole) // 41
    # Cut within a frame's coordinates, and within a frame's header (the reader's index then ends before it).
    for length in (int(len(whole) * 0.53), 20 * frame + 40):
        cut.write_bytes(whole[:length])
        assert 0 < len(mda.Universe(str(gromacs_run / "solute.tpr"), str(cut)).trajectory) < 41
        for topology in ("solute.tpr", "solute.gro"):
            with pytest.raises(NeuralCTError, match=rf"cut\.{suffix} is damaged or truncated"):
                load_trajectories(cut, topology=gromacs_run / topology, selection="all")
    assert load_trajectories(gromacs_run / f"solute.{suffix}", topology=gromacs_run / "solute.tpr").traj_lengths == [41]
