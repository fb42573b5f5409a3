"""From a finished run to a row: scores, status, and the files an instructor reads.

``grades.json`` is the record (every row with its messages); ``grades.csv`` and
``feedback/<key>.md`` (the key: the submission's path under the submissions root) are rewritten
from it after each submission, through a temporary file and ``os.replace``, so a crash never
leaves a half-written file and loses nothing graded.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from toykit.grading.spec import ChapterSpec
from toykit.grading.text import clean_text, md_block, md_inline

# The statuses a row can have, in the words an instructor sees.
STATUSES = {
    "ok": "ran to the end without errors",
    "errors": "ran to the end; some cells raised errors",
    "timeout": "ran past a time limit",
    "out_of_memory": "a cell ran out of memory",
    "disk_limit": "the notebook wrote more files than the disk limit allows",
    "overloaded": "the machine was too busy to time the cells fairly (graded again on the next run)",
    "kernel_died": "the kernel died",
    "tampered": "the checks were tampered with: read this notebook",
    "invalid_notebook": "not a notebook that can be run",
    "wrong_chapter": "a notebook of another chapter",
    "grader_error": "the grader itself failed on this submission (graded again on the next run)",
}


def _first_line(text: str, n: int = 300) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line[:n]


def _text(value: object, limit: int = 4000) -> str:
    """Kernel-derived text, safe to store: a string, valid UTF-8, at most ``limit`` characters."""
    return clean_text("" if value is None else value, limit)


def read_verdict(path: Path, spec: ChapterSpec) -> tuple[dict[str, dict], list[str], bool]:
    """The verdict process's records by exercise, reasons to distrust the kernel's record, and
    whether the grader's cell finished recording."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}, [], False
    if not isinstance(data, dict):
        return {}, [], False
    ids = {e.id for e in spec.exercises}
    given = data.get("exercises")
    given = given if isinstance(given, dict) else {}
    records = {k: v for k, v in given.items() if k in ids and isinstance(v, dict)}
    problems = [_text(p, 500) for p in data.get("problems", []) if isinstance(p, str)][:20]
    return records, problems, data.get("done") is True


