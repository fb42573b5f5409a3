"""Exercise checkers, one module per chapter: ``toykit.exercises.ch01.check_<name>``."""

from toykit.exercises.checking import CheckFailure, CheckResult, clear_results, results

__all__ = ["CheckFailure", "CheckResult", "clear_results", "results"]
