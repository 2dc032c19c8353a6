"""CI: every lesson, solution and exercise notebook runs in the ``smoke`` profile, each executed once per session.

- Lessons: executed once, by the README's first command on a fresh laptop (the ``smoke_run`` fixture in
  conftest.py); one test per lesson reads its status, cell and error from that run's ``report.json``.
- Solutions: executed once, together, by the course's own runner (``solutions_run``); one test per solution.
- Exercises (generated from solutions/): every code cell before an exercise's first stub is the solution's own
  cell, byte for byte (so the solution's run proves it runs), and the stub stops the notebook with
  ``NotImplementedError``; one exercise is executed live to prove the generated stubs stop where they should.

At the end of the session the solutions' per-notebook table is printed and their report is written to
``$TLCOURSE_CI_OUT`` (default: a temporary folder); the lessons' report is the laptop's ``runs/latest``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import envkit
import nbformat
import pytest

from tlcourse.cli import reports, runner

REPO_ROOT = Path(__file__).resolve().parents[1]


def _notebooks(folder: str) -> list[Path]:
    return sorted(path.relative_to(REPO_ROOT) for path in (REPO_ROOT / folder).glob("*.ipynb"))


LESSONS, SOLUTIONS, EXERCISES = _notebooks("lessons"), _notebooks("solutions"), _notebooks("exercises")
STUB_MARKER = "raise NotImplementedError"
CELL_TIMEOUT_S = 600

if not LESSONS:
    pytest.skip("no lesson notebooks yet (lessons/ holds no .ipynb files)", allow_module_level=True)

pytestmark = pytest.mark.slow


def _error_text(row: dict) -> str:
    return f"{row['path']}: {row['status']} at cell [{row.get('error_cell')}]: {row.get('error')}"


@pytest.mark.parametrize("relpath", LESSONS, ids=str)
def test_lesson_runs_in_smoke_profile(relpath, smoke_run):
    rows = {row["path"]: row for row in envkit.report_rows(smoke_run)}
    assert relpath.as_posix() in rows, f"the run never executed {relpath}: it ran {sorted(rows)}"
    row = rows[relpath.as_posix()]
    assert row["status"] == "ok", _error_text(row)


def _checkout_status() -> str:
    """``git status`` of the notebook folders, ignored and untracked files included, one file a line."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all", "--", "lessons", "solutions",
         "exercises"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


_CHECKOUT_BEFORE, _CHECKOUT_AFTER = pytest.StashKey[str](), pytest.StashKey[str]()


@pytest.fixture(scope="session")
def solutions_run(request, tmp_path_factory) -> dict[str, reports.NotebookResult]:
    """Every solution notebook executed once in the smoke profile by the course's runner, keyed by path."""
    out = Path(os.environ.get("TLCOURSE_CI_OUT") or tmp_path_factory.mktemp("solutions"))
    request.config.stash[_CHECKOUT_BEFORE] = _checkout_status()
    here = Path.cwd()
    os.chdir(REPO_ROOT)  # so the report shows solutions/... paths
    try:
        results = runner.run_notebooks(
            [REPO_ROOT / path for path in SOLUTIONS],
            profile="smoke",
            out_dir=out,
            timeout=CELL_TIMEOUT_S,
            force=True,
            progress=False,
            verbose=False,
        )
    finally:
        os.chdir(here)
    request.config.stash[_CHECKOUT_AFTER] = _checkout_status()
    paths = reports.write_reports(results, out, profile="smoke", parameters={"PROFILE": "smoke"})
    lines = ["", "solution notebook times (smoke profile):", *(f"  {result.line()}" for result in results)]
    lines += [f"  {reports.summary_line(results)}", f"  report: {paths['md']}"]
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n".join(lines), flush=True)
    return {result.path: result for result in results}


@pytest.mark.parametrize("relpath", SOLUTIONS, ids=str)
def test_solution_runs_in_smoke_profile(relpath, solutions_run):
    result = solutions_run[relpath.as_posix()]
    assert result.status == "ok", f"{relpath}: {result.status} at cell [{result.error_cell}]: {result.error}"


