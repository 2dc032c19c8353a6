"""Write a graded class as ``grades.csv``, ``gradebook.html`` and ``grades.json`` (lesson 00: ``tlcourse grade``).

Everything is written from results held in memory, after every kernel of the class has ended and its
leftovers were killed, so nothing a notebook started can have written these files in between;
:func:`write_gradebook` returns each file's SHA-256, which ``tlcourse grade`` prints.

- One row per student, one column per check (1 or 0), ``total``, ``possible``, then ``status`` (``graded``,
  ``incomplete`` when something stopped a notebook early, ``flagged`` when a human should look, ``not graded``
  when nothing of the student's could run) and ``notes`` (why).
- **Two submissions of one exercise by one student** (``alice/02_alexnet.ipynb`` and ``alice/Copy of
  02_alexnet.ipynb``): both are graded and listed; the one with the most points counts, on a tie the most
  recently modified file, and the notes say which counted and why.
- Every text cell of ``grades.csv`` that a spreadsheet would read as a formula (starting with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return) is prefixed with ``'``; every text in the HTML is escaped, links are
  relative paths percent-encoded with :func:`urllib.parse.quote` (so no file name becomes a ``javascript:``
  link), and each executed notebook is rendered with nbconvert's ``sanitize_html`` under a Content Security
  Policy that runs no script at all.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tlcourse.cli.rendering import notebook_html

CSV_NAME = "grades.csv"
HTML_NAME = "gradebook.html"
JSON_NAME = "grades.json"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NO_SCRIPTS = (
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self' data:; script-src 'none'; "
    "style-src 'self' 'unsafe-inline' data:; object-src 'none'; base-uri 'none'; form-action 'none'\">"
)
"""A policy under which a page shows its text, styles and inline images and runs no script."""
ROW_STATUSES = ("not graded", "flagged", "incomplete", "graded")
"""Worst first: a row takes the first that applies to any submission it counts."""


def csv_text(value: Any) -> Any:
    """``value`` made safe for a spreadsheet cell: text that would start a formula gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def points(value: float) -> int | float:
    """1.0 -> 1, 0.5 -> 0.5: whole points print without a decimal."""
    return int(value) if float(value).is_integer() else value


def _columns(submissions: Sequence[Any]) -> list[tuple[str, str, str]]:
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


def choose_counted(submissions: Sequence[Any]) -> None:
    """Among submissions of one student for one template, mark the one that counts (``counted``) and say why
    in every one's ``note``: the most points; on a tie the most recently modified file; then the name."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for submission in submissions:
        key = (
            submission.student,
            submission.template.name if submission.template else submission.source.name,
        )
        groups.setdefault(key, []).append(submission)
    for group in groups.values():
        for submission in group:
            submission.counted, submission.note = True, None
        if len(group) < 2:
            continue
        ranked = sorted(group, key=lambda s: (-s.total, -s.modified, s.source.name))
        best, best_total = ranked[0], ranked[0].total
        tie = [s for s in ranked if s.total == best_total]
        why = "the most points" if len(tie) == 1 else "as many points, and the newest file"
        best.note = f"counted ({why} of {len(group)} submissions of {best.exercise})"
        for other in ranked[1:]:
            other.counted = False
            other.note = (
                f"not counted: {best.source.name} counts ({points(best.total)}/{points(best.possible)} "
                f"against {points(other.total)}/{points(other.possible)}; {why})"
            )


def student_rows(submissions: Sequence[Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Column names and, per student, the counted outcomes per column, every submission, status and notes."""
    columns = _columns(submissions)
    rows: dict[str, dict[str, Any]] = {}
    for submission in submissions:
        row = rows.setdefault(submission.student, {"student": submission.student, "cells": {}, "subs": []})
        row["subs"].append(submission)
        if not submission.counted:
            continue
        for outcome in submission.outcomes:
            name = next(c for c, t, g in columns if t == submission.template.name and g == outcome.grade_id)
            row["cells"][name] = outcome
    for row in rows.values():
        counted = [s for s in row["subs"] if s.counted]
        states = {s.row_status for s in counted} or {"not graded"}
        row["status"] = next(state for state in ROW_STATUSES if state in states)
        row["notes"] = "; ".join(
            f"{s.source.name}: {part}" for s in row["subs"] for part in s.notes_for_row() if part
        )
    return [c for c, _, _ in columns], rows


