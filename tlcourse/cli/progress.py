"""What the threads of one ``tlcourse run`` share, and the live progress line drawn from it (lesson 00).

The line names each running notebook, its cell and elapsed time, and estimates the time left from how long
each notebook took in the previous run into the same output folder (the skip manifest keeps those times).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from tlcourse.cli.signals import interrupt, kill_tree


class BatchControl:
    """The running kernels, the progress display's cells and the stop flag of one batch."""

    def __init__(self, expected: Mapping[str, float | None] | None = None, jobs: int = 1) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.stop_reason = "stopped by Ctrl-C"
        """What the report says of the notebooks the stop cut short (``terminated`` after SIGTERM)."""
        self.expected = dict(expected or {})
        """notebook -> its time in the previous run (None when unknown), for the estimate of the time left."""
        self.jobs = jobs
        self.finished: set[str] = set()
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
            kill_tree(pid)

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
            self.finished.add(display)

    def status_text(self) -> str:
        """``03_x.ipynb cell 4/12 (1:05, this cell 0:12)`` for each running notebook, then the time left:
        ``about 6:40 left (previous run's times)``."""
        now = time.monotonic()
        with self.lock:
            running = list(self.cells.items())
            finished = set(self.finished)
        parts = [
            f"{Path(name).name} cell {number}/{total} ({clock(now - began)}, this cell {clock(now - cell)})"
            for name, (number, total, began, cell) in running
        ]
        left = remaining_seconds(
            self.expected, finished, {name: now - began for name, (_, _, began, _) in running}, self.jobs
        )
        if left is not None:
            parts.append(f"about {clock(math.ceil(left))} left (previous run's times)")
        return " | ".join(parts)

    def interrupt_kernels(self) -> None:
        """Ask every running kernel to stop its cell (:func:`tlcourse.cli.signals.interrupt`)."""
        for pid in self._running_pids():
            interrupt(pid)

    def kill_kernels(self) -> None:
        """End every running kernel and what it started."""
        for pid in self._running_pids():
            kill_tree(pid)

    def _running_pids(self) -> list[int]:
        with self.lock:
            return list(self.kernels)


def remaining_seconds(
    expected: Mapping[str, float | None],
    finished: Collection[str],
    running: Mapping[str, float],
    jobs: int = 1,
) -> float | None:
    """Seconds a batch still needs: each unfinished notebook's time in the previous run, less what it has run
    already, shared among ``jobs`` kernels (lesson 00). A notebook with no previous time counts as the mean of
    those known; None when no notebook has one (a first run)."""
    known = [seconds for seconds in expected.values() if seconds is not None]
    if not known:
        return None
    typical = sum(known) / len(known)
    waiting = [name for name in expected if name not in finished]
    left = sum(
        max((typical if expected[name] is None else expected[name]) - running.get(name, 0.0), 0.0)
        for name in waiting
    )
    return left / max(1, min(jobs, len(waiting)))


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
