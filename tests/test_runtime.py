import random

import pytest
import torch

from toykit import get_device, set_seed
from toykit.runtime import deterministic_algorithms, resolve_device


def test_get_device_defaults_to_cuda_or_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_device().type == expected
    assert get_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == get_device()
    assert resolve_device("cpu") == torch.device("cpu")


def test_get_device_rejects_nonsense():
    with pytest.raises(ValueError, match="prefer must be"):
        get_device("tpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("nonsense-device")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            get_device("cuda")


def test_set_seed_makes_all_generators_repeatable():
    set_seed(7)
    a = (random.random(), torch.rand(3))
    set_seed(7)
    b = (random.random(), torch.rand(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="non-negative int"):
        set_seed(-1)
    with pytest.raises(ValueError, match="non-negative int"):
        set_seed(1.5)


def test_cpu_thread_count_restores_the_old_count_even_after_an_error():
    from toykit.runtime import cpu_thread_count

    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with cpu_thread_count(1, torch.device("cpu")):
            assert torch.get_num_threads() == 1
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with cpu_thread_count(None, torch.device("cpu")):
        assert torch.get_num_threads() == before


def test_deterministic_algorithms_is_restored_even_after_an_error():
    before = torch.are_deterministic_algorithms_enabled()
    with pytest.raises(RuntimeError, match="boom"):
        with deterministic_algorithms():
            assert torch.are_deterministic_algorithms_enabled()
            raise RuntimeError("boom")
    assert torch.are_deterministic_algorithms_enabled() == before
