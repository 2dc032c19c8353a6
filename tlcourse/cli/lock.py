"""One ``tlcourse run`` at a time per output folder (lesson 00)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tlcourse.errors import TLCourseError
from tlcourse.paths import display_path

LOCK_NAME = ".tlcourse-run.lock"


@contextlib.contextmanager
def out_dir_lock(out: Path) -> Iterator[None]:
    """Hold ``OUT/.tlcourse-run.lock`` for one run; a second run into the same folder is refused (lesson 00).

    Two runs into one folder would overwrite each other's executed notebooks, manifest and report, so the
    second one stops at once with a one-line message naming the first one's process. The lock is an
    ``fcntl`` lock, released by the system even when the first run is killed; where ``fcntl`` does not exist
    (Windows) runs are not locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = out / LOCK_NAME
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open for the whole run
    except OSError as error:
        raise TLCourseError(
            f"cannot write to --out {display_path(out)}: {error.strerror or error}. Choose another folder."
        ) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise TLCourseError(
                f"another tlcourse run ({holder}) is writing to {display_path(out)}; wait for it to end, "
                "or use another --out."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()
