"""Run many notebooks headless and report on them: the instructors' ``tlcourse run`` (lesson 00).

Each notebook is executed with papermill in its own kernel, with the notebook's folder as working directory
and the ``PROFILE`` and ``-p`` parameters injected after its ``parameters`` cell. A notebook that raises, hits
the per-cell timeout or whose kernel dies is recorded (status, cell number, error) and the batch goes on.
For every notebook the runner measures the wall time and the peak memory of the *kernel's* process tree,
and collects the figures the notebook recorded with :func:`tlcourse.record.record`.

The output folder receives the executed notebooks (mirroring their relative paths), ``report.md``,
``report.html``, ``report.json`` and a manifest used to skip, on the next run, notebooks that succeeded
with the same content, parameters, profile, kernel and ``tlcourse`` version.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import glob
import hashlib
import html
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tlcourse import __version__
from tlcourse.errors import TLCourseError
from tlcourse.record import format_value, read_records

DEFAULT_FOLDER = "lessons"
MANIFEST_NAME = ".tlcourse-run-manifest.json"
DEFAULT_KERNEL = "python3"
SKIPPED = "skipped (unchanged)"
FAILED_STATUSES = frozenset({"failed", "timeout", "dead kernel"})
_GLOB_CHARS = frozenset("*?[")
_MIB = 1024 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class NotebookResult:
    """What happened to one notebook in a batch (lesson 00)."""

    path: str
    """The notebook as shown in the report: relative to the current folder when it is inside it."""
    source: Path
    output: Path
    status: str
    """``ok``, ``failed``, ``timeout``, ``dead kernel`` or ``skipped (unchanged)``."""
    seconds: float = 0.0
    peak_mib: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error_cell: int | None = None
    """The failing cell's execution number, as in ``In [n]`` (1 = the first code cell that ran)."""
    error: str | None = None
    kernel: str = DEFAULT_KERNEL
    parameters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    digest: str = ""

    @property
    def ok(self) -> bool:
        """True for ``ok`` and ``skipped (unchanged)``."""
        return self.status not in FAILED_STATUSES

    def line(self) -> str:
        """One line for the console, e.g. ``ok  lessons/00_welcome.ipynb  12.3 s  640 MiB  val_accuracy=0.87``."""
        if self.status == SKIPPED:
            return f"{SKIPPED[:-1]}; use --force to re-run)  {self.path}"
        parts = [self.status, self.path, f"{self.seconds:.1f} s", _mib_text(self.peak_mib)]
        parts += [f"{name}={format_value(value)}" for name, value in self.metrics.items()]
        if self.error:
            where = f"cell [{self.error_cell}] " if self.error_cell is not None else ""
            parts.append(f"{where}{self.error}")
        return "  ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (paths as strings)."""
        data = asdict(self)
        data["source"] = str(self.source)
        data["output"] = str(self.output)
        return data


def _mib_text(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} MiB"


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


def _watched_kernel_manager(memory: _KernelMemory) -> type:
    """A kernel-manager class that tells ``memory`` the kernel's pid right after starting it."""
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
            memory.attach(getattr(self.provisioner, "pid", None))

    return WatchedKernelManager


def _unknown_parameters(source: Path, parameters: Mapping[str, Any]) -> list[str]:
    """Names in ``parameters`` that the notebook's ``parameters`` cell does not define (likely typos)."""
    if not parameters:
        return []
    try:
        import papermill

        known = papermill.inspect_notebook(str(source))
    except Exception:  # noqa: BLE001 - inspection is only a hint
        return []
    return [name for name in parameters if name not in known] if known else []


