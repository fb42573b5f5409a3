"""Plain data across the kernel boundary: encode in the kernel, decode and validate in the grader.

Only these cross: ``None``, bools, ints, floats, strings, tensors (dtype, shape and raw bytes),
and lists, tuples and dicts of them, plus the few toykit result records in ``RECORDS`` (frozen
dataclasses of such values, which chapter functions return). Nothing is unpickled and no code
or class comes back: a tensor is rebuilt from its bytes as a plain ``torch.Tensor`` after its
dtype, shape and byte count are checked, and a record as the grader's own class, from its
checked fields. Anything else is refused with a message that says what it was.

JSON forms (tags are one-key dicts, so a learner's own dict can never pass for one):
``{"T": [dtype, shape, base64]}`` a tensor, ``{"L": [...]}`` a list, ``{"U": [...]}`` a tuple,
``{"D": [[key, value], ...]}`` a dict, ``{"F": "nan"|"inf"|"-inf"}`` a float JSON cannot hold,
``{"R": [name, [[field, value], ...]]}`` a record.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib
import math
import struct
from typing import Any

import torch

from toykit.grading.text import MAX_STRING, clean_text

# dtypes that may cross, by name; anything else (quantised, sparse, ...) is refused.
DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)}
MAX_DEPTH = 32
MAX_ITEMS = 100_000  # entries in one list, tuple or dict
MAX_TENSOR_BYTES = 256 * 2**20
# Result types that chapter functions return, by module and class name; the grader rebuilds each
# from its own toykit. Every one is a frozen dataclass whose fields are plain values.
RECORDS = frozenset({"toykit.tuning_curves.OrientationTuning"})


class WireError(ValueError):
    """A value that cannot cross the boundary, or received data that is not well formed."""


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = torch.Tensor.detach(t).cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes() if t.numel() else b""


def encode(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready data; raises WireError for anything that is not plain."""
    if depth > MAX_DEPTH:
        raise WireError(f"nested more than {MAX_DEPTH} levels deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        value = float(value)
        return value if math.isfinite(value) else {"F": repr(value)}
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise WireError(f"a string of {len(value)} characters (at most {MAX_STRING})")
        return clean_text(value)
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_quantized:
            raise WireError(f"a tensor with layout {value.layout}: only dense tensors")
        name = str(value.dtype).removeprefix("torch.")
        if name not in DTYPES:
            raise WireError(f"a tensor of dtype {value.dtype}")
        if value.numel() * value.element_size() > MAX_TENSOR_BYTES:
            raise WireError(f"a tensor of {value.numel() * value.element_size() / 2**20:.0f} MB")
        return {"T": [name, list(value.shape), base64.b64encode(_tensor_bytes(value)).decode("ascii")]}
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise WireError(f"a {type(value).__name__} of {len(value)} items")
        items = [encode(v, depth + 1) for v in value]
        return {"L": items} if isinstance(value, list) else {"U": items}
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            raise WireError(f"a dict of {len(value)} items")
        out = []
        for k, v in value.items():
            if not (k is None or isinstance(k, (bool, int, float, str))):
                raise WireError(f"a dict key of type {type(k).__name__}")
            out.append([encode(k, depth + 1), encode(v, depth + 1)])
        return {"D": out}
    kind = type(value)
    if f"{kind.__module__}.{kind.__qualname__}" in RECORDS and dataclasses.is_dataclass(value):
        fields = [[f.name, encode(getattr(value, f.name), depth + 1)] for f in dataclasses.fields(value)]
        return {"R": [f"{kind.__module__}.{kind.__qualname__}", fields]}
    raise WireError(f"an object of type {type(value).__name__}")


def _record(body: Any, depth: int) -> Any:
    """The grader's own record class, built from the checked fields of ``body``."""
    if type(body) is not list or len(body) != 2 or type(body[0]) is not str or body[0] not in RECORDS \
            or type(body[1]) is not list:
        raise WireError("a record of a type the grader does not know")
    module, _, name = body[0].rpartition(".")
    kind = getattr(importlib.import_module(module), name)
    names = [f.name for f in dataclasses.fields(kind)]
    if [pair[0] if type(pair) is list and len(pair) == 2 else None for pair in body[1]] != names:
        raise WireError(f"a {name} record whose fields are not {names}")
    try:
        return kind(**{key: decode(value, depth + 1) for key, value in body[1]})
    except (TypeError, ValueError) as err:
        raise WireError(f"a {name} record that cannot be rebuilt ({err})") from None


def decode(data: Any, depth: int = 0) -> Any:
    """The value ``data`` encodes; raises WireError if ``data`` is not exactly what encode() writes."""
    if depth > MAX_DEPTH:
        raise WireError(f"nested more than {MAX_DEPTH} levels deep")
    if data is None or isinstance(data, bool):
        return data
    if type(data) is int:
        return data
    if type(data) is float:
        return data
    if type(data) is str:
        if len(data) > MAX_STRING:
            raise WireError(f"a string of {len(data)} characters")
        return clean_text(data)
    if type(data) is not dict or len(data) != 1:
        raise WireError(f"unexpected {type(data).__name__} in the record")
    (tag, body), = data.items()
    if tag == "F" and body in ("nan", "inf", "-inf"):
        return float(body)
    if tag == "T":
        return decode_tensor(body)
    if tag in ("L", "U") and type(body) is list:
        if len(body) > MAX_ITEMS:
            raise WireError(f"a list of {len(body)} items")
        items = [decode(v, depth + 1) for v in body]
        return items if tag == "L" else tuple(items)
    if tag == "D" and type(body) is list and len(body) <= MAX_ITEMS:
        out = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise WireError("a dict entry that is not a [key, value] pair")
            key = decode(pair[0], depth + 1)
            if not (key is None or isinstance(key, (bool, int, float, str))):
                raise WireError(f"a dict key of type {type(key).__name__}")
            out[key] = decode(pair[1], depth + 1)
        return out
    if tag == "R":
        return _record(body, depth)
    raise WireError(f"unknown tag {clean_text(tag, 40)!r} in the record")


def decode_tensor(body: Any) -> torch.Tensor:
    """A plain tensor from ``[dtype, shape, base64]``, every part checked before use."""
    if type(body) is not list or len(body) != 3:
        raise WireError("a tensor entry must be [dtype, shape, data]")
    name, shape, text = body
    if type(name) is not str or name not in DTYPES:
        raise WireError(f"a tensor of unknown dtype {clean_text(name, 40)!r}")
    if type(shape) is not list or len(shape) > 16 or any(type(n) is not int or n < 0 for n in shape):
        raise WireError("a tensor shape must be a list of at most 16 sizes >= 0")
    dtype = DTYPES[name]
    numel = math.prod(shape)
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if nbytes > MAX_TENSOR_BYTES or type(text) is not str or len(text) > 4 * (MAX_TENSOR_BYTES // 3 + 3):
        raise WireError(f"a tensor of {nbytes / 2**20:.0f} MB")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as err:
        raise WireError(f"tensor data that is not base64 ({err})") from None
    if len(raw) != nbytes:
        raise WireError(f"a tensor of shape {shape} and dtype {name} needs {nbytes} bytes, got {len(raw)}")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    view = torch.bfloat16 if dtype == torch.bfloat16 else None
    flat = torch.frombuffer(bytearray(raw), dtype=torch.int16 if view else dtype)
    if view:
        flat = flat.view(torch.bfloat16)
    return flat.reshape(shape).clone()


# -- digests -------------------------------------------------------------------------------------
#
# A digest names a call's inputs in a few bytes, so that the grader can tell that a recorded
# call was made on exactly the inputs its own check makes. It must come out the same in the
# kernel and in the grader for equal inputs, whatever object identities are.


def digest(value: Any) -> str:
    h = hashlib.sha256()
    _feed(h, value, 0, set())
    return h.hexdigest()


def _feed(h: Any, x: Any, depth: int, seen: set[int]) -> None:
    def put(tag: str, data: bytes = b"") -> None:
        h.update(tag.encode() + struct.pack("<Q", len(data)) + data)

    if depth > 12:
        return put("deep")
    if x is None or isinstance(x, (bool, int, float, complex, str, bytes)):
        return put(type(x).__name__, repr(x).encode("utf-8", "replace"))
    if isinstance(x, torch.Tensor):
        return put("tensor" + str(x.dtype) + str(list(x.shape)), hashlib.sha256(_tensor_bytes(x)).digest())
    if isinstance(x, torch.Generator):
        return put("generator", _tensor_bytes(x.get_state()))
    if id(x) in seen:
        return put("cycle")
    seen = seen | {id(x)}
    if isinstance(x, torch.nn.Module):
        put("module" + type(x).__qualname__, str(x.training).encode())
        put("hooked", ",".join(hooked_modules(x)).encode())
        for name, t in sorted(x.state_dict(keep_vars=True).items()):  # by name: registration order may differ
            put("entry", name.encode())
            _feed(h, t, depth + 1, seen)
        return None
    if isinstance(x, (list, tuple)):
        put(type(x).__name__, str(len(x)).encode())
        for v in x:
            _feed(h, v, depth + 1, seen)
        return None
    if isinstance(x, dict):
        put("dict", str(len(x)).encode())
        for k, v in x.items():
            _feed(h, k, depth + 1, seen)
            _feed(h, v, depth + 1, seen)
        return None
    if isinstance(x, type) or callable(x):
        return put("callable", getattr(x, "__qualname__", type(x).__qualname__).encode())
    put("object" + type(x).__qualname__)
    # an object's public state: attributes not starting with "_" (caches kept under private
    # names differ between a used object and a fresh one)
    attrs = getattr(x, "__dict__", None)
    if isinstance(attrs, dict):
        for k in sorted(k for k in attrs if isinstance(k, str) and not k.startswith("_")):
            put("attr", k.encode())
            _feed(h, attrs[k], depth + 1, seen)
    return None


def hooked_modules(module: torch.nn.Module) -> list[str]:
    """Names of ``module``'s submodules (itself: "") that have hooks attached."""
    return [name for name, m in module.named_modules()
            if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks]
