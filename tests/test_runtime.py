import random

import pytest
import torch

from toykit import get_device, make_generator, set_seed
from toykit.runtime import deterministic_algorithms, eval_mode, resolve_device


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


def test_make_generator_seeds_a_cpu_generator():
    a, b = make_generator(3), make_generator(seed=3)
    assert a.device == torch.device("cpu")
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    plain = torch.Generator().manual_seed(3)  # a seed means the same draws as a plainly seeded generator
    assert torch.equal(torch.rand(5, generator=make_generator(3)), torch.rand(5, generator=plain))
    assert not torch.equal(torch.rand(5, generator=make_generator(3)), torch.rand(5, generator=make_generator(4)))
    g = torch.Generator().manual_seed(0)
    assert make_generator(generator=g) is g  # a given generator's stream continues
    assert make_generator() is None  # neither: torch's global generator
    assert torch.equal(torch.rand(2, generator=set_seed(5)), torch.rand(2, generator=make_generator(5)))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(seed=1, generator=torch.Generator()), ValueError, "seed and generator were both given"),
    (dict(seed=-1), ValueError, "seed must be a non-negative int, got -1"),
    (dict(seed=1.5), ValueError, "seed must be a non-negative int, got 1.5"),
    (dict(seed=True), ValueError, "seed must be a non-negative int"),
    (dict(seed="0"), ValueError, "seed must be a non-negative int"),
    (dict(seed=2**64), ValueError, "seed must be below 2\\*\\*64"),
    (dict(generator=0), TypeError, "generator must be None or a torch.Generator, got int"),
])
def test_make_generator_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_generator(**kwargs)


class _GeneratorOnCuda(torch.Generator):
    """A CPU generator that reports a CUDA device: the check reads only ``device``, so this
    stands in for a real CUDA generator on machines without a GPU."""

    @property
    def device(self) -> torch.device:
        return torch.device("cuda:0")


def test_make_generator_refuses_a_generator_off_the_cpu():
    generators = [_GeneratorOnCuda()] + ([torch.Generator(device="cuda")] if torch.cuda.is_available() else [])
    for generator in generators:
        with pytest.raises(ValueError, match="generator must be a CPU torch.Generator.*got one on cuda"):
            make_generator(generator=generator)


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


def test_eval_mode_restores_the_training_flag_even_after_an_error():
    for start in (True, False):
        module = torch.nn.Dropout(0.5).train(start)
        with eval_mode(module):
            assert not module.training
        assert module.training is start
        with pytest.raises(RuntimeError), eval_mode(module):
            raise RuntimeError("inside")
        assert module.training is start
    with eval_mode(len):  # a plain callable is left alone
        pass
