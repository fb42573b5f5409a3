"""The cell the grader appends to every submission, and what it runs in the kernel.

The cell decides nothing: it runs each chapter check with the learner's object wrapped by a
:class:`~toykit.grading.replay.Recorder` and writes what the learner's code returned, as plain
data, one JSON line per exercise. The grader then replays those answers to the real checks in
its own process (:mod:`toykit.grading.verdict`). The learner's own check cells and printed
outputs are ignored.

The cell is written so that a learner's top-level names (``max = 3``, ``def open(...)``,
``list = [...]``) cannot break it: it names no builtin, and its code runs in toykit's modules,
whose globals are their own. It imports the checkers already loaded, so classes such as
``TinyMLP`` stay the ones the learner's objects were made from.
"""

from __future__ import annotations

import json
from typing import Any

# Only statements (import, def, call, del) and names it binds itself: nothing is looked up in
# the learner's namespace, where any name could have been redefined.
_TEMPLATE = '''# Added by `toykit grade`: records your functions' answers to the chapter's checks.
def _toykit_record___NONCE__():
    import sys
    from toykit.grading.checkcell import record_checks
    record_checks(sys._getframe(0).f_globals, __CONFIG__)


_toykit_record___NONCE__()
del _toykit_record___NONCE__
'''


def grading_cell(nonce: str, results: str, exercises: list[dict], seconds: float) -> str:
    """The source of the injected cell.

    exercises: [{"id", "name", "module", "check"}]; results: the path of the file to write;
    seconds: the time limit for one exercise's check in the kernel.
    """
    config = {"nonce": nonce, "results": results, "exercises": exercises, "seconds": float(seconds)}
    return _TEMPLATE.replace("__NONCE__", nonce).replace("__CONFIG__", repr(json.loads(json.dumps(config))))


def record_checks(namespace: dict, config: dict) -> None:
    """Run each exercise's check on a recorder of the learner's object; write one line each."""
    import signal

    from toykit.exercises.checking import find_check
    from toykit.grading.replay import Recorder, Stopped

    def on_alarm(signum: int, frame: Any) -> None:
        raise Stopped("timeout")

    missing = object()
    with open(config["results"], "a", encoding="utf-8") as out:
        for ex in config["exercises"]:
            line: dict = {"nonce": config["nonce"], "exercise": ex["id"]}
            obj = dict.get(namespace, ex["name"], missing)
            if obj is missing:
                line["missing"] = True
            else:
                recorder = Recorder(obj)
                previous = signal.signal(signal.SIGALRM, on_alarm)
                signal.alarm(max(1, int(config["seconds"])))
                try:  # the check is looked up here too: a notebook may have broken its module
                    check = find_check(ex["module"], ex["check"].removeprefix("check_"))
                    check(recorder.learner)
                    line["kernel"] = "passed"
                except Stopped as err:
                    line["kernel"], line["stopped"] = "stopped", str(err)
                except BaseException as err:  # the check failed, or the learner's code misbehaved
                    line["kernel"] = type(err).__name__
                finally:
                    signal.alarm(0)
                    signal.signal(signal.SIGALRM, previous)
                line.update(meta=recorder.meta, calls=recorder.events)
            out.write(json.dumps(line) + "\n")
            out.flush()
        out.write(json.dumps({"nonce": config["nonce"], "done": True}) + "\n")
