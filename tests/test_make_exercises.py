"""tools/make_exercises.py: markers, whole-cell answers, errors, determinism, and the --check gate."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tlcourse.cli import grade

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL = REPO_ROOT / "tools" / "make_exercises.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_exercises", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def _notebook(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nb.cells = list(cells)
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"sol-{index}"
    return nb


def _title_cell(name: str = "01_demo.ipynb"):
    return nbformat.v4.new_markdown_cell(
        f"# Demo\n\n[Colab](https://colab.research.google.com/github/o/r/blob/main/solutions/{name}) "
        f"[Binder](https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/solutions/{name})"
    )


def _run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, check=False)


# ----------------------------------------------------------------------------- pure transformation


def test_marker_region_becomes_a_stub_at_the_markers_indentation():
    source = (
        "def f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\nprint(f(1))"
    )
    assert tool.strip_solution(source) == (
        "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(f(1))"
    )


def test_several_regions_in_one_cell_are_each_replaced_and_the_rest_kept():
    source = "a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nc = 3\n  ### BEGIN SOLUTION\n  d = 4\n  ### END SOLUTION"
    out = tool.strip_solution(source)
    assert out.count("raise NotImplementedError()") == 2
    assert "b = 2" not in out and "d = 4" not in out and "a = 1" in out and "c = 3" in out
    assert "  # YOUR CODE HERE\n  raise NotImplementedError()" in out


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\nx\n### END SOLUTION\n### END SOLUTION", "nested"),
        ("x = 1\n### BEGIN SOLUTION\nx = 2", "never closed"),
        ("x = 1\n### END SOLUTION", "has no"),
    ],
    ids=["nested", "unterminated", "end-without-begin"],
)
def test_bad_markers_are_errors_that_name_the_notebook_and_cell(source, problem):
    nb = _notebook(_title_cell(), nbformat.v4.new_code_cell("ok = True"), nbformat.v4.new_code_cell(source))
    with pytest.raises(tool.MarkerError) as info:
        tool.make_exercise(nb, name="01_demo.ipynb")
    message = str(info.value)
    assert (
        problem in message
        and "solutions/01_demo.ipynb" in message
        and "cell 2" in message
        and "sol-2" in message
    )


def test_cells_tagged_solution_are_replaced_whole_for_code_and_markdown():
    code = nbformat.v4.new_code_cell("answer = 42", metadata={"tags": ["solution", "keep"]})
    text = nbformat.v4.new_markdown_cell("Because ReLU does not saturate.", metadata={"tags": ["solution"]})
    nb = tool.make_exercise(_notebook(_title_cell(), code, text), name="01_demo.ipynb")
    assert nb.cells[1].source == "# YOUR CODE HERE\nraise NotImplementedError()"
    assert nb.cells[1].metadata["tags"] == ["keep"]
    assert nb.cells[2].source == "YOUR ANSWER HERE" and "tags" not in nb.cells[2].metadata


def test_title_badges_ids_and_outputs_are_rewritten():
    code = nbformat.v4.new_code_cell(
        "print(1)",
        metadata={"tags": ["nbval-check-output"], "execution": {"iopub.status.busy": "2026-01-01T00:00:00"}},
    )
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    code.execution_count = 7
    solution = _notebook(_title_cell(), code)
    nb = tool.make_exercise(solution, name="01_demo.ipynb")
    first = nb.cells[0].source
    assert first.startswith("# Exercise: Demo")
    assert first.count("exercises/01_demo.ipynb") == 2 and "solutions/" not in first
    assert [cell.id for cell in nb.cells] == [cell.id for cell in solution.cells]
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None
    assert nb.cells[1].metadata == {}
    assert solution.cells[1].outputs, "the input notebook is not modified"


def test_rendering_is_byte_identical_across_runs():
    solution = _notebook(
        _title_cell(), nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")
    )
    first = tool.render(tool.make_exercise(solution, name="01_demo.ipynb"))
    second = tool.render(
        tool.make_exercise(nbformat.reads(nbformat.writes(solution), 4), name="01_demo.ipynb")
    )
    assert first == second and first.endswith("\n")


# ----------------------------------------------------------------------------- the command line


@pytest.fixture
def copies(tmp_path) -> tuple[Path, Path]:
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    shutil.copytree(REPO_ROOT / "solutions", solutions)
    shutil.copytree(REPO_ROOT / "exercises", exercises)
    return solutions, exercises


def test_check_passes_on_the_repository():
    result = _run_tool("--check")
    assert result.returncode == 0, result.stderr


def test_two_generations_are_byte_identical(tmp_path, copies):
    solutions, _ = copies
    outputs = []
    for name in ("a", "b"):
        target = tmp_path / name
        assert _run_tool("--solutions", str(solutions), "--exercises", str(target)).returncode == 0
        outputs.append({path.name: path.read_bytes() for path in sorted(target.glob("*.ipynb"))})
    assert outputs[0] == outputs[1] and outputs[0]


def test_check_fails_naming_a_hand_edited_missing_or_extra_exercise(copies):
    solutions, exercises = copies
    edited = sorted(exercises.glob("*.ipynb"))[0]
    edited.write_text(
        edited.read_text(encoding="utf-8").replace("YOUR CODE HERE", "my answer", 1), encoding="utf-8"
    )
    missing = sorted(exercises.glob("*.ipynb"))[-1]
    missing.unlink()
    (exercises / "99_orphan.ipynb").write_text("{}", encoding="utf-8")
    (exercises / ".ruff.toml").unlink()
    before = {path.name: path.read_bytes() for path in exercises.glob("*.ipynb")}

    result = _run_tool("--check", "--solutions", str(solutions), "--exercises", str(exercises))
    assert result.returncode == 1
    assert f"stale: {edited}" in result.stderr
    assert f"missing: {missing}" in result.stderr
    assert "extra:" in result.stderr and "99_orphan.ipynb" in result.stderr
    assert f"missing: {exercises / '.ruff.toml'}" in result.stderr
    assert {path.name: path.read_bytes() for path in exercises.glob("*.ipynb")} == before, (
        "--check writes nothing"
    )

    assert _run_tool("--solutions", str(solutions), "--exercises", str(exercises)).returncode == 0
    assert _run_tool("--check", "--solutions", str(solutions), "--exercises", str(exercises)).returncode == 0
    assert not (exercises / "99_orphan.ipynb").exists() and (exercises / ".ruff.toml").is_file()


def test_bad_markers_exit_with_status_2_and_a_message(copies):
    solutions, exercises = copies
    path = sorted(solutions.glob("*.ipynb"))[0]
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 1"))
    nbformat.write(nb, path)
    result = _run_tool("--solutions", str(solutions), "--exercises", str(exercises))
    assert result.returncode == 2
    assert path.name in result.stderr and "never closed" in result.stderr


def test_generated_exercises_keep_their_solution_structure():
    for solution_path in sorted((REPO_ROOT / "solutions").glob("*.ipynb")):
        solution = nbformat.read(solution_path, as_version=4)
        exercise = nbformat.read(REPO_ROOT / "exercises" / solution_path.name, as_version=4)
        assert [cell.id for cell in exercise.cells] == [cell.id for cell in solution.cells]
        stubs = [cell for cell in exercise.cells if "raise NotImplementedError()" in cell.source]
        assert len(stubs) >= 3, f"{solution_path.name}: at least three exercises"
        assert not any("### BEGIN SOLUTION" in cell.source for cell in exercise.cells)


def test_check_cells_get_locked_nbgrader_metadata_and_no_other_cell_does():
    check = nbformat.v4.new_code_cell("checks.check_demo(answer).assert_passed()")
    answer = nbformat.v4.new_code_cell("### BEGIN SOLUTION\nanswer = 1\n### END SOLUTION")
    stale = nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade": True, "grade_id": "old"}})
    nb = tool.make_exercise(_notebook(_title_cell(), answer, check, stale), name="01_demo.ipynb")
    meta = nb.cells[2].metadata["nbgrader"]
    assert meta["grade"] and meta["locked"] and not meta["solution"] and meta["grade_id"] == "check_demo"
    assert meta["points"] == 1 and meta["checksum"] == grade.nbgrader_checksum(nb.cells[2])
    assert "nbgrader" not in nb.cells[1].metadata and "nbgrader" not in nb.cells[3].metadata


def test_every_check_cell_of_the_repository_exercises_is_marked_for_grading():
    for path in sorted((REPO_ROOT / "exercises").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        calls = [cell for cell in nb.cells if cell.cell_type == "code" and grade.grader_calls(cell.source)]
        marked = [cell for cell in nb.cells if "nbgrader" in cell.metadata]
        assert calls and marked == calls, path.name
        assert all(cell.metadata.nbgrader.checksum == grade.nbgrader_checksum(cell) for cell in marked)
