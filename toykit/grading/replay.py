"""Record a learner's answers in the kernel; replay them to the real checks in the grader.

The verdict must not be computed in the student's process: code there can patch torch, the
checkers, or the file the results go to. So the kernel only *records*. Each chapter check
``check_<id>(learner)`` runs there with the learner's object wrapped by a :class:`Recorder`,
which notes, for every call the check makes,

- a digest of the call's inputs (:func:`toykit.grading.wire.digest`);
- what came back, as plain data (:mod:`toykit.grading.wire`), or the exception raised;
- the new state of every argument the call changed in place (tensors, modules, generators,
  and hooks left on modules), so that checks for in-place edits and leaked hooks still work.

The grader then runs the *same* check in its own clean process with a :class:`Replayer` in the
learner's place. Checks build their inputs from seeded generators, so the grader's calls are
the kernel's calls: the replayer checks each call's digest and hands back the recorded answer.
A record is the student's claim about what their code returned on the grader's inputs; the
real checker, unmodified, decides whether that claim is right.

Three kinds of learner object are handled: functions (and hooks, any callable), ``nn.Module``
classes (ch03: the check builds ``cls(cfg)``, loads weights, calls it), and module instances
(which checks refuse where a function is expected, so they must arrive as modules).

Two kinds of result that are not plain data are handled too. A function that returns a
function (a hook factory, ch08) has the returned function recorded like the learner's own: its
calls join the record, in order. A function that returns a model made from one it was given (an
edited copy, ch08) has the model's weights recorded; the grader loads them into a copy of its
own argument, so the check runs the grader's model code on the learner's weights.
"""

from __future__ import annotations

import builtins
import copy
import json
import keyword
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from toykit.grading.text import clean_text
from toykit.grading.wire import MAX_DEPTH, WireError, decode, decode_tensor, digest, encode, hooked_modules

MAX_RECORD_CHARS = 128 * 2**20  # one exercise's record, as JSON text


class Stopped(BaseException):
    """Raised in the kernel by the per-check alarm, and in the grader when a recorded call was
    stopped (timeout, SystemExit, ...): no check may catch it as an ordinary error."""


class ReplayBroken(BaseException):
    """The record does not fit the grader's own run of the check. A BaseException, so that a
    check's ``except Exception`` never turns it into an ordinary failed case."""


# -- what may change during a call -------------------------------------------------------------