def make_row(key: str, submission: Path, sha256: str, spec: ChapterSpec, outcome: dict,
             records: dict[str, dict], problems: list[str], limits: dict, recorded: bool = True) -> dict:
    """One row of grades.json from a run's outcome and the grader's verdicts.

    Everything in ``outcome`` that came from the kernel (cell errors) and in ``records`` (the
    learner's messages, as the checks quote them) is cut to size and made valid text here.
    recorded: whether the grader's cell in the kernel finished recording every exercise.
    """
    status: str = outcome["status"] if outcome.get("status") in STATUSES else "grader_error"
    detail = _text(outcome.get("detail"), 2000)
    cells: int = outcome["cells"] if isinstance(outcome.get("cells"), int) else 0
    all_errors = []
    for e in outcome.get("cell_errors", [])[:1000] if isinstance(outcome.get("cell_errors"), list) else []:
        if isinstance(e, dict) and isinstance(e.get("cell"), int):
            all_errors.append({"cell": e["cell"], "ename": _text(e.get("ename"), 200),
                               "evalue": _text(e.get("evalue"), 1000)})
    errors = [e for e in all_errors if e["cell"] < cells]
    grading_errors = [e for e in all_errors if e["cell"] >= cells]
    if status == "ok":
        timed_out = [c for c in outcome.get("timed_out_cells") or [] if isinstance(c, int)]
        if timed_out:
            status, detail = "timeout", (f"cell {', '.join(str(c + 1) for c in timed_out)} ran longer than "
                                         f"{limits['cell_timeout']:g} s and was interrupted; the rest ran")
        elif any(_is_memory_error(e) for e in errors):
            which = [e["cell"] + 1 for e in errors if _is_memory_error(e)]
            status, detail = "out_of_memory", (f"cell {', '.join(map(str, which))} ran out of memory "
                                               f"(limit {limits['memory_mb']} MB); the rest ran")
        elif errors:
            status = "errors"
            detail = f"{len(errors)} cell(s) raised errors (first: cell {errors[0]['cell'] + 1}, {errors[0]['ename']})"
    elif status == "kernel_died":
        cell: int = outcome["died_in_cell"] if isinstance(outcome.get("died_in_cell"), int) else -1
        if cell >= cells:
            pending = [e.id for e in spec.exercises if e.id not in records]
            detail = (f"the kernel died while the grader was checking `{pending[0]}`" if pending
                      else "the kernel died at the end of grading")
        else:
            detail = (f"the kernel died during cell {cell + 1} (it exited, crashed, or was killed, "
                      "e.g. for memory); later cells did not run")
    verdict_failed = outcome.get("verdict")
    if isinstance(verdict_failed, str):
        status, detail = "grader_error", _text(verdict_failed, 2000)
    elif outcome.get("status") == "ok" and not recorded and (  # every cell ran, the grader's too
            grading_errors or len(records) < len(spec.exercises)):
        # the grader's own cell failed: not the student's fault, so the row is graded again next run
        why = (f"{grading_errors[0]['ename']}: {_first_line(grading_errors[0]['evalue'])}" if grading_errors
               else "it stopped before recording every exercise")
        status, detail = "grader_error", f"the grader's cell in the kernel failed ({why})"
    if problems:
        status = "tampered"
        detail = "the kernel's record was altered: " + "; ".join(dict.fromkeys(problems))
        records = {}
    slow = [ex.id for ex in spec.exercises if records.get(ex.id, {}).get("grader_error")]
    suspect = [ex.id for ex in spec.exercises if records.get(ex.id, {}).get("suspect")]
    if slow:
        status, detail = "grader_error", f"the grader's own check of {', '.join(slow)} ran out of time"
    elif suspect and status != "grader_error":
        status = "tampered"
        detail = f"the grader could not replay the answers recorded for {', '.join(suspect)}: read this notebook"
    exercises: dict[str, dict[str, Any]] = {}
    for ex in spec.exercises:
        rec = records.get(ex.id)
        if rec is None:
            if status in ("invalid_notebook", "wrong_chapter"):
                message = "not graded: " + STATUSES[status]
            else:
                message = f"not graded: {detail or STATUSES.get(status, status)}"
            exercises[ex.id] = {"points": 0.0, "max": ex.points, "passed": False, "message": message,
                                "hint": None}
            continue
        passed = rec.get("passed") is True
        if rec.get("missing"):
            message = f"function `{ex.name}` not found: did you rename it or delete its cell?"
        else:
            message = "passed" if passed else (_text(rec.get("detail")) or "failed")
        exercises[ex.id] = {"points": ex.points if passed else 0.0, "max": ex.points, "passed": passed,
                            "message": message, "hint": _text(rec.get("hint"), 2000) or None,
                            "case": _text(rec.get("case"), 500) or None}
    total = sum(e["points"] for e in exercises.values())
    return {"key": key, "file": _text(submission, 4000), "sha256": sha256, "status": status,
            "detail": detail or STATUSES.get(status, ""), "total": total, "max": spec.max_points,
            "spec": spec.fingerprint, "exercises": exercises, "cell_errors": errors[:20],
            "seconds": outcome.get("seconds") if isinstance(outcome.get("seconds"), (int, float)) else None,
            "sandbox": outcome.get("sandbox", {}) if isinstance(outcome.get("sandbox"), dict) else {},
            "limits": limits}


def _is_memory_error(err: dict) -> bool:
    return err["ename"] == "MemoryError" or "can't allocate memory" in err["evalue"] or (
        "out of memory" in err["evalue"].lower())


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _number(x: float) -> str:
    return f"{x:g}"