@contextlib.contextmanager
def _quiet_papermill() -> Iterator[None]:
    """Hide papermill/nbclient log lines during a batch: every failure is reported in the results instead."""
    logger = logging.getLogger("papermill")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


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
    start_timeout: int = 120,
) -> NotebookResult:
    """Execute one notebook with papermill and classify what happened; never raises for notebook errors."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    result = NotebookResult(
        path=display, source=source, output=output, status="ok", kernel=kernel, parameters=parameters,
        notes=notes, digest=digest,
    )  # fmt: skip
    started_cells: list[int] = []

    def on_cell_execute(cell: Any = None, cell_index: int | None = None, **_: Any) -> None:
        started_cells.append(cell_index if cell_index is not None else -1)

    unknown = _unknown_parameters(source, parameters)
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
                kernel_manager_class=_watched_kernel_manager(memory),
                on_cell_execute=on_cell_execute,
                on_cell_executed=lambda **_: memory.sample(),  # the kernel's high-water mark after each cell
                shutdown_kernel="immediate",
            )
        except PapermillExecutionError as error:
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
            _cancel_leftover_tasks()
    result.peak_mib = memory.peak_mib
    if output.is_file():
        try:
            result.metrics = read_records(output)
        except Exception as error:  # noqa: BLE001 - an unreadable output only loses the metrics
            result.notes.append(f"could not read recorded metrics: {error}")
    return result


# --------------------------------------------------------------------------------------------------------------
# The batch


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
) -> list[NotebookResult]:
    """Execute notebooks headless and write the executed copies and a report to ``out_dir`` (lesson 00).

    ``paths`` are notebooks, folders or globs (default ``lessons/``). ``profile`` is injected as ``PROFILE``,
    ``parameters`` as further papermill parameters. ``jobs`` kernels run at once; ``timeout`` is per cell
    (None or 0: no limit). Notebooks that succeeded before with the same inputs are skipped unless ``force``.
    Returns one :class:`NotebookResult` per notebook, in input order; failures are results, not exceptions.
    """
    if jobs < 1:
        raise TLCourseError(f"--jobs must be 1 or more, got {jobs}.")
    out = Path(out_dir).resolve()
    notebooks = find_notebooks(paths, out_dir=out)
    out.mkdir(parents=True, exist_ok=True)
    outputs = _output_paths(notebooks, out)
    manifest = _Manifest(out)
    installed = _installed_kernels()
    injected: dict[str, Any] = {}
    if profile:
        injected["PROFILE"] = profile
    injected.update(parameters or {})

    results: dict[Path, NotebookResult] = {}
    tasks: list[dict[str, Any]] = []
    for notebook in notebooks:
        source = notebook.resolve()
        content = source.read_bytes()
        try:
            node = json.loads(content)
        except ValueError:
            node = {}
        kernel, note = _choose_kernel(node if isinstance(node, dict) else {}, kernel_name, installed)
        digest = input_digest(content, injected, kernel)
        task = {
            "source": source,
            "output": outputs[source],
            "display": _display_path(notebook),
            "parameters": dict(injected),
            "kernel": kernel,
            "timeout": timeout,
            "digest": digest,
            "notes": [note] if note else [],
        }
        previous = None if force else manifest.unchanged(source, digest, outputs[source])
        if previous is not None:
            results[source] = NotebookResult(
                path=task["display"], source=source, output=outputs[source], status=SKIPPED,
                seconds=float(previous.get("seconds") or 0.0), peak_mib=previous.get("peak_mib"),
                metrics=dict(previous.get("metrics") or {}), kernel=kernel, parameters=dict(injected),
                notes=["unchanged since the last successful run (time and memory are from that run)"],
                digest=digest,
            )  # fmt: skip
        else:
            tasks.append(task)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(notebooks), desc="notebooks", unit="nb", disable=not progress, file=sys.stderr)

    def finished(result: NotebookResult) -> None:
        if result.status != SKIPPED:
            manifest.store(result)
        if verbose:
            bar.write(result.line(), file=sys.stdout)
        bar.update(1)
        if on_result is not None:
            on_result(result)

    with _quiet_papermill():
        try:
            for result in list(results.values()):
                finished(result)
            if jobs == 1 or len(tasks) <= 1:
                for task in tasks:
                    bar.set_postfix_str(task["display"], refresh=True)
                    result = _execute(**task)
                    results[task["source"]] = result
                    finished(result)
            else:
                with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="tlcourse-run") as pool:
                    futures = {pool.submit(_execute, **task): task for task in tasks}
                    for future in as_completed(futures):
                        result = future.result()
                        results[futures[future]["source"]] = result
                        finished(result)
        finally:
            bar.close()
            # Also after Ctrl-C: the report then lists what finished (the manifest already holds it).
            ordered = [results[nb.resolve()] for nb in notebooks if nb.resolve() in results]
            write_reports(ordered, out, profile=profile, parameters=injected)
    return ordered


# --------------------------------------------------------------------------------------------------------------
# Reports


def _metric_names(results: Sequence[NotebookResult]) -> list[str]:
    names: dict[str, None] = {}
    for result in results:
        names.update(dict.fromkeys(result.metrics))
    return list(names)


def summarize(results: Sequence[NotebookResult]) -> dict[str, Any]:
    """Counts per status, total time of this run and the largest peak memory (lesson 00)."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    ran = [r for r in results if r.status != SKIPPED]
    peaks = [r.peak_mib for r in results if r.peak_mib]
    return {
        "notebooks": len(results),
        "counts": counts,
        "failed": sum(1 for r in results if not r.ok),
        "seconds": sum(r.seconds for r in ran),
        "max_peak_mib": max(peaks) if peaks else None,
    }


