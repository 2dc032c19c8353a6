"""One run's output folder: its file names, atomic writes, and the swap that never loses the earlier model (lesson 08).

``tlcourse train``, lesson 08 and :func:`tlcourse.export.export_all` write a model's files (:data:`ARTEFACTS`)
into a hidden staging folder and move them in at once with :class:`ExportStage`. The move is journaled: a
kill at any instant leaves either the earlier files or the new ones, and the next export (or
:func:`recover_export`) finishes or undoes a move it finds cut short. Single files are written with
:func:`write_atomic` (a temporary name, flushed, then renamed), and everything is created with the user's
usual permissions (:func:`usual_permissions`), not the ``0600`` of a temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tlcourse.errors import TLCourseError

FORMATS = ("keras", "saved_model", "tflite")
FILE_NAMES = {"keras": "model.keras", "saved_model": "saved_model", "tflite": "model.tflite"}
"""The file (or folder) each export format writes in a run's folder."""


@contextlib.contextmanager
def temporary_beside(target: Path, *, suffix: str = "", folder: bool = False) -> Iterator[Path]:
    """A fresh temporary path next to ``target`` (same file system, so ``os.replace`` is atomic).

    Whatever is left at that path when the block ends (an interrupted write) is removed.
    """
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", suffix=suffix, dir=target.parent)
    os.close(handle)
    tmp = Path(name)
    if folder:
        tmp.unlink()
    else:
        usual_permissions(tmp)  # what is written here keeps this mode: the user's usual one, not 0600
    try:
        yield tmp
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def fsync_path(path: Path) -> None:
    """Flush a written file (or a folder's entries) to the disk, so a power cut cannot leave it empty."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write a file completely under a temporary name, then rename it over ``path`` (lesson 08).

    Readers see the old content or the new one, never a half-written file, even if the process is killed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    with temporary_beside(target) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    return target


CLASS_NAMES_FILE = "class_names.json"
METRICS_FILE = "metrics.json"
CARD_FILE = "model_card.md"
CURVES_FILE = "learning_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
"""The file names of one run's folder, shared by ``tlcourse train``, lesson 08 and ``tlcourse predict``."""

ARTEFACTS = (
    CLASS_NAMES_FILE,
    CURVES_FILE,
    CONFUSION_FILE,
    METRICS_FILE,
    CARD_FILE,
    FILE_NAMES["tflite"],
    FILE_NAMES["saved_model"],
    FILE_NAMES["keras"],
)
"""What one export puts in its folder, in the order :meth:`ExportStage.commit` moves them in (model last)."""
MODEL_ARTEFACTS = (CLASS_NAMES_FILE, *(FILE_NAMES[kind] for kind in FORMATS))
"""The artefacts that describe one model: after a commit, those the export did not write are gone."""

PREVIOUS_DIR = "previous"
STAGING_PREFIX = ".tlcourse-staging-"


JOURNAL_FILE = ".tlcourse-export.json"
"""Written before a commit moves anything, marked done once every new file is in, removed last: a rerun that
finds it undoes the commit (not done) or completes it (done)."""
BACKUP_PREFIX = ".tlcourse-backup-"


