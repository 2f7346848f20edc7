"""Copies of training frames and frames unlike the training data, against cases counted by hand."""

from types import SimpleNamespace

import numpy as np
import pytest

from neuralct.analysis.training_match import (
    CV_RANGE_WIDTHS,
    MARK_TOLERANCE,
    compare_with_training,
    frames_found,
)


@pytest.mark.parametrize("dim", [10, 1000])
def test_a_frame_is_a_copy_within_the_tolerance_as_a_root_mean_square_over_its_coordinates(dim):
    """Two marked frames moved by half the tolerance (root mean square per coordinate) are found, two moved by
    twice it are not, in 10 coordinates as in 1,000."""
    rng = np.random.default_rng(0)
    marks = rng.normal(size=(4, dim))
    directions = rng.normal(size=(4, dim))
    directions /= np.sqrt((directions**2).mean(axis=1, keepdims=True))  # unit root mean square
    features = marks + directions * (MARK_TOLERANCE * np.array([0.5, 0.5, 2.0, 2.0]))[:, None]
    np.testing.assert_array_equal(frames_found(features, marks), [True, True, False, False])


def test_cvs_beyond_their_training_range_on_either_side_are_counted_in_range_widths():
    """Training range [0, 1]: -2.5 and 3.5 lie 2.5 widths beyond it (below and above), -1.5 only 1.5."""
    model = SimpleNamespace(metadata={"cv_ranges": [{"min": 0.0, "max": 1.0}]})
    record = compare_with_training(model, np.zeros((4, 3, 3)), np.array([[0.5], [-2.5], [3.5], [-1.5]]))
    assert CV_RANGE_WIDTHS == 2.0
    assert record["cv_range"]["frames_beyond"] == 2
    assert record["cv_range"]["most_widths_beyond"] == [pytest.approx(2.5)]
    assert record["warning"] is not None


def test_one_percent_of_frames_beyond_the_cv_range_is_no_warning():
    """The warning is for more than 1 % of the frames: 1 of 100 is not, 2 of 100 are."""
    model = SimpleNamespace(metadata={"cv_ranges": [{"min": 0.0, "max": 1.0}]})
    cvs = np.full((100, 1), 0.5)
    cvs[0] = 10.0
    assert compare_with_training(model, np.zeros((100, 3, 3)), cvs)["warning"] is None
    cvs[1] = -10.0
    assert compare_with_training(model, np.zeros((100, 3, 3)), cvs)["warning"] is not None
