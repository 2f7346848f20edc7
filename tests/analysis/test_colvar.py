"""COLVAR files: written for PLUMED, read back by numpy and by PLUMED's header conventions."""

import numpy as np
import pytest

from neuralct.analysis.colvar import read_colvar, write_colvar
from neuralct.errors import NeuralCTError


def test_written_colvar_parses_with_a_plain_reader_and_with_plumed_conventions(tmp_path):
    rng = np.random.default_rng(0)
    time_ps = np.arange(50) * 0.2
    cvs = rng.normal(size=(50, 3)) * [1e-3, 1.0, 1e4]
    path = tmp_path / "COLVAR"
    write_colvar(path, time_ps, cvs)
    first = path.read_text().splitlines()[0]
    assert first == "#! FIELDS time cv1 cv2 cv3"
    plain = np.loadtxt(path)  # '#' lines are comments for numpy
    np.testing.assert_allclose(plain, np.column_stack([time_ps, cvs]), rtol=1e-9)
    fields, data = read_colvar(path)
    assert fields == ["time", "cv1", "cv2", "cv3"]
    np.testing.assert_allclose(data, plain, rtol=0, atol=0)
    assert not [p for p in tmp_path.iterdir() if p.name != "COLVAR"]  # no temporary file left


def test_names_and_a_single_cv(tmp_path):
    path = tmp_path / "COLVAR"
    write_colvar(path, np.arange(3.0), np.array([0.5, -1.0, 2.0]), names=["ncv.q1"])
    fields, data = read_colvar(path)
    assert fields == ["time", "ncv.q1"] and data.shape == (3, 2)


def test_reader_follows_plumed_set_lines_comments_and_restarts(tmp_path):
    path = tmp_path / "COLVAR"
    path.write_text(
        "#! FIELDS time phi psi\n"
        "#! SET min_phi -pi\n"
        "#! SET max_phi pi\n"
        " 0.000000 -1.5 2.5\n"
        "# a comment\n"
        "\n"
        " 1.000000 -1.4 2.4\n"
        "#! FIELDS time phi psi\n"
        "#! SET min_phi -pi\n"
        " 2.000000 -1.3 2.3\n"
    )
    fields, data = read_colvar(path)
    assert fields == ["time", "phi", "psi"]
    np.testing.assert_allclose(data, [[0.0, -1.5, 2.5], [1.0, -1.4, 2.4], [2.0, -1.3, 2.3]])


@pytest.mark.parametrize(
    "text, message",
    [
        ("1.0 2.0\n", "before any"),
        ("#! FIELDS time a\n1.0 2.0 3.0\n", "3 values for 2 fields"),
        ("#! FIELDS time a\n1.0 x\n", "non-numeric"),
        ("#! FIELDS time a\n1.0 2.0\n#! FIELDS time b\n", "later header"),
        ("# nothing\n", "no '#! FIELDS'"),
    ],
)
def test_reader_names_the_problem(tmp_path, text, message):
    path = tmp_path / "COLVAR"
    path.write_text(text)
    with pytest.raises(NeuralCTError, match=message):
        read_colvar(path)


def test_writer_refuses_bad_names(tmp_path):
    with pytest.raises(NeuralCTError, match="without spaces"):
        write_colvar(tmp_path / "C", np.arange(2.0), np.zeros((2, 1)), names=["a b"])
    with pytest.raises(NeuralCTError, match="not unique"):
        write_colvar(tmp_path / "C", np.arange(2.0), np.zeros((2, 2)), names=["a", "a"])
    assert not (tmp_path / "C").exists()
