"""The peak memory of one notebook's kernel, for ``tlcourse run``'s report (lesson 00)."""

from __future__ import annotations

import threading

_MIB = 1024 * 1024


class KernelMemory:
    """Polls the resident memory of one kernel's process tree in a background thread; keeps the peak."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.pid: int | None = None
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="tlcourse-kernel-memory", daemon=True)

    def attach(self, pid: int | None) -> None:
        """Start watching the kernel process ``pid`` (called as soon as the kernel has started)."""
        if pid and self.pid is None:
            self.pid = pid
            self.sample()

    def sample(self) -> None:
        """Add one measurement: the sum of RSS over the kernel and its children, and the kernel's own peak."""
        if self.pid is None:
            return
        import psutil

        try:
            kernel = psutil.Process(self.pid)
            processes = [kernel, *kernel.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        self.peak_bytes = max(self.peak_bytes, total, _high_water_mark(self.pid))

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


def _high_water_mark(pid: int) -> int:
    """The kernel's own peak RSS from ``/proc/PID/status`` (Linux), catching spikes between two polls."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
