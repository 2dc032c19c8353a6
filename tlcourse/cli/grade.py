"""Grade a whole class in one command: ``tlcourse grade SUBMISSIONS... --out DIR`` (lesson 00, instructors).

Each submission is matched to its template in ``exercises/`` by file name and executed headless with every
cell run even after one raises (:func:`tlcourse.cli.runner.run_notebooks` with ``allow_errors``). A template's
**check cells** are the cells that only call graders (``checks.check_x(...).assert_passed()``);
``tools/make_exercises.py`` marks them with nbgrader's cell metadata (``grade``, ``grade_id``, ``locked``,
``points`` and nbgrader's own ``checksum``), so nbgrader's autograder can grade the same notebooks. For every
check cell of the template, the submission's cell with the same ``grade_id`` (or, in a notebook without the
metadata, the same source) is found and scored from the outcome the grader recorded there
(:func:`tlcourse.record.read_checks`). A check cell that is missing, or whose source was edited, scores 0; so
does one that raised or never ran. An exception in a student's cell is reported against the check that
follows it: the exercise it broke.

``DIR`` receives ``grades.csv`` (one row per student, one column per check, 1 or 0, and a total),
``gradebook.html`` (student x check, each hint below its mark, links to each executed notebook as HTML),
``grades.json``, and the executed notebooks at ``DIR/<student>/<name>.ipynb``. The student is the folder
below the common folder of all submissions (``submissions/alice/03_x.ipynb`` -> ``alice``) or, for a flat
folder, the file name without the template's name (``alice_03_pretrained_models.ipynb`` -> ``alice``).

Exit status of ``tlcourse grade``: 0 when every submission was graded (whatever the scores); 1 when at least
one could not be graded completely (no template matches its name, it is not a readable notebook, its kernel
died or a cell timed out: its row says why, and the checks that never ran score 0); 2 for a usage error
(no submissions, no templates); 130 when interrupted.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import html
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tlcourse.errors import TLCourseError

DEFAULT_TEMPLATES = "exercises"
POINTS = 1
NBGRADER_SCHEMA = 3
PAPERMILL_TAGS = frozenset({"injected-parameters", "papermill-error-cell-tag"})
CSV_NAME = "grades.csv"
HTML_NAME = "gradebook.html"
JSON_NAME = "grades.json"
_GRADE_ID = re.compile(r"[^A-Za-z0-9_-]+")


# --------------------------------------------------------------------------------------------------------------
# Check cells and nbgrader metadata (shared with tools/make_exercises.py)


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
    for part in (_source(cell), cell.get("cell_type", ""), str(grade), str(solution), str(locked)):
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


def _source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _normalized(source: str) -> str:
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
                _source(cell),
                float(cell["metadata"]["nbgrader"].get("points", POINTS)),
            )
            for cell in marked
        ]
    ids = grade_ids([_source(cell) for cell in cells])
    return [
        TemplateCheck(grade_id, _source(cell)) for cell, grade_id in zip(cells, ids, strict=True) if grade_id
    ]


# --------------------------------------------------------------------------------------------------------------
# Scoring one executed submission


@dataclass
class CheckOutcome:
    """One check of one submission: ``status`` is passed, failed, error, missing, edited or not run."""

    grade_id: str
    status: str
    hint: str
    points: float = POINTS

    @property
    def earned(self) -> float:
        return self.points if self.status == "passed" else 0.0


def _errors(cell: Mapping[str, Any]) -> list[str]:
    return [
        f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".rstrip(": ")
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


def _where(cell: Mapping[str, Any], position: int) -> str:
    count = cell.get("execution_count")
    return f"In [{count}]" if count is not None else f"cell {position}"


def score_notebook(
    executed: Mapping[str, Any], checks: Sequence[TemplateCheck], template_name: str
) -> list[CheckOutcome]:
    """Score an executed submission against its template's check cells (see the module docstring)."""
    from tlcourse.record import read_checks

    cells = list(executed.get("cells", []))
    recorded: dict[int, list[dict[str, Any]]] = {}
    for item in read_checks(executed):
        recorded.setdefault(item["cell"], []).append(item)
    student_cells = [
        index
        for index, cell in enumerate(cells)
        if not PAPERMILL_TAGS & set(cell.get("metadata", {}).get("tags", []))
    ]
    by_id: dict[str, int] = {}
    by_source: dict[str, int] = {}
    for index in student_cells:
        cell = cells[index]
        if cell.get("cell_type") != "code":
            continue
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id:
            by_id.setdefault(str(grade_id), index)
        by_source.setdefault(_normalized(_source(cell)), index)
    outcomes, previous = [], -1
    restore = f"restore it from exercises/{template_name}"
    for check in checks:
        index = by_id.get(check.grade_id)
        if index is None:
            index = by_source.get(_normalized(check.source))
        if index is None:
            outcomes.append(
                CheckOutcome(
                    check.grade_id, "missing", f"the check cell is missing: {restore}.", check.points
                )
            )
            continue
        cell = cells[index]
        section = [i for i in student_cells if previous < i < index and cells[i].get("cell_type") == "code"]
        previous = max(previous, index)
        raised = [f"{_where(cells[i], i)}: {error}" for i in section for error in _errors(cells[i])]
        context = f" (earlier, {'; '.join(raised)})" if raised else ""
        if _normalized(_source(cell)) != _normalized(check.source):
            outcomes.append(
                CheckOutcome(
                    check.grade_id,
                    "edited",
                    f"the check cell was edited: {restore} (check cells are locked).",
                    check.points,
                )
            )
            continue
        results = recorded.get(index, [])
        expected = len(grader_calls(check.source) or [None])
        failed = [item for item in results if not item["passed"]]
        if failed:
            outcomes.append(
                CheckOutcome(check.grade_id, "failed", failed[0]["message"] + context, check.points)
            )
        elif results and len(results) >= expected:
            outcomes.append(
                CheckOutcome(check.grade_id, "passed", "; ".join(r["message"] for r in results), check.points)
            )
        elif _errors(cell):
            hint = f"the check could not run: {_errors(cell)[0]}{context}"
            outcomes.append(CheckOutcome(check.grade_id, "error", hint, check.points))
        else:
            outcomes.append(
                CheckOutcome(
                    check.grade_id, "not run", "the notebook stopped before this check ran.", check.points
                )
            )
    return outcomes


