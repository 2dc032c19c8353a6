"""Point every notebook's guarded Colab install at the release tag of pyproject's version.

Run it after bumping ``version`` in pyproject.toml (then tag the release ``vX.Y.Z`` and regenerate the exercises
with ``python tools/make_exercises.py``). tests/test_notebook_style.py fails while any notebook pins another ref.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTALL = re.compile(r"(tlcourse @ git\+https://github\.com/[\w.-]+/[\w.-]+@)([\w.-]+)")


def main() -> int:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    tag = f"v{version}"
    for folder in ("lessons", "solutions"):
        for path in sorted((REPO_ROOT / folder).glob("*.ipynb")):
            notebook = nbformat.read(path, as_version=4)
            setup = next(cell for cell in notebook.cells if cell.cell_type == "code")
            pinned = INSTALL.sub(lambda match: match.group(1) + tag, setup.source)
            if pinned != setup.source:
                setup.source = pinned
                nbformat.write(notebook, path)
                print(f"{path.relative_to(REPO_ROOT)}: Colab install pinned to {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
