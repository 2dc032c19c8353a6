"""Run many notebooks headless and report on them: the instructors' ``tlcourse run`` (lesson 00).

Each notebook is executed with papermill in its own kernel, with the notebook's folder as working directory
and the ``PROFILE`` and ``-p`` parameters injected after its ``parameters`` cell. A notebook that raises, hits
the per-cell timeout or whose kernel dies is recorded (status, cell number, error) and the batch goes on.
For every notebook the runner measures the wall time and the peak memory of the *kernel's* process tree,
and collects the figures the notebook recorded with :func:`tlcourse.record.record`.

The output folder receives the executed notebooks (mirroring their relative paths) and each one rendered as
HTML, ``report.md``, ``report.html``, ``report.json`` (written by :mod:`tlcourse.cli.reports`) and a manifest used to skip, on the next run, notebooks
that succeeded with the same content, parameters, profile, kernel and ``tlcourse`` version.

Everything a notebook writes goes under the output folder too: when its ``parameters`` cell declares one of
:data:`OUTPUT_PARAMETERS` (lesson 08's ``OUTPUT_DIR = "capstone_output"``) with a relative path, the runner
injects that path re-rooted in the notebook's own work folder, ``OUT/<path>/<stem>_files/``, so a batch never
writes into the source tree and two notebooks never share an output folder. One run at a time owns an output
folder (a lock file); Ctrl-C stops the batch at once (queued notebooks are cancelled, running kernels
interrupted, then killed), records what finished and exits with status 130.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import glob
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from tlcourse import __version__
from tlcourse.cli.reports import (
    DEFAULT_KERNEL,
    INTERRUPTED,
    SKIPPED,
    NotebookResult,
    summary_line,
    write_reports,
)
from tlcourse.errors import TLCourseError
from tlcourse.record import read_checks, read_records

DEFAULT_FOLDER = "lessons"
MANIFEST_NAME = ".tlcourse-run-manifest.json"
LOCK_NAME = ".tlcourse-run.lock"
OUTPUT_PARAMETERS = ("OUTPUT_DIR", "CACHE_DIR", "UPLOAD_DIR")
"""Parameters that name a folder a notebook writes to; a relative default is re-rooted in its work folder."""
WORK_SUFFIX = "_files"
INTERRUPT_GRACE_S = 5.0
"""After Ctrl-C, how long running kernels get to stop on an interrupt before they are killed."""
_GLOB_CHARS = frozenset("*?[")
_MIB = 1024 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# --------------------------------------------------------------------------------------------------------------
# Finding notebooks


def _is_excluded(path: Path, out_dir: Path | None) -> bool:
    if ".ipynb_checkpoints" in path.parts:
        return True
    if out_dir is not None:
        try:
            path.resolve().relative_to(out_dir)
            return True
        except ValueError:
            return False
    return False


def find_notebooks(
    paths: Iterable[str | os.PathLike] | None, *, out_dir: str | os.PathLike | None = None
) -> list[Path]:
    """Expand notebooks, folders (every ``*.ipynb`` inside, sorted) and globs into a list of notebooks (lesson 00).

    With no paths, ``lessons/`` in the current folder is used. ``.ipynb_checkpoints`` and anything inside
    ``out_dir`` are skipped. Raises :class:`TLCourseError` when a path matches nothing.
    """
    resolved_out = Path(out_dir).resolve() if out_dir is not None else None
    given = [str(p) for p in (paths or [])]
    if not given:
        folder = Path(DEFAULT_FOLDER)
        if not folder.is_dir():
            raise TLCourseError(
                f"No notebooks given and there is no {DEFAULT_FOLDER}/ folder in {Path.cwd()}. "
                "Run from the course folder, or name notebooks, folders or globs: tlcourse run PATH..."
            )
        given = [str(folder)]
    found: list[Path] = []
    for item in given:
        if _GLOB_CHARS & set(item):
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))]
            if not matches:
                raise TLCourseError(f"The pattern {item!r} matches no files. Check the path and the quotes.")
        else:
            matches = [Path(item)]
        for match in matches:
            if match.is_dir():
                inside = sorted(p for p in match.rglob("*.ipynb") if p.is_file())
                found += [p for p in inside if not _is_excluded(p, resolved_out)]
            elif match.is_file() and match.suffix == ".ipynb":
                if not _is_excluded(match, resolved_out):
                    found.append(match)
            elif match.exists():
                if not (_GLOB_CHARS & set(item)):
                    raise TLCourseError(f"{item} is not a notebook (.ipynb) or a folder of notebooks.")
            else:
                raise TLCourseError(f"{item} does not exist. Name notebooks, folders or globs.")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    if not unique:
        raise TLCourseError(
            f"No notebooks found in {', '.join(given)} (lesson notebooks may not be written yet). "
            "Name notebooks, folders or globs that hold .ipynb files."
        )
    return list(unique.values())


def _display_path(path: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(resolved)


def _output_paths(notebooks: Sequence[Path], out_dir: Path) -> dict[Path, Path]:
    """Map each notebook to its executed copy in ``out_dir``, keeping relative paths so names cannot clash."""
    cwd = Path.cwd().resolve()
    resolved = [nb.resolve() for nb in notebooks]
    outside = [p for p in resolved if not p.is_relative_to(cwd)]
    # Notebooks outside the current folder keep their paths below the parent of their common folder, so
    # `tlcourse run /abs/lessons` writes OUT/lessons/..., as `tlcourse run lessons` does from the course root.
    base = Path(os.path.commonpath([p.parent for p in outside])).parent if outside else cwd
    return {
        p: out_dir / (p.relative_to(cwd) if p.is_relative_to(cwd) else p.relative_to(base)) for p in resolved
    }


# --------------------------------------------------------------------------------------------------------------
# Parameters, kernels and the skip rule


def parse_value(text: str) -> Any:
    """Parse a ``-p`` value: Python or YAML literal when it is one, else the string itself (lesson 00).

    ``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"1e-3"`` -> 0.001, ``"true"``/``"True"`` -> True, ``"null"`` -> None,
    ``"[1, 2]"`` -> [1, 2], ``"cats"`` -> ``"cats"``.
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        import yaml

        value = yaml.safe_load(text)
    except Exception:  # noqa: BLE001 - anything YAML cannot read stays a string
        return text
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    return text  # dates and other YAML-only types stay as written


