"""The benchmark runner works end to end on tiny sizes and writes valid results.

No test here asserts a timing: the numbers depend on the machine and on what else it runs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks/ is a folder of scripts next to the package, not installed

from benchmarks import run as runner  # noqa: E402
from benchmarks.common import figure, paired_ratio, run_child  # noqa: E402

pytestmark = pytest.mark.slow  # runs the benchmark runner in child processes

FIGURE_KEYS = {"name", "value", "unit", "target", "met", "note"}


def table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the markdown results table, split into cells."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert lines[0] == "| benchmark | figure | value | target | met? | note |"
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[1:]]


def test_a_quick_run_writes_json_markdown_and_the_book_page(tmp_path):
    out, book = tmp_path / "out", tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "toy_models", "--threads", "1",
         "--out", str(out), "--book", str(book)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True
    assert results["machine"]["torch_threads"] == 1 and results["machine"]["usable_cores"] >= 1
    entry = results["benchmarks"]["toy_models"]
    assert entry["status"] == "ok" and entry["torch_threads"] == 1
    figures = entry["figures"]
    assert any("fraction of the machine's matmul rate" in f["name"] for f in figures)
    for f in figures:
        assert set(f) == FIGURE_KEYS and f["value"] > 0

    markdown = (out / "results.md").read_text()
    assert markdown.startswith("# toykit benchmark results") and "**Machine:**" in markdown
    rows = table_rows(markdown)
    assert len(rows) == len(figures) and all(len(row) == 6 and row[0] == "toy_models" for row in rows)
    page = book.read_text()
    assert page.startswith("# Benchmarks") and table_rows(page) == rows


def test_the_runner_also_runs_as_a_script_and_lists_the_benchmarks():
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--list"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines()}
    assert listed == set(runner.NAMES)


@pytest.fixture
def in_process(tmp_path, monkeypatch):
    """Run benchmarks in this process (as the child would), with two fake ones registered."""

    def boom(quick: bool) -> dict:
        raise RuntimeError("a deliberate failure")

    def free_form(quick: bool) -> dict:  # a result without a "figures" list
        return {"steps_per_s": 12.5, "nested": {"ratio": 1.02, "label": "a|b"}, "trace": [1, 2, 3]}

    def with_figures(quick: bool) -> dict:
        return {"figures": [figure("speed ratio", 0.9, "x", at_least=1.0, why="the profile says so"),
                            figure("other ratio", 1.1, "x", at_least=1.0, why="never shown: target met")],
                "details": {"rounds": 3, "profiles": {"a step": "aten::mm  1.0 ms"}}}

    for name, fn in [("boom", boom), ("free_form", free_form), ("with_figures", with_figures)]:
        monkeypatch.setitem(runner.WRAPPERS, name, fn)

    def run_in_child(name: str, quick: bool, threads: int | None) -> dict:
        out = tmp_path / f"{name}.json"
        runner.child_main(name, quick, threads, out)
        return {**json.loads(out.read_text()), "started": "now", "seconds": 0.0}

    monkeypatch.setattr(runner, "run_in_child", run_in_child)
    return tmp_path


def test_missing_and_failing_benchmarks_are_reported_and_the_others_still_run(in_process):
    out = in_process / "out"
    results = runner.run_all(["boom", "free_form", "with_figures", "not_written_yet"], quick=True, threads=None,
                             out_dir=out, book_page=None, log=lambda line: None)
    entries = results["benchmarks"]
    assert entries["boom"]["status"] == "error" and "a deliberate failure" in entries["boom"]["error"]
    assert entries["not_written_yet"] == {"status": "not yet available"}
    assert {f["name"]: f["value"] for f in entries["free_form"]["figures"]} == {
        "steps_per_s": 12.5, "nested.ratio": 1.02, "nested.label": "a|b"}
    assert entries["free_form"]["details"]["trace"] == [1, 2, 3]
    assert entries["with_figures"]["figures"][0]["met"] is False
    assert entries["with_figures"]["details"] == {"rounds": 3, "profiles": {"a step": "aten::mm  1.0 ms"}}
    assert "why" not in entries["with_figures"]["figures"][1]

    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    markdown = (out / "results.md").read_text()
    assert "**Failed to run:** boom" in markdown and "**Not yet available:** not_written_yet." in markdown
    # Listed under targets missed, with the cause; the profile follows as a text block.
    assert "- with_figures: speed ratio = 0.9x (target >= 1x). Why: the profile says so" in markdown
    assert "never shown" not in markdown
    assert "with_figures: a step:\n\n```text\naten::mm  1.0 ms\n```" in markdown
    rows = table_rows(markdown)
    assert ["free_form", "nested.label", "a\\|b", "", "", ""] in rows  # a "|" in a value does not break the table
    assert ["with_figures", "speed ratio", "0.9x", ">= 1x", "**no**", ""] in rows


def test_only_replaces_just_the_named_entries_of_earlier_results(in_process):
    out = in_process / "out"
    runner.run_all(["free_form", "with_figures"], quick=True, threads=None, out_dir=out, book_page=None,
                   log=lambda line: None)
    results = runner.run_all(["boom"], quick=True, threads=None, out_dir=out, book_page=None, merge=True,
                             log=lambda line: None)
    assert sorted(results["benchmarks"]) == ["boom", "free_form", "with_figures"]
    # Results of another mode are never mixed in.
    full = runner.run_all(["boom"], quick=False, threads=None, out_dir=out, book_page=None, merge=True,
                          log=lambda line: None)
    assert list(full["benchmarks"]) == ["boom"]


def test_figures_carry_their_target_and_verdict():
    assert figure("t", 91.0, "s", at_most=90) == {"name": "t", "value": 91.0, "unit": "s", "target": "<= 90 s",
                                                  "met": False, "note": ""}
    assert figure("r", 1.0412, "x", at_least=1.0)["met"] is True
    assert figure("t", 91.0, "s", at_most=90, why="too slow")["why"] == "too slow"
    assert "why" not in figure("t", 89.0, "s", at_most=90, why="too slow")
    assert figure("r", 1.0412, "x", at_least=1.0)["value"] == 1.04  # 3 significant digits
    assert figure("n", 12345.6, "tokens/s")["target"] is None
    assert paired_ratio([2.0, 4.0, 9.0], [1.0, 2.0, 3.0]) == 2.0
    with pytest.raises(ValueError):
        figure("bad", 1.0, at_most=1, at_least=0)


@pytest.mark.skipif(not hasattr(__import__("os"), "wait4"), reason="needs os.wait4")
def test_run_child_measures_the_childs_peak_memory():
    child = run_child([sys.executable, "-c", "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
                                             "print('done')"])
    assert child.returncode == 0 and child.stdout.strip() == "done"
    assert child.peak_rss_bytes >= 300 * 2**20 and child.wall_s > 0


def test_the_book_page_ends_with_the_comparison_with_transformerlens_and_saelens(tmp_path):
    assert runner.lens_section(tmp_path / "nothing here") == ""
    lens = {"finished": "2026-11-25T18:00:00+00:00", "machine": runner.machine(), "benchmarks": {
        "sae": {"status": "ok", "figures": [figure("SAE: step time, toykit / SAELens", 0.88, "x", note="n"),
                                            figure("SAE: steps/s", 17.0, "steps/s")]},
        "transformer": {"status": "ok", "figures": [figure("training speed, toykit / TransformerLens", None, "x")]}}}
    (tmp_path / "results.json").write_text(json.dumps(lens))
    section = runner.lens_section(tmp_path)
    assert section.startswith("## Against TransformerLens and SAELens")
    # Only the comparisons that were measured: no plain toykit figures, no empty values.
    assert "| sae | SAE: step time, toykit / SAELens | 0.88x | n |" in section
    assert "steps/s" not in section and "training speed" not in section
