"""The peak memory of one notebook's kernel, for ``tlcourse run``'s report (lesson 00).

The figure is the kernel's maximum resident set where the system keeps one: ``VmHWM`` in ``/proc/PID/status``
on Linux (what ``/usr/bin/time`` reports as "maximum resident set size"), the peak working set on Windows. It is
read after every cell and once more just before the kernel shuts down, so no spike between two looks is missed.
Elsewhere (macOS) the resident memory is sampled every 0.2 s, which can miss a short spike; the report says
which of the two each figure is (:data:`MEASURED`, :data:`SAMPLED`).
"""

from __future__ import annotations

import sys
import threading

_MIB = 1024 * 1024
MEASURED = "maximum resident set"
SAMPLED = "sampled every 0.2 s"


def peak_of_process(pid: int) -> int:
    """The kernel's own peak resident memory in bytes as the system records it, or 0 where it keeps none.

    Linux: ``VmHWM`` from ``/proc/PID/status``; Windows: the peak working set (psutil's ``peak_wset``).
    """
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0
    if sys.platform == "win32":
        import psutil

        try:
            return int(getattr(psutil.Process(pid).memory_info(), "peak_wset", 0) or 0)
        except psutil.Error:
            return 0
    return 0


class KernelMemory:
    """The peak memory of one kernel: its recorded maximum resident set, and a 0.2 s sample of its process
    tree (which also counts processes the kernel started)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.pid: int | None = None
        self.peak_bytes = 0
        self.recorded = False
        """True once the system's own peak (:func:`peak_of_process`) was read at least once."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="tlcourse-kernel-memory", daemon=True)

    def attach(self, pid: int | None) -> None:
        """Start watching the kernel process ``pid`` (called as soon as the kernel has started)."""
        if pid and self.pid is None:
            self.pid = pid
            self.sample()

    def sample(self) -> int:
        """Add one measurement: the kernel's recorded peak, and the resident memory of its process tree now;
        returns the latter (bytes; 0 before the kernel started)."""
        if self.pid is None:
            return 0
        import psutil

        recorded = peak_of_process(self.pid)
        if recorded:
            self.recorded = True
        try:
            kernel = psutil.Process(self.pid)
            processes = [kernel, *kernel.children(recursive=True)]
        except psutil.Error:
            processes = []
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        self.peak_bytes = max(self.peak_bytes, total, recorded)
        return total

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> KernelMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak_mib(self) -> float | None:
        return self.peak_bytes / _MIB if self.peak_bytes else None

    @property
    def method(self) -> str:
        """How :attr:`peak_mib` was obtained: :data:`MEASURED` or :data:`SAMPLED`."""
        return MEASURED if self.recorded else SAMPLED
