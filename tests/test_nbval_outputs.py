"""nbval checks the committed outputs of the few notebook cells tagged ``nbval-check-output``.

Each notebook that has such cells is executed by nbval (``--nbval-lax``: only tagged cells are compared) in
the ``smoke`` profile, in a separate pytest process so nbval's kernel gets a clean environment, with the
sanitizer file that masks paths, addresses and timings. The notebook runs from a copy in a temporary folder,
so what it writes (lesson 08's ``capstone_output/``) never lands in ``lessons/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SANITIZER = REPO_ROOT / "tests" / "nbval_sanitize.cfg"


def _checked_notebooks() -> list[Path]:
    found = []
    for folder in ("lessons", "solutions"):
        for path in sorted((REPO_ROOT / folder).glob("*.ipynb")):
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            if any("nbval-check-output" in cell.get("metadata", {}).get("tags", []) for cell in cells):
                found.append(path.relative_to(REPO_ROOT))
    return found


CHECKED = _checked_notebooks()
if not CHECKED:
    pytest.skip("no notebook has cells tagged nbval-check-output yet", allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("relpath", CHECKED, ids=str)
def test_tagged_cells_reproduce_their_committed_outputs(relpath, tmp_path):
    before = sorted(p.name for p in (REPO_ROOT / relpath).parent.iterdir())
    copy = tmp_path / relpath
    copy.parent.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / relpath, copy)
    env = dict(os.environ, TLCOURSE_PROFILE="smoke", TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
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
        "-q",
        str(relpath),
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"nbval failed on {relpath}:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    after = sorted(p.name for p in (REPO_ROOT / relpath).parent.iterdir())
    assert after == before, f"running {relpath} wrote into the repository: {sorted(set(after) - set(before))}"