def _csv(columns: Sequence[str], rows: Mapping[str, Mapping[str, Any]]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(
        [csv_text(name) for name in ["student", *columns, "total", "possible", "status", "notes"]]
    )
    for student in sorted(rows):
        row = rows[student]
        cells = [points(row["cells"][c].earned) if c in row["cells"] else 0 for c in columns]
        possible = sum(o.points for o in row["cells"].values())
        writer.writerow(
            [
                csv_text(student),
                *cells,
                points(sum(cells)),
                points(possible),
                row["status"],
                csv_text(row["notes"]),
            ]
        )
    return buffer.getvalue()


def _payload(submissions: Sequence[Any], out: Path) -> str:
    return json.dumps(
        [
            {
                "student": s.student,
                "source": str(s.source),
                "template": None if s.template is None else s.template.name,
                "executed": str(s.output),
                "status": s.status,
                "row_status": s.row_status,
                "counted": s.counted,
                "note": s.note,
                "problem": s.problem,
                "flags": list(s.flags),
                "total": s.total,
                "possible": s.possible,
                "checks": [asdict(o) for o in s.outcomes],
            }
            for s in submissions
        ],
        indent=1,
    )


def relative_link(path: Path | None, out: Path) -> str | None:
    """A percent-encoded link from ``out`` to ``path`` (inside it), starting ``./``; None for a file outside
    ``out``. Every ``:`` is encoded, so no name can become a URL scheme."""
    if path is None:
        return None
    try:
        relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(out)).as_posix()
    except ValueError:
        return None
    return "./" + quote(relative, safe="/")


_MARKS = {"passed": ("✔", "#1a7f37"), "failed": ("✘", "#cf222e"), "error": ("✘ error", "#cf222e")}


def _html(columns: Sequence[str], rows: Mapping[str, Mapping[str, Any]], out: Path) -> str:
    body = []
    for student in sorted(rows):
        row = rows[student]
        links = []
        for sub in row["subs"]:
            href = relative_link(sub.html or sub.output, out) if sub.written else None
            name = html.escape(sub.source.name)
            links.append(f'<a href="{html.escape(href)}">{name}</a>' if href else name)
        notes = f"<div class=problem>{html.escape(row['notes'])}</div>" if row["notes"] else ""
        tds = [
            f"<td><strong>{html.escape(student)}</strong> <em>{html.escape(row['status'])}</em>"
            f"<div class=hint>{', '.join(links)}</div>{notes}</td>"
        ]
        earned = possible = 0.0
        for column in columns:
            outcome = row["cells"].get(column)
            if outcome is None:
                tds.append("<td></td>")
                continue
            earned, possible = earned + outcome.earned, possible + outcome.points
            mark, colour = _MARKS.get(outcome.status, (f"✘ {outcome.status}", "#bc4c00"))
            tds.append(
                f'<td title="{html.escape(outcome.hint)}"><span style="color:{colour};font-weight:bold">'
                f"{html.escape(mark)}</span><div class=hint>{html.escape(outcome.hint)}</div></td>"
            )
        tds.append(f"<td><strong>{points(earned)}/{points(possible)}</strong></td>")
        body.append('<tr class="student">' + "".join(tds) + "</tr>")
    header = "".join(f"<th>{html.escape(c)}</th>" for c in ["student", *columns, "total"])
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html lang="en"><head><meta charset="utf-8">{NO_SCRIPTS}<title>tlcourse gradebook</title>',
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}"
            "th{background:#f6f8fa}.hint{font-size:0.8em;color:#57606a;max-width:22em}"
            ".problem{font-size:0.8em;color:#cf222e;max-width:30em}</style>",
            "</head><body><h1>tlcourse gradebook</h1>",
            f"<table><tr>{header}</tr>",
            *body,
            "</table></body></html>",
            "",
        ]
    )


def render_sanitized(notebook: Any) -> str | None:
    """An executed submission as one HTML page: :func:`~tlcourse.cli.rendering.notebook_html` with
    ``sanitize`` (student HTML, Markdown and JavaScript outputs escaped) and :data:`NO_SCRIPTS`; None when
    nbconvert cannot."""
    body = notebook_html(notebook, sanitize=True)
    if body is None:
        return None
    head = body.find("<head>")
    return body[: head + 6] + NO_SCRIPTS + body[head + 6 :] if head >= 0 else NO_SCRIPTS + body


def _write(path: Path, text: str) -> str:
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return hashlib.sha256(data).hexdigest()


def write_executed(submission: Any) -> None:
    """Write a submission's executed notebook (held in memory) and its sanitized HTML beside it."""
    import nbformat

    if submission.executed is None:
        return
    _write(submission.output, nbformat.writes(submission.executed))
    page = render_sanitized(submission.executed)
    submission.html = submission.output.with_suffix(".html") if page is not None else None
    if page is not None:
        _write(submission.html, page)
    submission.written = True


def write_gradebook(submissions: Sequence[Any], out_dir: str | os.PathLike) -> dict[str, tuple[Path, str]]:
    """Write the three gradebook files into ``out_dir``; return ``{kind: (path, sha256)}``."""
    out = Path(out_dir)
    choose_counted(submissions)
    columns, rows = student_rows(submissions)
    files = {
        "csv": (out / CSV_NAME, _csv(columns, rows)),
        "html": (out / HTML_NAME, _html(columns, rows, out)),
        "json": (out / JSON_NAME, _payload(submissions, out)),
    }
    return {kind: (path, _write(path, text)) for kind, (path, text) in files.items()}
