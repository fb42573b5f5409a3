"""One report from the reports of several shards (``toykit grade --shard K/N``).

Each shard writes its own ``grades.json``; :func:`merge` checks that they grade the same
chapter, in the same version, from the same submissions root, and writes their rows together
into one output folder, with its ``grades.csv`` and feedback files, as one run would have.
"""

from __future__ import annotations

import json
from pathlib import Path

from toykit.grading.report import Report
from toykit.grading.spec import chapter_spec


def merge(reports: list[str | Path], out: str | Path, root: Path | None = None) -> dict[str, dict]:
    """Merge the report folders ``reports`` into ``out``; returns the merged rows by key."""
    if not reports:
        raise ValueError("give at least one shard's output folder to merge")
    loaded = []
    for folder in map(Path, reports):
        path = folder / "grades.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a readable grades.json ({err})") from None
        if not isinstance(data, dict) or not isinstance(data.get("submissions"), dict):
            raise ValueError(f"{path} is not a toykit grades file")
        loaded.append((path, data))
    first_path, first = loaded[0]
    spec = chapter_spec(str(first.get("chapter")), root)
    for path, data in loaded:
        for field, want in (("chapter", spec.stem), ("fingerprint", spec.fingerprint), ("root", first.get("root"))):
            if data.get(field) != want:
                raise ValueError(f"{path} has {field} {data.get(field)!r}, but {first_path} and the course have "
                                 f"{want!r}: merge only shards of one run")
    report = Report(Path(out), spec, first.get("settings", {}))
    if report.root not in (None, first.get("root")):
        raise ValueError(f"{out} holds rows for the submissions root {report.root!r}, not {first.get('root')!r}")
    report.root = first.get("root")
    owner: dict[str, Path] = {}
    for path, data in loaded:
        for key, row in data["submissions"].items():
            if key in owner and report.rows.get(key) != row:
                raise ValueError(f"{key!r} is graded differently in {owner[key]} and {path}: merge only "
                                 "disjoint shards")
            owner[key] = path
            report.rows[key] = row
    report.write()
    return report.rows
