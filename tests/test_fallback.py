"""choose(): the learner's version once its check passed, toykit's (said aloud) otherwise."""

import pytest
import torch

from toykit.exercises import ch00
from toykit.exercises.fallback import choose, passed


def merge_heads_done(z):
    return z.flatten(-2)


def merge_heads_wrong(z):
    return z.transpose(-1, -2).flatten(-2)


def merge_heads_unfinished(z):
    raise NotImplementedError()


def test_unchecked_exercise_falls_back_and_says_so(capsys):
    assert not passed("merge_heads")
    assert choose("merge_heads", merge_heads_done, ch00.merge_heads) is ch00.merge_heads
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "merge_heads" in out and "toykit's" in out


@pytest.mark.parametrize("attempt", [merge_heads_unfinished, merge_heads_wrong])
def test_failed_check_falls_back(attempt, capsys):
    with pytest.raises(AssertionError):
        ch00.check_merge_heads(attempt)
    assert choose("merge_heads", attempt, ch00.merge_heads) is ch00.merge_heads
    assert "has not passed check_merge_heads" in capsys.readouterr().out


def test_passed_check_uses_the_learners_version_silently(capsys):
    ch00.check_merge_heads(merge_heads_done)
    capsys.readouterr()
    assert choose("merge_heads", merge_heads_done, ch00.merge_heads) is merge_heads_done
    assert capsys.readouterr().out == ""
    z = torch.randn(2, 3, 4, 5)
    assert torch.equal(choose("merge_heads", merge_heads_done, ch00.merge_heads)(z), ch00.merge_heads(z))


def test_the_latest_check_decides():
    ch00.check_merge_heads(merge_heads_done)
    with pytest.raises(AssertionError):
        ch00.check_merge_heads(merge_heads_wrong)  # the learner broke it again
    assert not passed("merge_heads")
    ch00.check_merge_heads(merge_heads_done)
    assert passed("merge_heads")


def test_other_exercises_do_not_count():
    ch00.check_merge_heads(merge_heads_done)
    assert passed("merge_heads") and not passed("batched_dot")


@pytest.mark.parametrize("bad", [None, "", ch00.check_merge_heads])
def test_exercise_must_be_an_id(bad):
    with pytest.raises(TypeError, match="exercise must be an exercise id"):
        choose(bad, merge_heads_done, ch00.merge_heads)