def _installed_kernels() -> set[str]:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        return set(KernelSpecManager().find_kernel_specs())
    except Exception:  # noqa: BLE001 - no kernelspecs readable: let execution report it
        return set()


def _choose_kernel(
    notebook: Mapping[str, Any], requested: str | None, installed: set[str]
) -> tuple[str, str | None]:
    """Return (kernel name, note). ``requested`` wins; a notebook's kernel that is not installed falls back."""
    if requested:
        return requested, None
    name = (notebook.get("metadata", {}).get("kernelspec") or {}).get("name")
    if not name:
        return DEFAULT_KERNEL, None
    if installed and name not in installed and DEFAULT_KERNEL in installed:
        return DEFAULT_KERNEL, f"kernel {name!r} is not installed here; used {DEFAULT_KERNEL!r}"
    return name, None


def input_digest(content: bytes, parameters: Mapping[str, Any], kernel: str) -> str:
    """Hash of what decides a notebook's result: its bytes, injected parameters, kernel and tlcourse version."""
    digest = hashlib.sha256(content)
    extra = {"parameters": dict(parameters), "kernel": kernel, "tlcourse": __version__}
    digest.update(json.dumps(extra, sort_keys=True, default=repr).encode())
    return digest.hexdigest()


class _Manifest:
    """The out folder's record of finished notebooks, rewritten (atomically) after each one."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / MANIFEST_NAME
        self.lock = threading.Lock()
        try:
            data = json.loads(self.path.read_text())
            self.entries: dict[str, dict[str, Any]] = dict(data.get("notebooks", {}))
        except (OSError, ValueError, AttributeError):
            self.entries = {}

    def unchanged(self, source: Path, digest: str, output: Path) -> dict[str, Any] | None:
        entry = self.entries.get(str(source))
        if entry and entry.get("digest") == digest and entry.get("status") == "ok" and output.is_file():
            return entry
        return None

    def store(self, result: NotebookResult) -> None:
        with self.lock:
            self.entries[str(result.source)] = {
                "digest": result.digest,
                "status": result.status,
                "seconds": result.seconds,
                "peak_mib": result.peak_mib,
                "metrics": result.metrics,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            payload = {"tlcourse": __version__, "notebooks": self.entries}
            temporary.write_text(json.dumps(payload, indent=1, default=repr))
            temporary.replace(self.path)


# --------------------------------------------------------------------------------------------------------------
# Executing one notebook


class _KernelMemory:
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

    def __enter__(self) -> _KernelMemory:
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


class _Control:
    """What the threads of one batch share: the running kernels, the progress display and the stop flag."""

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
            _signal_tree(pid, signal.SIGKILL)

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
            f"{Path(name).name} cell {number}/{total} ({_clock(now - began)}, this cell {_clock(now - cell)})"
            for name, (number, total, began, cell) in running
        )

    def signal_kernels(self, signum: int) -> None:
        with self.lock:
            pids = list(self.kernels)
        for pid in pids:
            _signal_tree(pid, signum)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _signal_tree(pid: int, signum: int) -> None:
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


def _watched_kernel_manager(
    memory: _KernelMemory, control: _Control | None = None, display: str = ""
) -> type:
    """A kernel-manager class that tells ``memory`` (and the batch's ``control``) the kernel's pid on start."""
    from jupyter_client.manager import AsyncKernelManager

    class WatchedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            if self.ipykernel:  # ipykernel 7 warns about plain TCP on every start: keep batch logs readable
                kw["extra_arguments"] = [*kw.get("extra_arguments", []), "--IPKernelApp.log_level=ERROR"]
            # glibc's per-thread malloc arenas fragment under TensorFlow's thread pools: a training lesson's
            # resident memory climbs ~40 MB an epoch without this (1885 -> 1252 MiB peak on lesson 02, cpu).
            env = dict(kw.get("env") or os.environ)
            env.setdefault("MALLOC_ARENA_MAX", "2")
            kw["env"] = env
            await super().start_kernel(**kw)
            pid = getattr(self.provisioner, "pid", None)
            memory.attach(pid)
            if control is not None:
                control.kernel_started(pid, display)

    return WatchedKernelManager


def declared_parameters(source: Path) -> dict[str, Any]:
    """Names and default values (Python literals, else their source text) of a notebook's ``parameters`` cell."""
    try:
        import papermill

        known = papermill.inspect_notebook(str(source))
    except Exception:  # noqa: BLE001 - a notebook papermill cannot inspect just declares nothing
        return {}
    declared: dict[str, Any] = {}
    for name, info in (known or {}).items():
        text = str((info or {}).get("default", ""))
        try:
            declared[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            declared[name] = text
    return declared


def has_parameters_cell(source: Path) -> bool:
    """Whether a notebook has a cell tagged ``parameters`` (True for a file that is not notebook JSON: running
    it reports that)."""
    try:
        node = json.loads(Path(source).read_bytes())
        cells = node.get("cells", []) if isinstance(node, dict) else []
    except (OSError, ValueError):
        return True
    return any(
        "parameters" in ((cell.get("metadata") or {}).get("tags") or [])
        for cell in cells
        if isinstance(cell, dict)
    )


def work_dir_for(output: Path) -> Path:
    """The folder beside an executed notebook that receives what it writes: ``OUT/.../<stem>_files``."""
    return output.with_name(output.stem + WORK_SUFFIX)


def output_parameters(
    declared: Mapping[str, Any], work_dir: Path, given: Mapping[str, Any]
) -> dict[str, str]:
    """The output folders to inject: each of :data:`OUTPUT_PARAMETERS` the notebook declares with a relative
    path (and the user did not set with ``-p``), re-rooted in ``work_dir`` (lesson 00)."""
    injected = {}
    for name in OUTPUT_PARAMETERS:
        default = declared.get(name)
        if name in given or not isinstance(default, str) or not default.strip():
            continue
        if not Path(default).expanduser().is_absolute():
            injected[name] = str(work_dir / default)
    return injected


@contextlib.contextmanager
def _quiet_papermill() -> Iterator[None]:
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


def _cancel_leftover_tasks() -> None:
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


def _one_line(text: str, limit: int = 240) -> str:
    lines = [line.strip() for line in _ANSI.sub("", str(text)).splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


class _StopBatch(Exception):
    """Raised from the cell hook after Ctrl-C so that no further cell of a running notebook starts."""


def _clear_previous(output: Path, work_dir: Path) -> None:
    """Remove what a previous run left for this notebook, so nothing stale is read back or reported."""
    for path in (output, output.with_suffix(".html")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if work_dir.is_dir() and not work_dir.is_symlink():
        shutil.rmtree(work_dir, ignore_errors=True)


def render_notebook_html(notebook: Path) -> Path | None:
    """Render an executed notebook as ``<name>.html`` beside it with nbconvert; None when that is impossible."""
    try:
        import nbformat
        from nbconvert import HTMLExporter
    except ImportError:
        return None
    target = notebook.with_suffix(".html")
    try:
        body, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(notebook, as_version=4))
        target.write_text(body, encoding="utf-8")
    except Exception:  # noqa: BLE001 - the .ipynb stays the reference; HTML is a convenience
        return None
    return target


def _code_cells(source: Path) -> int:
    try:
        node = json.loads(source.read_bytes())
        return sum(1 for cell in node.get("cells", []) if cell.get("cell_type") == "code")
    except (OSError, ValueError, AttributeError):
        return 0


def _execute(
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
    control: _Control | None = None,
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

    control = control or _Control()
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
            raise _StopBatch("stopped by Ctrl-C")
        started_cells.append(cell_index if cell_index is not None else -1)
        control.cell_started(display, len(started_cells), total)

    declared = declared_parameters(source) if declared is None else declared
    unknown = [name for name in parameters if declared and name not in declared]
    if unknown:
        result.notes.append(f"not in the notebook's parameters cell (injected anyway): {', '.join(unknown)}")
    memory = _KernelMemory()
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
                kernel_manager_class=_watched_kernel_manager(memory, control, display),
                on_cell_execute=on_cell_execute,
                on_cell_executed=lambda **_: memory.sample(),  # the kernel's high-water mark after each cell
                shutdown_kernel="immediate",
                allow_errors=allow_errors,
            )
        except PapermillExecutionError as error:
            if not allow_errors or error.ename == "KeyboardInterrupt":
                result.status = "failed"
                result.error_cell = error.exec_count
                result.error = _one_line(f"{error.ename}: {error.evalue}" if error.evalue else error.ename)
        except CellTimeoutError:
            result.status = "timeout"
            result.error_cell = len(started_cells) or None
            result.error = f"CellTimeoutError: a cell ran longer than the {timeout:g} s limit (--timeout)"
        except DeadKernelError as error:
            result.status = "dead kernel"
            result.error_cell = len(started_cells) or None
            result.error = (
                _one_line(f"DeadKernelError: {error}") + " (out of memory, or the process was killed)"
            )
        except Exception as error:  # noqa: BLE001 - one broken notebook must not stop the batch
            result.status = "failed"
            result.error_cell = len(started_cells) or None
            result.error = _one_line(f"{type(error).__name__}: {error}")
        finally:
            result.seconds = time.perf_counter() - start
            control.kernel_stopped(memory.pid)
            control.notebook_done(display)
            _cancel_leftover_tasks()
    if control.stopping.is_set() and result.status != "ok":
        result.status = INTERRUPTED
        result.error = "stopped by Ctrl-C" + (f" ({result.error})" if result.error else "")
    result.peak_mib = memory.peak_mib
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
        result.notes.append(f"wrote into {work_dir}")
    return result


def nbformat_read(path: Path) -> Any:
    import nbformat

    return nbformat.read(path, as_version=4)


# --------------------------------------------------------------------------------------------------------------
# The batch


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
            f"cannot write to --out {out}: {error.strerror or error}. Choose another folder."
        ) from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise TLCourseError(
                f"another tlcourse run ({holder}) is writing to {out}; wait for it to end, or use another --out."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


def _progress_ticker(bar: Any, control: _Control, stop: threading.Event) -> threading.Thread:
    """Refresh the progress bar's text (current notebook, cell, elapsed time) once a second."""

    def tick() -> None:
        while not stop.wait(1.0):
            bar.set_postfix_str(control.status_text(), refresh=True)

    thread = threading.Thread(target=tick, name="tlcourse-progress", daemon=True)
    thread.start()
    return thread


def run_notebooks(
    paths: Iterable[str | os.PathLike] | None = None,
    *,
    profile: str | None = None,
    out_dir: str | os.PathLike = "runs/latest",
    jobs: int = 1,
    timeout: float | None = 1800,
    parameters: Mapping[str, Any] | None = None,
    force: bool = False,
    kernel_name: str | None = None,
    progress: bool = True,
    verbose: bool = True,
    on_result: Callable[[NotebookResult], None] | None = None,
    outputs: Mapping[Path, Path] | None = None,
    allow_errors: bool = False,
) -> list[NotebookResult]:
    """Execute notebooks headless and write the executed copies and a report to ``out_dir`` (lesson 00).

    ``paths`` are notebooks, folders or globs (default ``lessons/``). ``profile`` is injected as ``PROFILE``,
    ``parameters`` as further papermill parameters, and each notebook's output folders
    (:func:`output_parameters`) point into its work folder under ``out_dir``. ``jobs`` kernels run at once;
    ``timeout`` is per cell (None or 0: no limit). Notebooks that succeeded before with the same inputs are
    skipped unless ``force``. ``outputs`` maps resolved notebooks to their executed copies (default: their
    paths relative to the current folder, inside ``out_dir``); ``allow_errors`` runs every cell even after
    one raised (``tlcourse grade``). ``progress`` shows the running notebooks, cells and elapsed time.
    Returns one :class:`NotebookResult` per notebook, in input order; failures are results, not exceptions.
    Ctrl-C cancels what is queued, stops the running kernels, writes the report of what finished and
    re-raises :class:`KeyboardInterrupt`.
    """
    if jobs < 1:
        raise TLCourseError(f"--jobs must be 1 or more, got {jobs}.")
    out = Path(out_dir).resolve()
    notebooks = find_notebooks(paths, out_dir=out)
    with out_dir_lock(out):
        return _run_locked(
            notebooks, out, profile=profile, jobs=jobs, timeout=timeout, parameters=parameters, force=force,
            kernel_name=kernel_name, progress=progress, verbose=verbose, on_result=on_result,
            outputs=outputs, allow_errors=allow_errors,
        )  # fmt: skip


def _run_locked(
    notebooks: Sequence[Path],
    out: Path,
    *,
    profile: str | None,
    jobs: int,
    timeout: float | None,
    parameters: Mapping[str, Any] | None,
    force: bool,
    kernel_name: str | None,
    progress: bool,
    verbose: bool,
    on_result: Callable[[NotebookResult], None] | None,
    outputs: Mapping[Path, Path] | None,
    allow_errors: bool,
) -> list[NotebookResult]:
    mapped = dict(outputs) if outputs is not None else _output_paths(notebooks, out)
    manifest = _Manifest(out)
    installed = _installed_kernels()
    injected: dict[str, Any] = {}
    if profile:
        injected["PROFILE"] = profile
    injected.update(parameters or {})
    control = _Control()

    results: dict[Path, NotebookResult] = {}
    tasks: list[dict[str, Any]] = []
    for notebook in notebooks:
        source = notebook.resolve()
        output = mapped[source]
        content = source.read_bytes()
        try:
            node = json.loads(content)
        except ValueError:
            node = {}
        kernel, note = _choose_kernel(node if isinstance(node, dict) else {}, kernel_name, installed)
        declared = declared_parameters(source)
        work_dir = work_dir_for(output)
        given = dict(injected)
        given.update(output_parameters(declared, work_dir, injected))
        digest = input_digest(content, {**given, "allow_errors": allow_errors}, kernel)
        task = {
            "source": source,
            "output": output,
            "display": _display_path(notebook),
            "parameters": given,
            "kernel": kernel,
            "timeout": timeout,
            "digest": digest,
            "notes": [note] if note else [],
            "declared": declared,
            "work_dir": work_dir,
            "allow_errors": allow_errors,
            "control": control,
        }
        previous = None if force else manifest.unchanged(source, digest, output)
        if previous is not None:
            executed = nbformat_read(output) if output.is_file() else {}
            html_copy = output.with_suffix(".html")
            results[source] = NotebookResult(
                path=task["display"], source=source, output=output, status=SKIPPED,
                seconds=float(previous.get("seconds") or 0.0), peak_mib=previous.get("peak_mib"),
                metrics=dict(previous.get("metrics") or {}), kernel=kernel, parameters=given,
                notes=["unchanged since the last successful run (time and memory are from that run)"],
                digest=digest, checks=read_checks(executed) if executed else [],
                html=html_copy if html_copy.is_file() else None, work_dir=work_dir,
            )  # fmt: skip
        else:
            tasks.append(task)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(notebooks), desc="notebooks", unit="nb", disable=not progress, file=sys.stderr)
    ticker_stop = threading.Event()
    if progress:
        _progress_ticker(bar, control, ticker_stop)

    def finished(result: NotebookResult) -> None:
        if result.status != SKIPPED:
            manifest.store(result)
        if verbose:
            bar.write(result.line(), file=sys.stdout)
            sys.stdout.flush()  # one line per notebook as it ends, also when the output is a pipe or a log
        bar.update(1)
        if on_result is not None:
            on_result(result)

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="tlcourse-run")
    futures: dict[Future, dict[str, Any]] = {}

    def collect(done: Iterable[Future]) -> None:
        for future in done:
            task = futures.pop(future)
            if future.cancelled():
                continue
            result = future.result()
            if result is not None:
                results[task["source"]] = result
                finished(result)

    with _quiet_papermill():
        try:
            for result in list(results.values()):
                finished(result)
            futures.update({pool.submit(_execute, **task): task for task in tasks})
            while futures:
                done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
                collect(done)
        except KeyboardInterrupt:
            _stop_batch(pool, futures, control, collect)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            ticker_stop.set()
            bar.close()
            # Also after Ctrl-C: the report then lists what finished (the manifest already holds it).
            ordered = [results[nb.resolve()] for nb in notebooks if nb.resolve() in results]
            write_reports(ordered, out, profile=profile, parameters=injected)
    return ordered


def _stop_batch(
    pool: ThreadPoolExecutor,
    futures: dict[Future, dict[str, Any]],
    control: _Control,
    collect: Callable[[Iterable[Future]], None],
) -> None:
    """Ctrl-C: cancel queued notebooks, interrupt the running kernels, kill those that do not stop."""
    control.stopping.set()
    pool.shutdown(wait=False, cancel_futures=True)
    print("\ninterrupted: stopping the running notebooks ...", file=sys.stderr, flush=True)
    control.signal_kernels(signal.SIGINT)
    for grace, signum in ((INTERRUPT_GRACE_S, signal.SIGKILL), (INTERRUPT_GRACE_S, None)):
        deadline = time.monotonic() + grace
        while futures and time.monotonic() < deadline:
            try:
                done, _ = wait(list(futures), timeout=0.2, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting politely
                break
            collect(done)
        if not futures or signum is None:
            break
        control.signal_kernels(signum)


# --------------------------------------------------------------------------------------------------------------
# Command line


def run_command(args: Any) -> int:
    """``tlcourse run``: execute notebooks, print one line each and the report's location (lesson 00).

    Exit status 0 when every notebook succeeded or was skipped as unchanged, 1 when any failed.
    """
    parameters = {name: parse_value(value) for name, value in (getattr(args, "parameter", None) or [])}
    if parameters:
        out_dir = Path(getattr(args, "out", "runs/latest")).resolve()
        for notebook in find_notebooks(getattr(args, "paths", None) or None, out_dir=out_dir):
            if not has_parameters_cell(notebook):
                raise TLCourseError(
                    f"-p {', '.join(parameters)}: {_display_path(notebook)} has no cell tagged `parameters`, so "
                    "nothing in it would read the value: tag its settings cell `parameters`, or drop -p."
                )
    results = run_notebooks(
        getattr(args, "paths", None) or None,
        profile=getattr(args, "profile", None),
        out_dir=getattr(args, "out", "runs/latest"),
        jobs=getattr(args, "jobs", 1),
        timeout=getattr(args, "timeout", 1800),
        parameters=parameters,
        force=getattr(args, "force", False),
        kernel_name=getattr(args, "kernel", None),
        progress=sys.stderr.isatty() or bool(os.environ.get("TLCOURSE_PROGRESS")),
    )
    out = Path(getattr(args, "out", "runs/latest"))
    print(summary_line(results))
    print(f"report: {out / 'report.md'} (and report.html)")
    return 0 if all(r.ok for r in results) else 1