# --------------------------------------------------------------------------------------------------------------
# Students, templates and the class


@dataclass
class Submission:
    """One student's notebook and what grading it gave."""

    student: str
    source: Path
    template: Path | None
    output: Path
    outcomes: list[CheckOutcome] = field(default_factory=list)
    status: str = "not graded"
    problem: str | None = None
    """Why the submission could not be graded completely (None when it was)."""
    html: Path | None = None

    @property
    def total(self) -> float:
        return sum(outcome.earned for outcome in self.outcomes)

    @property
    def possible(self) -> float:
        return sum(outcome.points for outcome in self.outcomes)


def match_template(submission: Path, templates: Sequence[Path]) -> Path | None:
    """The template with the submission's file name; else the one whose name the submission's name contains."""
    for template in templates:
        if template.name == submission.name:
            return template
    inside = [t for t in templates if t.stem in submission.stem]
    return max(inside, key=lambda t: len(t.stem)) if inside else None


def student_names(
    submissions: Sequence[Path],
    templates: Mapping[Path, Path | None],
    given: Sequence[str | os.PathLike] = (),
) -> dict[Path, str]:
    """Student per submission: its folder below the folder it was found in, or (flat) its file stem.

    A submission found inside a folder named in ``given`` is placed relative to that folder; the others
    relative to the common folder of their own folders. ``submissions/alice/03_x.ipynb`` gives ``alice``;
    ``submissions/alice_03_x.ipynb`` gives ``alice`` too (the template's name is taken out of the stem).
    """
    resolved = [path.resolve() for path in submissions]
    folders = sorted(
        {Path(item).resolve() for item in given if Path(item).is_dir()}, key=lambda p: -len(p.parts)
    )
    loose = [path for path in resolved if not any(path.is_relative_to(folder) for folder in folders)]
    common = Path(os.path.commonpath([path.parent for path in loose])) if loose else Path.cwd()
    names = {}
    for path in resolved:
        root = next((folder for folder in folders if path.is_relative_to(folder)), common)
        relative = path.parent.relative_to(root)
        if relative.parts:
            names[path] = relative.as_posix()
        else:
            template = templates.get(path)
            stem = path.stem.replace(template.stem, "") if template is not None else path.stem
            names[path] = stem.strip("_- .") or path.stem
    return names


def _unique_outputs(submissions: Sequence[Path], names: dict[Path, str], out: Path) -> dict[Path, Path]:
    """``OUT/<student>/<file name>``; a second submission with the same student and file name becomes
    ``<student>-2`` (in ``names`` too), so no two submissions share a row cell or an executed copy."""
    outputs, used = {}, set()
    for path in submissions:
        name, number = names[path], 2
        while (name, path.name) in used:
            name, number = f"{names[path]}-{number}", number + 1
        used.add((name, path.name))
        names[path] = name
        outputs[path] = out / name / path.name
    return outputs


