"""Walk a student's image folder once and sort every entry (lesson 08; :mod:`tlcourse.audit` checks the images).

:func:`scan_folder` finds the layout (``ROOT/<class>/...`` or ``ROOT/<split>/<class>/...``), the image
candidates with their class and split, and what is skipped and why: system files, hidden and checkpoint
folders, files that are not images, symlinks leading outside the folder or in a loop, unreadable folders.
Nothing is opened or decoded here, and nothing is ever written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tlcourse.errors import DataError
from tlcourse.imageio import IMAGE_EXTENSIONS, OTHER_IMAGE_EXTENSIONS

SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
    "testing": "test",
}
"""Folder names (lower case) recognised as splits, and the split each one stands for (lesson 08)."""
SPLIT_ORDER = ("train", "validation", "test")

SYSTEM_FILES = frozenset({"thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", "icon\r"})
"""File names (lower case) that operating systems leave in folders; hidden dot-files are ignored as well."""
IGNORED_FOLDERS = frozenset(
    {"__macosx", "__pycache__", "@eadir", "$recycle.bin", "system volume information"}
)
"""Folder names (lower case) never scanned; hidden dot-folders (``.ipynb_checkpoints``, ``.git``) neither."""

_MAX_ENTRIES = 2_000_000  # safety net against symlink mazes


@dataclass(frozen=True)
class Problem:
    """A file that cannot be used, and why (lesson 08)."""

    path: str
    problem: str


@dataclass
class Candidate:
    path: Path
    relpath: str
    label: str
    split: str | None


@dataclass
class Scan:
    root: Path
    real_root: str
    candidates: list[Candidate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    class_folders: dict[tuple[str | None, str], str] = field(default_factory=dict)
    loose_images: list[str] = field(default_factory=list)
    entries: int = 0
    visited: set[tuple[str, str]] = field(default_factory=set)
    """(class, real path) of every folder and image already taken, for the whole audit."""


def is_ignored_name(name: str, *, folder: bool) -> bool:
    lowered = name.lower()
    if name.startswith("."):  # .DS_Store, ._AppleDouble, .ipynb_checkpoints, .git, .hidden.jpg
        return True
    return lowered in IGNORED_FOLDERS if folder else lowered in SYSTEM_FILES


def is_image_name(name: str) -> bool:
    suffix = os.path.splitext(name)[1].lower()
    return suffix in IMAGE_EXTENSIONS or suffix in OTHER_IMAGE_EXTENSIONS


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _entries(scan: Scan, folder: Path, relfolder: str) -> Iterator[tuple[str, Path, str, str]]:
    """Yield (name, path, relpath, kind) for a folder's entries; kind is "dir", "file" or "skip".

    Symlinks are resolved here: outside the root or broken ones become problems ("skip").
    """
    try:
        with os.scandir(folder) as iterator:
            items = sorted(iterator, key=lambda entry: entry.name)
    except OSError as error:
        reason = "permission denied" if isinstance(error, PermissionError) else type(error).__name__
        scan.problems.append(
            Problem(relfolder + "/" if relfolder else ".", f"folder cannot be read ({reason})")
        )
        return
    for entry in items:
        scan.entries += 1
        if scan.entries > _MAX_ENTRIES:
            raise DataError(
                f"{scan.root} holds more than {_MAX_ENTRIES:,} entries: is it really an image folder?"
            )
        name = entry.name
        relpath = f"{relfolder}/{name}" if relfolder else name
        path = Path(entry.path)
        try:
            if entry.is_symlink():
                real = os.path.realpath(path)
                if not _inside(real, scan.real_root):
                    scan.problems.append(Problem(relpath, "symlink leads outside the folder (not followed)"))
                    continue
                if not os.path.exists(real):
                    scan.problems.append(Problem(relpath, "broken symlink (its target does not exist)"))
                    continue
            mode = path.stat().st_mode  # follows links that stay inside
        except OSError as error:
            scan.problems.append(Problem(relpath, f"cannot be read ({type(error).__name__})"))
            continue
        if stat.S_ISDIR(mode):
            yield name, path, relpath, "dir"
        elif stat.S_ISREG(mode):
            yield name, path, relpath, "file"
        else:  # fifo, socket, device: never open those
            scan.ignored.append(relpath)


def _scan_class(scan: Scan, folder: Path, relfolder: str, label: str, split: str | None, roots: set[str]):
    """Collect image candidates anywhere below one class folder (nested folders count for the class).

    Iterative (a folder nested thousands of levels deep is no problem) and with one visited set for the
    whole audit, keyed by class and real path: a symlink back up (a loop) or a second way to a folder or
    file already seen for this class (a symlink "DAG" would otherwise count the same images 2**depth
    times) is ignored. ``roots`` are the real paths of the root and split folders, never entered again.
    """
    stack = [(folder, relfolder)]
    while stack:
        current, relcurrent = stack.pop()
        real = os.path.realpath(current)
        key = (label, real)
        if real in roots or key in scan.visited:
            scan.ignored.append(relcurrent + "/")  # a loop, or another way to a folder already scanned
            continue
        scan.visited.add(key)
        folders = []
        for name, path, relpath, kind in _entries(scan, current, relcurrent):
            if is_ignored_name(name, folder=kind == "dir"):
                scan.ignored.append(relpath + "/" if kind == "dir" else relpath)
            elif kind == "dir":
                folders.append((path, relpath))
            elif is_image_name(name):
                file_key = (label, os.path.realpath(path))
                if file_key in scan.visited:
                    scan.ignored.append(relpath)  # another link to an image already counted for this class
                    continue
                scan.visited.add(file_key)
                scan.candidates.append(Candidate(path, relpath, label, split))
            else:
                scan.ignored.append(relpath)
        stack.extend(reversed(folders))  # depth first, in name order


def _scan_level(
    scan: Scan, entries: list[tuple[str, Path, str, str]], split: str | None, roots: set[str]
) -> None:
    """Scan the entries of a folder whose sub-folders are classes (the root, or one split folder)."""
    for name, path, relpath, kind in entries:
        if is_ignored_name(name, folder=kind == "dir"):
            scan.ignored.append(relpath + "/" if kind == "dir" else relpath)
        elif kind == "dir":
            scan.class_folders.setdefault((split, name), relpath)
            _scan_class(scan, path, relpath, name, split, roots)
        else:
            scan.ignored.append(relpath)
            if is_image_name(name):
                scan.loose_images.append(relpath)


def scan_folder(root: Path) -> tuple[Scan, list[str]]:
    """Walk the folder once: classify every entry, collect image candidates; returns the scan and the splits."""
    real_root = os.path.realpath(root)
    scan = Scan(root=root, real_root=real_root)
    top = list(_entries(scan, root, ""))
    split_dirs = [
        (SPLIT_ALIASES[name.lower()], name, path, relpath)
        for name, path, relpath, kind in top
        if kind == "dir" and name.lower() in SPLIT_ALIASES
    ]
    if not split_dirs:
        _scan_level(scan, top, None, {real_root})
        return scan, []
    roots = {real_root} | {os.path.realpath(path) for _split, _name, path, _rel in split_dirs}
    split_relpaths = {relpath for _split, _name, _path, relpath in split_dirs}
    for name, _path, relpath, kind in top:
        if relpath in split_relpaths:
            continue
        scan.ignored.append(relpath + "/" if kind == "dir" else relpath)
        if is_ignored_name(name, folder=kind == "dir"):
            continue
        if kind == "dir":
            scan.warnings.append(
                f"folder '{relpath}' is not a split (train/validation/test) and was not scanned; "
                "with split folders, every class belongs inside one of them."
            )
        elif is_image_name(name):
            scan.loose_images.append(relpath)
    seen: dict[str, str] = {}
    for split, name, path, relpath in split_dirs:
        if split in seen:
            scan.warnings.append(f"both '{seen[split]}' and '{name}' hold {split} images; both are used.")
        seen.setdefault(split, name)
        _scan_level(scan, list(_entries(scan, path, relpath)), split, roots)
    return scan, [split for split in SPLIT_ORDER if split in seen]
