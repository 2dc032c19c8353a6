"""CI: execute every lesson and solution notebook in the ``smoke`` profile with the course's own runner.

Exercise notebooks (generated from solutions/) are executed too: they must run cleanly up to their first
stub and stop there with ``NotImplementedError``.

One test per notebook (so a failure names it), each through :func:`tlcourse.cli.runner.run_notebooks`, which
records status, cell, error, time and the kernel's peak memory. At the end of the module the per-notebook
table is printed and a combined report is written to ``$TLCOURSE_CI_OUT`` (default: a temporary folder).
Skipped cleanly while the course has no notebooks yet.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from tlcourse.cli import reports, runner

REPO_ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("lessons", "solutions")
NOTEBOOKS = sorted(
    path.relative_to(REPO_ROOT)
    for folder in FOLDERS
    for path in (REPO_ROOT / folder).glob("*.ipynb")
    if ".ipynb_checkpoints" not in path.parts
)
EXERCISES = sorted(path.relative_to(REPO_ROOT) for path in (REPO_ROOT / "exercises").glob("*.ipynb"))
STUB_MARKER = "raise NotImplementedError"
CELL_TIMEOUT_S = 600

if not NOTEBOOKS:
    pytest.skip(
        "no lesson notebooks yet (lessons/ and solutions/ hold no .ipynb files)", allow_module_level=True
    )

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ci_out(request, tmp_path_factory) -> Path:
    """Where executed notebooks and the combined report go; prints the per-notebook table at the end."""
    out = Path(os.environ.get("TLCOURSE_CI_OUT") or tmp_path_factory.mktemp("notebooks"))
    results: list[reports.NotebookResult] = []
    request.config.stash[_RESULTS] = results
    yield out
    if not results:
        return
    paths = reports.write_reports(results, out, profile="smoke", parameters={"PROFILE": "smoke"})
    lines = ["", "notebook times (smoke profile):", *(f"  {result.line()}" for result in results)]
    lines += [f"  {reports.summary_line(results)}", f"  report: {paths['md']}"]
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n".join(lines), flush=True)


_RESULTS = pytest.StashKey[list]()


def _run_in_smoke_profile(relpath: Path, ci_out: Path, request, monkeypatch) -> reports.NotebookResult:
    """Execute one notebook with the course's runner and keep its result for the module's table."""
    monkeypatch.chdir(REPO_ROOT)  # so the report shows lessons/... paths
    (result,) = runner.run_notebooks(
        [REPO_ROOT / relpath],
        profile="smoke",
        out_dir=ci_out,
        timeout=CELL_TIMEOUT_S,
        force=True,
        progress=False,
        verbose=False,
    )
    request.config.stash[_RESULTS].append(result)
    print(result.line())
    return result


@pytest.mark.parametrize("relpath", NOTEBOOKS, ids=str)
def test_notebook_runs_in_smoke_profile(relpath, ci_out, request, monkeypatch):
    result = _run_in_smoke_profile(relpath, ci_out, request, monkeypatch)
    assert result.status == "ok", f"{relpath}: {result.status} at cell [{result.error_cell}]: {result.error}"


@pytest.mark.parametrize("relpath", EXERCISES, ids=str)
def test_exercise_notebook_runs_until_its_first_stub(relpath, ci_out, request, monkeypatch):
    import nbformat

    result = _run_in_smoke_profile(relpath, ci_out, request, monkeypatch)
    assert result.status == "failed" and "NotImplementedError" in (result.error or ""), (
        f"{relpath}: expected to stop at its first stub with NotImplementedError, got {result.status}: {result.error}"
    )
    code = [
        cell for cell in nbformat.read(REPO_ROOT / relpath, as_version=4).cells if cell.cell_type == "code"
    ]
    first_stub = next(index for index, cell in enumerate(code) if STUB_MARKER in cell.source)
    # error_cell counts executed cells: papermill injects one parameters cell, so the stub runs as first_stub + 2.
    assert result.error_cell == first_stub + 2, (
        f"{relpath}: stopped at cell [{result.error_cell}], but its first stub is code cell {first_stub + 1}"
    )
