"""Stopping kernels when a ``tlcourse run`` is interrupted (lesson 00)."""

from __future__ import annotations

import contextlib
import signal


def signal_tree(pid: int, signum: int) -> None:
    """Send ``signum`` to a kernel; SIGKILL also goes to every process the kernel started."""
    import psutil

    try:
        process = psutil.Process(pid)
        targets = [*process.children(recursive=True), process] if signum == signal.SIGKILL else [process]
    except psutil.Error:
        return
    for target in targets:
        with contextlib.suppress(psutil.Error, OSError):
            target.send_signal(signum)
