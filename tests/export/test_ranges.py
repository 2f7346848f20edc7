"""The CV ranges a bias grid is built on, for a model that stores none: +-4 standard deviations of the latent prior."""

from pathlib import Path

import numpy as np
import torch

import neuralct
from neuralct.export.files import cv_ranges

FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_a_model_without_training_ranges_falls_back_to_four_prior_standard_deviations():
    model = neuralct.load(FIXTURES / "model_v1.pt")
    model.metadata.pop("cv_ranges")
    ranges, source = cv_ranges(model, 3)
    assert source.startswith("latent prior")
    # The prior of each latent mode is a harmonic oscillator, H = (P^2 + w^2 Q^2) / 2 at kT = 1: Q has the standard
    # deviation 1 / w (in mode order, slowest first).
    rng = np.random.default_rng(0)
    for frequency, limits in zip(model.frequencies.detach().double().numpy()[:3], ranges):
        sigma = np.std(rng.normal(size=100000) / frequency)
        assert limits["max"] == -limits["min"]
        assert abs(limits["max"] / sigma - 4.0) < 0.05
    with torch.no_grad():
        assert ranges[0]["max"] == 4.0 / float(model.frequencies[0])
