"""Where tensors live and how runs are made repeatable.

The rule every toykit function follows:

- Constructors and trainers take ``device=None``, which means ``get_device()`` (CUDA when
  present, else the CPU); ``resolve_device`` does this.
- Analysis functions (metrics, patching, probes, attributions) compute on the device of their
  input and return results there; they never move a model or a tensor elsewhere.
- Data generators produce on the CPU, so a seed gives the same data on every machine; the
  caller moves the batch to the model's device.
- A public function that draws random numbers takes either ``seed`` (an int) or ``generator``
  (a ``torch.Generator``), never both; ``make_generator`` applies this rule. Seeds are set in
  every notebook; a result may not depend on luck.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import overload

import numpy as np
import torch

from toykit.validation import check_non_negative_int


def get_device(prefer: str | None = None) -> torch.device:
    """Pick the device to train on.

    With no argument: CUDA when a GPU is present, otherwise the CPU. Apple's MPS is used
    only when asked for (``prefer="mps"``), because some results differ there.

    prefer: None, "cpu", "cuda" or "mps".
    """
    if prefer is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(prefer, str) or prefer.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise ValueError(f"get_device: prefer must be None, 'cpu', 'cuda' or 'mps', got {prefer!r}")
    kind = prefer.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("get_device: prefer='cuda' but no CUDA device is available")
    if kind == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise RuntimeError("get_device: prefer='mps' but MPS is not available")
        warnings.warn(
            "Using MPS: some kernels differ from CPU/CUDA, so a few asserted numbers in the "
            "chapters may not match exactly.",
            stacklevel=2,
        )
    return torch.device(prefer)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device=None`` means get_device(); anything else is passed to torch.device."""
    if device is None:
        return get_device()
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be None, a torch.device or a string like 'cpu', got {device!r}") from e


@overload
def make_generator(seed: int, generator: None = None) -> torch.Generator: ...
@overload
def make_generator(seed: None = None, *, generator: torch.Generator) -> torch.Generator: ...
@overload
def make_generator(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator | None: ...
def make_generator(seed: int | None = None, generator: torch.Generator | None = None) -> torch.Generator | None:
    """The CPU generator to draw from, given a function's ``seed`` and ``generator`` arguments.

    seed: a non-negative int; returns a new CPU generator seeded with it.
    generator: a CPU torch.Generator; returned as it is, so draws continue its stream.
    Give one of them, not both. With neither, returns None: torch's global generator is used.
    Data are drawn on the CPU so that a seed gives the same numbers on every machine.
    """
    if seed is not None and generator is not None:
        raise ValueError("seed and generator were both given; pass either seed or generator, not both")
    if seed is not None:
        check_non_negative_int("seed", seed)
        if seed >= 2**64:  # torch.Generator.manual_seed's limit
            raise ValueError(f"seed must be below 2**64, got {seed!r}")
        return torch.Generator().manual_seed(seed)
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be None or a torch.Generator, got {type(generator).__name__}")
        if generator.device.type != "cpu":
            raise ValueError(f"generator must be a CPU torch.Generator (random data are drawn on the CPU), "
                             f"got one on {generator.device}")
    return generator


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (all devices). Returns a CPU generator seeded the same."""
    generator = make_generator(check_non_negative_int("seed", seed))
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return generator


@contextmanager
def cpu_thread_count(n: int | None, device: torch.device) -> Iterator[None]:
    """Run the block with ``n`` CPU threads (None: leave as is), then restore the old count.

    Tiny models train faster on one thread: the matrices are too small to split.
    """
    before = torch.get_num_threads()
    target = n if device.type == "cpu" and n is not None else before
    if target != before:
        torch.set_num_threads(target)
    try:
        yield
    finally:
        if target != before:
            torch.set_num_threads(before)


@contextmanager
def eval_mode(model: object) -> Iterator[None]:
    """Run the block with ``model`` in eval mode, then restore its training flag.

    Measurements read a model as it will be used (no dropout, for one), whatever mode the
    caller left it in. Anything that is not a torch module (a plain callable) is left alone.
    """
    if not isinstance(model, torch.nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Run the block with ``torch.use_deterministic_algorithms(True)``, then restore the setting.

    With more than one CPU thread some backward kernels (the embedding's, for one) add up
    gradients in a varying order; this mode picks kernels that repeat bit for bit. An op with
    no such kernel (some CUDA ones) only warns, so the same code still runs on a GPU.
    """
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
