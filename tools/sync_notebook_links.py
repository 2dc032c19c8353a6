"""Write every notebook's Colab/Binder badges and Colab setup cell, and the README's badges, from one setting.

The setting lives in pyproject.toml: ``[project.urls] Repository`` names the GitHub repository and
``[tool.tlcourse] notebook_ref`` the git ref (a branch such as ``main``, or a release tag such as ``v0.1.0``).
Badges open the notebook at that ref and the setup cell installs the library from the same ref, as a GitHub
archive (no git needed on Colab), so a Colab student always runs a notebook against its own library.

    python tools/sync_notebook_links.py           # rewrite lessons/, solutions/, exercises/ and README.md
    python tools/sync_notebook_links.py --check   # exit 1 and list what disagrees (tests/test_notebook_links.py)

Change the repository or the ref only in pyproject.toml, then run this tool; never edit a badge by hand.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_FOLDERS = ("lessons", "solutions", "exercises")
BADGE_LINE = re.compile(r"^\[!\[Open In Colab\].*$", re.M)

SETUP_CELL = """\
# Setup: on Colab, install the course library from the same commit as this notebook; Colab's own TensorFlow
# is kept. Anywhere else this cell does nothing: your environment already has the library (see README.md).
import sys

if "google.colab" in sys.modules:
    import importlib
    import subprocess

    COURSE = "{archive}"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"tlcourse @ {{COURSE}}"],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        print("\\n".join(pip.stderr.strip().splitlines()[-3:]))
        raise SystemExit(f"Installing the course library from {{COURSE}} failed (pip's last lines are above): "
                         "check that the runtime is connected, then Runtime > Restart session and run again.")
    importlib.invalidate_caches()"""


def settings(pyproject: Path = REPO_ROOT / "pyproject.toml") -> tuple[str, str]:
    """``(owner/name, ref)`` from pyproject.toml's ``[project.urls] Repository`` and ``[tool.tlcourse]``."""
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    url = config["project"]["urls"]["Repository"]
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)/?", url)
    if not match:
        raise SystemExit(
            f"pyproject.toml: [project.urls] Repository must be https://github.com/OWNER/NAME, not {url}"
        )
    ref = config["tool"]["tlcourse"]["notebook_ref"]
    if not re.fullmatch(r"[\w.-]+", ref):
        raise SystemExit(
            f"pyproject.toml: [tool.tlcourse] notebook_ref must be a branch or tag name, not {ref!r}"
        )
    return match.group(1), ref


def badges(slug: str, ref: str, path: str) -> str:
    """The one line of Colab and Binder badges for ``path`` (relative to the repository root)."""
    colab = f"https://colab.research.google.com/github/{slug}/blob/{ref}/{path}"
    binder = f"https://mybinder.org/v2/gh/{slug}/{ref}?urlpath=lab/tree/{path}"
    return (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder})"
    )


def archive_url(slug: str, ref: str) -> str:
    """The archive of ``ref`` that pip installs without git."""
    return f"https://github.com/{slug}/archive/{ref}.zip"


def setup_cell(slug: str, ref: str) -> str:
    """The source of every notebook's first code cell."""
    return SETUP_CELL.format(archive=archive_url(slug, ref))


def _with_badges(text: str, line: str, where: str) -> str:
    if BADGE_LINE.search(text):
        return BADGE_LINE.sub(lambda _: line, text, count=1)
    head, sep, rest = text.partition("\n")
    if not head.startswith("# "):
        raise SystemExit(f"{where}: the first cell must start with the notebook's H1 to carry the badges")
    return f"{head}\n\n{line}{sep}{rest}" if rest else f"{head}\n\n{line}\n"


def sync_notebook(path: Path, root: Path, slug: str, ref: str, *, write: bool) -> bool:
    """Bring one notebook's badges and setup cell in line; True when it had to change."""
    notebook = nbformat.read(path, as_version=4)
    relpath = path.relative_to(root).as_posix()
    first_markdown = next(cell for cell in notebook.cells if cell.cell_type == "markdown")
    first_code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    new_markdown = _with_badges(first_markdown.source, badges(slug, ref, relpath), relpath)
    new_setup = setup_cell(slug, ref)
    changed = (first_markdown.source, first_code.source) != (new_markdown, new_setup)
    if changed and write:
        first_markdown.source, first_code.source = new_markdown, new_setup
        nbformat.write(notebook, path)
    return changed


def sync_readme(path: Path, slug: str, ref: str, *, write: bool) -> bool:
    """The README's badges open the first lesson at the same ref."""
    text = path.read_text(encoding="utf-8")
    new = _with_badges(text, badges(slug, ref, "lessons/00_welcome.ipynb"), path.name)
    if new != text and write:
        path.write_text(new, encoding="utf-8")
    return new != text


def sync(root: Path = REPO_ROOT, *, write: bool = True) -> list[str]:
    """Rewrite (or with ``write=False`` only find) every file whose badges or setup cell disagree."""
    slug, ref = settings(root / "pyproject.toml")
    changed = [
        path.relative_to(root).as_posix()
        for folder in NOTEBOOK_FOLDERS
        for path in sorted((root / folder).glob("*.ipynb"))
        if sync_notebook(path, root, slug, ref, write=write)
    ]
    if (root / "README.md").is_file() and sync_readme(root / "README.md", slug, ref, write=write):
        changed.append("README.md")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report files that disagree; exit 1 if any")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    changed = sync(args.root, write=not args.check)
    slug, ref = settings(args.root / "pyproject.toml")
    if args.check:
        for name in changed:
            print(
                f"{name}: badges or setup cell disagree with {slug}@{ref}; run python tools/sync_notebook_links.py"
            )
        return 1 if changed else 0
    for name in changed:
        print(f"{name}: now {slug}@{ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