def grade_submissions(
    paths: Sequence[str | os.PathLike],
    *,
    out_dir: str | os.PathLike,
    templates_dir: str | os.PathLike = DEFAULT_TEMPLATES,
    profile: str | None = None,
    jobs: int = 1,
    timeout: float | None = 1800,
    parameters: Mapping[str, Any] | None = None,
    force: bool = False,
    kernel_name: str | None = None,
    progress: bool = False,
    verbose: bool = True,
) -> list[Submission]:
    """Execute and score every submission; write ``grades.csv``, ``gradebook.html`` and ``grades.json``.

    After Ctrl-C the gradebook holds what finished (the rest "not run") and :class:`KeyboardInterrupt` is
    raised again.
    """
    import nbformat

    from tlcourse.cli import runner

    out = Path(out_dir).resolve()
    folder = Path(templates_dir)
    templates = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
    if not templates:
        raise TLCourseError(
            f"No exercise templates in {folder}/. Run from the course folder, or pass --templates DIR."
        )
    found = [path.resolve() for path in runner.find_notebooks(paths, out_dir=out)]
    matched = {path: match_template(path, templates) for path in found}
    names = student_names(found, matched, paths)
    outputs = _unique_outputs(found, names, out)
    submissions = {
        path: Submission(student=names[path], source=path, template=matched[path], output=outputs[path])
        for path in found
    }
    runnable = []
    for path, submission in submissions.items():
        if submission.template is None:
            submission.status, submission.problem = (
                "no template",
                (f"no exercise in {folder}/ matches the file name {path.name}"),
            )
            continue
        try:
            nbformat.read(path, as_version=4)
        except Exception as error:  # noqa: BLE001 - any unreadable file is one ungradable submission
            submission.status, submission.problem = "unreadable", f"not a readable notebook: {error}"
            continue
        runnable.append(path)
    results: dict[Path, Any] = {}
    interrupted = False
    if runnable:
        try:
            runner.run_notebooks(
                runnable, profile=profile, out_dir=out, jobs=jobs, timeout=timeout, parameters=parameters,
                force=force, kernel_name=kernel_name, progress=progress, verbose=verbose,
                outputs={path: outputs[path] for path in runnable}, allow_errors=True,
                on_result=lambda result: results.__setitem__(result.source, result),
            )  # fmt: skip
        except KeyboardInterrupt:
            interrupted = True  # grade what finished, then stop with status 130
    for path in runnable:
        submission, result = submissions[path], results.get(path)
        checks = template_checks(nbformat.read(submission.template, as_version=4))
        if result is None:
            submission.status, submission.problem = (
                "not run",
                "the batch was stopped before this notebook ran",
            )
            submission.outcomes = [
                CheckOutcome(c.grade_id, "not run", submission.problem, c.points) for c in checks
            ]
            continue
        submission.status, submission.html = result.status, result.html
        if not result.ok:
            submission.problem = result.error or result.status
        executed = nbformat.read(result.output, as_version=4) if result.output.is_file() else {"cells": []}
        submission.outcomes = score_notebook(executed, checks, submission.template.name)
    graded = list(submissions.values())
    write_gradebook(graded, out)
    if interrupted:
        raise KeyboardInterrupt
    return graded


# --------------------------------------------------------------------------------------------------------------
# The gradebook


def _columns(submissions: Sequence[Submission]) -> list[tuple[str, str, str]]:
    """(column name, template name, grade_id) for every check of every template, in template order."""
    templates: dict[str, list[str]] = {}
    for submission in submissions:
        if submission.template is not None:
            ids = templates.setdefault(submission.template.name, [])
            ids += [o.grade_id for o in submission.outcomes if o.grade_id not in ids]
    several = len(templates) > 1
    return [
        (f"{Path(name).stem}:{grade_id}" if several else grade_id, name, grade_id)
        for name in sorted(templates)
        for grade_id in templates[name]
    ]


