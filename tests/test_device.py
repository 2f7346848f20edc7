"""``--device`` resolution."""

import pytest
import torch

from neuralct.device import resolve_device
from neuralct.errors import NeuralCTError


def test_auto_and_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(NeuralCTError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_unknown_device():
    with pytest.raises(NeuralCTError, match="unknown device"):
        resolve_device("tpu")
