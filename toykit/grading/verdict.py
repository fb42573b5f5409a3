"""The verdict, decided in the grader's own clean process from what the kernel recorded.

``python -m toykit.grading.verdict JOB.json`` reads the kernel's record file (untrusted: sizes
capped, every line validated), runs each exercise's real check from a freshly started
interpreter with a :class:`~toykit.grading.replay.Replayer` in the learner's place, and writes
``{"exercises": {id: {passed, detail, hint, case}}, "problems": [...], "done": bool}``.
Nothing from the kernel is executed or unpickled; a record that does not fit the grader's own
run of a check fails that exercise and says why.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

MAX_RECORD_BYTES = 512 * 2**20


class GraderTimeout(BaseException):
    """The grader's own run of a check ran past its limit."""


def read_record(path: Path, nonce: str, ids: set[str]) -> tuple[dict[str, dict], bool, list[str]]:
    """(lines by exercise id, whether the kernel finished, problems with the file)."""
    from toykit.grading.text import clean_text

    lines: dict[str, dict] = {}
    problems: list[str] = []
    done = False
    try:
        size = path.stat().st_size
    except OSError:
        return lines, done, problems
    if size > MAX_RECORD_BYTES:
        return lines, done, [f"the kernel's record is {size / 2**20:.0f} MB, more than the grader reads"]
    with open(path, "rb") as f:
        for raw in f:
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                problems.append("the record holds a line that is not JSON")
                continue
            if type(rec) is not dict or rec.get("nonce") != nonce:
                problems.append("the record holds a line the grader's cell did not write")
                continue
            if rec.get("done") is True:
                done = True
                continue
            ex = rec.get("exercise")
            if type(ex) is not str or ex not in ids or ex in lines:
                problems.append(f"the record holds a second or unknown entry {clean_text(ex, 80)!r}")
                continue
            lines[ex] = rec
    return lines, done, problems


def judge(line: dict, module: str, check_name: str, seconds: float) -> dict:
    """The verdict on one exercise: the real check, run on the replayed answers."""
    from toykit.grading.replay import ReplayBroken, Replayer, Stopped
    from toykit.grading.text import clean_text

    if line.get("missing") is True:
        return {"passed": False, "missing": True, "detail": "not found: did you rename it or delete its cell?"}
    from toykit.exercises.checking import find_check

    check = find_check(module, check_name.removeprefix("check_"))  # the chapter's EXERCISES table
    stopped = line.get("stopped")

    def on_alarm(signum: int, frame: Any) -> None:
        raise GraderTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    # the grader's own time (toykit's reference, the comparisons): generous, and never the student's fault
    signal.alarm(max(60, int(4 * seconds)))
    replayer = None
    try:
        replayer = Replayer(line.get("meta"), line.get("calls"))
        with contextlib.redirect_stdout(io.StringIO()):  # a check prints one line when it passes
            check(replayer.learner)
        return {"passed": True, "detail": ""}
    except ReplayBroken as err:
        # the kernel's run stopped early (its time limit, or the learner's code exited): say so
        why = stopped if type(stopped) is str else (replayer.stopped if replayer else None)
        if why == "timeout":
            return {"passed": False, "detail": f"the check ran longer than {seconds:g} s (an endless loop?)"}
        if why:
            return {"passed": False, "detail": clean_text(why, 2000)}
        return {"passed": False, "suspect": True,
                "detail": f"the grader could not replay your answers: {clean_text(err, 1000)}. This happens "
                          "when the notebook changes the checks, torch's global settings (such as the "
                          "default dtype) or the inputs the checks make"}
    except GraderTimeout:
        return {"passed": False, "grader_error": True,
                "detail": "the grader's own run of the check took too long (a loaded machine?)"}
    except Stopped as err:
        if str(err) == "timeout":
            return {"passed": False, "detail": f"the check ran longer than {seconds:g} s (an endless loop?)"}
        return {"passed": False, "detail": clean_text(err, 2000)}
    except AssertionError as err:  # CheckFailure: the learner's answer is wrong
        return {"passed": False, "detail": clean_text(getattr(err, "detail", None) or err, 4000),
                "hint": clean_text(getattr(err, "hint", "") or "", 2000) or None,
                "case": clean_text(getattr(err, "case", "") or "", 500) or None}
    except Exception as err:  # e.g. the check refused the object (TypeError: expects your function)
        return {"passed": False, "detail": clean_text(f"{type(err).__name__}: {err}", 4000)}
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def decide(job: dict) -> dict:
    """The verdict on every exercise of ``job`` (record, nonce, exercises, seconds, threads)."""
    import torch

    torch.set_num_threads(int(job.get("threads", 1)))  # as in the kernel: same float rounding
    ids = {e["id"] for e in job["exercises"]}
    lines, done, problems = read_record(Path(job["record"]), job["nonce"], ids)
    exercises = {}
    for ex in job["exercises"]:
        line = lines.get(ex["id"])
        if line is not None:
            exercises[ex["id"]] = judge(line, ex["module"], ex["check"], job["seconds"])
    return {"exercises": exercises, "problems": problems, "done": done}


def main(argv: list[str]) -> int:
    os.environ.pop("TOYKIT_CHECK_LOG", None)
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = decide(job)
    tmp = Path(job["out"]).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, ensure_ascii=True), encoding="utf-8")
    os.replace(tmp, job["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
