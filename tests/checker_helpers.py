"""Shared by the checker tests (tests/test_checkers_chNN.py): how a mutant must be rejected."""

import pytest

from toykit.exercises import CheckFailure, results


def rejects(check, fn, hint_part: str) -> CheckFailure:
    """``check(fn)`` must fail with a hint containing ``hint_part``, and record a failed result."""
    with pytest.raises(CheckFailure) as info:
        check(fn)
    err = info.value
    assert hint_part in err.hint, f"expected a hint containing {hint_part!r}, got {err.hint!r}\n{err}"
    assert results()[-1].passed is False
    return err


def not_done(*args, **kwargs):
    """A learner's exercise before any work: the check must say "not done yet"."""
    raise NotImplementedError()


def accepts(check, fn, capsys, name: str) -> None:
    """``check(fn)`` must pass, print its one-line success and record a passed result."""
    check(fn)
    assert f"✔ {name}" in capsys.readouterr().out
    assert results()[-1].passed
