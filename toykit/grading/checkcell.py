"""The cell the grader appends to every submission: it runs the chapter's checks itself.

The learner's own check cells and printed outputs are ignored. After the learner's cells
have run, this cell

- resets tracing hooks, then drops every ``toykit`` module from ``sys.modules`` and imports the
  checkers again from toykit's own folder, so a monkeypatched check does not survive;
- looks up each exercise's object by name in the learner's namespace (missing: a failure that
  says so), and refuses toykit's own implementation passed off as the learner's;
- while an exercise is checked, makes toykit's reference of that exercise refuse calls from
  the learner's code, so ``return ch00.merge_heads(z)`` does not pass;
- rejects tensor subclasses in the learner's outputs (they could rig comparisons);
- runs each check on two wrong "canary" answers before and after the learner's: if a canary
  passes, the checking machinery has been tampered with, and the submission is flagged;
- appends one JSON line per exercise, tagged with a nonce made at grading time, to a results
  file whose name also holds the nonce.

All of this runs in the learner's process, so it stops cheap tricks, not a determined attack:
see book/grading.md for the limits.
"""

from __future__ import annotations

import json

_TEMPLATE = r'''# Added by `toykit grade`: the grader's own checks (the learner's outputs are not trusted).
def _toykit_grade___NONCE__(_config=__CONFIG__):
    import functools, importlib, json, os, signal, sys, threading, types
    nonce, toykit_dir = _config["nonce"], _config["toykit_dir"]
    sys.settrace(None); sys.setprofile(None); threading.settrace(None); threading.setprofile(None)
    out = open(_config["results"], "a", encoding="utf-8")

    def emit(record):
        record["nonce"] = nonce
        out.write(json.dumps(record) + "\n")
        out.flush()

    missing = object()
    user = globals()
    learner = {ex["name"]: user.get(ex["name"], missing) for ex in _config["exercises"]}

    def in_toykit(filename):
        try:
            return os.path.realpath(filename).startswith(toykit_dir + os.sep)
        except (TypeError, ValueError):
            return False

    def toykit_own(obj, name):
        seen = 0
        while seen < 10:
            seen += 1
            if isinstance(obj, functools.partial):
                obj = obj.func
            elif hasattr(obj, "__func__"):
                obj = obj.__func__
            elif isinstance(obj, types.FunctionType) and "__wrapped__" in obj.__dict__:
                obj = obj.__wrapped__
            else:
                break
        if isinstance(obj, types.FunctionType):
            return in_toykit(obj.__code__.co_filename)
        if isinstance(obj, type):  # toykit's class, or a subclass that only renames it
            return any((c.__module__ or "").startswith("toykit") and (c is obj or c.__name__ == name)
                       for c in obj.__mro__)
        return not isinstance(obj, types.BuiltinFunctionType) and (type(obj).__module__ or "").startswith("toykit")

    own = {name: obj is not missing and toykit_own(obj, name) for name, obj in learner.items()}

    old = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "toykit" or k.startswith("toykit.")}
    importlib.invalidate_caches()
    modules = {}
    for ex in _config["exercises"]:
        mod = importlib.import_module("toykit.exercises." + ex["module"])
        if not in_toykit(getattr(mod, "__file__", "") or ""):
            emit({"tampered": "toykit.exercises.%s was imported from %r, not from toykit" % (
                ex["module"], getattr(mod, "__file__", None))})
        modules[ex["module"]] = mod
    import torch

    class ToykitReferenceCall(Exception):
        pass

    class ToykitTimeout(Exception):
        pass

    current = [None]
    originals = {}

    def dispatch(key, name, args, kwargs):
        caller = sys._getframe(2).f_code.co_filename
        if current[0] == name and not in_toykit(caller):
            raise ToykitReferenceCall("your code calls toykit's own %s: write your own" % name)
        return originals[key](*args, **kwargs)

    guard_name = "_toykit_guard_" + nonce
    every = list(old.values()) + [m for k, m in sys.modules.items() if k.startswith("toykit")]
    for mod in every:
        for ex in _config["exercises"]:
            fn = getattr(mod, ex["id"], None)
            if not isinstance(fn, types.FunctionType) or fn.__closure__ or not in_toykit(fn.__code__.co_filename):
                continue
            key = "%d:%s" % (id(fn), ex["id"])
            if key in originals:
                continue
            copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__)
            copy.__kwdefaults__ = fn.__kwdefaults__
            originals[key] = copy
            namespace = {}
            exec("def %s(*args, **kwargs):\n    return %s(%r, %r, args, kwargs)\n" % (
                ex["id"], guard_name, key, ex["id"]), namespace)
            fn.__globals__[guard_name] = dispatch
            fn.__code__ = namespace[ex["id"]].__code__

    def plain(value):
        if isinstance(value, torch.Tensor) and type(value) not in (torch.Tensor, torch.nn.Parameter):
            raise TypeError("returned a tensor subclass (%s): return a plain torch.Tensor" % type(value).__name__)
        if isinstance(value, (tuple, list)):
            for v in value:
                plain(v)
        elif isinstance(value, dict):
            for v in value.values():
                plain(v)
        return value

    def wrapped(fn):
        if not isinstance(fn, types.FunctionType):
            return fn
        @functools.wraps(fn)
        def call(*args, **kwargs):
            return plain(fn(*args, **kwargs))
        return call

    def perturb(value):
        if isinstance(value, torch.Tensor):
            return value + 1 if value.dtype != torch.bool else ~value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value + 1
        if isinstance(value, tuple):
            return tuple(perturb(v) for v in value)
        if isinstance(value, list):
            return [perturb(v) for v in value]
        return None

    def canaries(mod, ex):
        reference = getattr(mod, ex["id"], None)

        def not_done(*args, **kwargs):
            raise NotImplementedError()
        out = [not_done]
        if isinstance(reference, types.FunctionType):
            @functools.wraps(reference)
            def off_by_one(*args, **kwargs):
                return perturb(reference(*args, **kwargs))
            out.append(off_by_one)
        return out

    def on_alarm(signum, frame):
        raise ToykitTimeout()

    def run(check, fn, seconds):
        """(passed, detail, hint, case) of check(fn), within `seconds`."""
        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(max(1, int(seconds)))
        try:
            check(fn)
            return True, "", None, None
        except ToykitTimeout:
            return False, "the check ran longer than %d s (an endless loop?)" % seconds, None, None
        except AssertionError as err:
            hint = getattr(err, "hint", None)
            if isinstance(getattr(err, "__cause__", None), ToykitReferenceCall) or "ToykitReferenceCall" in str(err):
                hint = "implement the exercise yourself instead of calling toykit's reference"
            return (False, getattr(err, "detail", None) or str(err), hint, getattr(err, "case", None))
        except Exception as err:
            return False, "%s: %s" % (type(err).__name__, err), None, None
        except BaseException as err:
            return False, "the check was stopped by %s" % type(err).__name__, None, None
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)

    def healthy(check, mod, ex):
        for canary in canaries(mod, ex):
            current[0] = None
            passed = run(check, canary, _config["seconds"])[0]
            if passed:
                return "the checker accepted a wrong answer (%s), so the checking code was tampered with" % (
                    canary.__name__)
        return None

    for ex in _config["exercises"]:
        mod = modules[ex["module"]]
        check = getattr(mod, ex["check"])
        obj = learner[ex["name"]]
        record = {"exercise": ex["id"]}
        problem = healthy(check, mod, ex)
        if problem:
            record.update(passed=False, tampered=problem, detail=problem)
        elif obj is missing:
            record.update(passed=False, missing=True,
                          detail="function `%s` not found: did you rename it or delete its cell?" % ex["name"])
        elif own[ex["name"]]:
            record.update(passed=False, detail="`%s` is toykit's own implementation, not yours" % ex["name"],
                          hint="implement the exercise yourself instead of reusing toykit's reference")
        else:
            current[0] = ex["id"]
            try:
                passed, detail, hint, case = run(check, wrapped(obj), _config["seconds"])
            finally:
                current[0] = None
            record.update(passed=passed, detail=detail, hint=hint, case=case)
            problem = healthy(check, mod, ex)
            if problem:
                record.update(passed=False, tampered=problem, detail=problem)
        emit(record)
    emit({"done": True})
    out.close()


_toykit_grade___NONCE__()
del _toykit_grade___NONCE__
'''


def grading_cell(nonce: str, results: str, exercises: list[dict], toykit_dir: str, seconds: float) -> str:
    """The source of the injected cell.

    exercises: [{"id", "name", "module", "check"}]; results: the path of the results file;
    seconds: the time limit for one exercise's check.
    """
    config = {"nonce": nonce, "results": results, "exercises": exercises, "toykit_dir": toykit_dir,
              "seconds": float(seconds)}
    return _TEMPLATE.replace("__NONCE__", nonce).replace("__CONFIG__", repr(json.loads(json.dumps(config))))
