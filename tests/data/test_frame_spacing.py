"""Frame spacing from time stamps: float32 stamps, other formats, no stamps, uneven frames; lags in frames."""

import warnings

import numpy as np
import pytest

from neuralct.data import load_trajectories
from neuralct.data.loading import frame_spacing
from neuralct.data.netcdf import NetCDFFrames, write_netcdf
from neuralct.data.pairs import lag_in_frames
from neuralct.errors import NeuralCTError

N_ATOMS = 4


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    import mdtraj

    top = mdtraj.Topology()
    residue = top.add_residue("MOL", top.add_chain())
    for k in range(N_ATOMS):
        top.add_atom(f"C{k}", mdtraj.element.carbon, residue)
    path = tmp_path_factory.mktemp("top") / "topology.pdb"
    mdtraj.Trajectory(np.random.default_rng(0).normal(size=(1, N_ATOMS, 3)), top).save_pdb(str(path))
    return path


def write(folder, topology, time_ps, name="traj.nc"):
    """A NetCDF file as `neuralct simulate` and `neuralct bias` write it (float32 time stamps), topology.pdb beside."""
    folder.mkdir(exist_ok=True)
    (folder / "topology.pdb").write_bytes(topology.read_bytes())
    positions = np.random.default_rng(1).normal(scale=0.3, size=(len(time_ps), N_ATOMS, 3))
    write_netcdf(folder / name, NetCDFFrames(positions, None, np.asarray(time_ps, dtype=np.float64), {}))
    return folder / name


@pytest.mark.parametrize("report_ps", [0.1, 0.3, 0.7, 0.4, 0.002])
def test_float32_time_stamps_give_the_report_interval_and_every_multiple_of_it(tmp_path, topology, report_ps):
    # 3000 frames: past 100 ps one float32 interval is off by up to 1e-5 ps, and their median with it.
    n = 3000
    stamps = np.arange(1, n + 1) * report_ps
    assert (
        abs(np.median(np.diff(stamps.astype(np.float32).astype(np.float64))) - report_ps) > 1e-7 * report_ps
        or report_ps == 0.002
    )
    data = load_trajectories(write(tmp_path, topology, stamps), selection="all")
    assert data.timestep_ps == report_ps and data.timestep_note is None
    np.testing.assert_allclose(
        data.time_ps, stamps, rtol=1e-12
    )  # the decimals the writer had, not their float32 roundings
    for frames in (1, 3, 5, 7, 10, 2999):
        assert data.lag_frames(float(f"{frames * report_ps:.12g}")) == frames
    with pytest.raises(NeuralCTError, match=r"--rank-lag-ps .* is not a whole multiple"):
        data.lag_frames(2.5 * report_ps, "--rank-lag-ps")


def test_stride_and_several_trajectories_share_one_spacing(tmp_path, topology):
    first = write(tmp_path / "a", topology, np.arange(1, 1201) * 0.1)
    second = write(
        tmp_path / "b", topology, 500.0 + np.arange(1, 301) * 0.1
    )  # a later part: larger stamps, coarser float32
    data = load_trajectories([first, second], selection="all", stride=3)
    assert data.traj_lengths == [400, 100]
    assert data.timestep_ps == 0.3 and data.lag_frames(0.9) == 3


def test_uneven_frames_and_mixed_spacings_are_refused_when_a_lag_is_asked(tmp_path, topology):
    stamps = np.arange(1, 2001) * 0.1
    gap = write(tmp_path / "gap", topology, np.concatenate([stamps[:1000], stamps[1001:]]))
    data = load_trajectories(gap, selection="all")
    assert data.timestep_ps is None and "frame 1000 comes 0.2 ps after frame 999" in data.timestep_note
    with pytest.raises(NeuralCTError, match="--lag-ps needs the time between frames: in .* evenly spaced"):
        data.lag_frames(1.0)
    # A frame 1e-3 ps late is not float32 rounding (the stamps resolve 1.5e-5 ps at 200 ps).
    late = stamps.copy()
    late[1500] += 1e-3
    assert load_trajectories(write(tmp_path / "late", topology, late), selection="all").timestep_ps is None
    coarse = write(tmp_path / "coarse", topology, np.arange(1, 1001) * 0.2)
    mixed = load_trajectories([write(tmp_path / "fine", topology, stamps), coarse], selection="all")
    assert mixed.timestep_ps is None and "one frame spacing" in mixed.timestep_note


