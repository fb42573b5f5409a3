"""Exercise checkers, one module per chapter: ``toykit.exercises.ch01.check_<name>``.

A failed check names the mistake; a full reference solution appears only on request:
``toykit.exercises.show_solution("mmcs")``.
"""

from toykit.exercises.checking import CheckFailure, CheckResult, clear_results, results
from toykit.exercises.solutions import show_solution

__all__ = ["CheckFailure", "CheckResult", "clear_results", "results", "show_solution"]
