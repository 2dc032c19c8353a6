"""Check cells and their nbgrader metadata (lesson 00: ``tlcourse grade`` and ``tools/make_exercises.py``).

A template's **check cells** hold nothing but grader calls, ``grade.check_x(...).assert_passed()``;
``tools/make_exercises.py`` marks them with nbgrader's cell metadata (:func:`check_cell_metadata`, nbgrader's
own checksum included) so nbgrader's autograder can grade the same notebooks, and ``tlcourse grade`` finds
them again with :func:`template_checks`.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

POINTS = 1
NBGRADER_SCHEMA = 3
_GRADE_ID = re.compile(r"[^A-Za-z0-9_-]+")


def grader_calls(source: str) -> list[str] | None:
    """The graders a check cell calls, e.g. ``["check_separable_cost"]``; None when it is not a check cell.

    A check cell holds nothing but statements of the form ``<module>.check_x(...).assert_passed()``.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names = []
    for statement in tree.body:
        call = statement.value if isinstance(statement, ast.Expr) else None
        if not (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "assert_passed"
            and isinstance(call.func.value, ast.Call)
        ):
            return None
        grader = call.func.value.func
        name = grader.attr if isinstance(grader, ast.Attribute) else getattr(grader, "id", "")
        if not name.startswith("check_"):
            return None
        names.append(name)
    return names or None


def grade_ids(sources: Sequence[str | None]) -> list[str | None]:
    """One nbgrader ``grade_id`` per check cell (None for other cells): the graders' names, made unique."""
    ids: list[str | None] = []
    seen: dict[str, int] = {}
    for source in sources:
        names = grader_calls(source) if source is not None else None
        if not names:
            ids.append(None)
            continue
        base = _GRADE_ID.sub("_", "-".join(names))
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


def nbgrader_checksum(cell: Mapping[str, Any]) -> str:
    """nbgrader's checksum of a grade or locked cell (``nbgrader.utils.compute_checksum``, schema 3)."""
    meta = dict(cell.get("metadata", {}).get("nbgrader", {}))
    grade, solution = bool(meta.get("grade", False)), bool(meta.get("solution", False))
    locked = False if solution else (True if grade else bool(meta.get("locked", False)))
    digest = hashlib.md5(usedforsecurity=False)
    for part in (cell_source(cell), cell.get("cell_type", ""), str(grade), str(solution), str(locked)):
        digest.update(str(part).encode("utf-8"))
    digest.update(str(meta["grade_id"]).encode("utf-8"))
    if grade:
        digest.update(str(float(meta["points"])).encode("utf-8"))
    return digest.hexdigest()


def check_cell_metadata(cell: Mapping[str, Any], grade_id: str, points: int = POINTS) -> dict[str, Any]:
    """The ``nbgrader`` metadata of a locked, autograded check cell (what ``tools/make_exercises.py`` writes)."""
    meta = {
        "cell_type": "code",
        "grade": True,
        "grade_id": grade_id,
        "locked": True,
        "points": points,
        "schema_version": NBGRADER_SCHEMA,
        "solution": False,
        "task": False,
    }
    meta["checksum"] = nbgrader_checksum({**cell, "metadata": {"nbgrader": meta}})
    return meta


def cell_source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def normalized_source(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


@dataclass(frozen=True)
class TemplateCheck:
    """One check cell of an exercise template."""

    grade_id: str
    source: str
    points: float = POINTS


def template_checks(notebook: Mapping[str, Any]) -> list[TemplateCheck]:
    """The check cells of a template: those with nbgrader ``grade`` metadata, else those that call graders."""
    cells = [cell for cell in notebook.get("cells", []) if cell.get("cell_type") == "code"]
    marked = [cell for cell in cells if cell.get("metadata", {}).get("nbgrader", {}).get("grade")]
    if marked:
        return [
            TemplateCheck(
                str(cell["metadata"]["nbgrader"]["grade_id"]),
                cell_source(cell),
                float(cell["metadata"]["nbgrader"].get("points", POINTS)),
            )
            for cell in marked
        ]
    ids = grade_ids([cell_source(cell) for cell in cells])
    return [
        TemplateCheck(grade_id, cell_source(cell))
        for cell, grade_id in zip(cells, ids, strict=True)
        if grade_id
    ]
