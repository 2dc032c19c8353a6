"""The few notebook cells tagged ``nbval-check-output`` reproduce their committed outputs.

The lessons run once per session (the ``smoke_run`` fixture: the README's first command on a fresh laptop). Each
tagged cell's outputs in that run are compared with the outputs committed in ``lessons/`` by nbval's own
comparison (``IPyNbCell.compare_outputs``, after nbval's ``coalesce_streams``) with the project's sanitizer file,
exactly as ``pytest --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg`` compares them. One real
``pytest --nbval-lax`` run, on the cheapest notebook that has tagged cells, keeps that set-up itself proven.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from nbval import plugin as nbval_plugin

REPO_ROOT = Path(__file__).resolve().parents[1]
SANITIZER = REPO_ROOT / "tests" / "nbval_sanitize.cfg"
TAG = "nbval-check-output"
#: The cheapest lesson with tagged cells (lesson 00 builds one backbone and prints where assets come from).
NBVAL_ITSELF = Path("lessons/00_welcome.ipynb")


def _tagged(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    return {
        cell.id: cell
        for cell in nb.cells
        if cell.cell_type == "code" and TAG in cell.get("metadata", {}).get("tags", [])
    }


def _checked_notebooks() -> list[Path]:
    found = []
    for folder in ("lessons", "solutions"):
        for path in sorted((REPO_ROOT / folder).glob("*.ipynb")):
            if _tagged(nbformat.read(path, as_version=4)):
                found.append(path.relative_to(REPO_ROOT))
    return found


CHECKED = _checked_notebooks()
if not CHECKED:
    pytest.skip(f"no notebook has cells tagged {TAG} yet", allow_module_level=True)

pytestmark = pytest.mark.slow


def _nbval_cell() -> SimpleNamespace:
    """What nbval's ``IPyNbCell.compare_outputs`` reads from its cell: the file's skips and sanitizer patterns."""
    patterns = dict(nbval_plugin.get_sanitize_patterns(SANITIZER.read_text(encoding="utf-8")))
    skips = (
        "metadata",
        "traceback",
        "prompt_number",
        "output_type",
        "name",
        "execution_count",
        "application/vnd.jupyter.widget-view+json",
        "image/png",  # nbval's defaults without --nbdime, as `pytest --nbval-lax` runs them
        "image/jpeg",
    )
    cell = SimpleNamespace(parent=SimpleNamespace(skip_compare=skips, sanitize_patterns=patterns))
    cell.colors = nbval_plugin.nocolors
    cell.config = None
    cell.ihook = SimpleNamespace(pytest_assertrepr_compare=lambda **_: [])  # nbval's plain fallback diff
    cell.sanitize = lambda text: nbval_plugin.IPyNbCell.sanitize(cell, text)
    cell.format_output_compare = lambda key, left, right: nbval_plugin.IPyNbCell.format_output_compare(
        cell, key, left, right
    )
    return cell


def differences(executed: list, committed: list) -> str:
    """nbval's verdict on one cell: '' when the executed outputs match the committed ones, else its diff."""
    cell = _nbval_cell()
    test = nbval_plugin.coalesce_streams([nbformat.from_dict(copy.deepcopy(o)) for o in executed])
    ref = nbval_plugin.coalesce_streams([nbformat.from_dict(copy.deepcopy(o)) for o in committed])
    if nbval_plugin.IPyNbCell.compare_outputs(cell, test, ref):
        return ""
    return "\n".join(cell.comparison_traceback)


def _executed(smoke_run: Path, relpath: Path) -> nbformat.NotebookNode:
    path = smoke_run / relpath
    assert path.is_file(), f"the session's run has no executed {relpath}"
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("relpath", [p for p in CHECKED if p.parts[0] == "lessons"], ids=str)
def test_tagged_cells_reproduce_their_committed_outputs(relpath, smoke_run):
    committed = _tagged(nbformat.read(REPO_ROOT / relpath, as_version=4))
    executed = _tagged(_executed(smoke_run, relpath))
    assert set(executed) == set(committed), f"tagged cells differ: {set(executed) ^ set(committed)}"
    failures = {}
    for cell_id, cell in committed.items():
        diff = differences(executed[cell_id].outputs, cell.outputs)
        if diff:
            failures[cell_id] = diff
    assert not failures, f"{relpath}: tagged outputs changed:\n" + "\n\n".join(
        f"[{cell_id}]\n{diff}" for cell_id, diff in failures.items()
    )


#: A tagged output whose figures the lesson computes: AlexNet's parameter count per layer (lesson 02).
FIGURE_CELL = (Path("lessons/02_alexnet.ipynb"), "cell-29")


def _change_one_digit(outputs: list) -> list:
    """A copy of ``outputs`` with one digit changed: the first digit of the first number of 4+ digits."""
    changed = copy.deepcopy(outputs)
    for output in changed:
        key = "text" if "text" in output else None
        text = output["text"] if key else output.get("data", {}).get("text/plain", "")
        match = re.search(r"(?<![\d.])\d(?=[\d,]{3,})", text)
        if match:
            new = text[: match.start()] + str((int(match.group()) + 1) % 10) + text[match.end() :]
            if key:
                output["text"] = new
            else:
                output["data"]["text/plain"] = new
            return changed
    raise AssertionError("no number of 4+ digits in these outputs")


def test_the_comparison_fails_when_one_digit_of_a_tagged_output_changes():
    relpath, cell_id = FIGURE_CELL
    cell = _tagged(nbformat.read(REPO_ROOT / relpath, as_version=4))[cell_id]
    assert differences(cell.outputs, cell.outputs) == ""
    diff = differences(_change_one_digit(cell.outputs), cell.outputs)
    assert "disagrees with newly computed" in diff or "Reference outputs" in diff, diff


def test_the_sanitizer_still_lets_a_changed_figure_through():
    """Paths, timings and dates are masked; a figure the lesson computes is not."""
    stream = {
        "output_type": "stream",
        "name": "stdout",
        "text": "val_accuracy 0.875 in 1.2 s at /work/main/lessons\n",
    }
    same_but_slower = dict(stream, text="val_accuracy 0.875 in 9.9 s at /home/ci/clone/lessons\n")
    other_figure = dict(stream, text="val_accuracy 0.876 in 1.2 s at /work/main/lessons\n")
    assert differences([same_but_slower], [stream]) == ""
    assert differences([other_figure], [stream]) != ""


def test_nbval_itself_checks_the_cheapest_tagged_notebook(tmp_path):
    """The real `pytest --nbval-lax` set-up (its kernel, options and sanitizer file) still works end to end."""
    assert NBVAL_ITSELF in CHECKED
    before = sorted(p.name for p in (REPO_ROOT / NBVAL_ITSELF).parent.iterdir())
    copy_path = tmp_path / NBVAL_ITSELF
    copy_path.parent.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / NBVAL_ITSELF, copy_path)
    env = dict(os.environ, TLCOURSE_PROFILE="smoke", TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(SANITIZER),
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-q",
        str(NBVAL_ITSELF),
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (
        f"nbval failed on {NBVAL_ITSELF}:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    )
    assert re.search(r"\b[1-9]\d* passed", done.stdout), done.stdout[-2000:]
    after = sorted(p.name for p in (REPO_ROOT / NBVAL_ITSELF).parent.iterdir())
    assert after == before, (
        f"running {NBVAL_ITSELF} wrote into the repository: {sorted(set(after) - set(before))}"
    )
