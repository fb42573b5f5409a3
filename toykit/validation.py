"""Clear errors at public boundaries: name the argument and say what was expected."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_tensor(
    name: str,
    x: object,
    shape: Sequence[int | str | None] | None = None,
    *,
    dtype: str | None = None,
    dims: dict[str, int] | None = None,
) -> dict[str, int]:
    """Check that ``x`` is a tensor with the given named shape.

    shape: one entry per axis; an int must match exactly, a string names a size that must be
    consistent across calls sharing ``dims`` (and is filled into it), None matches anything.
    dtype: "float", "int" or "bool" to check the dtype's kind.
    Returns the dims dict, so several tensors can be checked against each other.
    """
    dims = {} if dims is None else dims
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if shape is not None:
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        if x.ndim != len(shape):
            raise ValueError(f"{name} must have shape {want} ({len(shape)} dims), got {list(x.shape)}")
        for axis, (size, spec) in enumerate(zip(x.shape, shape)):
            if spec is None:
                continue
            if isinstance(spec, str):
                if spec in dims and dims[spec] != size:
                    raise ValueError(
                        f"{name} must have shape {want} with {spec}={dims[spec]}, "
                        f"got {list(x.shape)} ({spec}={size} on axis {axis})"
                    )
                dims[spec] = size
            elif size != spec:
                raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    if dtype == "float" and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if dtype == "int" and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got {x.dtype}")
    if dtype == "bool" and x.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, got {x.dtype}")
    return dims


def check_positive_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_non_negative_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


def check_positive_number(name: str, value: object) -> float:
    """An int or float > 0 (not a bool)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_one_of(name: str, value: object, choices: Sequence[object]) -> None:
    """``value`` must be one of ``choices`` (listed in the error)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_probability(name: str, value: float | torch.Tensor) -> None:
    t = torch.as_tensor(value, dtype=torch.float32)
    if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
        raise ValueError(f"{name} must lie in [0, 1], got values from {t.min().item()} to {t.max().item()}")
