"""Stopping a ``tlcourse run``: Ctrl-C, SIGTERM and the kernels it leaves (lesson 00).

Ctrl-C raises :class:`KeyboardInterrupt` in the batch; a termination request (SIGTERM from a scheduler or
``timeout``, Ctrl-Break on Windows) raises :class:`Terminated`, a kind of it, so both take the same path: queued
notebooks are cancelled, running kernels stopped and the report of what finished is written.

Kernels are stopped the way each system allows: on POSIX an interrupt (SIGINT) first, then a kill; Windows
cannot deliver an interrupt to another process's console group, so its kernels are ended at once. Killing
goes through psutil (``Process.kill``: SIGKILL on POSIX, ``TerminateProcess`` on Windows), never through a
signal number that one of the systems lacks.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """The run was asked to end (SIGTERM, or Ctrl-Break on Windows); ``exit_status`` is 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 128 + the signal for a termination request (143 for SIGTERM)."""
    return interrupt.exit_status if isinstance(interrupt, Terminated) else 130


def _termination_signals() -> list[int]:
    names = ["SIGTERM"] + (["SIGBREAK"] if sys.platform == "win32" else [])
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


@contextlib.contextmanager
def terminations_as_interrupts() -> Iterator[None]:
    """While inside, a termination request raises :class:`Terminated` in the main thread, as Ctrl-C raises
    :class:`KeyboardInterrupt`; the previous handlers come back afterwards. Does nothing off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    previous = {}
    for signum in _termination_signals():
        with contextlib.suppress(OSError, ValueError):
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(signum, old)


def kill_tree(pid: int) -> None:
    """End a kernel and every process it started, on any system (psutil's ``kill``)."""
    import psutil

    try:
        process = psutil.Process(pid)
        targets = [*process.children(recursive=True), process]
    except psutil.Error:
        return
    for target in targets:
        with contextlib.suppress(psutil.Error, OSError):
            target.kill()


def interrupt(pid: int) -> None:
    """Ask a kernel to stop its cell: SIGINT on POSIX; on Windows, where that cannot reach it, end it."""
    if sys.platform == "win32" or not hasattr(signal, "SIGINT"):
        kill_tree(pid)
        return
    import psutil

    with contextlib.suppress(psutil.Error, OSError):
        psutil.Process(pid).send_signal(signal.SIGINT)