@pytest.mark.filterwarnings("ignore:.*netCDF4")
def test_other_formats_float32_stamps_none_and_a_given_spacing(tmp_path, topology):
    import mdtraj

    stamps = np.arange(1, 2001) * 0.7
    traj = mdtraj.load(str(write(tmp_path, topology, stamps)), top=str(topology))
    traj.save_xtc(str(tmp_path / "t.xtc"))
    traj.save_trr(str(tmp_path / "t.trr"))
    traj.save_dcd(str(tmp_path / "t.dcd"))
    for name in ("t.xtc", "t.trr"):
        data = load_trajectories(tmp_path / name, topology=topology, selection="all")
        assert data.timestep_ps == 0.7 and data.lag_frames(2.1) == 3, name
    # MDTraj reads no time from DCD (it numbers the frames): a lag in ps is refused, saying why.
    data = load_trajectories(tmp_path / "t.dcd", topology=topology, selection="all")
    assert data.timestep_ps is None and np.array_equal(data.time_ps, np.arange(2000))
    with pytest.raises(NeuralCTError, match=r"t\.dcd holds no time stamps"):
        data.lag_frames(2.1)
    # Given, the frames' spacing stamps the DCD's frames (after the stride)...
    dcd = load_trajectories(tmp_path / "t.dcd", topology=topology, selection="all", frame_ps=0.7, stride=2)
    assert dcd.timestep_ps == 1.4 and np.allclose(dcd.time_ps, np.arange(1000) * 1.4) and dcd.lag_frames(2.8) == 2
    # ... and must agree with the stamps of the files that have them, which they keep.
    both = load_trajectories([tmp_path / "t.dcd", tmp_path / "t.xtc"], topology=topology, selection="all", frame_ps=0.7)
    assert both.timestep_ps == 0.7 and np.allclose(both.time_ps[2000:], stamps)
    with pytest.raises(NeuralCTError, match=r"t\.dcd has frames 0\.5 ps apart but .*t\.xtc 0\.7 ps"):
        load_trajectories([tmp_path / "t.dcd", tmp_path / "t.xtc"], topology=topology, selection="all", frame_ps=0.5)
    with pytest.raises(NeuralCTError, match=r"stamped 0\.7 ps apart, not the 0\.5 ps `frame_ps` gives"):
        load_trajectories(tmp_path / "t.xtc", topology=topology, selection="all", frame_ps=0.5)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(NeuralCTError, match="^`frame_ps` must be a positive number of ps"):
            load_trajectories(tmp_path / "t.dcd", topology=topology, selection="all", frame_ps=bad)


def test_frame_spacing_of_few_frames_far_from_zero():
    # Two XTC frames at 100 ns, 10 ps apart: float32 resolves 8e-3 ps there, enough for 10 ps.
    far = (1e5 + np.array([0.0, 10.0])).astype(np.float32).astype(np.float64)
    assert frame_spacing([far], ["far.xtc"]) == (10.0, None)
    # A spacing that is no short decimal is kept to the stamps' float32 resolution, which lags tolerate.
    third = np.arange(1, 601) / 3.0
    spacing, note = frame_spacing([third], ["third.nc"])
    assert spacing == pytest.approx(1 / 3, rel=1e-7) and note is None
    assert lag_in_frames(1.0, spacing) == 3 and lag_in_frames(200.0, spacing) == 600
    assert frame_spacing([np.array([5.0])], ["one.nc"])[0] is None
    assert frame_spacing([np.arange(5.0), None], ["a.nc", "b.dcd"]) == (
        None,
        "b.dcd holds no time stamps; give the trajectories in a format that records them (NetCDF, XTC, TRR), "
        "or the time between their frames (`frame_ps`)",
    )


def test_reading_netcdf_through_mdtraj_is_quiet(tmp_path, topology):
    """MDTraj's advice to install netCDF4 is noise for these files (scipy reads them as fast: data/loading.py)."""
    path = write(tmp_path, topology, np.arange(1, 101) * 0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_trajectories(path, selection="all", backend="mdtraj")
    assert [str(w.message) for w in caught] == []
