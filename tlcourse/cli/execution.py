"""Executing one notebook for ``tlcourse run``: papermill in its own kernel, and what happened (lesson 00).

:func:`execute` never raises for a notebook's own errors: a raise, a cell past the timeout or a dead kernel
become a :class:`NotebookResult` with its status, the failing cell and the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tlcourse.cli.memory import KernelMemory
from tlcourse.cli.parameters import declared_parameters, work_dir_for
from tlcourse.cli.progress import BatchControl
from tlcourse.cli.rendering import render_notebook_html
from tlcourse.cli.reports import INTERRUPTED, NotebookResult
from tlcourse.paths import WORK_DIR_VARIABLE, display_path
from tlcourse.record import read_checks, read_records

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def watched_kernel_manager(
    memory: KernelMemory, control: BatchControl | None = None, display: str = "", work_dir: Path | None = None
) -> type:
    """A kernel-manager class that tells ``memory`` (and the batch's ``control``) the kernel's pid on start, and
    tells the kernel its work folder (``$TLCOURSE_WORK_DIR``: :func:`tlcourse.paths.display_path` shows paths
    under it as the notebook would name them on its own)."""
    from jupyter_client.manager import AsyncKernelManager

    class WatchedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            if self.ipykernel:  # ipykernel 7 warns about plain TCP on every start: keep batch logs readable
                kw["extra_arguments"] = [*kw.get("extra_arguments", []), "--IPKernelApp.log_level=ERROR"]
            # glibc's per-thread malloc arenas fragment under TensorFlow's thread pools: a training lesson's
            # resident memory climbs ~40 MB an epoch without this (1885 -> 1252 MiB peak on lesson 02, cpu).
            env = dict(kw.get("env") or os.environ)
            env.setdefault("MALLOC_ARENA_MAX", "2")
            if work_dir is not None:
                env[WORK_DIR_VARIABLE] = str(work_dir)
            kw["env"] = env
            await super().start_kernel(**kw)
            pid = getattr(self.provisioner, "pid", None)
            memory.attach(pid)
            if control is not None:
                control.kernel_started(pid, display)

        async def shutdown_kernel(self, *args: Any, **kw: Any) -> None:
            memory.sample()  # the kernel's maximum resident set, read while it still exists
            await super().shutdown_kernel(*args, **kw)

    return WatchedKernelManager


@contextlib.contextmanager
def quiet_papermill() -> Iterator[None]:
    """Hide papermill/jupyter_client log lines during a batch: every failure is reported in the results instead."""
    loggers = [logging.getLogger(name) for name in ("papermill", "traitlets")]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, previous, strict=True):
            logger.setLevel(level)


def cancel_leftover_tasks() -> None:
    """Cancel what nbclient left pending on this thread's event loop after a timeout or a dead kernel.

    Otherwise asyncio prints "Task was destroyed but it is pending!" when a --jobs worker thread ends.
    """
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return
    if loop.is_running() or loop.is_closed():
        return
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


ERROR_LIMIT = 2000
"""Characters of an error kept in the console line and the report; a longer one loses its middle, never its
end, where a course error says what to do ("Fix: ...")."""


def error_text(text: str, limit: int = ERROR_LIMIT) -> str:
    """An error as one whole line: colour codes removed, its lines joined, nothing cut below ``limit``
    characters; above it, the middle gives way so that the first sentence and the last (the "Fix:") stay."""
    lines = [line.strip() for line in _ANSI.sub("", str(text)).splitlines() if line.strip()]
    joined = " ".join(lines)
    if len(joined) <= limit:
        return joined
    fix = joined.rfind("Fix:")
    tail = joined[fix:] if fix >= 0 and len(joined) - fix < limit // 2 else joined[-(limit // 3) :]
    return joined[: limit - len(tail) - 3] + " … " + tail


class _StopBatch(Exception):
    """Raised from the cell hook after Ctrl-C so that no further cell of a running notebook starts."""


def _clear_previous(output: Path, work_dir: Path) -> None:
    """Remove what a previous run left for this notebook, so nothing stale is read back or reported."""
    for path in (output, output.with_suffix(".html")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if work_dir.is_dir() and not work_dir.is_symlink():
        shutil.rmtree(work_dir, ignore_errors=True)


def _code_cells(source: Path) -> int:
    try:
        node = json.loads(source.read_bytes())
        return sum(1 for cell in node.get("cells", []) if cell.get("cell_type") == "code")
    except (OSError, ValueError, AttributeError):
        return 0


def nbformat_read(path: Path) -> Any:
    """An executed notebook as an nbformat node."""
    import nbformat

    return nbformat.read(path, as_version=4)


def execute(
    source: Path,
    output: Path,
    *,
    display: str,
    parameters: dict[str, Any],
    kernel: str,
    timeout: float | None,
    digest: str,
    notes: list[str],
    declared: Mapping[str, Any] | None = None,
    work_dir: Path | None = None,
    allow_errors: bool = False,
    control: BatchControl | None = None,
    start_timeout: int = 120,
) -> NotebookResult | None:
    """Execute one notebook with papermill and classify what happened; never raises for notebook errors.

    With ``allow_errors`` every cell runs even after one raises (for grading); the errors stay in the cells'
    outputs and the status is ``ok`` when the notebook ran to its end. Returns None when the batch was
    stopped (Ctrl-C) before this notebook started.
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    control = control or BatchControl()
    if control.stopping.is_set():
        return None
    work_dir = work_dir or work_dir_for(output)
    _clear_previous(output, work_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    result = NotebookResult(
        path=display, source=source, output=output, status="ok", kernel=kernel, parameters=parameters,
        notes=notes, digest=digest, work_dir=work_dir,
    )  # fmt: skip
    started_cells: list[int] = []
    total = _code_cells(source)

    def on_cell_execute(cell: Any = None, cell_index: int | None = None, **_: Any) -> None:
        if control.stopping.is_set():
            raise _StopBatch(control.stop_reason)
        started_cells.append(cell_index if cell_index is not None else -1)
        control.cell_started(display, len(started_cells), total)

    declared = declared_parameters(source) if declared is None else declared
    unknown = [name for name in parameters if declared and name not in declared]
    if unknown:
        result.notes.append(f"not in the notebook's parameters cell (injected anyway): {', '.join(unknown)}")
    memory = KernelMemory()
    start = time.perf_counter()
    with memory:
        try:
            # The kernel's working directory goes through nbclient's resources (not papermill's cwd=, which
            # calls os.chdir and would race between the threads of --jobs).
            papermill.execute_notebook(
                str(source),
                str(output),
                parameters=parameters or None,
                kernel_name=kernel,
                progress_bar=False,
                execution_timeout=int(math.ceil(timeout)) if timeout else None,
                start_timeout=start_timeout,
                resources={"metadata": {"path": str(source.parent)}},
                kernel_manager_class=watched_kernel_manager(memory, control, display, work_dir),
                on_cell_execute=on_cell_execute,
                on_cell_executed=lambda **_: memory.sample(),  # the kernel's high-water mark after each cell
                shutdown_kernel="immediate",
                allow_errors=allow_errors,
            )
        except PapermillExecutionError as error:
            if not allow_errors or error.ename == "KeyboardInterrupt":
                result.status = "failed"
                result.error_cell = error.exec_count
                result.error = error_text(f"{error.ename}: {error.evalue}" if error.evalue else error.ename)
        except CellTimeoutError:
            result.status = "timeout"
            result.error_cell = len(started_cells) or None
            result.error = f"CellTimeoutError: a cell ran longer than the {timeout:g} s limit (--timeout)"
        except DeadKernelError as error:
            result.status = "dead kernel"
            result.error_cell = len(started_cells) or None
            result.error = (
                error_text(f"DeadKernelError: {error}") + " (out of memory, or the process was killed)"
            )
        except Exception as error:  # noqa: BLE001 - one broken notebook must not stop the batch
            result.status = "failed"
            result.error_cell = len(started_cells) or None
            result.error = error_text(f"{type(error).__name__}: {error}")
        finally:
            result.seconds = time.perf_counter() - start
            control.kernel_stopped(memory.pid)
            control.notebook_done(display)
            cancel_leftover_tasks()
    if control.stopping.is_set() and result.status != "ok":
        result.status = INTERRUPTED
        result.error = control.stop_reason + (f" ({result.error})" if result.error else "")
    result.peak_mib = memory.peak_mib
    result.memory_method = memory.method
    if output.is_file():
        try:
            executed = nbformat_read(output)
            result.metrics = read_records(executed)
            result.checks = read_checks(executed)
        except Exception as error:  # noqa: BLE001 - an unreadable output only loses the metrics
            result.notes.append(f"could not read recorded metrics: {error}")
        if result.status != INTERRUPTED:
            result.html = render_notebook_html(output)
    if work_dir.is_dir() and any(work_dir.iterdir()):
        result.notes.append(f"wrote into {display_path(work_dir)}")
    return result