def csv_text(spec: ChapterSpec, rows: dict[str, dict]) -> str:
    """One line per submission: its key (path under the submissions root), file, points per
    exercise, total, max, status. A row graded under another version of the chapter is listed
    as "stale" with empty points, never on another scale."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["submission", "file", *[e.id for e in spec.exercises], "total", "max", "status"])
    for key in sorted(rows):
        row = rows[key]
        if row.get("spec") != spec.fingerprint:
            writer.writerow([key, row.get("file", ""), *["" for _ in spec.exercises], "", "", "stale"])
            continue
        writer.writerow([key, row.get("file", ""),
                         *[_number(row["exercises"][e.id]["points"]) for e in spec.exercises],
                         _number(row["total"]), _number(row["max"]), row["status"]])
    return buf.getvalue()


def feedback_text(spec: ChapterSpec, row: dict) -> str:
    """The learner-facing feedback for one submission, in Markdown. Whatever a kernel could
    have influenced (messages, case names, error text, the file name) is escaped."""
    lines = [f"# Feedback: {spec.title}", "",
             f"Submission {md_inline(Path(row['file']).name)}: "
             f"**{_number(row['total'])} / {_number(row['max'])} points**.",
             "", f"Status: **{row['status']}**: {md_inline(row['detail'])}", "", "## Exercises", ""]
    for ex in spec.exercises:
        r = row["exercises"][ex.id]
        mark = "✔" if r["passed"] else "✘"
        lines.append(f"### {mark} `{ex.name}` ({_number(r['points'])} / {_number(r['max'])})")
        lines.append("")
        if r["passed"]:
            lines.append("Every case of the check passed.")
        else:
            if r.get("case"):
                lines.append(f"Failed on case *{md_inline(r['case'], 500)}*.")
                lines.append("")
            lines += md_block((r["message"] or "failed").strip())
            if r.get("hint"):
                lines += ["", f"**Hint:** {md_inline(r['hint'])}"]
        lines.append("")
    errors = row.get("cell_errors") or []
    if errors:
        lines += ["## Cells that raised errors", ""]
        for e in errors[:10]:
            lines.append(f"- cell {e['cell'] + 1}: {md_inline(e['ename'], 200)}: "
                         f"{md_inline(_first_line(e['evalue'], 200))}")
        lines.append("")
    limits = row.get("limits", {})
    lines += ["## How this was graded", "",
              "Your notebook was run from top to bottom in a fresh kernel, which recorded what your "
              "functions returned on each check's inputs; the grader then ran the checks in its own "
              "process on those answers. Printed outputs in the file you handed in were not used. Limits: "
              f"{limits.get('cell_timeout', '?')} s per cell, {limits.get('timeout', '?')} s per notebook, "
              f"{limits.get('memory_mb', '?')} MB of memory.", ""]
    return "\n".join(lines)


def feedback_path(out: Path, key: str) -> Path:
    """``feedback/<key without .ipynb>.md``: the submissions' folders, mirrored."""
    parts = [p for p in key.split("/") if p not in ("", ".", "..")] or ["submission"]
    parts[-1] = parts[-1].removesuffix(".ipynb") + ".md"
    return out.joinpath("feedback", *parts)


class Report:
    """The output folder: loads earlier rows, and rewrites every file after each new row.

    Rows are keyed by the submission's path under the submissions root, which the report
    keeps (``root``), so the same file always lands in the same row.
    """

    def __init__(self, out: Path, spec: ChapterSpec, settings: dict) -> None:
        self.out, self.spec, self.settings = Path(out), spec, settings
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "feedback").mkdir(exist_ok=True)
        self.rows: dict[str, dict] = {}
        self.root: str | None = None
        path = self.out / "grades.json"
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"{path} is not valid JSON ({err}); move it away to start afresh") from err
            if not isinstance(old, dict) or not isinstance(old.get("submissions", {}), dict):
                raise ValueError(f"{path} is not a toykit grades file; move it away to start afresh")
            if old.get("chapter") != spec.stem:
                raise ValueError(f"{path} holds grades for chapter {old.get('chapter')!r}, not {spec.stem!r}: "
                                 "use another --out folder")
            self.rows = {k: v for k, v in old.get("submissions", {}).items() if _well_formed(v)}
            self.root = old.get("root") if isinstance(old.get("root"), str) else None

    def graded(self, key: str, sha256: str) -> bool:
        """Whether ``key`` needs no grading: same file, same chapter version, and neither a grader
        error nor a run the machine's load spoiled."""
        row = self.rows.get(key)
        if not row:
            return False
        return (row.get("sha256") == sha256 and row.get("spec") == self.spec.fingerprint
                and row.get("status") not in ("grader_error", "overloaded"))

    def add(self, row: dict) -> None:
        self.rows[row["key"]] = row
        self.write()

    def write(self) -> None:
        data = {**self.spec.as_dict(), "root": self.root, "settings": self.settings, "statuses": STATUSES,
                "submissions": {k: self.rows[k] for k in sorted(self.rows)}}
        _replace(self.out / "grades.json", json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        _replace(self.out / "grades.csv", csv_text(self.spec, self.rows))
        for key, row in self.rows.items():
            if row.get("spec") != self.spec.fingerprint:
                continue  # stale: its feedback stays as it was until it is graded again
            path = feedback_path(self.out, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            text = feedback_text(self.spec, row)
            if not path.exists() or path.read_text(encoding="utf-8", errors="replace") != text:
                _replace(path, text)


def _well_formed(row: object) -> bool:
    """A row as make_row writes it (an older or hand-edited file may hold others)."""
    return (isinstance(row, dict) and isinstance(row.get("exercises"), dict) and isinstance(row.get("key"), str)
            and isinstance(row.get("total"), (int, float)) and isinstance(row.get("status"), str))
