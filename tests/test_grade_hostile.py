"""``tlcourse grade`` on a class with three hostile students, on tiny notebooks that call the real graders.

Six submissions of ``02_alexnet.ipynb`` (two claims, two check cells, ``tlcourse.checks.lesson02``): three
honest students (alice 2/2, bob 1/2, frank 2/2) and three hostile ones: eve overwrites frank's submission
before it runs, mallory edits the template through the grader's working folder, trudy leaves a detached
process that rewrites ``grades.csv`` a second after the gradebook is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from gradekit import (
    CHECKS,
    NAME,
    course,
    detached_rewriter,
    overwrite_other,
    rewrite_template_through_parent,
    submission,
    write,
)

from tlcourse import cli

pytestmark = [
    pytest.mark.slow,  # executes notebooks (two small classes, one kernel each)
    pytest.mark.skipif(not hasattr(os, "fork"), reason="the hostile notebooks fork (POSIX)"),
]


@pytest.fixture(scope="module")
def hostile_class(tmp_path_factory):
    root = course(tmp_path_factory.mktemp("course"))
    subs, out = root / "submissions", root / "runs" / "class"
    frank = subs / "frank" / NAME
    write(submission(), subs / "alice" / NAME)
    write(submission(b='CLAIM_B = "better"'), subs / "bob" / NAME)
    write(
        submission(a="CLAIM_A = None", b="CLAIM_B = None", extra=overwrite_other(frank)), subs / "eve" / NAME
    )
    write(submission(), frank)
    write(submission(extra=rewrite_template_through_parent()), subs / "mallory" / NAME)
    write(submission(extra=detached_rewriter(out / "grades.csv")), subs / "trudy" / NAME)
    files = [p for p in root.rglob("*.ipynb")]
    before = {p: p.read_bytes() for p in files}
    console = io.StringIO()
    cwd = os.getcwd()
    os.chdir(root)  # the grader's working folder: where mallory's notebook looks for the templates
    try:
        with contextlib.redirect_stdout(console):
            status = cli.main(["grade", "submissions", "--out", "runs/class", "--templates", "exercises"])
    finally:
        os.chdir(cwd)
    written = (out / "grades.csv").read_bytes()
    time.sleep(1.5)  # trudy's process would have rewritten grades.csv by now
    return {
        "status": status,
        "console": console.getvalue(),
        "out": out,
        "written": written,
        "before": before,
        "after": {p: p.read_bytes() for p in files},
    }


def test_every_honest_student_gets_exactly_their_marks(hostile_class):
    table = pd.read_csv(hostile_class["out"] / "grades.csv", index_col="student")
    assert table.loc["alice", CHECKS].tolist() == [1, 1]
    assert table.loc["bob", CHECKS].tolist() == [1, 0]
    assert table.loc["frank", CHECKS].tolist() == [1, 1], "eve's overwrite must not cost frank his marks"
    assert table.loc[["alice", "bob", "frank"], "status"].tolist() == ["graded"] * 3


def test_no_template_or_submission_is_left_changed_on_disk(hostile_class):
    changed = [p.name for p, data in hostile_class["after"].items() if hostile_class["before"][p] != data]
    assert changed == []


def test_the_students_who_changed_files_are_flagged_with_what_they_changed(hostile_class):
    table = pd.read_csv(hostile_class["out"] / "grades.csv", index_col="student")
    assert table.loc["eve", "status"] == "flagged" and "frank" in table.loc["eve", "notes"]
    assert table.loc["mallory", "status"] == "flagged" and "exercises" in table.loc["mallory", "notes"]
    assert table.loc["trudy", "status"] == "flagged" and "left" in table.loc["trudy", "notes"]
    assert hostile_class["status"] == 1, "a flagged class exits 1"


def test_a_detached_process_cannot_rewrite_the_gradebook_after_it_is_written(hostile_class):
    csv = hostile_class["out"] / "grades.csv"
    assert csv.read_bytes() == hostile_class["written"]
    digest = hashlib.sha256(csv.read_bytes()).hexdigest()
    assert f"grades.csv (sha256 {digest})" in hostile_class["console"]


# ------------------------------------------------------------------------------------------------------------
# A class of odd file names, cheats and limits (two kernels at a time)

HOG = "import numpy as np, time\nblocks = []\nfor _ in range(10):\n    blocks.append(np.ones(25_000_000))\n    time.sleep(0.3)"
CHATTY = "for _ in range(40):\n    print('x' * 50_000)"
REBIND = (
    "from tlcourse.checks import CheckResult\ngrade.check_claim = lambda *a, **k: CheckResult(True, 'fine')"
)
EXEC_REBIND = "exec(\"grade.check_claim = lambda *a, **k: grade.CheckResult(True, 'fine')\")"
ALWAYS_EQUAL = (
    "class Always(str):\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n"
    "        return False\n    __hash__ = str.__hash__"
)
SCRIPT = "from IPython.display import HTML, display\ndisplay(HTML(\"<script>alert('owned')</script>\"))"
FORMULA = "=1+2\x1b[2J"
PEEK = "import os\nprint(repr(os.environ.get('AWS_SECRET_ACCESS_KEY')), os.environ['HOME'], os.getcwd(), sep='\\n')"


@pytest.fixture(scope="module")
def odd_class(tmp_path_factory):
    root = course(tmp_path_factory.mktemp("course"))
    subs = root / "submissions"
    write(submission(), subs / "alice" / NAME)
    copy = write(submission(a="CLAIM_A = None", b="CLAIM_B = None"), subs / "alice" / f"Copy of {NAME}")
    os.utime(copy, (time.time() + 60, time.time() + 60))  # the blank copy is the newer file
    write(submission(extra=PEEK), subs / f"bob [final]_{NAME}")
    write(submission(extra=SCRIPT), subs / FORMULA / NAME)
    write(submission(), subs / "javascript:alert(1)" / NAME)
    write(submission(a="CLAIM_A = None", b="CLAIM_B = None", extra=REBIND), subs / "oscar" / NAME)
    write(submission(a="CLAIM_A = None", b="CLAIM_B = None", extra=EXEC_REBIND), subs / "victor" / NAME)
    always = 'CLAIM_A = Always("worse")', 'CLAIM_B = Always("better")'
    write(submission(*always, extra=ALWAYS_EQUAL), subs / "sybil" / NAME)
    write(submission(language="R"), subs / "rita" / NAME)
    write(submission(extra=HOG), subs / "hogan" / NAME)
    write(submission(extra=CHATTY), subs / "otto" / NAME)
    out = root / "out"
    console = io.StringIO()
    argv = [
        "grade", str(subs), "--out", str(out), "--templates", str(root / "exercises"), "--jobs", "2",
        "--memory-limit", "0.4", "--max-output", "1", "--profile", "smoke",
    ]  # fmt: skip
    os.environ["AWS_SECRET_ACCESS_KEY"] = "the instructor's"
    try:
        with contextlib.redirect_stdout(console):
            status = cli.main(argv)
    finally:
        del os.environ["AWS_SECRET_ACCESS_KEY"]
    table = pd.read_csv(out / "grades.csv", index_col="student", keep_default_na=False)
    return {"status": status, "console": console.getvalue(), "out": out, "table": table}


def test_a_file_name_with_brackets_is_graded_like_any_other(odd_class):
    assert odd_class["table"].loc["bob [final]", CHECKS].tolist() == [1, 1]


def test_two_submissions_of_one_exercise_are_both_reported_and_the_row_says_which_counted(odd_class):
    alice = odd_class["table"].loc["alice"]
    assert alice[CHECKS].tolist() == [1, 1] and alice["total"] == 2, "the best one counts, not the newest"
    assert f"Copy of {NAME}: not counted: {NAME} counts (2/2 against 0/2; the most points)" in alice["notes"]
    assert f"Copy of {NAME}  0/2" in odd_class["console"] and f"alice  {NAME}  2/2" in odd_class["console"]


def test_rebinding_the_grader_in_an_answer_cell_scores_nothing_and_flags_the_row(odd_class):
    table = odd_class["table"]
    for cheat in ("oscar", "victor"):
        assert table.loc[cheat, CHECKS].tolist() == [0, 0], cheat
        assert table.loc[cheat, "status"] == "flagged", cheat
    assert "assigns to grade.check_claim" in table.loc["oscar", "notes"]
    assert "exec" in table.loc["victor", "notes"]  # hidden from the scan: the grader refused to vouch for it
    rows = {r["student"]: r for r in json.loads((odd_class["out"] / "grades.json").read_text())}
    assert [c["status"] for c in rows["oscar"]["checks"]] == ["tampered", "tampered"]
    assert [c["status"] for c in rows["victor"]["checks"]] == ["unverified", "unverified"]


def test_an_answer_that_claims_to_equal_anything_is_compared_by_its_value(odd_class):
    assert odd_class["table"].loc["sybil", CHECKS].tolist() == [0, 0]


def test_a_notebook_in_another_language_is_refused_with_one_line(odd_class):
    assert odd_class["table"].loc["rita", "status"] == "not graded"
    lines = [line for line in odd_class["console"].splitlines() if line.startswith("rita ")]
    assert len(lines) == 1 and "R notebook" in lines[0] and "Python notebooks only" in lines[0]


def test_memory_and_output_limits_stop_a_submission_with_a_clear_reason(odd_class):
    table = odd_class["table"]
    assert table.loc["hogan", "status"] == "incomplete" and "memory" in table.loc["hogan", "notes"]
    assert table.loc["otto", "status"] == "incomplete" and "output" in table.loc["otto", "notes"]
    assert odd_class["status"] == 1


def test_gradebook_cells_are_escaped_for_spreadsheets_html_and_terminals(odd_class):
    csv_text = (odd_class["out"] / "grades.csv").read_text()
    assert "\n'=1+2" in csv_text and "\n=1+2" not in csv_text
    page = (odd_class["out"] / "gradebook.html").read_text()
    assert 'href="javascript:' not in page and 'href="./javascript%3Aalert%281%29/02_alexnet.html"' in page
    assert "script-src 'none'" in page
    assert "\x1b" not in odd_class["console"] and "\\x1b[2J" in odd_class["console"]


def test_student_javascript_never_runs_in_the_executed_notebooks_html(odd_class):
    executed = (odd_class["out"] / FORMULA / NAME).with_suffix(".html").read_text()
    assert "<script>alert('owned')</script>" not in executed
    assert "script-src 'none'" in executed


def test_a_submission_runs_in_a_scratch_folder_without_the_instructors_environment(odd_class):
    executed = nbformat.read(odd_class["out"] / "bob [final]" / f"bob [final]_{NAME}", as_version=4)
    peek = next(cell for cell in executed.cells if "AWS_SECRET_ACCESS_KEY" in cell.source)
    secret, home, cwd = peek.outputs[0]["text"].split()
    assert secret == "None" and home != os.path.expanduser("~")
    for inside in (odd_class["out"], odd_class["out"].parent / "submissions"):
        assert not Path(cwd).is_relative_to(inside) and not Path(home).is_relative_to(inside)