def _leaves(value: Any, out: list, depth: int = 0, seen: set[int] | None = None) -> list:
    """Every tensor, module and generator inside ``value`` (args and kwargs), in a fixed order."""
    seen = set() if seen is None else seen
    if depth > 8 or id(value) in seen:
        return out
    if isinstance(value, (torch.Tensor, nn.Module, torch.Generator)):
        seen.add(id(value))
        out.append(value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _leaves(v, out, depth + 1, seen)
    elif isinstance(value, dict):
        for v in value.values():
            _leaves(v, out, depth + 1, seen)
    elif not (value is None or isinstance(value, (bool, int, float, str, type)) or callable(value)):
        attrs = getattr(value, "__dict__", None)
        if isinstance(attrs, dict):
            for k in sorted(k for k in attrs if isinstance(k, str) and not k.startswith("_")):
                _leaves(attrs[k], out, depth + 1, seen)
    return out


def _state(leaf: Any) -> Any:
    """The plain data that describes ``leaf``'s current state."""
    if isinstance(leaf, torch.Tensor):
        return encode(leaf)
    if isinstance(leaf, torch.Generator):
        return encode(leaf.get_state())
    return {"state": encode(dict(leaf.state_dict())), "hooked": hooked_modules(leaf)}


def _changes(leaves: list, before: list[str]) -> list:
    return [[i, _state(leaf)] for i, (leaf, d) in enumerate(zip(leaves, before)) if digest(leaf) != d]


def _noop_hook(*_args: Any, **_kwargs: Any) -> None:
    return None


def _apply(leaves: list, changes: Any) -> None:
    """Make the grader's arguments what the learner's call left them as."""
    if type(changes) is not list:
        raise ReplayBroken("malformed argument changes")
    for item in changes:
        if type(item) is not list or len(item) != 2 or type(item[0]) is not int or not 0 <= item[0] < len(leaves):
            raise ReplayBroken("an argument change names no argument")
        leaf, state = leaves[item[0]], item[1]
        try:
            if isinstance(leaf, torch.Generator):
                leaf.set_state(_tensor(state, torch.uint8))
            elif isinstance(leaf, torch.Tensor):
                _assign(leaf, _tensor(state))
            else:
                _apply_module(leaf, state)
        except (WireError, RuntimeError, TypeError, ValueError) as err:
            raise ReplayBroken(f"an argument change cannot be applied ({err})") from None


def _tensor(data: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = decode(data)
    if not isinstance(t, torch.Tensor) or (dtype is not None and t.dtype != dtype):
        raise WireError("expected a tensor")
    return t


def _assign(target: torch.Tensor, value: torch.Tensor) -> None:
    with torch.no_grad():
        if target.shape == value.shape and target.dtype == value.dtype:
            target.copy_(value)
        else:
            target.data = value


def _apply_module(module: nn.Module, state: Any) -> None:
    if type(state) is not dict or set(state) != {"state", "hooked"} or type(state["hooked"]) is not list:
        raise WireError("a module change must hold its state and its hooked submodules")
    entries = decode(state["state"])
    have = module.state_dict(keep_vars=True)
    if not isinstance(entries, dict) or set(entries) - set(have):
        raise WireError("a module change names entries the module does not have")
    for name, value in entries.items():
        if not isinstance(value, torch.Tensor):
            raise WireError("a module entry that is not a tensor")
        _assign(have[name], value)
    subs = dict(module.named_modules())
    for name in state["hooked"]:
        if type(name) is not str or name not in subs:
            raise WireError("a hooked submodule the module does not have")
        sub = subs[name]
        if name not in hooked_modules(module):
            if hasattr(sub, "add_hook"):  # a HookPoint: attach it as the learner's code would have
                sub.add_hook(_noop_hook)
            else:
                sub.register_forward_hook(_noop_hook)


# -- exceptions ----------------------------------------------------------------------------------


def _describe_error(err: BaseException) -> dict:
    bases = [c.__name__ for c in type(err).__mro__ if getattr(builtins, c.__name__, None) is c]
    try:
        message = str(err)
    except Exception:  # a hostile __str__
        message = ""
    return {"type": clean_text(type(err).__name__, 100), "bases": bases[:20], "message": clean_text(message, 4000)}


def _rebuild_error(data: Any) -> BaseException:
    """The learner's exception, as an instance of a builtin class (or a new class of the same
    name deriving from the nearest builtin one), so that checks catch it as they would have."""
    if type(data) is not dict or type(data.get("type")) is not str or type(data.get("bases")) is not list:
        raise ReplayBroken("malformed exception record")
    name, message = data["type"], clean_text(data.get("message", ""), 4000)
    base: type = Exception
    for b in data["bases"]:
        found = getattr(builtins, b, None) if type(b) is str else None
        if isinstance(found, type) and issubclass(found, BaseException):
            base = found
            break
    if not issubclass(base, Exception):  # SystemExit, KeyboardInterrupt, ...: the call was stopped
        return Stopped(f"your code was stopped by {name}")
    cls = base if base.__name__ == name else type(
        name if name.isidentifier() and not keyword.iskeyword(name) else "LearnerError", (base,), {})
    try:
        return cls(message)
    except Exception:  # builtins with other constructors (UnicodeDecodeError, ...)
        return type(name if name.isidentifier() else "LearnerError", (Exception,), {})(message)


# -- recording, in the kernel -------------------------------------------------------------------


class Recorder:
    """Wraps the learner's object; ``.learner`` goes to the check; ``.events`` is the record."""

    def __init__(self, obj: Any) -> None:
        self.obj, self.chars, self.full = obj, 0, False
        self.events: list[Any] = []
        self.learner: Any  # what the check receives in place of the learner's object
        if isinstance(obj, type):
            self.kind, self.learner = "class", self._class()
        elif isinstance(obj, nn.Module):
            self.kind, self.learner = "module", _Forwarding(self, obj)
        elif callable(obj):
            self.kind = "function"

            def learner(*args: Any, **kwargs: Any) -> Any:
                return self.call("call", obj, args, kwargs)
            learner.__name__ = learner.__qualname__ = clean_text(getattr(obj, "__name__", "learner"), 100)
            self.learner = learner
        else:
            self.kind, self.learner = "value", obj
        self.meta = {"kind": self.kind, "name": clean_text(getattr(obj, "__name__", ""), 100),
                     "type": clean_text(type(obj).__name__, 100)}
        if self.kind == "value":
            try:
                self.meta["value"] = encode(obj)
            except WireError:
                pass
            self.meta["repr"] = _safe_repr(obj)

    def _add(self, event: dict) -> None:
        text = json.dumps(event)
        if self.chars + len(text) > MAX_RECORD_CHARS:
            self.full = True
            raise Stopped(f"your answers to this check were larger than the grader keeps "
                          f"({MAX_RECORD_CHARS // 2**20} MB)")
        self.chars += len(text)
        self.events.append(event)

    def call(self, op: str, fn: Callable, args: tuple, kwargs: dict, extra: Any = None,
             result: Callable[[Any], Any] = encode) -> Any:
        """Call ``fn`` and record the call; ``extra`` (a module's state) joins the digest, and
        ``result`` turns what came back into plain data."""
        leaves = _leaves((args, kwargs), [])
        before = [digest(leaf) for leaf in leaves]
        event: dict = {"op": op, "in": digest((extra, args, kwargs))}
        try:
            out = fn(*args, **kwargs)
        except BaseException as err:
            if not self.full:
                event["raise"] = _describe_error(err)
                event["mut"] = _changes(leaves, before)
                self._add(event)
            raise
        event["mut"] = _changes(leaves, before)
        try:
            if op != "new" and _is_function(out):  # its own calls are recorded from here on
                event["fn"] = clean_text(getattr(out, "__name__", "function"), 100)
                self._add(event)
                returned = out

                def recorded(*args: Any, **kwargs: Any) -> Any:
                    return self.call("call", returned, args, kwargs)
                recorded.__name__ = recorded.__qualname__ = event["fn"]
                return recorded
            if op != "new" and isinstance(out, nn.Module):
                event["model"] = _weights(out)
            else:
                event["out"] = result(out)
            if op != "new":
                event["grad"] = _grad_carriers(out)
        except WireError as err:
            event["refused"] = f"your code returned {err}, which the grader cannot take"
        except Exception as err:  # an object whose methods raise when read
            event["refused"] = (f"your code returned a {type(out).__name__} that could not be read "
                                f"({type(err).__name__})")
        self._add(event)
        return out

    def _class(self) -> type:
        recorder = self

        class Recorded(nn.Module):
            def __new__(cls, *args: Any, **kwargs: Any) -> Any:
                return recorder.call("new", recorder._build, args, kwargs, result=_structure)

        Recorded.__name__ = Recorded.__qualname__ = self.obj.__name__
        return Recorded

    def _build(self, *args: Any, **kwargs: Any) -> Any:
        module = self.obj(*args, **kwargs)
        if isinstance(module, nn.Module):
            forward = module.forward

            def recorded_forward(*a: Any, **k: Any) -> Any:
                return self.call("forward", forward, a, k, extra=_module_state(module))
            module.forward = recorded_forward
        return module


def _is_function(value: Any) -> bool:
    """A callable that is neither a class nor a module: a function, a closure, a partial."""
    return callable(value) and not isinstance(value, (type, nn.Module, torch.Tensor))


def _weights(module: nn.Module) -> dict:
    """A returned model as plain data: its class name, mode, weights and hooked submodules."""
    return {"type": clean_text(type(module).__name__, 100), "training": bool(module.training),
            "state": encode(dict(module.state_dict())), "hooked": hooked_modules(module)}


def _rebuild(record: Any, args: tuple, kwargs: dict) -> nn.Module:
    """The grader's copy of the model among ``args`` and ``kwargs`` that has the recorded
    class and weight shapes, with the recorded weights loaded."""
    if type(record) is not dict or set(record) != {"type", "training", "state", "hooked"} \
            or type(record["training"]) is not bool or type(record["hooked"]) is not list:
        raise WireError("a malformed model record")
    state = decode(record["state"])
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WireError("a model record whose weights are not tensors")
    if record["hooked"]:
        where = ", ".join(map(str, record["hooked"]))[:300]
        raise TypeError(f"your code returned a model with hooks attached ({where}); the grader takes a model's "
                        "weights, not its hooks: put the change into the weights")
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for given in _leaves((args, kwargs), []):
        if isinstance(given, nn.Module) and type(given).__name__ == record["type"] and \
                {k: tuple(v.shape) for k, v in given.state_dict().items()} == shapes:
            model = copy.deepcopy(given)
            with torch.no_grad():
                for name, value in model.state_dict(keep_vars=True).items():
                    _assign(value, state[name])
            return model.train(record["training"])
    raise TypeError(f"your code returned a {clean_text(record['type'], 100)} that is not a copy of a model it was "
                    "given (the same class and weight shapes), which the grader cannot rebuild")


def _module_state(module: nn.Module) -> dict:
    """What a module's forward depends on besides its inputs; entries by name, since the
    stand-in registers them in another order than the learner's module may have."""
    return {"training": module.training, "state": dict(sorted(module.state_dict().items()))}


class _Forwarding(nn.Module):
    """Stands for a learner's module *instance* given where a function was expected."""

    def __init__(self, recorder: Recorder, module: nn.Module) -> None:
        super().__init__()
        self._recorder, self._target = recorder, [module]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._recorder.call("call", self._target[0], args, kwargs)


def _safe_repr(obj: Any) -> str:
    try:
        return clean_text(repr(obj), 200)
    except Exception:
        return f"<{clean_text(type(obj).__name__, 100)}>"


# -- what a module was built as -------------------------------------------------------------------
#
# A "new" call returns the learner's module, which is not plain data: its structure is recorded
# instead (parameter and buffer names, values and flags), and the grader builds a stand-in module
# with exactly that structure, whose forward replays the recorded outputs.


def _structure(module: Any) -> dict:
    if not isinstance(module, nn.Module):
        return {"not_module": clean_text(type(module).__name__, 100), "repr": _safe_repr(module)}
    persistent = set(module.state_dict())
    return {"params": [[n, encode(p.detach()), bool(p.requires_grad)] for n, p in module.named_parameters()],
            "buffers": [[n, encode(b.detach()), n in persistent] for n, b in module.named_buffers()],
            "type": clean_text(type(module).__name__, 100)}




# -- gradients --------------------------------------------------------------------------------
#
# Values cross as plain data, without their autograd graph. Checks of losses ask whether the
# learner's result carries a gradient (a loss that training can backpropagate through), so the
# record says which output tensors had a grad_fn, and the replayed ones get one too. The values
# of gradients are not replayed: no check reads them.


def _output_tensors(value: Any, out: list, depth: int = 0) -> list:
    """The tensors in a result, in the order encode() writes them (lists, tuples, dict values)."""
    if isinstance(value, torch.Tensor):
        out.append(value)
    elif depth < MAX_DEPTH and isinstance(value, (list, tuple)):
        for v in value:
            _output_tensors(v, out, depth + 1)
    elif depth < MAX_DEPTH and isinstance(value, dict):
        for v in value.values():
            _output_tensors(v, out, depth + 1)
    return out


def _grad_carriers(out: Any) -> list[int]:
    """Indices (in _output_tensors order) of the output tensors that carry a gradient."""
    return [i for i, t in enumerate(_output_tensors(out, [])) if t.grad_fn is not None]


def _carry_grad(value: Any, carriers: Any) -> Any:
    """``value`` with the tensors named by ``carriers`` given a grad_fn, as the learner's had."""
    if type(carriers) is not list or any(type(i) is not int for i in carriers):
        raise WireError("the record's gradient flags are not a list of indices")
    if not carriers:
        return value
    tensors = _output_tensors(value, [])
    swap = {}
    for i in carriers:
        if not 0 <= i < len(tensors) or not (tensors[i].is_floating_point() or tensors[i].is_complex()):
            raise WireError("a gradient flag names no floating-point output tensor")
        swap[id(tensors[i])] = tensors[i].requires_grad_(True) * 1  # a result with a grad_fn
    return _replace(value, swap)


def _replace(value: Any, swap: dict) -> Any:
    if isinstance(value, torch.Tensor):
        return swap.get(id(value), value)
    if isinstance(value, list):
        return [_replace(v, swap) for v in value]
    if isinstance(value, tuple):
        return tuple(_replace(v, swap) for v in value)
    if isinstance(value, dict):
        return {k: _replace(v, swap) for k, v in value.items()}
    return value


# -- replaying, in the grader -------------------------------------------------------------------


class Replayer:
    """Stands in for the learner's object in the grader's own run of a check."""

    def __init__(self, meta: Any, events: Any) -> None:
        if type(meta) is not dict or meta.get("kind") not in ("function", "class", "module", "value"):
            raise ReplayBroken("the record does not say what kind of object the learner's was")
        if type(events) is not list:
            raise ReplayBroken("the record's calls are not a list")
        self.meta, self.events, self.pos = meta, events, 0
        name: str = meta["name"] if type(meta.get("name")) is str and meta["name"].isidentifier() else "learner"
        kind = meta["kind"]
        if kind == "function":
            def learner(*args: Any, **kwargs: Any) -> Any:
                return self.call("call", args, kwargs)
            learner.__name__ = learner.__qualname__ = name
            self.learner = learner
        elif kind == "module":
            self.learner = _ReplayCallable(self)
        elif kind == "class":
            replayer = self

            class Replayed(nn.Module):
                def __new__(cls, *args: Any, **kwargs: Any) -> Any:
                    return replayer.new(args, kwargs)
            Replayed.__name__ = Replayed.__qualname__ = name
            self.learner = Replayed
        else:
            self.learner = _value(meta)

    @property
    def stopped(self) -> str | None:
        """Why the kernel's run of the check stopped early, if the record ends that way."""
        last = self.events[-1] if self.events else None
        if type(last) is dict and type(last.get("raise")) is dict:
            err = _rebuild_error(last["raise"])
            if isinstance(err, Stopped):
                return str(err)
        return None

    def next(self, op: str, args: tuple, kwargs: dict, extra: Any = None) -> dict:
        if self.pos >= len(self.events):
            raise ReplayBroken(f"the grader's check makes call {self.pos + 1}, but your kernel's record "
                               f"holds only {len(self.events)}")
        event = self.events[self.pos]
        self.pos += 1
        if type(event) is not dict or event.get("op") != op:
            raise ReplayBroken(f"call {self.pos} of the record is not the {op!r} call the check makes")
        if event.get("in") != digest((extra, args, kwargs)):
            raise ReplayBroken(f"call {self.pos}: the inputs your kernel recorded differ from the grader's")
        _apply(_leaves((args, kwargs), []), event.get("mut", []))
        if "raise" in event:
            raise _rebuild_error(event["raise"])
        if "refused" in event:
            raise TypeError(clean_text(event["refused"], 2000))
        if not {"out", "fn", "model"} & set(event):
            raise ReplayBroken(f"call {self.pos} of the record has no result")
        return event

    def call(self, op: str, args: tuple, kwargs: dict, extra: Any = None) -> Any:
        event = self.next(op, args, kwargs, extra)
        try:
            if "fn" in event:  # a returned function: its calls come next in the record
                def replayed(*a: Any, **k: Any) -> Any:
                    return self.call("call", a, k)
                name = event["fn"] if type(event["fn"]) is str and event["fn"].isidentifier() else "function"
                replayed.__name__ = replayed.__qualname__ = name
                return replayed
            if "model" in event:
                return _carry_grad(_rebuild(event["model"], args, kwargs), event.get("grad", []))
            return _carry_grad(decode(event["out"]), event.get("grad", []))
        except WireError as err:
            raise ReplayBroken(f"call {self.pos} holds malformed data ({err})") from None

    def new(self, args: tuple, kwargs: dict) -> Any:
        structure = self.next("new", args, kwargs)["out"]
        try:
            return _stand_in(self, structure)
        except WireError as err:
            raise ReplayBroken(f"call {self.pos} holds a malformed module ({err})") from None


class _ReplayCallable(nn.Module):
    def __init__(self, replayer: Replayer) -> None:
        super().__init__()
        self._replayer = [replayer]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._replayer[0].call("call", args, kwargs)


class _ReplayModule(nn.Module):
    """A module with the learner's parameter and buffer names, whose forward replays."""

    def __init__(self, replayer: Replayer, type_name: str) -> None:
        super().__init__()
        self._replayer, self._type_name = [replayer], type_name

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._replayer[0].call("forward", args, kwargs, extra=_module_state(self))

    def extra_repr(self) -> str:
        return f"replayed {self._type_name}"


def _owner(root: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    """The submodule that holds ``dotted`` (made if need be) and the entry's own name."""
    *path, leaf = dotted.split(".")
    for part in [*path, leaf]:
        if not (part.isidentifier() or part.isdigit()) or keyword.iskeyword(part):
            raise WireError(f"a parameter name {dotted!r} that is not made of identifiers")
    module = root
    for part in path:
        sub = module._modules.get(part)
        if sub is None:
            sub = nn.Module()
            module.add_module(part, sub)
        module = sub
    if leaf in module._modules or leaf in module._parameters or leaf in module._buffers:
        raise WireError(f"two entries named {dotted!r}")
    return module, leaf


def _stand_in(replayer: Replayer, structure: Any) -> Any:
    if type(structure) is not dict:
        raise WireError("a module structure must be a dict")
    if "not_module" in structure:
        return _value({"type": structure.get("not_module"), "repr": structure.get("repr")})
    type_name: str = structure["type"] if type(structure.get("type")) is str else "Module"
    module = _ReplayModule(replayer, type_name)
    for kind in ("params", "buffers"):
        entries = structure.get(kind)
        if type(entries) is not list or len(entries) > 10_000:
            raise WireError(f"a module's {kind} must be a list")
        for entry in entries:
            if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not str or type(entry[2]) is not bool:
                raise WireError(f"a malformed entry in a module's {kind}")
            owner, leaf = _owner(module, entry[0])
            value = decode_tensor(entry[1]["T"]) if type(entry[1]) is dict and set(entry[1]) == {"T"} else None
            if value is None:
                raise WireError(f"a module's {kind} entry {entry[0]!r} is not a tensor")
            if kind == "params":
                owner.register_parameter(leaf, nn.Parameter(value, requires_grad=entry[2] and (
                    value.is_floating_point() or value.is_complex())))
            else:
                owner.register_buffer(leaf, value, persistent=entry[2])
    return module


def _value(meta: dict) -> Any:
    """A stand-in for something that is neither a function nor a class: the value itself when
    it is plain, else an object of a class with the same name."""
    if "value" in meta:
        try:
            return decode(meta["value"])
        except WireError:
            pass
    name: str = meta["type"] if type(meta.get("type")) is str and meta["type"].isidentifier() else "object"
    text = clean_text(meta.get("repr", f"<{name}>"), 200)
    return type(name, (), {"__repr__": lambda self: text})()