def _rows(submissions: Sequence[Submission]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    columns = _columns(submissions)
    rows: dict[str, dict[str, Any]] = {}
    for submission in submissions:
        row = rows.setdefault(submission.student, {"student": submission.student, "_cells": {}, "_subs": []})
        row["_subs"].append(submission)
        for outcome in submission.outcomes:
            name = next(c for c, t, g in columns if t == submission.template.name and g == outcome.grade_id)
            row["_cells"][name] = outcome
    return [c for c, _, _ in columns], rows


def _points(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def write_gradebook(submissions: Sequence[Submission], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``grades.csv``, ``gradebook.html`` and ``grades.json`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns, rows = _rows(submissions)
    paths = {"csv": out / CSV_NAME, "html": out / HTML_NAME, "json": out / JSON_NAME}
    with paths["csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", *columns, "total", "possible"])
        for student in sorted(rows):
            row = rows[student]
            cells = [_points(row["_cells"][c].earned) if c in row["_cells"] else 0 for c in columns]
            possible = sum(o.points for o in row["_cells"].values())
            writer.writerow([student, *cells, _points(sum(cells)), _points(possible)])
    paths["html"].write_text(_gradebook_html(columns, rows, out), encoding="utf-8")
    payload = [
        {
            "student": s.student,
            "source": str(s.source),
            "template": None if s.template is None else s.template.name,
            "executed": str(s.output),
            "status": s.status,
            "problem": s.problem,
            "total": s.total,
            "possible": s.possible,
            "checks": [asdict(o) for o in s.outcomes],
        }
        for s in submissions
    ]
    paths["json"].write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return paths


_MARKS = {"passed": ("✔", "#1a7f37"), "failed": ("✘", "#cf222e"), "error": ("✘ error", "#cf222e")}


def _gradebook_html(columns: Sequence[str], rows: Mapping[str, Mapping[str, Any]], out: Path) -> str:
    def link(path: Path | None) -> str:
        if path is None:
            return ""
        try:
            return path.resolve().relative_to(out.resolve()).as_posix()
        except ValueError:
            return path.resolve().as_uri()

    body = []
    for student in sorted(rows):
        row = rows[student]
        subs = row["_subs"]
        links = ", ".join(
            f'<a href="{html.escape(link(s.html or s.output))}">{html.escape(s.source.name)}</a>'
            if s.output.is_file()
            else html.escape(s.source.name)
            for s in subs
        )
        problems = "; ".join(f"{s.source.name}: {s.problem}" for s in subs if s.problem)
        tds = [
            f"<td><strong>{html.escape(student)}</strong><div class=hint>{links}</div>"
            + (f"<div class=problem>{html.escape(problems)}</div>" if problems else "")
            + "</td>"
        ]
        earned = possible = 0.0
        for column in columns:
            outcome = row["_cells"].get(column)
            if outcome is None:
                tds.append("<td></td>")
                continue
            earned, possible = earned + outcome.earned, possible + outcome.points
            mark, colour = _MARKS.get(outcome.status, (f"✘ {outcome.status}", "#bc4c00"))
            tds.append(
                f'<td title="{html.escape(outcome.hint)}"><span style="color:{colour};font-weight:bold">'
                f"{html.escape(mark)}</span><div class=hint>{html.escape(outcome.hint)}</div></td>"
            )
        tds.append(f"<td><strong>{_points(earned)}/{_points(possible)}</strong></td>")
        body.append('<tr class="student">' + "".join(tds) + "</tr>")
    header = "".join(f"<th>{html.escape(c)}</th>" for c in ["student", *columns, "total"])
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8"><title>tlcourse gradebook</title>',
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}"
            "th{background:#f6f8fa}.hint{font-size:0.8em;color:#57606a;max-width:22em}"
            ".problem{font-size:0.8em;color:#cf222e}</style>",
            "</head><body><h1>tlcourse gradebook</h1>",
            f"<table><tr>{header}</tr>",
            *body,
            "</table></body></html>",
            "",
        ]
    )


# --------------------------------------------------------------------------------------------------------------
# Command line


def grade_command(args: Any) -> int:
    """``tlcourse grade``: execute, score and tabulate a class's submissions (exit status: module docstring)."""
    from tlcourse.cli.runner import parse_value

    parameters = {name: parse_value(value) for name, value in (getattr(args, "parameter", None) or [])}
    submissions = grade_submissions(
        args.paths,
        out_dir=args.out,
        templates_dir=getattr(args, "templates", DEFAULT_TEMPLATES),
        profile=getattr(args, "profile", None),
        jobs=getattr(args, "jobs", 1),
        timeout=getattr(args, "timeout", 1800),
        parameters=parameters,
        force=getattr(args, "force", False),
        kernel_name=getattr(args, "kernel", None),
        progress=sys.stderr.isatty() or bool(os.environ.get("TLCOURSE_PROGRESS")),
    )
    for submission in sorted(submissions, key=lambda s: s.student):
        line = f"{submission.student}  {submission.source.name}  {_points(submission.total)}/{_points(submission.possible)}"
        print(line + (f"  NOT GRADED COMPLETELY: {submission.problem}" if submission.problem else ""))
    out = Path(args.out)
    print(f"gradebook: {out / CSV_NAME} and {out / HTML_NAME}")
    return 1 if any(submission.problem for submission in submissions) else 0
