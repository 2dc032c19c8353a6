"""What the threads of one ``tlcourse run`` share, and the live progress line drawn from it (lesson 00)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from tlcourse.cli.signals import signal_tree


class BatchControl:
    """The running kernels, the progress display's cells and the stop flag of one batch."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.kernels: dict[int, str] = {}
        """pid -> notebook, for the kernels running now."""
        self.cells: dict[str, tuple[int, int, float, float]] = {}
        """notebook -> (cell number, code cells, notebook start, cell start), for the progress display."""

    def kernel_started(self, pid: int | None, display: str) -> None:
        if not pid:
            return
        with self.lock:
            self.kernels[pid] = display
        if self.stopping.is_set():  # started after Ctrl-C was handled: stop it at once
            signal_tree(pid, signal.SIGKILL)

    def kernel_stopped(self, pid: int | None) -> None:
        with self.lock:
            self.kernels.pop(pid or 0, None)

    def cell_started(self, display: str, number: int, total: int) -> None:
        now = time.monotonic()
        with self.lock:
            previous = self.cells.get(display)
            self.cells[display] = (number, total, previous[2] if previous else now, now)

    def notebook_done(self, display: str) -> None:
        with self.lock:
            self.cells.pop(display, None)

    def status_text(self) -> str:
        """``03_x.ipynb cell 4/12 (1:05, this cell 0:12)`` for each running notebook."""
        now = time.monotonic()
        with self.lock:
            running = list(self.cells.items())
        return " | ".join(
            f"{Path(name).name} cell {number}/{total} ({clock(now - began)}, this cell {clock(now - cell)})"
            for name, (number, total, began, cell) in running
        )

    def signal_kernels(self, signum: int) -> None:
        with self.lock:
            pids = list(self.kernels)
        for pid in pids:
            signal_tree(pid, signum)


def clock(seconds: float) -> str:
    """``1:05`` for 65 seconds."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def progress_ticker(bar: Any, control: BatchControl, stop: threading.Event) -> threading.Thread:
    """Refresh the progress bar's text (current notebook, cell, elapsed time) once a second."""

    def tick() -> None:
        while not stop.wait(1.0):
            bar.set_postfix_str(control.status_text(), refresh=True)

    thread = threading.Thread(target=tick, name="tlcourse-progress", daemon=True)
    thread.start()
    return thread
