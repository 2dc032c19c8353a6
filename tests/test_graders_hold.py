"""Graders that cannot be talked round, and the scan that finds answer cells rebinding them (no kernels)."""

from __future__ import annotations

import math

import nbformat
import numpy as np
import pytest

from tlcourse import record
from tlcourse.checks import CheckResult, lesson02, lesson03, plain_float, plain_int
from tlcourse.cli import grade
from tlcourse.cli.kernels import kernel_problem
from tlcourse.cli.rebinding import EVERY_CHECK, scan_answer_cells


class AlwaysEqual(int):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = int.__hash__


class AlwaysEqualText(str):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = str.__hash__


def _conv_output(size, kernel, stride, padding):
    return math.ceil(size / stride) if padding == "same" else (size - kernel) // stride + 1


def test_an_int_subclass_that_equals_everything_fails_the_count_graders():
    result = lesson02.check_conv_output_size(lambda *args: AlwaysEqual(1))
    assert not result.passed and "got 1" in result.message
    assert not lesson03.check_separable_cost(lambda *a, **k: (AlwaysEqual(0), AlwaysEqual(0))).passed


def test_a_str_subclass_that_equals_everything_fails_the_text_graders():
    assert not lesson02.check_claim([0.1, 0.2], [0.5, 0.6], AlwaysEqualText("worse")).passed
    assert not lesson03.check_choose_backbone(lambda rows, budget: AlwaysEqualText("nothing")).passed


def test_plain_numbers_still_pass_whatever_their_numeric_type():
    assert lesson02.check_conv_output_size(_conv_output).passed
    assert lesson02.check_conv_output_size(lambda *a: np.int64(_conv_output(*a))).passed
    assert lesson02.check_conv_output_size(lambda *a: float(_conv_output(*a))).passed
    assert plain_int(AlwaysEqual(7)) == 7 and type(plain_int(AlwaysEqual(7))) is int
    assert plain_int(True) is None and plain_int("3") is None and plain_int(2.5) is None
    assert plain_float(np.float32(0.5)) == 0.5 and plain_float(np.array([0.25])) == 0.25
    assert plain_float("0.5") is None


def test_only_a_grader_of_the_package_puts_its_name_on_a_result():
    assert lesson02.check_claim([0.1, 0.2], [0.5, 0.6], "better").check == "check_claim"
    assert CheckResult(True, "made by hand").check == ""

    def check_claim(*args):  # a look-alike defined outside the package
        return CheckResult(True, "trust me")

    assert check_claim().check == ""
    forged: dict = {"__name__": "tlcourse.checks.lesson02", "CheckResult": CheckResult}
    exec(
        compile("def check_claim(*a):\n    return CheckResult(True, 'x')", lesson02.__file__, "exec"), forged
    )
    assert forged["check_claim"]().check == "", "a function compiled under the grader's file name is not it"
    with pytest.raises(TypeError):
        CheckResult(True, "x", check="check_claim")  # the grader's name cannot be given by the caller


def _check(name: str, passed: bool = True) -> nbformat.NotebookNode:
    payload = {"check": name, "passed": passed, "message": "fine"}
    return nbformat.v4.new_output("display_data", data={record.CHECK_MIME: payload})


def test_a_pass_the_named_grader_did_not_record_scores_zero():
    source = "grade.check_claim(a, b, c).assert_passed()"
    checks = grade.template_checks(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]))
    for recorded, status in (("", "unverified"), ("check_other", "unverified"), ("check_claim", "passed")):
        cell = nbformat.v4.new_code_cell(source, outputs=[_check(recorded)])
        executed = nbformat.v4.new_notebook(cells=[cell])
        assert grade.score_notebook(executed, checks, "x.ipynb")[0].status == status, recorded


TEMPLATE = [
    "from tlcourse.checks import lesson02 as grade",
    "answer = None",
    "grade.check_claim(a, b, answer).assert_passed()",
]


def _scan(*answers: str):
    cells = [(1, TEMPLATE[0]), *[(i, source) for i, source in enumerate(answers, start=2)], (9, TEMPLATE[2])]
    return scan_answer_cells(cells, TEMPLATE, [TEMPLATE[2]])


@pytest.mark.parametrize(
    "source, graders",
    [
        ("grade.check_claim = lambda *a: None", {"check_claim"}),
        ("setattr(grade, 'check_claim', print)", {EVERY_CHECK}),
        ("import os as grade", {EVERY_CHECK}),
        ("grade = object()", {EVERY_CHECK}),
        ("import tlcourse.record as r\nr.record_check = print", {EVERY_CHECK}),
        ("from tlcourse import checks\nchecks.CheckResult.assert_passed = print", {EVERY_CHECK}),
        ("import sys\nsys.modules['tlcourse.checks.lesson02'] = None", {EVERY_CHECK}),
        ("globals()['grade'] = None", {EVERY_CHECK}),
        ("get_ipython().display_pub.publish = print", {EVERY_CHECK}),
        ("for grade in range(2):\n    pass", {EVERY_CHECK}),
    ],
)
def test_answer_cells_that_rebind_what_a_check_cell_calls_are_found(source, graders):
    found = _scan("answer = 'better'", source)
    assert [f.graders for f in found] == [frozenset(graders)] and found[0].cell == 3


def test_ordinary_answer_cells_and_template_cells_are_not_flagged():
    honest = (
        "import numpy as np\nanswer = 'better'\ndef grade_me(x):\n    grade = 3\n    return grade\n"
        "from tlcourse.checks import lesson02 as grade\n%timeit np.ones(3)\nnp.random.seed(0)"
    )
    assert _scan(honest) == []
    found = _scan("exec('answer = 1')")
    assert len(found) == 1 and not found[0].costs_points and "read it by hand" in found[0].what


def test_only_python_notebooks_are_run():
    assert kernel_problem({"metadata": {"kernelspec": {"name": "python3", "language": "python"}}}) is None
    assert kernel_problem({"metadata": {}}) is None  # no language declared: taken as Python
    problem = kernel_problem({"metadata": {"kernelspec": {"name": "ir", "language": "R"}}})
    assert problem is not None and "R notebook" in problem and "\n" not in problem
    julia = {"metadata": {"language_info": {"name": "julia"}}}
    assert "julia notebook" in kernel_problem(julia)
