"""The error types: one line of what is wrong and what to do, each part readable alone, pickled whole."""

import pickle

import pytest

from neuralct.errors import NeuralCTError, RunBrokeDown, first_line
from neuralct.training.loop import TrainingDiverged


def test_the_message_is_what_then_the_advice_and_each_part_stays_readable():
    error = RunBrokeDown("cv1 = 9 left its grid [0, 1] at step 40", "rerun with a larger `grid_margin`")
    assert str(error) == "cv1 = 9 left its grid [0, 1] at step 40; rerun with a larger `grid_margin`"
    assert (error.what, error.advice) == (
        "cv1 = 9 left its grid [0, 1] at step 40",
        "rerun with a larger `grid_margin`",
    )
    plain = NeuralCTError("trajectory.nc holds no frames; give another file")
    assert str(plain) == plain.what == "trajectory.nc holds no frames; give another file" and plain.advice is None


@pytest.mark.parametrize(
    "error", [NeuralCTError("a", "b"), NeuralCTError("a"), RunBrokeDown("a", "b"), TrainingDiverged("a")]
)
def test_an_error_raised_in_a_worker_process_reaches_the_parent_as_itself(error):
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and str(again) == str(error)
    assert (again.what, again.advice) == (error.what, error.advice)


def test_first_line_keeps_one_line_and_names_an_empty_error_by_its_type():
    assert first_line(ValueError("one\ntwo")) == "one" and first_line(ValueError()) == "ValueError"
