"""``--device`` resolution."""

import pytest
import torch

from neuralct.errors import NeuralCTError
from neuralct.training.device import float32_matmul_precision, resolve_device


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


def test_matmul_precision_applies_inside_the_block_and_is_restored():
    before = torch.get_float32_matmul_precision()
    with float32_matmul_precision("high"):
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == before
    with pytest.raises(NeuralCTError, match="--matmul-precision"):
        with float32_matmul_precision("medium"):
            pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tf32_products_stay_within_tf32_rounding_of_float32():
    """TF32 keeps 10 mantissa bits of the inputs: relative errors ~1e-3, never more."""
    generator = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(256, 256, device="cuda", generator=generator)
    b = torch.randn(256, 256, device="cuda", generator=generator)
    exact = (a.double() @ b.double()).float()
    with float32_matmul_precision("high"):
        tf32 = a @ b
    scale = (a.abs() @ b.abs()).max()
    assert float((tf32 - exact).abs().max() / scale) < 2e-3


def test_a_small_model_trains_on_one_cpu_thread_and_the_thread_count_is_restored():
    from neuralct.training.device import ONE_THREAD_COORDINATES, training_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with training_threads(24, torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with training_threads(ONE_THREAD_COORDINATES, torch.device("cpu")):
            assert torch.get_num_threads() == 1
        with training_threads(ONE_THREAD_COORDINATES + 1, torch.device("cpu")):
            assert torch.get_num_threads() == 2
        # A GPU trains the small model; torch's CPU threads are left as they are.
        with training_threads(24, torch.device("cuda")):
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
