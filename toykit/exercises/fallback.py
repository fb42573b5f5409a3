"""Let the learner's own code drive a chapter, with toykit's version as a safety net.

A later cell that needs an exercise's function calls ``choose(exercise, learner, reference)``.
It gets the learner's version when that exercise's latest check in this session passed, and
toykit's otherwise, with one printed line saying so. An unfinished or failing exercise
therefore never breaks the cells after it, and a finished one produces the chapter's figures.

The verdict comes from ``checking.results()``: the record each ``check_<exercise>`` leaves.
Bind the choice to a new name (``attention_cls = choose("attention", Attention, ...)``), never
to the exercise's own name: the grader looks the learner's answer up by that name.
"""

from __future__ import annotations

from typing import TypeVar

from toykit.exercises.checking import results

T = TypeVar("T")


def passed(exercise: str) -> bool:
    """Whether the latest check of ``exercise`` (e.g. "cache_hidden") in this session passed."""
    if not isinstance(exercise, str) or not exercise:
        raise TypeError(f"exercise must be an exercise id such as 'cache_hidden', got {exercise!r}")
    verdicts = [r.passed for r in results() if r.exercise == exercise]
    return bool(verdicts) and verdicts[-1]


def choose(exercise: str, learner: T, reference: T) -> T:
    """``learner`` if ``check_<exercise>`` last passed in this session, else ``reference``.

    exercise: the exercise id, the name after ``check_`` (e.g. "attention" for check_attention).
    learner: the learner's function or class (may be unfinished: it is not called here).
    reference: toykit's version, used when the learner's has not passed its check.
    """
    if passed(exercise):
        return learner
    print(f"↪ {exercise}: your version has not passed check_{exercise} yet, so this cell uses toykit's")
    return reference
