"""House style for every course notebook: checked on the files in git, without executing them."""

from __future__ import annotations

import ast
import re
import statistics
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


# ------------------------------------------------------------------------------- short cells (issue 28)

LESSONS = [path for path in NOTEBOOKS if path.parts[0] == "lessons"]
MEDIAN_LINES, MAX_LINES = 7, 20


def code_lengths(nb: nbformat.NotebookNode) -> list[int]:
    """Non-blank lines of each code cell (a comment counts: a reader reads it)."""
    return [
        len([line for line in cell.source.splitlines() if line.strip()])
        for cell in nb.cells
        if cell.cell_type == "code"
    ]


@pytest.mark.parametrize("relpath", LESSONS, ids=str)
def test_lesson_code_cells_are_short_a_teaching_cell_then_a_check_line(relpath):
    """A lesson's code cells: median at most 7 non-blank lines, none over 20 (the TF tutorial's median is 3)."""
    lengths = code_lengths(_load(relpath))
    median = statistics.median(lengths)
    long = {index: n for index, n in enumerate(lengths) if n > MAX_LINES}
    assert median <= MEDIAN_LINES and not long, (
        f"{relpath}: median code cell {median} lines (at most {MEDIAN_LINES}); code cells over {MAX_LINES} "
        f"lines (code cell number: lines): {long}"
    )


@pytest.mark.parametrize("relpath", NOTEBOOKS, ids=str)
def test_no_cell_guards_its_figures_by_profile_name(relpath):
    """Bands are checked by record.expect(name, value, run, cpu=...), never behind `if profile.name == ...`."""
    guarded = [
        index
        for index, cell in enumerate(_load(relpath).cells)
        if cell.cell_type == "code" and re.search(r"profile\.name\s*==", cell.source)
    ]
    assert not guarded, (
        f"{relpath}: cells {guarded} compare profile.name; use record.expect(..., run, cpu=...)"
    )


def test_the_short_cell_rule_counts_lines_as_a_reader_does():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("a = 1\n\n# why\nb = 2\n"), nbformat.v4.new_markdown_cell("x\ny")]
    assert code_lengths(nb) == [3]


# ------------------------------------------------------------------------------ saved code (d2l's #@save)

SAVE_MARK = "#@save"
SAVED_MODULE = REPO_ROOT / "tlcourse" / "recipe.py"


class _WithoutAnnotations(ast.NodeTransformer):
    """The library's copy may carry type hints; the lesson's cell does not. Everything else must be equal."""

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.returns = None
        self.generic_visit(node)
        return node


def normalised_functions(source: str) -> dict[str, str]:
    """Each top-level function of ``source`` as ``ast.unparse`` writes it without type hints: comments, layout
    and line breaks do not count, names, docstrings and code do."""
    tree = _WithoutAnnotations().visit(ast.parse(source))
    return {node.name: ast.unparse(node) for node in tree.body if isinstance(node, ast.FunctionDef)}


def saved_cells() -> dict[str, str]:
    """Every function a lesson defines in a cell that starts with #@save, by name."""
    found: dict[str, str] = {}
    for relpath in LESSONS:
        for cell in _load(relpath).cells:
            if cell.cell_type == "code" and cell.source.lstrip().startswith(SAVE_MARK):
                found.update(normalised_functions(cell.source))
    return found


def test_lesson_04s_saved_code_is_the_librarys_copy_word_for_word():
    """The later lessons call tlcourse.recipe; what they call is what lesson 04 shows (issue 28)."""
    lesson = saved_cells()
    library = {
        name: code
        for name, code in normalised_functions(SAVED_MODULE.read_text(encoding="utf-8")).items()
        if not name.startswith("_")
    }
    assert lesson, "no #@save cell in the lessons"
    assert sorted(lesson) == sorted(library), (
        f"saved in the lessons {sorted(lesson)}, library {sorted(library)}"
    )
    for name in lesson:
        assert lesson[name] == library[name], f"{name}: lesson 04's cell and tlcourse/recipe.py differ"


def test_the_saved_code_comparison_sees_a_changed_line_and_ignores_hints_and_layout():
    lesson = "def f(x, *, n=2):\n    '''Doc.'''\n    return x * n  # why\n"
    assert normalised_functions(lesson) == normalised_functions(
        "def f(x: int, *, n: int = 2) -> int:\n    '''Doc.'''\n    return (\n        x * n\n    )\n"
    )
    assert normalised_functions(lesson) != normalised_functions(
        "def f(x, *, n=2):\n    '''Doc.'''\n    return x + n\n"
    )
