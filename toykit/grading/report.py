"""From a finished run to a row: scores, status, and the files an instructor reads.

``grades.json`` is the record (every row with its messages); ``grades.csv`` and
``feedback/<key>.md`` are rewritten from it after each submission, through a temporary file
and ``os.replace``, so a crash never leaves a half-written file and loses nothing graded.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from toykit.grading.spec import ChapterSpec

# The statuses a row can have, in the words an instructor sees.
STATUSES = {
    "ok": "ran to the end without errors",
    "errors": "ran to the end; some cells raised errors",
    "timeout": "ran past a time limit",
    "out_of_memory": "a cell ran out of memory",
    "kernel_died": "the kernel died",
    "tampered": "the checks were tampered with: read this notebook",
    "invalid_notebook": "not a notebook that can be run",
    "wrong_chapter": "a notebook of another chapter",
    "grader_error": "the grader itself failed on this submission",
}


def _first_line(text: str, n: int = 300) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line[:n]


def read_results(path: Path, nonce: str, spec: ChapterSpec) -> tuple[dict[str, dict], list[str]]:
    """The check cell's records by exercise, and reasons to distrust them (forged lines)."""
    records: dict[str, dict] = {}
    problems: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return records, problems
    ids = {e.id for e in spec.exercises}
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            problems.append("the results file holds a line that is not JSON")
            continue
        if not isinstance(rec, dict) or rec.get("nonce") != nonce:
            problems.append("the results file holds a line the grader did not write")
            continue
        if "tampered" in rec and "exercise" not in rec:
            problems.append(str(rec["tampered"]))
        ex = rec.get("exercise")
        if ex is None:
            continue
        if ex not in ids or ex in records:
            problems.append(f"the results file holds a second or unknown record for {ex!r}")
            continue
        records[ex] = rec
    return records, problems


def make_row(key: str, submission: Path, sha256: str, spec: ChapterSpec, outcome: dict,
             records: dict[str, dict], problems: list[str], limits: dict) -> dict:
    """One row of grades.json from a run's outcome and the check cell's records."""
    status, detail = outcome.get("status", "grader_error"), outcome.get("detail", "")
    errors = [e for e in outcome.get("cell_errors", []) if e["cell"] < outcome.get("cells", 0)]
    grading_errors = [e for e in outcome.get("cell_errors", []) if e["cell"] >= outcome.get("cells", 1 << 30)]
    if status == "ok":
        if outcome.get("timed_out_cells"):
            cells = [c + 1 for c in outcome["timed_out_cells"]]
            status, detail = "timeout", (f"cell {', '.join(map(str, cells))} ran longer than "
                                         f"{limits['cell_timeout']:g} s and was interrupted; the rest ran")
        elif any(_is_memory_error(e) for e in errors):
            cells = [e["cell"] + 1 for e in errors if _is_memory_error(e)]
            status, detail = "out_of_memory", (f"cell {', '.join(map(str, cells))} ran out of memory "
                                               f"(limit {limits['memory_mb']} MB); the rest ran")
        elif errors:
            status = "errors"
            detail = f"{len(errors)} cell(s) raised errors (first: cell {errors[0]['cell'] + 1}, {errors[0]['ename']})"
    elif status == "kernel_died":
        cell = outcome.get("died_in_cell", -1)
        if cell >= outcome.get("cells", 0):
            pending = [e.id for e in spec.exercises if e.id not in records]
            detail = (f"the kernel died while the grader was checking `{pending[0]}`" if pending
                      else "the kernel died at the end of grading")
        else:
            detail = (f"the kernel died during cell {cell + 1} (it exited, crashed, or was killed, "
                      "e.g. for memory); later cells did not run")
    if problems:
        status = "tampered"
        detail = "; ".join(dict.fromkeys(problems))
        records = {}
    exercises = {}
    for ex in spec.exercises:
        rec = records.get(ex.id)
        if rec is None:
            if status in ("invalid_notebook", "wrong_chapter"):
                message = "not graded: " + STATUSES[status]
            elif grading_errors:
                e = grading_errors[0]
                message = f"not graded: the grader's check cell failed ({e['ename']}: {_first_line(e['evalue'])})"
            else:
                message = f"not graded: {detail or STATUSES.get(status, status)}"
            exercises[ex.id] = {"points": 0.0, "max": ex.points, "passed": False, "message": message,
                                "hint": None}
            continue
        passed = bool(rec.get("passed")) and not rec.get("tampered")
        if rec.get("tampered") and status not in ("tampered",):
            status, detail = "tampered", rec["tampered"]
        message = "passed" if passed else (rec.get("detail") or "failed")
        exercises[ex.id] = {"points": ex.points if passed else 0.0, "max": ex.points, "passed": passed,
                            "message": message, "hint": rec.get("hint"), "case": rec.get("case")}
    total = sum(e["points"] for e in exercises.values())
    return {"key": key, "file": str(submission), "sha256": sha256, "status": status,
            "detail": detail or STATUSES.get(status, ""), "total": total, "max": spec.max_points,
            "exercises": exercises, "cell_errors": errors[:20], "seconds": outcome.get("seconds"),
            "sandbox": outcome.get("sandbox", {}), "limits": limits}


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
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["submission", *[e.id for e in spec.exercises], "total", "max", "status"])
    for key in sorted(rows):
        row = rows[key]
        writer.writerow([key, *[_number(row["exercises"][e.id]["points"]) for e in spec.exercises],
                         _number(row["total"]), _number(row["max"]), row["status"]])
    return buf.getvalue()


