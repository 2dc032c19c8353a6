"""Grade a whole class in one command: ``tlcourse grade SUBMISSIONS... --out DIR`` (lesson 00, instructors).

Each submission is matched to its template in ``exercises/`` by file name and executed headless with every
cell run even after one raises. A template's **check cells** are the cells that only call graders
(``grade.check_x(...).assert_passed()``); ``tools/make_exercises.py`` marks them with nbgrader's cell metadata
(``grade``, ``grade_id``, ``locked``, ``points`` and nbgrader's own ``checksum``), so nbgrader's autograder can
grade the same notebooks. For every check cell of the template, the submission's cell with the same
``grade_id`` (or, in a notebook without the metadata, the same source) is found and scored from the outcome
the grader recorded there (:func:`tlcourse.record.read_checks`). A check cell that is missing, or whose source
was edited, scores 0; so does one that raised or never ran, and one whose recorded outcome was not made by the
course's own grader (:mod:`tlcourse.checks` records no grader name then). An exception in a student's cell is
reported against the check that follows it: the exercise it broke. Answer cells that rebind what the check
cells call (``grade.check_x = ...``) are found by :mod:`tlcourse.cli.rebinding`: the row is flagged and the
checks they could fake score 0.

**What grading protects, and what it does not.** Grading runs each student's code with *your* rights.
Before the first kernel starts, every template, every submission and the ``tlcourse`` package's source are
read and hashed; each submission then runs from a fresh temporary copy, outside the submissions and ``--out``,
with a minimal environment and ``HOME`` in a scratch folder; its kernel's whole session is killed when it ends,
with whatever it left running; memory and output are capped (:mod:`tlcourse.cli.sandbox`). After each
notebook any guarded file it changed is put back and the submission flagged; scores come from the templates
as read at the start; the gradebook is written last, from memory, with its SHA-256 printed. A notebook can
still read and write anything else you can (your home folder, the virtual environment, the network): grade
a class you do not trust in a container or as a separate user (the README shows both).

``DIR`` receives ``grades.csv`` (one row per student, one column per check, 1 or 0, total, possible, status and
notes), ``gradebook.html``, ``grades.json`` and the executed notebooks at ``DIR/<student>/<name>.ipynb`` with
a sanitized HTML copy (:mod:`tlcourse.cli.gradebook`). The student is the folder below the common folder of
all submissions (``submissions/alice/03_x.ipynb`` -> ``alice``) or, for a flat folder, the file name without
the template's name (``alice_03_pretrained_models.ipynb`` -> ``alice``).

Exit status of ``tlcourse grade``: 0 when every submission was graded (whatever the scores); 1 when at least
one could not be graded completely (no template matches its name, it is not a readable notebook, it is not a
Python notebook, its kernel died, it passed a limit or a cell timed out: its row says why, and the checks
that never ran score 0) or was flagged; 2 for a usage error (no submissions, no templates); 130 when
interrupted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlcourse.audit import printable
from tlcourse.cli import gradebook, sandbox
from tlcourse.cli.checkcells import (  # noqa: F401 - re-exported: tools/make_exercises.py and tests use them here
    POINTS,
    TemplateCheck,
    cell_source,
    check_cell_metadata,
    grade_ids,
    grader_calls,
    nbgrader_checksum,
    normalized_source,
    template_checks,
)
from tlcourse.cli.kernels import kernel_problem
from tlcourse.cli.outlock import holding
from tlcourse.cli.rebinding import EVERY_CHECK, Finding, scan_answer_cells
from tlcourse.errors import TLCourseError

DEFAULT_TEMPLATES = "exercises"
PAPERMILL_TAGS = frozenset({"injected-parameters", "papermill-error-cell-tag"})
CSV_NAME, HTML_NAME, JSON_NAME = gradebook.CSV_NAME, gradebook.HTML_NAME, gradebook.JSON_NAME
DEFAULT_KERNEL = "python3"


# --------------------------------------------------------------------------------------------------------------
# Scoring one executed submission


@dataclass
class CheckOutcome:
    """One check of one submission: ``status`` is passed, failed, error, missing, edited, not run, unverified
    (the outcome was not recorded by the course's grader) or tampered (an answer cell rebinds its grader)."""

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


def _tampering(check: TemplateCheck, findings: Sequence[Finding]) -> Finding | None:
    """The first finding that could fake this check (one naming its grader, or every grader)."""
    graders = set(grader_calls(check.source) or [])
    return next(
        (f for f in findings if EVERY_CHECK in f.graders or graders & f.graders),
        None,
    )


def score_notebook(
    executed: Mapping[str, Any],
    checks: Sequence[TemplateCheck],
    template_name: str,
    findings: Sequence[Finding] = (),
) -> list[CheckOutcome]:
    """Score an executed submission against its template's check cells (see the module docstring);
    ``findings`` are its answer cells' rebindings (:func:`tlcourse.cli.rebinding.scan_answer_cells`)."""
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
        by_source.setdefault(normalized_source(cell_source(cell)), index)
    outcomes, previous = [], -1
    restore = f"restore it from exercises/{template_name}"

    def outcome(check: TemplateCheck, status: str, hint: str) -> None:
        outcomes.append(CheckOutcome(check.grade_id, status, hint, check.points))

    for check in checks:
        index = by_id.get(check.grade_id)
        if index is None:
            index = by_source.get(normalized_source(check.source))
        if index is None:
            outcome(check, "missing", f"the check cell is missing: {restore}.")
            continue
        cell = cells[index]
        section = [i for i in student_cells if previous < i < index and cells[i].get("cell_type") == "code"]
        previous = max(previous, index)
        raised = [f"{_where(cells[i], i)}: {error}" for i in section for error in _errors(cells[i])]
        context = f" (earlier, {'; '.join(raised)})" if raised else ""
        if normalized_source(cell_source(cell)) != normalized_source(check.source):
            outcome(check, "edited", f"the check cell was edited: {restore} (check cells are locked).")
            continue
        tampered = _tampering(check, findings)
        if tampered is not None:
            outcome(
                check, "tampered", f"not scored: an answer cell rebinds what it calls ({tampered.text()})."
            )
            continue
        results = recorded.get(index, [])
        expected = list(grader_calls(check.source) or [])
        foreign = [item for item in results if item["check"] not in expected]
        failed = [item for item in results if not item["passed"]]
        if foreign:
            outcome(
                check, "unverified",
                "the outcome shown here was not recorded by the course's grader "
                f"({', '.join(expected)}): was the grader replaced in an answer cell?",
            )  # fmt: skip
        elif failed:
            outcome(check, "failed", failed[0]["message"] + context)
        elif results and sorted(item["check"] for item in results) == sorted(expected):
            outcome(check, "passed", "; ".join(r["message"] for r in results))
        elif _errors(cell):
            outcome(check, "error", f"the check could not run: {_errors(cell)[0]}{context}")
        else:
            outcome(check, "not run", "the notebook stopped before this check ran.")
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
    flags: list[str] = field(default_factory=list)
    """What a human should look at: rebinding answer cells, files it changed, processes it left running."""
    html: Path | None = None
    executed: Any = None
    """The executed notebook, in memory until the gradebook is written."""
    written: bool = False
    modified: float = 0.0
    counted: bool = True
    note: str | None = None
    """Which of a student's submissions of one exercise counts, and why (two or more only)."""

    @property
    def total(self) -> float:
        return sum(outcome.earned for outcome in self.outcomes)

    @property
    def possible(self) -> float:
        return sum(outcome.points for outcome in self.outcomes)

    @property
    def exercise(self) -> str:
        return self.template.name if self.template is not None else self.source.name

    @property
    def row_status(self) -> str:
        """graded, incomplete, flagged or not graded (see :mod:`tlcourse.cli.gradebook`)."""
        if self.status in ("no template", "unreadable", "not python", "not run") or self.executed is None:
            return "not graded"
        if self.flags:
            return "flagged"
        return "incomplete" if self.problem else "graded"

    def notes_for_row(self) -> list[str]:
        return [self.note or "", self.problem or "", *self.flags]


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


def find_submissions(paths: Sequence[str | os.PathLike], out: Path) -> list[Path]:
    """Resolved notebooks from files, folders and globs. A path that exists is taken as it is written, so a
    file name with ``[``, ``*`` or ``?`` in it is never read as a pattern; only a path that does not exist is
    expanded as a glob (:func:`tlcourse.cli.runner.find_notebooks`)."""
    from tlcourse.cli.runner import find_notebooks

    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*.ipynb") if p.is_file())
            found += [p for p in inside if ".ipynb_checkpoints" not in p.parts]
        elif path.is_file():
            found.append(path)
        else:
            found += find_notebooks([str(item)], out_dir=out)
    unique = {path.resolve(): None for path in found if not path.resolve().is_relative_to(out)}
    if not unique:
        raise TLCourseError(
            f"No notebooks found in {', '.join(map(str, paths))}: name the submitted notebooks or their folder."
        )
    return list(unique)


# --------------------------------------------------------------------------------------------------------------
# Grading the class


def _kernel_for(notebook: Mapping[str, Any], requested: str | None, installed: set[str]) -> str:
    name = (notebook.get("metadata", {}).get("kernelspec") or {}).get("name")
    return requested or (name if isinstance(name, str) and name in installed else DEFAULT_KERNEL)


def _installed_kernels() -> set[str]:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        return set(KernelSpecManager().find_kernel_specs())
    except Exception:  # noqa: BLE001 - none readable: the default kernel is tried
        return set()


def _prepare(
    submission: Submission, content: bytes, folder: Path, requested: str | None, installed: set[str]
) -> Any:
    """The submission's notebook when it can run (else None, with its status and problem set)."""
    import nbformat

    if submission.template is None:
        submission.status = "no template"
        submission.problem = f"no exercise in {folder}/ matches the file name {submission.source.name}"
        return None
    try:
        notebook = nbformat.reads(content.decode("utf-8"), as_version=4)
    except Exception as error:  # noqa: BLE001 - any unreadable file is one ungradable submission
        submission.status, submission.problem = "unreadable", f"not a readable notebook: {error}"
        return None
    why = kernel_problem(notebook, requested)
    if why is not None:
        submission.status, submission.problem = "not python", f"not run: {why}"
        return None
    notebook.metadata["tlcourse_kernel"] = _kernel_for(notebook, requested, installed)
    return notebook


def _findings(notebook: Any, template: Any) -> list[Finding]:
    cells = [
        (i, cell_source(c)) for i, c in enumerate(notebook.cells, start=1) if c.get("cell_type") == "code"
    ]
    template_sources = [cell_source(c) for c in template.cells if c.get("cell_type") == "code"]
    checks = [check.source for check in template_checks(template)]
    return scan_answer_cells(cells, template_sources, checks)


def _finish(submission: Submission, run: sandbox.Execution) -> None:
    submission.executed, submission.status = run.notebook, run.status
    if run.status != "ok":
        submission.problem = run.error or run.status
    if run.killed:
        shown = ", ".join(run.killed[:3]) + (" ..." if len(run.killed) > 3 else "")
        submission.flags.append(f"left {len(run.killed)} process(es) running, killed: {shown}")


def _restore_and_flag(guard: sandbox.FileGuard, suspects: Sequence[Submission]) -> list[Path]:
    """Put back every guarded file changed since the start; flag the submissions that may have done it."""
    changed = guard.restore_changed()
    for path in changed:
        others = [s.source.name for s in suspects[1:]]
        also = f" (or {', '.join(others)}, running at the same time)" if others else ""
        for suspect in suspects[:1]:
            suspect.flags.append(f"changed {path} on disk while it ran{also}; restored")
    return changed


def grade_submissions(
    paths: Sequence[str | os.PathLike],
    *,
    out_dir: str | os.PathLike,
    templates_dir: str | os.PathLike = DEFAULT_TEMPLATES,
    profile: str | None = None,
    jobs: int = 1,
    timeout: float | None = 1800,
    parameters: Mapping[str, Any] | None = None,
    kernel_name: str | None = None,
    memory_limit: int | None = sandbox.DEFAULT_MEMORY_BYTES,
    output_limit: int | None = sandbox.DEFAULT_OUTPUT_BYTES,
    verbose: bool = True,
) -> tuple[list[Submission], dict[str, tuple[Path, str]]]:
    """Execute and score every submission (see the module docstring); write the gradebook.

    Returns the submissions and ``{kind: (path, sha256)}`` of the gradebook files. After Ctrl-C the gradebook
    holds what finished (the rest "not run") and :class:`KeyboardInterrupt` is raised again.
    """
    import nbformat

    if jobs < 1:
        raise TLCourseError(f"--jobs must be 1 or more, got {jobs}.")
    out = Path(out_dir).resolve()
    folder = Path(templates_dir)
    templates = sorted(p.resolve() for p in folder.glob("*.ipynb")) if folder.is_dir() else []
    if not templates:
        raise TLCourseError(
            f"No exercise templates in {folder}/. Run from the course folder, or pass --templates DIR."
        )
    found = find_submissions(paths, out)
    matched = {path: match_template(path, templates) for path in found}
    names = student_names(found, matched, paths)
    outputs = _unique_outputs(found, names, out)
    # everything a notebook could change is read (and hashed) before the first kernel starts
    guard = sandbox.FileGuard([*templates, *found, *sandbox.package_sources()])
    read_templates = {t: nbformat.reads(guard.bytes_of(t).decode("utf-8"), as_version=4) for t in templates}
    installed = _installed_kernels()
    injected = {**({"PROFILE": profile} if profile else {}), **dict(parameters or {})}
    limits = sandbox.Limits(timeout=timeout or None, memory_bytes=memory_limit, output_bytes=output_limit)
    submissions: dict[Path, Submission] = {}
    runnable: dict[Path, Any] = {}
    for path in found:
        submission = Submission(
            names[path], path, matched[path], outputs[path], modified=path.stat().st_mtime
        )
        submissions[path] = submission
        notebook = _prepare(submission, guard.bytes_of(path), folder, kernel_name, installed)
        if notebook is not None:
            runnable[path] = notebook
    interrupted = False
    with holding(out, "tlcourse grade"), sandbox.adopting_orphans():
        batch = sandbox.Batch()
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="tlcourse-grade")
        futures: dict[Future, Path] = {}
        for path, notebook in runnable.items():
            futures[pool.submit(
                sandbox.execute_isolated, guard.bytes_of(path), path.name,
                kernel=notebook.metadata["tlcourse_kernel"], batch=batch, parameters=injected, limits=limits,
            )] = path  # fmt: skip
        try:
            while futures:
                done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    path = futures.pop(future)
                    submission = submissions[path]
                    _finish(submission, future.result())
                    running = [submissions[p] for f, p in futures.items() if f.running()]
                    _restore_and_flag(guard, [submission, *running])
                    if verbose:
                        print(
                            f"  ran {printable(names[path])}/{printable(path.name)}: {submission.status}",
                            flush=True,
                        )
        except KeyboardInterrupt:
            interrupted = True
            batch.stopping.set()
            pool.shutdown(wait=True, cancel_futures=True)
            for future, path in futures.items():
                if future.done() and not future.cancelled():
                    _finish(submissions[path], future.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        _restore_and_flag(guard, list(submissions.values()))
        for path, submission in submissions.items():
            _score(submission, read_templates, runnable.get(path))
        for submission in submissions.values():
            gradebook.write_executed(submission)
        graded = list(submissions.values())
        files = gradebook.write_gradebook(graded, out)
    if interrupted:
        raise KeyboardInterrupt
    return graded, files


def _score(submission: Submission, templates: Mapping[Path, Any], original: Any) -> None:
    """Score a submission against its template as read before any kernel started."""
    if submission.template is None or original is None:
        return  # no template, unreadable or not Python: nothing to score (its status says why)
    template = templates[submission.template]
    checks = template_checks(template)
    if submission.executed is None:
        submission.status, submission.problem = "not run", "the batch was stopped before this notebook ran"
        submission.outcomes = [
            CheckOutcome(c.grade_id, "not run", submission.problem, c.points) for c in checks
        ]
        return
    findings = _findings(original, template)
    submission.flags += [f"rebinds a grader: {f.text()}" for f in findings if f.costs_points]
    submission.flags += [f.text() for f in findings if not f.costs_points]
    submission.outcomes = score_notebook(submission.executed, checks, submission.template.name, findings)


# --------------------------------------------------------------------------------------------------------------
# Command line


def grade_command(args: Any) -> int:
    """``tlcourse grade``: execute, score and tabulate a class's submissions (exit status: module docstring)."""
    from tlcourse.cli.runner import parse_value

    parameters = {name: parse_value(value) for name, value in (getattr(args, "parameter", None) or [])}
    memory = getattr(args, "memory_limit", None)
    output = getattr(args, "max_output", None)
    submissions, files = grade_submissions(
        args.paths,
        out_dir=args.out,
        templates_dir=getattr(args, "templates", DEFAULT_TEMPLATES),
        profile=getattr(args, "profile", None),
        jobs=getattr(args, "jobs", 1),
        timeout=getattr(args, "timeout", 1800),
        parameters=parameters,
        kernel_name=getattr(args, "kernel", None),
        memory_limit=int(memory * 2**30) if memory else sandbox.DEFAULT_MEMORY_BYTES,
        output_limit=int(output * 2**20) if output else sandbox.DEFAULT_OUTPUT_BYTES,
    )
    for submission in sorted(submissions, key=lambda s: (s.student, s.source.name)):
        line = (
            f"{printable(submission.student)}  {printable(submission.source.name)}  "
            f"{gradebook.points(submission.total)}/{gradebook.points(submission.possible)}"
        )
        if submission.problem:
            line += f"  NOT GRADED COMPLETELY: {printable(submission.problem)}"
        if not submission.counted:
            line += f"  ({printable(submission.note or 'not counted')})"
        print(line)
        for flag in submission.flags:
            print(f"    FLAGGED: {printable(flag)}")
    for path, digest in files.values():
        print(f"gradebook: {printable(str(path))} (sha256 {digest})")
    return 1 if any(s.problem or s.flags for s in submissions) else 0
