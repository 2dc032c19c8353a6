"""Tiny exercise notebooks that call the real graders, for the ``tlcourse grade`` tests.

The template ``02_alexnet.ipynb`` holds two claims to make and two check cells calling
``tlcourse.checks.lesson02.check_claim`` (pure Python: each kernel starts in about a second). A submission is
the template with answer cells filled in, plus whatever a hostile student adds.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

NAME = "02_alexnet.ipynb"
IMPORT = "from tlcourse.checks import lesson02 as grade"
CHECK_A = "grade.check_claim([0.1, 0.2], [0.5, 0.6], CLAIM_A).assert_passed()"
CHECK_B = "grade.check_claim([0.5, 0.6], [0.1, 0.2], CLAIM_B).assert_passed()"
BLANK_A, BLANK_B = "CLAIM_A = None  # your claim", "CLAIM_B = None  # your claim"
RIGHT_A, RIGHT_B = 'CLAIM_A = "better"', 'CLAIM_B = "worse"'
CHECKS = ["check_claim", "check_claim-2"]


def _notebook(sources: list[str], language: str = "python") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    kernel = "python3" if language == "python" else "ir"
    nb.metadata["kernelspec"] = {"name": kernel, "language": language, "display_name": kernel}
    return nb


def template() -> nbformat.NotebookNode:
    return _notebook([IMPORT, BLANK_A, CHECK_A, BLANK_B, CHECK_B])


def submission(
    a: str = RIGHT_A, b: str = RIGHT_B, extra: str = "", language: str = "python"
) -> nbformat.NotebookNode:
    """The template answered with ``a`` and ``b``; ``extra`` is one more answer cell right after the import."""
    cells = [IMPORT, *([extra] if extra else []), a, CHECK_A, b, CHECK_B]
    return _notebook(cells, language)


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def course(root: Path) -> Path:
    """``root/exercises/02_alexnet.ipynb``: the course folder the grader runs in."""
    write(template(), root / "exercises" / NAME)
    return root


def overwrite_other(victim: Path) -> str:
    """An answer cell that overwrites another student's submission with a blank one before it is graded."""
    blank = json.dumps(nbformat.writes(template()))
    return f"open({str(victim)!r}, 'w').write({blank})"


def rewrite_template_through_parent() -> str:
    """An answer cell that finds the grader's working folder (its parent's cwd) and edits the template's check
    cell there, so a grader that re-reads templates afterwards scores every honest student 'edited'."""
    return (
        "import os, json\n"
        "folder = os.readlink(f'/proc/{os.getppid()}/cwd')\n"
        f"path = os.path.join(folder, 'exercises', {NAME!r})\n"
        "nb = json.load(open(path))\n"
        "for cell in nb['cells']:\n"
        "    cell['source'] = ''.join(cell['source']).replace('CLAIM_A).assert', 'CLAIM_A) .assert')\n"
        "json.dump(nb, open(path, 'w'))"
    )


def detached_rewriter(target: Path) -> str:
    """An answer cell that leaves a process behind (double fork, own session, empty environment) which waits
    (up to a minute) for ``target`` to appear, then rewrites it half a second later."""
    script = (
        f"for i in $(seq 300); do [ -f {str(target)!r} ] && break; sleep 0.2; done; sleep 0.5; "
        f"printf 'student,total\\nmallory,100\\n' > {str(target)!r}"
    )
    return (
        "import os\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execve('/bin/sh', ['sh', '-c', {script!r}], {{}})\n"
        "    os._exit(0)\n"
        "os.wait()"
    )
