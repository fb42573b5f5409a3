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
- :mod:`~toykit.grading.cli`: the two sub-commands.
"""

from toykit.grading.assign import assign
from toykit.grading.batch import find_submissions, grade
from toykit.grading.cli import add_assign_parser, add_grade_parser, register
from toykit.grading.report import STATUSES
from toykit.grading.spec import ChapterSpec, Exercise, chapter_spec

__all__ = [
    "STATUSES",
    "ChapterSpec",
    "Exercise",
    "add_assign_parser",
    "add_grade_parser",
    "assign",
    "chapter_spec",
    "find_submissions",
    "grade",
    "register",
]
