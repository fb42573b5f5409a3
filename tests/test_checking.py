"""The checker machinery itself, on a made-up exercise (softmax over the last axis)."""

import json

import pytest
import torch

from toykit.exercises import CheckFailure, clear_results, results
from toykit.exercises.checking import Case, Mistake, run_check

CASES = [Case("small", (torch.randn(2, 3, generator=torch.Generator().manual_seed(0)),)),
         Case("wide", (torch.randn(4, 7, generator=torch.Generator().manual_seed(1)),))]
MISTAKES = [
    Mistake("softmax over the wrong axis", lambda x: x.softmax(0)),
    Mistake("you returned the logits", lambda x: x),
]


def check(fn):
    run_check("softmax", fn, lambda x: x.softmax(-1), CASES, MISTAKES, hint="generic")


@pytest.fixture(autouse=True)
def fresh():
    clear_results()


def test_success_prints_one_line_and_records(capsys):
    check(lambda x: torch.exp(x) / torch.exp(x).sum(-1, keepdim=True))
    assert capsys.readouterr().out == "✔ softmax: 2 cases passed\n"
    [r] = results()
    assert r.passed and r.exercise == "softmax" and r.cases == 2


@pytest.mark.parametrize("wrong, hint", [
    (lambda x: x.softmax(0), "wrong axis"),
    (lambda x: x.clone(), "returned the logits"),
    (lambda x: x.softmax(-1) * 2, "generic"),
])
def test_failures_are_diagnosed(wrong, hint):
    with pytest.raises(CheckFailure) as info:
        check(wrong)
    err = info.value
    assert isinstance(err, AssertionError)
    assert hint in err.hint and err.case == "small"
    assert "expected tensor shape=[2, 3]" in str(err) and "Hint:" in str(err)
    assert results()[-1].passed is False


def test_shape_and_type_problems_are_reported():
    with pytest.raises(CheckFailure, match=r"shape mismatch: expected \[2, 3\], got \[2\]"):
        check(lambda x: x.sum(-1))
    with pytest.raises(CheckFailure, match="not a tensor"):
        check(lambda x: "a string")
    with pytest.raises(CheckFailure, match="raised ZeroDivisionError"):
        check(lambda x: 1 / 0)


def test_not_implemented_gets_its_own_hint():
    def stub(x):
        raise NotImplementedError()

    with pytest.raises(CheckFailure) as info:
        check(stub)
    assert "not done yet" in info.value.hint


def test_inputs_are_cloned_so_in_place_edits_do_not_leak():
    def in_place(x):
        x.mul_(0)
        return x.softmax(-1)

    with pytest.raises(CheckFailure):
        check(in_place)
    assert CASES[0].args[0].abs().sum() > 0


def test_results_go_to_the_log_file(tmp_path, monkeypatch):
    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv("TOYKIT_CHECK_LOG", str(log))
    check(lambda x: x.softmax(-1))
    with pytest.raises(CheckFailure):
        check(lambda x: x)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["exercise"], r["passed"]) for r in lines] == [("softmax", True), ("softmax", False)]
    assert "returned the logits" in lines[1]["message"]
