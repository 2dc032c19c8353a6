"""Show a file's location without the machine's absolute path (lessons 00, 01, 04 and 08).

What a lesson prints, a report lists or a model card records is read on other machines (a shared notebook,
a class's run folder, a published model), where ``/home/alice/...`` means nothing and says more than it
should. :func:`display_path` turns a path into the shortest honest name for it: relative to the folder it
belongs to (the notebook's work folder in a ``tlcourse run``, else the current folder), or anchored at a
name every reader knows (``~``, ``$TLCOURSE_MIRROR``, ``$TMPDIR``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

WORK_DIR_VARIABLE = "TLCOURSE_WORK_DIR"
"""Set by ``tlcourse run`` in each kernel: the folder that receives what the notebook writes. Paths under it
are shown relative to it, as they would be when the notebook runs on its own."""


def _anchors(base: str | os.PathLike | None) -> list[tuple[Path, str]]:
    """(folder, how it is written) pairs, the most specific first; an empty name means "relative"."""
    anchors: list[tuple[Path, str]] = []
    for folder in (base, os.environ.get(WORK_DIR_VARIABLE), Path.cwd()):
        if folder:
            anchors.append((Path(folder), ""))
    mirror = os.environ.get("TLCOURSE_MIRROR")
    if mirror:
        anchors.append((Path(mirror).expanduser(), "$TLCOURSE_MIRROR"))
    anchors.append((Path.home(), "~"))
    anchors.append((Path(tempfile.gettempdir()), "$TMPDIR"))
    resolved = []
    for folder, name in anchors:
        try:
            resolved.append((folder.resolve(), name))
        except (OSError, RuntimeError):
            continue
    return resolved


def _relative(path: Path, anchors: Iterable[tuple[Path, str]]) -> str | None:
    """The path below the deepest anchor it sits in, written with that anchor's name."""
    best: tuple[int, str] | None = None
    for folder, name in anchors:
        if not path.is_relative_to(folder):
            continue
        rest = path.relative_to(folder).as_posix()
        if rest == "." and name.startswith("$TLCOURSE"):
            continue  # the mirror itself is better named by where it is than by the variable that names it
        text = (rest if rest != "." else ".") if not name else (name if rest == "." else f"{name}/{rest}")
        # a relative anchor wins over a named one at the same depth; the deepest anchor wins overall
        rank = len(folder.parts) * 2 + (1 if not name else 0)
        if best is None or rank > best[0]:
            best = (rank, text)
    return None if best is None else best[1]


def display_path(path: str | os.PathLike, *, base: str | os.PathLike | None = None) -> str:
    """A path as lessons, reports and model cards show it: never the machine's absolute path.

    Relative to ``base`` (when given), to the notebook's work folder in a ``tlcourse run``, or to the current
    folder, whichever holds it most closely; else ``~/...``, ``$TLCOURSE_MIRROR/...`` or ``$TMPDIR/...``;
    else only the last two parts, after ``.../``. A relative path is returned as written (it already says
    nothing about the machine). ``display_path(Path.home() / "data")`` -> ``"~/data"``.
    """
    given = Path(path).expanduser()
    if not given.is_absolute():
        return given.as_posix()
    try:
        resolved = given.resolve()
    except (OSError, RuntimeError):
        resolved = given
    shown = _relative(resolved, _anchors(base))
    if shown is None and resolved != given:  # a symlinked folder: try the path as given too
        shown = _relative(given, _anchors(base))
    if shown is not None:
        return shown
    tail = resolved.parts[-2:] if len(resolved.parts) > 2 else resolved.parts[1:]
    return ".../" + "/".join(tail)
