"""One command at a time per output folder (lesson 00 and lesson 08: ``tlcourse grade`` and ``tlcourse train``).

Two commands writing into one ``--out`` would delete or overwrite each other's files (a second ``tlcourse
train`` removed the first one's staging folder, leaving no ``model.keras``). :func:`holding` takes an
exclusive lock on ``OUT/.tlcourse-run.lock`` (the file ``tlcourse run`` locks too) for the whole command: a
second command stops at once with one line naming the first one's process. The lock is the operating
system's (``fcntl.flock``, ``msvcrt.locking`` on Windows), so it goes away with its process, even a killed
one: a lock left behind by a crash never blocks the next run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from tlcourse.errors import TLCourseError

LOCK_NAME = ".tlcourse-run.lock"


def _try_lock(handle: IO[str]) -> bool:
    """Take the lock without waiting; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _open_locked(path: Path) -> IO[str]:
    """The lock file, open and locked by this process. A file removed by its last holder (on release) between
    opening and locking is opened again. Raises :class:`TLCourseError` naming the holder when it is taken."""
    for _ in range(10):
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the whole command
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise TLCourseError(
                f"{holder} is writing to {path.parent}: wait for it to end, or choose another --out."
            )
        with contextlib.suppress(OSError):
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                return handle
        handle.close()
    raise TLCourseError(f"cannot lock {path}: it keeps being replaced; choose another --out.")


@contextlib.contextmanager
def holding(out: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold the lock on ``out`` while the block runs (``command`` names the holder, e.g. ``tlcourse train``).

    Creates ``out`` when needed (and removes it again if the block leaves it empty); the lock file is removed
    on release. Raises :class:`TLCourseError` (one line) when another process holds the lock.
    """
    folder = Path(out)
    created = not folder.exists()
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = _open_locked(path)
    except OSError as error:
        raise TLCourseError(
            f"cannot write to {folder} ({error.strerror or error}): choose another --out."
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{command} (pid {os.getpid()})")
        handle.flush()
        yield folder
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a process that opened the old file re-opens (see _open_locked)
        handle.close()
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
