"""House style for every course notebook: checked on the files in git, without executing them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    path.relative_to(REPO_ROOT)
    for folder in ("lessons", "solutions", "exercises")
    for path in (REPO_ROOT / folder).glob("*.ipynb")
)
KEPT_OUTPUT_TAGS = {"keep_output", "nbval-check-output"}

if not NOTEBOOKS:
    pytest.skip("no course notebooks yet", allow_module_level=True)


def _load(relpath: Path) -> nbformat.NotebookNode:
    return nbformat.read(REPO_ROOT / relpath, as_version=4)


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


@pytest.mark.parametrize("relpath", NOTEBOOKS, ids=str)
def test_notebook_file_name_is_numbered_snake_case(relpath):
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", relpath.name), relpath


@pytest.mark.parametrize("relpath", NOTEBOOKS, ids=str)
def test_notebook_has_one_h1_and_badges_pointing_at_its_own_path(relpath):
    nb = _load(relpath)
    markdown = [cell.source for cell in nb.cells if cell.cell_type == "markdown"]
    h1 = [line for text in markdown for line in text.splitlines() if re.match(r"#\s", line)]
    assert len(h1) == 1, f"{relpath}: expected one H1, found {h1}"
    first = markdown[0]
    assert "colab.research.google.com/github/" in first and first.count(str(relpath.as_posix())) >= 2, (
        f"{relpath}: the first cell needs Colab and Binder badges that point at {relpath.as_posix()}"
    )
    assert "mybinder.org" in first


@pytest.mark.parametrize("relpath", NOTEBOOKS, ids=str)
def test_notebook_has_guarded_colab_install_one_parameters_cell_and_closing_sections(relpath):
    nb = _load(relpath)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    setup = code_cells[0].source
    assert '"google.colab" in sys.modules' in setup, (
        f"{relpath}: first code cell must be the guarded Colab setup"
    )
    install_lines = [
        line for line in setup.splitlines() if "install" in line and not line.lstrip().startswith("#")
    ]
    assert not any("tensorflow" in line.lower() for line in install_lines), (
        f"{relpath}: the Colab install must never (re)install TensorFlow"
    )
    parameters = [cell for cell in code_cells if "parameters" in _tags(cell)]
    assert len(parameters) == 1, f"{relpath}: needs exactly one cell tagged 'parameters'"
    names = {
        target.id
        for node in ast.parse(parameters[0].source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert "PROFILE" in names, f"{relpath}: the parameters cell must define PROFILE"
    headings = [
        line for cell in nb.cells if cell.cell_type == "markdown" for line in cell.source.splitlines()
    ]
    assert any(re.match(r"##\s+Summary", line) for line in headings), f"{relpath}: needs a '## Summary'"
    assert any(re.match(r"##\s+Exercises", line) for line in headings), f"{relpath}: needs a '## Exercises'"
    steps = [line for line in headings if re.match(r"##\s+\d+\.", line)]
    assert steps, f"{relpath}: steps are numbered '## 1. ...'"
    numbers = [int(re.match(r"##\s+(\d+)\.", line).group(1)) for line in steps]
    assert numbers == list(range(1, len(numbers) + 1)), f"{relpath}: steps numbered {numbers}"


@pytest.mark.parametrize("relpath", NOTEBOOKS, ids=str)
def test_notebook_is_committed_without_outputs_except_checked_cells(relpath):
    nb = _load(relpath)
    carrying = [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        and (cell.outputs or cell.execution_count)
        and not (_tags(cell) & KEPT_OUTPUT_TAGS)
    ]
    assert not carrying, f"{relpath}: cells {carrying} carry outputs; strip them"


_RECIPE = (
    "keras.applications.MobileNetV2",
    ".trainable = False",
    "training=False",
    ".compile(",
    ".fit(",
    "EarlyStopping",
    ".save(",
    "load_model",
)
RECIPE_CALLS = {
    "lessons/04_feature_extraction.ipynb": (*_RECIPE, "image_dataset_from_directory", "preprocess_input"),
    "lessons/05_fine_tuning.ipynb": (*_RECIPE, "initial_epoch", "layer.trainable = False"),
    "lessons/08_creative_brief.ipynb": (".save(", "load_model"),
}


@pytest.mark.parametrize("relpath", sorted(RECIPE_CALLS))
def test_lesson_writes_the_keras_recipe_out_in_its_code_cells(relpath):
    """The TensorFlow/Keras transfer-learning calls stay in the cells a student reads (issue 12)."""

    notebook = nbformat.read(REPO_ROOT / relpath, as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    missing = [call for call in RECIPE_CALLS[relpath] if call not in code]
    assert not missing, f"{relpath} no longer shows {missing} in a code cell"


POINTING_PHRASES = ("printed above", "shown above", "figure above")


@pytest.mark.parametrize("relpath", NOTEBOOKS, ids=str)
def test_notebook_prose_says_what_to_expect_instead_of_pointing_at_output(relpath):
    """Markdown states the expected result ("in the cpu profile expect about ...") rather than "printed above"."""

    nb = _load(relpath)
    found = [
        (index, phrase)
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "markdown"
        for phrase in POINTING_PHRASES
        if phrase in cell.source.lower()
    ]
    assert not found, f"{relpath}: markdown cells point at output instead of stating it: {found}"