def summary_line(results: Sequence[NotebookResult]) -> str:
    """One line of totals, e.g. ``9 notebooks: 8 ok, 1 failed; 312.4 s executing; largest peak 830 MiB``."""
    summary = summarize(results)
    counts = ", ".join(f"{n} {status}" for status, n in summary["counts"].items())
    peak = _mib_text(summary["max_peak_mib"])
    plural = "" if summary["notebooks"] == 1 else "s"
    return f"{summary['notebooks']} notebook{plural}: {counts}; {summary['seconds']:.1f} s executing; largest peak {peak}"


def _row(result: NotebookResult, metric_names: Sequence[str]) -> list[str]:
    time_text = f"{result.seconds:.1f} s" + (" (previous run)" if result.status == SKIPPED else "")
    cells = [result.path, result.status, time_text, _mib_text(result.peak_mib)]
    cells += [format_value(result.metrics[name]) if name in result.metrics else "" for name in metric_names]
    cells.append("" if result.error_cell is None else str(result.error_cell))
    cells.append(result.error or "; ".join(result.notes if result.status != SKIPPED else []))
    return cells


def render_markdown(results: Sequence[NotebookResult], *, profile: str | None = None, parameters=None) -> str:
    """The Markdown report: one table row per notebook, recorded metrics as columns, then totals (lesson 00)."""
    names = _metric_names(results)
    header = ["notebook", "status", "time", "peak memory", *names, "failing cell", "error / notes"]

    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "# tlcourse run report",
        "",
        f"- finished: {time.strftime('%Y-%m-%d %H:%M:%S')}, tlcourse {__version__}",
        f"- profile: {profile or '(notebook default)'}",
        f"- parameters: {json.dumps(dict(parameters or {}), default=repr) if parameters else '(none)'}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(header)) + "|",
    ]
    lines += ["| " + " | ".join(escape(c) for c in _row(r, names)) + " |" for r in results]
    lines += ["", f"**Total:** {summary_line(results)}", ""]
    return "\n".join(lines)


_STATUS_COLOURS = {"ok": "#1a7f37", "failed": "#cf222e", "timeout": "#bc4c00", "dead kernel": "#8250df"}


def render_html(
    results: Sequence[NotebookResult], *, profile: str | None = None, parameters=None, out_dir=None
) -> str:
    """The same report as a self-contained HTML page, linking each executed notebook (lesson 00)."""
    names = _metric_names(results)
    header = ["notebook", "status", "time", "peak memory", *names, "failing cell", "error / notes"]
    rows = []
    for result in results:
        cells = _row(result, names)
        colour = _STATUS_COLOURS.get(result.status, "#57606a")
        tds = [f'<td><a href="{html.escape(_link(result.output, out_dir))}">{html.escape(cells[0])}</a></td>']
        tds.append(f'<td style="color:{colour};font-weight:bold">{html.escape(cells[1])}</td>')
        tds += [f"<td>{html.escape(c)}</td>" for c in cells[2:]]
        rows.append("<tr>" + "".join(tds) + "</tr>")
    params = json.dumps(dict(parameters or {}), default=repr) if parameters else "(none)"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8"><title>tlcourse run report</title>',
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left}th{background:#f6f8fa}</style>",
            "</head><body>",
            "<h1>tlcourse run report</h1>",
            f"<p>finished {html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))}, tlcourse {html.escape(__version__)}; "
            f"profile: {html.escape(profile or '(notebook default)')}; parameters: {html.escape(params)}</p>",
            "<table>",
            "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>",
            *rows,
            "</table>",
            f"<p><strong>Total:</strong> {html.escape(summary_line(results))}</p>",
            "</body></html>",
            "",
        ]
    )


def _link(path: Path, out_dir: str | os.PathLike | None) -> str:
    if out_dir is not None:
        try:
            return path.resolve().relative_to(Path(out_dir).resolve()).as_posix()
        except ValueError:
            pass
    return path.resolve().as_uri()


def write_reports(
    results: Sequence[NotebookResult],
    out_dir: str | os.PathLike,
    *,
    profile: str | None = None,
    parameters=None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``report.json`` into ``out_dir``; return their paths (lesson 00)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "html": out / "report.html", "json": out / "report.json"}
    paths["md"].write_text(render_markdown(results, profile=profile, parameters=parameters), encoding="utf-8")
    page = render_html(results, profile=profile, parameters=parameters, out_dir=out)
    paths["html"].write_text(page, encoding="utf-8")
    payload = {"summary": summarize(results), "notebooks": [r.to_dict() for r in results]}
    paths["json"].write_text(json.dumps(payload, indent=1, default=repr), encoding="utf-8")
    return paths


# --------------------------------------------------------------------------------------------------------------
# Command line


def run_command(args: Any) -> int:
    """``tlcourse run``: execute notebooks, print one line each and the report's location (lesson 00).

    Exit status 0 when every notebook succeeded or was skipped as unchanged, 1 when any failed.
    """
    parameters = {name: parse_value(value) for name, value in (getattr(args, "parameter", None) or [])}
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