def test_running_the_solutions_writes_nothing_into_the_checkout(solutions_run, request):
    before, after = request.config.stash[_CHECKOUT_BEFORE], request.config.stash[_CHECKOUT_AFTER]
    assert after == before, f"the solutions wrote into the checkout:\n{after}"


def _code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [cell for cell in nbformat.read(REPO_ROOT / path, as_version=4).cells if cell.cell_type == "code"]


def _first_stub(cells: list[nbformat.NotebookNode]) -> int:
    return next(index for index, cell in enumerate(cells) if STUB_MARKER in cell.source)


def pre_stub_mismatches(
    exercise: list[nbformat.NotebookNode], solution: list[nbformat.NotebookNode]
) -> list[str]:
    """Where the code an exercise runs before its first stub differs from its solution's (empty: none)."""
    first = _first_stub(exercise)
    problems = []
    if [cell.id for cell in exercise[: first + 1]] != [cell.id for cell in solution[: first + 1]]:
        problems.append("the code cells before the first stub are not the solution's cells, in order")
    for ours, theirs in zip(exercise[:first], solution[:first], strict=False):
        if ours.source != theirs.source:
            problems.append(f"code cell {ours.id} differs from the solution's")
    # in the stub's own cell, the lines above the stub are the lines above the solution's answer
    stub_prefix = exercise[first].source.split("# YOUR CODE HERE", 1)[0]
    if not solution[first].source.startswith(stub_prefix):
        problems.append(f"the lines above the stub in cell {exercise[first].id} differ from the solution's")
    return problems


@pytest.mark.parametrize("relpath", EXERCISES, ids=str)
def test_exercise_runs_the_solutions_own_cells_until_its_first_stub(relpath):
    solution = REPO_ROOT / "solutions" / relpath.name
    assert solution.is_file(), f"{relpath} has no solution in solutions/"
    exercise_cells = _code_cells(relpath)
    assert any(STUB_MARKER in cell.source for cell in exercise_cells), f"{relpath} has no stub"
    assert not pre_stub_mismatches(exercise_cells, _code_cells(solution.relative_to(REPO_ROOT)))


def test_the_pre_stub_comparison_catches_an_edited_cell():
    exercise = _code_cells(EXERCISES[0])
    solution = _code_cells(REPO_ROOT / "solutions" / EXERCISES[0].name)
    assert not pre_stub_mismatches(exercise, solution)
    edited = [nbformat.from_dict(dict(cell)) for cell in exercise]
    edited[0].source += "\nraise SystemExit"
    assert pre_stub_mismatches(edited, solution) == [f"code cell {edited[0].id} differs from the solution's"]


def _cheapest_exercise() -> Path:
    """The exercise with the fewest code cells before its first stub: the live run that proves the stubs."""
    return min(EXERCISES, key=lambda path: (_first_stub(_code_cells(path)), path.name))


def test_an_exercise_executed_live_stops_at_its_first_stub(tmp_path, monkeypatch):
    relpath = _cheapest_exercise()
    monkeypatch.chdir(REPO_ROOT)
    (result,) = runner.run_notebooks(
        [REPO_ROOT / relpath],
        profile="smoke",
        out_dir=tmp_path,
        timeout=CELL_TIMEOUT_S,
        force=True,
        progress=False,
        verbose=False,
    )
    assert result.status == "failed" and "NotImplementedError" in (result.error or ""), (
        f"{relpath}: expected to stop at its first stub with NotImplementedError, got {result.status}: {result.error}"
    )
    # error_cell counts executed cells: papermill injects one parameters cell, so the stub runs as first_stub + 2.
    first_stub = _first_stub(_code_cells(relpath))
    assert result.error_cell == first_stub + 2, (
        f"{relpath}: stopped at cell [{result.error_cell}], but its first stub is code cell {first_stub + 1}"
    )