class ExportStage:
    """A hidden staging folder inside ``out`` where a whole export is written before it is moved in (lesson 08).

    Use it as a context manager: write every artefact into :attr:`path`, then call :meth:`commit`. Leaving
    the block without committing (an exception, Ctrl-C) removes the staging folder and leaves ``out`` as it
    was. :meth:`commit` first writes a journal (``.tlcourse-export.json``), then renames each earlier
    artefact it replaces into a hidden backup folder, renames the new ones in (the model last) and only then
    turns the backup into ``previous/`` (``keep_previous``) or deletes it. Model files of an earlier export
    that this one did not write (a format that failed) go to the backup too, so no old file sits beside the
    new model, and the backup is then always kept. An exception part-way puts the earlier files back; so does
    the next :class:`ExportStage` (or :func:`recover_export`) after a kill, when it finds the journal: nothing
    is deleted that is not replaced by a complete new version. Files are created with the user's usual
    permissions (``0666`` and folders ``0777``, less the umask), not the ``0600`` of temporary files.
    """

    def __init__(self, out: str | os.PathLike, *, replace: bool = False, keep_previous: bool = False) -> None:
        self.out = Path(out)
        self.replace = replace
        self.keep_previous = keep_previous
        self.replaced: list[str] = []
        self.path = self.out  # set in __enter__
        self._committed = False

    def existing(self) -> list[str]:
        """The artefacts already in ``out`` (from an earlier export)."""
        return [name for name in ARTEFACTS if (self.out / name).exists()]

    def __enter__(self) -> ExportStage:
        recover_export(self.out)
        if self.existing() and not self.replace:
            raise TLCourseError(
                f"{self.out} already holds a model from an earlier run; it is never replaced silently: pass "
                "--force to replace it (the earlier files are kept in "
                f"{self.out / PREVIOUS_DIR}), or choose another --out."
            )
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out))
        usual_permissions(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def write_text(self, name: str, text: str) -> Path:
        """Write one text artefact into the staging folder."""
        return write_atomic(self.path / name, text)

    def commit(self) -> list[str]:
        """Move the staged artefacts into ``out``; returns the names of the artefacts that were replaced."""
        if self._committed:
            raise RuntimeError("this export was already committed")
        staged = [name for name in ARTEFACTS if (self.path / name).exists()]
        extra = [p.name for p in self.path.iterdir() if p.name not in ARTEFACTS]
        if extra:
            raise TLCourseError(f"Unexpected files in the export staging folder: {', '.join(sorted(extra))}.")
        stale = [name for name in MODEL_ARTEFACTS if name not in staged and (self.out / name).exists()]
        moving = [name for name in staged if (self.out / name).exists()] + stale
        kept = [name for name in self.existing() if name not in moving]
        backup = self.out / f"{BACKUP_PREFIX}{self.path.name[len(STAGING_PREFIX) :]}"
        journal = {
            "staging": self.path.name, "backup": backup.name, "staged": staged, "moved": moving,
            "keep": bool(self.existing() and (self.keep_previous or stale)), "done": False,
        }  # fmt: skip
        try:
            for name in staged:
                usual_permissions(self.path / name)
            backup.mkdir()
            if journal["keep"]:  # the earlier files not replaced belong with the earlier model
                for name in kept:
                    source = self.out / name
                    if source.is_dir():
                        shutil.copytree(source, backup / name, copy_function=link_or_copy)
                    else:
                        link_or_copy(source, backup / name)
            write_atomic(self.out / JOURNAL_FILE, json.dumps(journal))
            for name in moving:  # old -> backup
                os.replace(self.out / name, backup / name)
            for name in staged:  # new -> final (the model last)
                os.replace(self.path / name, self.out / name)
            fsync_path(self.out)
            write_atomic(self.out / JOURNAL_FILE, json.dumps({**journal, "done": True}))
            journal["done"] = True  # from here on, a kill is completed, not undone
        except BaseException:
            if not journal["done"]:
                _undo(self.out, journal)
            raise
        self.replaced = [name for name in moving if name in staged or name in stale]
        _finish(self.out, journal)
        self._committed = True
        return list(self.replaced)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _undo(out: Path, journal: Mapping[str, Any]) -> None:
    """Put a commit that did not get all its files in back: the new ones it moved in go, the earlier ones
    come back from the backup."""
    staging, backup = out / journal["staging"], out / journal["backup"]
    for name in journal["staged"]:
        if not (staging / name).exists() and (out / name).exists():  # moved in: the new version
            _remove(out / name)
    for name in journal["moved"]:
        if (backup / name).exists():
            os.replace(backup / name, out / name)
    fsync_path(out)
    _clean(out)


def _finish(out: Path, journal: Mapping[str, Any]) -> None:
    """Once every new file is in: the backup becomes ``previous/`` (the one before goes) or is deleted. Safe
    to run again after a kill part-way."""
    backup, final = out / journal["backup"], out / PREVIOUS_DIR
    if journal["keep"] and backup.is_dir():
        usual_permissions(backup)
        older = out / f"{BACKUP_PREFIX}older"
        if final.exists():
            _remove(older)
            os.replace(final, older)
        os.replace(backup, final)
    fsync_path(out)
    _clean(out)


def _clean(out: Path) -> None:
    """Remove the journal last: the staging folders and backups it describes go first."""
    for prefix in (
        STAGING_PREFIX,
        BACKUP_PREFIX,
        f".{JOURNAL_FILE}.tmp-",
    ):  # the last: a journal write cut short
        for leftover in out.glob(prefix + "*"):
            _remove(leftover)
    (out / JOURNAL_FILE).unlink(missing_ok=True)


def recover_export(out: str | os.PathLike) -> str | None:
    """Repair what a killed export left in ``out`` (lesson 08). A commit that had moved every new file in is
    completed; one cut short before is undone, so the earlier files are back in place; staging and backup
    leftovers are removed. Returns one line saying what was repaired (None when there was nothing to do)."""
    out = Path(out)
    if not out.is_dir():
        return None
    try:
        journal = json.loads((out / JOURNAL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        journal = None
    if not (isinstance(journal, dict) and {"staging", "backup", "staged", "moved", "keep"} <= set(journal)):
        _clean(out)
        return None
    if journal.get("done"):
        _finish(out, journal)
        return f"completed the export into {out} that was interrupted after its files were in place"
    _undo(out, journal)
    return f"undid the export into {out} that was interrupted while its files were moved in: the earlier files are back"


def _umask() -> int:
    """This process's umask, read without changing it where the system says it (Linux), else set and reset."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def usual_permissions(path: str | os.PathLike) -> None:
    """Give ``path`` (and, for a folder, everything in it) the permissions a new file gets from the user's
    umask (``0666``/``0777`` less the umask) instead of the ``0600``/``0700`` of a temporary name (lesson 08)."""
    mask = _umask()
    root = Path(path)
    for item in [root, *(root.rglob("*") if root.is_dir() else [])]:
        if item.is_symlink():
            continue
        with contextlib.suppress(OSError):
            item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)


def link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """A hard link when the file system allows it (instant, no extra space), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
