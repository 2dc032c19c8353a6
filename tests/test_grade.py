"""``tlcourse grade``: a mock class of exercise 03 scored per check, plus matching, naming and nbgrader metadata.

One module-wide class (six students, two kernels at a time, smoke profile, one backbone timed) serves the
end-to-end tests; everything else runs on notebooks built in memory, without a kernel.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from tlcourse import cli, record
from tlcourse.cli import grade

REPO_ROOT = Path(__file__).resolve().parents[1]
NAME = "03_pretrained_models.ipynb"
CHECKS = [
    "check_separable_cost",
    "check_preprocessing_range",
    "check_params_by_kind",
    "check_choose_backbone",
]
ANSWER_CELLS = ["cell-06", "cell-09", "cell-12", "cell-17"]
CHECK_CELLS = ["cell-07", "cell-10", "cell-13", "cell-18"]


def _read(folder: str) -> nbformat.NotebookNode:
    return nbformat.read(REPO_ROOT / folder / NAME, as_version=4)


def _answered() -> nbformat.NotebookNode:
    """The exercise notebook (with its nbgrader metadata) with every answer filled in from the solution."""
    exercise, solution = _read("exercises"), _read("solutions")
    answers = {cell.id: cell.source for cell in solution.cells}
    for cell in exercise.cells:
        cell.source = answers[cell.id]
    return exercise


def _cell(nb: nbformat.NotebookNode, cell_id: str) -> nbformat.NotebookNode:
    return next(cell for cell in nb.cells if cell.id == cell_id)


def _mock_class(folder: Path) -> dict[str, nbformat.NotebookNode]:
    wrong = _answered()
    first = _cell(wrong, "cell-06")
    first.source = first.source.replace("return depthwise + pointwise,", "return depthwise * pointwise,")
    deleted = _read("exercises")
    deleted.cells = [cell for cell in deleted.cells if cell.id not in ANSWER_CELLS + CHECK_CELLS]
    raises = _answered()
    broken = _cell(raises, "cell-09")
    broken.source = "raise RuntimeError('student bug')\n" + broken.source
    edited = _answered()
    _cell(edited, "cell-18").source = 'print("✔ passed: trust me")'
    students = {
        "alice": _read("solutions"),  # a solution copy: no nbgrader metadata, cells found by their source
        "bob": _read("exercises"),  # handed in blank
        "carol": wrong,
        "dave": deleted,
        "erin": raises,
        "frank": edited,
    }
    for student, nb in students.items():
        (folder / student).mkdir(parents=True)
        nbformat.write(nb, folder / student / NAME)
    return students


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    _mock_class(root / "submissions")
    before = {p: p.read_bytes() for p in (root / "submissions").rglob("*") if p.is_file()}
    out = root / "grades"
    argv = [
        "grade", str(root / "submissions"), "--out", str(out), "--profile", "smoke", "--jobs", "2",
        "--templates", str(REPO_ROOT / "exercises"), "-p", "CANDIDATES", '("mobilenet_v3_small",)',
    ]  # fmt: skip
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        status = cli.main(argv)
    after = {p: p.read_bytes() for p in (root / "submissions").rglob("*") if p.is_file()}
    return {"status": status, "out": out, "console": console.getvalue(), "unchanged": before == after}


@pytest.mark.slow
def test_the_class_gets_the_exact_per_check_matrix_totals_and_exit_status_0(graded):
    assert graded["status"] == 0, graded["console"]
    table = pd.read_csv(graded["out"] / "grades.csv", index_col="student")
    assert list(table.columns) == [*CHECKS, "total", "possible", "status", "notes"]
    assert table[CHECKS].to_dict("index") == {
        "alice": dict.fromkeys(CHECKS, 1),
        "bob": dict.fromkeys(CHECKS, 0),
        "carol": {**dict.fromkeys(CHECKS, 1), "check_separable_cost": 0},
        "dave": dict.fromkeys(CHECKS, 0),
        "erin": {**dict.fromkeys(CHECKS, 1), "check_preprocessing_range": 0},
        "frank": {**dict.fromkeys(CHECKS, 1), "check_choose_backbone": 0},
    }
    assert table["total"].to_dict() == {"alice": 4, "bob": 0, "carol": 3, "dave": 0, "erin": 3, "frank": 3}
    assert set(table["possible"]) == {4} and set(table["status"]) == {"graded"}
    assert graded["unchanged"], "grading writes nothing into the submissions folder"


@pytest.mark.slow
def test_each_zero_says_why_missing_edited_raised_or_not_yet(graded):
    rows = {row["student"]: row for row in json.loads((graded["out"] / "grades.json").read_text())}
    status = {name: [c["status"] for c in row["checks"]] for name, row in rows.items()}
    assert status["dave"] == ["missing"] * 4
    assert status["frank"][3] == "edited" and status["carol"][0] == "failed"
    assert status["erin"][1] == "error"
    erin = rows["erin"]["checks"][1]["hint"]
    assert "NameError" in erin and "RuntimeError: student bug" in erin, (
        "the exception is put on the exercise it broke"
    )
    assert all("NotImplementedError" in c["hint"] for c in rows["bob"]["checks"])
    assert "Keras counts 2336" in rows["carol"]["checks"][0]["hint"], (
        "the grader's hint reaches the gradebook"
    )
    assert all(row["problem"] is None for row in rows.values())


@pytest.mark.slow
def test_the_html_gradebook_has_one_row_per_student_with_hints_and_links_to_html_notebooks(graded):
    page = (graded["out"] / "gradebook.html").read_text()
    assert page.count('<tr class="student">') == 6
    assert "check cell was edited" in page and "the check cell is missing" in page
    for student in ("alice", "bob", "carol", "dave", "erin", "frank"):
        assert f'href="./{student}/03_pretrained_models.html"' in page
        executed = graded["out"] / student / NAME
        assert executed.is_file() and executed.with_suffix(".html").is_file()
    alice = nbformat.read(graded["out"] / "alice" / NAME, as_version=4)
    assert [item["check"] for item in record.read_checks(alice)] == CHECKS


@pytest.mark.slow
def test_console_has_one_line_per_student_with_the_score(graded):
    lines = [line for line in graded["console"].splitlines() if line.split("  ")[0] in {"alice", "dave"}]
    assert lines == ["alice  03_pretrained_models.ipynb  4/4", "dave  03_pretrained_models.ipynb  0/4"]


# ------------------------------------------------------------------------------------------------------------
# Without kernels


def test_a_submission_without_a_template_or_unreadable_is_reported_and_exits_1(tmp_path, capsys):
    (tmp_path / "subs" / "zoe").mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "subs" / "zoe" / "99_unknown.ipynb")
    (tmp_path / "subs" / "yan").mkdir()
    (tmp_path / "subs" / "yan" / NAME).write_text("{not json")
    status = cli.main(
        [
            "grade",
            str(tmp_path / "subs"),
            "--out",
            str(tmp_path / "out"),
            "--templates",
            str(REPO_ROOT / "exercises"),
        ]
    )
    out = capsys.readouterr().out
    assert status == 1
    assert "zoe  99_unknown.ipynb  0/0  NOT GRADED COMPLETELY: no exercise in" in out
    assert "yan  03_pretrained_models.ipynb  0/0  NOT GRADED COMPLETELY: not a readable notebook" in out
    assert pd.read_csv(tmp_path / "out" / "grades.csv")["student"].tolist() == ["yan", "zoe"]


def test_no_templates_is_a_usage_error_with_exit_2(tmp_path, capsys):
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "a.ipynb")
    status = cli.main(
        [
            "grade",
            str(tmp_path / "a.ipynb"),
            "--out",
            str(tmp_path / "o"),
            "--templates",
            str(tmp_path / "none"),
        ]
    )
    assert status == 2 and "No exercise templates" in capsys.readouterr().err


def test_students_come_from_folders_or_flat_stems_and_same_names_never_collide(tmp_path):
    template = REPO_ROOT / "exercises" / NAME
    nested = [tmp_path / "a" / "alice" / NAME, tmp_path / "b" / "alice" / NAME, tmp_path / "a" / "bob" / NAME]
    flat = [tmp_path / "flat" / f"carol_{NAME}", tmp_path / "flat" / f"dan-{NAME}"]
    every = [path.resolve() for path in nested + flat]
    for path in every:
        path.parent.mkdir(parents=True, exist_ok=True)
    templates = {path: grade.match_template(path, [template]) for path in every}
    assert set(templates.values()) == {template}
    names = grade.student_names(every, templates, [tmp_path / "a", tmp_path / "b", tmp_path / "flat"])
    outputs = grade._unique_outputs(every, names, tmp_path / "out")
    assert [names[path] for path in every] == [
        "alice", "alice-2", "bob", "carol", "dan",
    ]  # fmt: skip
    assert len(set(outputs.values())) == len(every)


def _executed(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def _check_output(check: str, passed: bool, message: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_output(
        "display_data", data={record.CHECK_MIME: {"check": check, "passed": passed, "message": message}}
    )


def test_a_check_cell_with_two_graders_passes_only_when_both_recorded_a_pass():
    source = "checks.check_a(f).assert_passed()\nchecks.check_b(g).assert_passed()"
    checks = grade.template_checks(_executed(nbformat.v4.new_code_cell(source)))
    assert [c.grade_id for c in checks] == ["check_a-check_b"]
    one = nbformat.v4.new_code_cell(source, outputs=[_check_output("check_a", True, "fine")])
    one.outputs.append(nbformat.v4.new_output("error", ename="NameError", evalue="g", traceback=[]))
    both = nbformat.v4.new_code_cell(
        source, outputs=[_check_output("check_a", True, "a"), _check_output("check_b", True, "b")]
    )
    assert grade.score_notebook(_executed(one), checks, "x.ipynb")[0].status == "error"
    assert grade.score_notebook(_executed(both), checks, "x.ipynb")[0].status == "passed"


def test_a_faked_pass_outside_the_check_cell_does_not_count():
    checks = grade.template_checks(_executed(nbformat.v4.new_code_cell("checks.check_a(f).assert_passed()")))
    fake = nbformat.v4.new_code_cell("display(...)", outputs=[_check_output("check_a", True, "fake")])
    real = nbformat.v4.new_code_cell("checks.check_a(f).assert_passed()")
    assert grade.score_notebook(_executed(fake, real), checks, "x.ipynb")[0].status == "not run"


def test_check_cells_carry_nbgrader_metadata_with_nbgraders_own_checksum():
    cell = nbformat.v4.new_code_cell("checks.check_demo(answer).assert_passed()")
    meta = grade.check_cell_metadata(cell, "check_demo")
    assert meta["grade"] and meta["locked"] and meta["points"] == 1 and meta["grade_id"] == "check_demo"
    # computed by nbgrader 0.9.6's nbgrader.utils.compute_checksum on this very cell and metadata
    assert meta["checksum"] == "17cd8548fda2376b51c9468485c2768f"
    edited = copy.deepcopy(cell)
    edited.source += "  # changed"
    assert grade.check_cell_metadata(edited, "check_demo")["checksum"] != meta["checksum"]


def test_only_cells_made_of_grader_calls_are_check_cells():
    assert grade.grader_calls("checks.check_x(f).assert_passed()") == ["check_x"]
    assert grade.grader_calls("grade.check_y(a, b=1).assert_passed()\n") == ["check_y"]
    assert grade.grader_calls("x = 1\nchecks.check_x(f).assert_passed()") is None
    assert grade.grader_calls("checks.check_x(f)") is None
    assert grade.grader_calls("print('✔ passed')") is None
    assert grade.grade_ids(["checks.check_x(f).assert_passed()", None, "checks.check_x(g).assert_passed()"]) == [
        "check_x", None, "check_x-2",
    ]  # fmt: skip
