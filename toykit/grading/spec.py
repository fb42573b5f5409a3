"""What a chapter asks for: its exercises, their checks and their points.

The exercise list is read from the chapter's *solution* notebook, so it never disagrees with
the chapter: every unindented line ``chNN.check_<id>(<name>)`` in a code cell is one exercise
(first occurrence wins; indented calls, such as demos inside ``try:``, are not exercises).
Points come from the notebook metadata ``{"toykit": {"points": {"<id>": 2}}}``; an exercise
not listed there is worth 1.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from toykit.notebooks import Course, find_root

_CHECK_LINE = re.compile(r"^(?P<module>ch\d\d)\.(?P<check>check_(?P<id>\w+))\((?P<name>\w+)\)\s*(#.*)?$", re.M)
_ANY_CHECK = re.compile(r"\b(ch\d\d)\.check_\w+\(")
_IMPORT = re.compile(r"^\s*from\s+toykit\.exercises\s+import\s+(.+)$", re.M)
_TITLE = re.compile(r"^#\s+(\d\d)\b", re.M)


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: ``<module>.<check>(<name>)`` is worth ``points``."""

    id: str
    name: str
    module: str
    check: str
    points: float = 1.0


@dataclass
class ChapterSpec:
    """A chapter as the grader sees it."""

    stem: str  # e.g. "00_how_this_course_works"
    title: str
    solution: Path
    exercises: list[Exercise] = field(default_factory=list)

    @property
    def number(self) -> str:
        return self.stem[:2]

    @property
    def module(self) -> str:
        return f"ch{self.number}"

    @property
    def max_points(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def fingerprint(self) -> str:
        """Names every exercise, check and point value: a row graded under another fingerprint
        (an exercise added, points changed) is graded again, never mixed with this one."""
        text = json.dumps([[e.id, e.name, e.module, e.check, e.points] for e in self.exercises])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def as_dict(self) -> dict:
        return {"chapter": self.stem, "title": self.title, "max_points": self.max_points,
                "fingerprint": self.fingerprint,
                "exercises": [{"id": e.id, "name": e.name, "check": f"{e.module}.{e.check}",
                               "points": e.points} for e in self.exercises]}


def parse_spec(nb: nbformat.NotebookNode, stem: str, solution: Path) -> ChapterSpec:
    """The spec of a solution notebook already read into ``nb``."""
    exercises: dict[str, Exercise] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for m in _CHECK_LINE.finditer(cell.source):
            if m["id"] not in exercises:
                exercises[m["id"]] = Exercise(m["id"], m["name"], m["module"], m["check"])
    if not exercises:
        raise ValueError(f"{solution} has no exercise check calls (lines like `ch00.check_x(x)`)")
    points = nb.metadata.get("toykit", {}).get("points", {})
    if not isinstance(points, dict):
        raise ValueError(f"{solution}: metadata toykit.points must map exercise ids to points")
    unknown = sorted(set(points) - set(exercises))
    if unknown:
        raise ValueError(f"{solution}: metadata toykit.points names unknown exercises {unknown} "
                         f"(exercises: {list(exercises)})")
    out = []
    for ex in exercises.values():
        value = points.get(ex.id, 1)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{solution}: points for {ex.id!r} must be a number >= 0, got {value!r}")
        out.append(Exercise(ex.id, ex.name, ex.module, ex.check, float(value)))
    title = next((c.source.strip().splitlines()[0].lstrip("# ").strip()
                  for c in nb.cells if c.cell_type == "markdown" and c.source.strip()), stem)
    return ChapterSpec(stem, title, solution, out)


def chapter_spec(chapter: str, root: Path | None = None) -> ChapterSpec:
    """The spec of ``chapter`` ("00", "00_how_this_course_works" or a path to its notebook)."""
    course = Course(find_root(root))
    solution = course.solution_paths([chapter])[0]
    nb = nbformat.read(solution, as_version=4)
    return parse_spec(nb, solution.stem, solution)


def chapter_modules(nb: nbformat.NotebookNode) -> tuple[set[str], str | None]:
    """Which ``chNN`` checker modules a notebook uses, and the chapter number in its title."""
    mods: set[str] = set()
    title = None
    for cell in nb.cells:
        source = cell.get("source", "")
        if not isinstance(source, str):
            continue
        if cell.get("cell_type") == "code":
            mods.update(_ANY_CHECK.findall(source))
            for m in _IMPORT.finditer(source):
                mods.update(re.findall(r"\bch\d\d\b", m[1]))
        elif cell.get("cell_type") == "markdown" and title is None:
            found = _TITLE.search(source)
            if found:
                title = found[1]
    return mods, title


def wrong_chapter(nb: nbformat.NotebookNode, spec: ChapterSpec) -> str | None:
    """Why ``nb`` looks like another chapter's notebook, or None if it may be this one."""
    mods, title = chapter_modules(nb)
    if spec.module in mods:
        return None
    if mods:
        return f"it calls the checkers of {', '.join(sorted(mods))}, not {spec.module}"
    if title is not None and title != spec.number:
        return f"its title says chapter {title}, not {spec.number}"
    return None