def feedback_text(spec: ChapterSpec, row: dict) -> str:
    """The learner-facing feedback for one submission, in Markdown."""
    lines = [f"# Feedback: {spec.title}", "",
             f"Submission `{Path(row['file']).name}`: **{_number(row['total'])} / {_number(row['max'])} points**.",
             "", f"Status: **{row['status']}**: {row['detail']}", "", "## Exercises", ""]
    for ex in spec.exercises:
        r = row["exercises"][ex.id]
        mark = "✔" if r["passed"] else "✘"
        lines.append(f"### {mark} `{ex.name}` ({_number(r['points'])} / {_number(r['max'])})")
        lines.append("")
        if r["passed"]:
            lines.append("Every case of the check passed.")
        else:
            if r.get("case"):
                lines.append(f"Failed on case *{r['case']}*.")
                lines.append("")
            lines += ["```text", (r["message"] or "failed").strip()[:3000], "```"]
            if r.get("hint"):
                lines += ["", f"**Hint:** {r['hint']}"]
        lines.append("")
    errors = row.get("cell_errors") or []
    if errors:
        lines += ["## Cells that raised errors", ""]
        for e in errors[:10]:
            lines.append(f"- cell {e['cell'] + 1}: `{e['ename']}`: {_first_line(e['evalue'], 200)}")
        lines.append("")
    lines += ["## How this was graded", "",
              "Your notebook was run from top to bottom in a fresh kernel, then the grader ran each "
              "exercise's check itself on the functions your notebook defined. Printed outputs in the "
              "file you handed in were not used. Limits: "
              f"{row.get('limits', {}).get('cell_timeout', '?')} s per cell, "
              f"{row.get('limits', {}).get('timeout', '?')} s per notebook, "
              f"{row.get('limits', {}).get('memory_mb', '?')} MB of memory.", ""]
    return "\n".join(lines)


class Report:
    """The output folder: loads earlier rows, and rewrites every file after each new row."""

    def __init__(self, out: Path, spec: ChapterSpec, settings: dict) -> None:
        self.out, self.spec, self.settings = Path(out), spec, settings
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "feedback").mkdir(exist_ok=True)
        self.rows: dict[str, dict] = {}
        path = self.out / "grades.json"
        if path.exists():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not valid JSON ({err}); move it away to start afresh") from err
            if old.get("chapter") != spec.stem:
                raise ValueError(f"{path} holds grades for chapter {old.get('chapter')!r}, not {spec.stem!r}: "
                                 "use another --out folder")
            self.rows = old.get("submissions", {})

    def graded(self, key: str, sha256: str) -> bool:
        row = self.rows.get(key)
        return bool(row) and row.get("sha256") == sha256 and row.get("status") != "grader_error"

    def add(self, row: dict) -> None:
        self.rows[row["key"]] = row
        self.write()

    def write(self) -> None:
        data = {**self.spec.as_dict(), "settings": self.settings, "statuses": STATUSES,
                "submissions": {k: self.rows[k] for k in sorted(self.rows)}}
        _replace(self.out / "grades.json", json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        _replace(self.out / "grades.csv", csv_text(self.spec, self.rows))
        for key, row in self.rows.items():
            path = self.out / "feedback" / f"{key}.md"
            text = feedback_text(self.spec, row)
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                _replace(path, text)
