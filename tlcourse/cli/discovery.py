"""Which notebooks a ``tlcourse run`` executes and where their executed copies go (lesson 00).

Paths, folders and globs expand into a list of notebooks (``.ipynb_checkpoints`` and the output folder left
out, duplicates dropped); :func:`output_paths` maps each one into the output folder, keeping relative paths so
two notebooks with one name never overwrite each other.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tlcourse.errors import TLCourseError
from tlcourse.paths import display_path

DEFAULT_FOLDER = "lessons"
_GLOB_CHARS = frozenset("*?[")


def _is_excluded(path: Path, out_dir: Path | None) -> bool:
    if ".ipynb_checkpoints" in path.parts:
        return True
    if out_dir is not None:
        try:
            path.resolve().relative_to(out_dir)
            return True
        except ValueError:
            return False
    return False


def _expand(item: str) -> list[Path]:
    """One command-line item as paths: a glob's sorted matches, else the path itself."""
    if not _GLOB_CHARS & set(item):
        return [Path(item)]
    matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))]
    if not matches:
        raise TLCourseError(f"The pattern {item!r} matches no files. Check the path and the quotes.")
    return matches


def find_notebooks(
    paths: Iterable[str | os.PathLike] | None, *, out_dir: str | os.PathLike | None = None
) -> list[Path]:
    """Expand notebooks, folders (every ``*.ipynb`` inside, sorted) and globs into a list of notebooks (lesson 00).

    With no paths, ``lessons/`` in the current folder is used. ``.ipynb_checkpoints`` and anything inside
    ``out_dir`` are skipped. Raises :class:`TLCourseError` when a path matches nothing.
    """
    resolved_out = Path(out_dir).resolve() if out_dir is not None else None
    given = [str(p) for p in (paths or [])]
    if not given:
        folder = Path(DEFAULT_FOLDER)
        if not folder.is_dir():
            raise TLCourseError(
                f"No notebooks given and there is no {DEFAULT_FOLDER}/ folder in {display_path(Path.cwd())}. "
                "Run from the course folder, or name notebooks, folders or globs: tlcourse run PATH..."
            )
        given = [str(folder)]
    found: list[Path] = []
    for item in given:
        for match in _expand(item):
            if match.is_dir():
                inside = sorted(p for p in match.rglob("*.ipynb") if p.is_file())
                found += [p for p in inside if not _is_excluded(p, resolved_out)]
            elif match.is_file() and match.suffix == ".ipynb":
                if not _is_excluded(match, resolved_out):
                    found.append(match)
            elif match.exists():
                if not (_GLOB_CHARS & set(item)):
                    raise TLCourseError(f"{item} is not a notebook (.ipynb) or a folder of notebooks.")
            else:
                raise TLCourseError(f"{item} does not exist. Name notebooks, folders or globs.")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    if not unique:
        raise TLCourseError(
            f"No notebooks found in {', '.join(given)} (lesson notebooks may not be written yet). "
            "Name notebooks, folders or globs that hold .ipynb files."
        )
    return list(unique.values())


def output_paths(notebooks: Sequence[Path], out_dir: Path) -> dict[Path, Path]:
    """Map each notebook to its executed copy in ``out_dir``, keeping relative paths so names cannot clash."""
    cwd = Path.cwd().resolve()
    resolved = [nb.resolve() for nb in notebooks]
    outside = [p for p in resolved if not p.is_relative_to(cwd)]
    # Notebooks outside the current folder keep their paths below the parent of their common folder, so
    # `tlcourse run /abs/lessons` writes OUT/lessons/..., as `tlcourse run lessons` does from the course root.
    base = Path(os.path.commonpath([p.parent for p in outside])).parent if outside else cwd
    return {
        p: out_dir / (p.relative_to(cwd) if p.is_relative_to(cwd) else p.relative_to(base)) for p in resolved
    }
