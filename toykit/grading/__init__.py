"""Classroom grading: ``toykit grade`` and ``toykit assign``.

One module per idea:

- :mod:`~toykit.grading.spec`: a chapter's exercises, checks and points, read from its
  solution notebook;
- :mod:`~toykit.grading.sandbox`: the kernel launcher that confines a submission's kernel;
- :mod:`~toykit.grading.checkcell`: the cell appended to every submission, which records the
  learner's answers to each check in the kernel;
- :mod:`~toykit.grading.wire` and :mod:`~toykit.grading.text`: plain data and safe text across
  the kernel boundary;
- :mod:`~toykit.grading.replay`: the recorder (kernel) and replayer (grader) of those answers;
- :mod:`~toykit.grading.verdict`: the grader's own process that runs the real checks on them;
- :mod:`~toykit.grading.worker`: runs one submission in a fresh kernel;
- :mod:`~toykit.grading.batch`: runs a batch, ``--jobs`` at a time, under time limits;
- :mod:`~toykit.grading.report`: rows, ``grades.csv``, ``grades.json`` and feedback files;
- :mod:`~toykit.grading.merge`: one report from the reports of several shards;
- :mod:`~toykit.grading.assign`: the learner notebook and a README for students;
- :mod:`~toykit.grading.gradescope`: an autograder bundle for Gradescope, and its grading script;
- :mod:`~toykit.grading.cli`: the two sub-commands.

The names below are imported on first use: the check cell imports ``toykit.grading.checkcell``
inside a student's kernel, which must not pay for (or depend on) the batch grader's modules.
"""

import importlib

_WHERE = {
    "assign": "assign", "find_submissions": "batch", "grade": "batch", "add_assign_parser": "cli",
    "add_grade_parser": "cli", "register": "cli", "merge": "merge", "STATUSES": "report",
    "ChapterSpec": "spec", "Exercise": "spec", "chapter_spec": "spec",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'toykit.grading' has no attribute {name!r}")
    return getattr(importlib.import_module(f"toykit.grading.{_WHERE[name]}"), name)
