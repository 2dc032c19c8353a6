"""Every notebook's ``parameters`` cell reads the same to papermill as to Python, so ``-p NAME`` and the runner's
output-folder redirect reach every name it declares (issue 31: an ``=`` in a comment made papermill drop
lesson 07's SEVERITY and lesson 08's UPLOAD_DIR)."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import nbformat
import pytest
from papermill.translators import PythonTranslator

from tlcourse.cli import parameters as run_parameters
from tlcourse.cli import runner

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    path.relative_to(REPO_ROOT).as_posix()
    for folder in ("lessons", "solutions", "exercises")
    for path in (REPO_ROOT / folder).glob("*.ipynb")
)


def _parameters_source(path: Path) -> str:
    node = json.loads(path.read_text(encoding="utf-8"))
    (cell,) = [c for c in node["cells"] if "parameters" in (c.get("metadata") or {}).get("tags", [])]
    return "".join(cell["source"])


def _python_assignments(source: str) -> dict[str, object]:
    """name -> value as Python itself reads the cell (the value's source text when it is not a literal)."""
    found: dict[str, object] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                try:
                    found[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    found[target.id] = ast.get_source_segment(source, node.value)
    return found


def test_the_notebook_list_covers_lessons_solutions_and_exercises():
    assert {name.split("/")[0] for name in NOTEBOOKS} == {"lessons", "solutions", "exercises"}
    assert "lessons/08_creative_brief.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("relpath", NOTEBOOKS)
def test_papermill_reads_every_parameter_with_the_value_python_gives_it(relpath, caplog):
    source = _parameters_source(REPO_ROOT / relpath)
    expected = _python_assignments(source)
    with caplog.at_level(logging.WARNING, logger="papermill"):
        parsed = PythonTranslator.inspect(nbformat.from_dict({"source": source}))
    assert not [r.getMessage() for r in caplog.records if "Unable to parse" in r.getMessage()]
    read = {}
    for parameter in parsed:
        try:
            read[parameter.name] = ast.literal_eval(parameter.default)
        except ValueError:
            read[parameter.name] = parameter.default
    dropped = sorted(set(expected) - set(read))
    assert not dropped, f"{relpath}: papermill drops {dropped} (an '=' in a comment?)"
    assert read == expected


def _write(path: Path, parameters: str, *cells: str) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [cell, *(nbformat.v4.new_code_cell(source) for source in cells)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def test_papermills_own_parser_is_the_one_the_runner_uses(tmp_path):
    """The check above is only worth something if the runner declares what papermill parses, nothing more."""
    notebook = _write(tmp_path / "n.ipynb", "KEPT = 1\nLOST = 2  # a comment with x = y in it")
    assert run_parameters.declared_parameters(notebook) == {"KEPT": 1}


@pytest.mark.parametrize("relpath", [n for n in NOTEBOOKS if "_DIR" in _parameters_source(REPO_ROOT / n)])
def test_every_relative_output_folder_a_notebook_declares_is_redirected_under_out(relpath, tmp_path):
    declared = _python_assignments(_parameters_source(REPO_ROOT / relpath))
    relative = {
        name
        for name in run_parameters.OUTPUT_PARAMETERS
        if isinstance(declared.get(name), str) and not Path(declared[name]).is_absolute()
    }
    injected = run_parameters.output_parameters(
        run_parameters.declared_parameters(REPO_ROOT / relpath), tmp_path, {}
    )
    assert set(injected) == relative
    for name in relative:
        assert Path(injected[name]) == tmp_path / declared[name]


def test_lesson_08s_upload_folder_lands_in_its_work_folder_when_run(tmp_path, monkeypatch):
    """A tiny notebook with lesson 08's own parameters cell, run by the runner, sees both of its output folders
    re-rooted under --out (the upload widget writes to UPLOAD_DIR)."""
    lesson = _parameters_source(REPO_ROOT / "lessons" / "08_creative_brief.ipynb")
    shown = "from tlcourse.paths import display_path\nprint(display_path(OUTPUT_DIR))"
    _write(tmp_path / "course" / "08_brief.ipynb", lesson, "print(UPLOAD_DIR)\nprint(OUTPUT_DIR)", shown)
    monkeypatch.chdir(tmp_path)
    (result,) = runner.run_notebooks(
        ["course/08_brief.ipynb"], out_dir="runs", progress=False, verbose=False, profile="smoke"
    )
    assert result.status == "ok", result.error
    work = (tmp_path / "runs" / "course" / "08_brief_files").resolve()
    executed = nbformat.read(result.output, as_version=4)
    printed = [Path(line) for line in executed.cells[-2].outputs[0]["text"].split()]
    assert printed == [work / "my_images", work / "capstone_output"]
    # and the library shows that injected absolute folder as the notebook names it when run on its own
    assert executed.cells[-1].outputs[0]["text"].strip() == "capstone_output"
    assert not (result.notes and any("not in the notebook's parameters" in note for note in result.notes))
