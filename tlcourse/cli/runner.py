"""Run many notebooks headless and report on them: the instructors' ``tlcourse run`` (lesson 00).

Each notebook is executed with papermill in its own kernel (:mod:`tlcourse.cli.execution`), with the notebook's
folder as working directory and the ``PROFILE`` and ``-p`` parameters injected after its ``parameters`` cell
(:mod:`tlcourse.cli.parameters`). A notebook that raises, hits the per-cell timeout or whose kernel dies is
recorded (status, cell number, error) and the batch goes on. For every notebook the runner measures the wall
time and the peak memory of the kernel (:mod:`tlcourse.cli.memory`), and collects the figures the notebook
recorded with :func:`tlcourse.record.record`.

The output folder receives the executed notebooks (mirroring their relative paths, :mod:`tlcourse.cli.discovery`)
and each one rendered as HTML, ``report.md``, ``report.html``, ``report.json`` (written by
:mod:`tlcourse.cli.reports`) and a manifest (:mod:`tlcourse.cli.manifest`) used to skip, on the next run,
notebooks that succeeded with the same content, parameters, profile, kernel and ``tlcourse`` version.

Everything a notebook writes goes under the output folder too: when its ``parameters`` cell declares one of
:data:`~tlcourse.cli.parameters.OUTPUT_PARAMETERS` (lesson 08's ``OUTPUT_DIR = "capstone_output"``) with a
relative path, the runner injects that path re-rooted in the notebook's own work folder,
``OUT/<path>/<stem>_files/``, so a batch never writes into the source tree and two notebooks never share an
output folder. One run at a time owns an output folder (:mod:`tlcourse.cli.lock`); Ctrl-C stops the batch at
once (queued notebooks are cancelled, running kernels interrupted, then killed), records what finished and
exits with status 130.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from tlcourse.cli.discovery import find_notebooks, output_paths
from tlcourse.cli.execution import execute, nbformat_read, quiet_papermill
from tlcourse.cli.lock import out_dir_lock
from tlcourse.cli.manifest import Manifest, input_digest
from tlcourse.cli.parameters import (
    choose_kernel,
    declared_parameters,
    has_parameters_cell,
    installed_kernels,
    output_parameters,
    parse_value,
    work_dir_for,
)
from tlcourse.cli.progress import BatchControl, progress_ticker
from tlcourse.cli.reports import SKIPPED, NotebookResult, summary_line, write_reports
from tlcourse.cli.signals import Terminated, terminations_as_interrupts
from tlcourse.errors import TLCourseError
from tlcourse.paths import display_path
from tlcourse.record import read_checks

INTERRUPT_GRACE_S = 5.0
"""After Ctrl-C, how long running kernels get to stop on an interrupt before they are killed."""

__all__ = ["find_notebooks", "input_digest", "out_dir_lock", "parse_value", "run_command", "run_notebooks"]


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
    mapped = dict(outputs) if outputs is not None else output_paths(notebooks, out)
    manifest = Manifest(out)
    installed = installed_kernels()
    injected: dict[str, Any] = {}
    if profile:
        injected["PROFILE"] = profile
    injected.update(parameters or {})
    control = BatchControl(jobs=jobs)

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
        kernel, note = choose_kernel(node if isinstance(node, dict) else {}, kernel_name, installed)
        declared = declared_parameters(source)
        work_dir = work_dir_for(output)
        given = dict(injected)
        given.update(output_parameters(declared, work_dir, injected))
        digest = input_digest(content, {**given, "allow_errors": allow_errors}, kernel)
        task = {
            "source": source,
            "output": output,
            "display": display_path(notebook),
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
        previous = None if force else manifest.unchanged(digest, output)
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
            control.expected[task["display"]] = manifest.previous_seconds(output)

    from tqdm.auto import tqdm

    # tqdm's own estimate assumes every notebook takes as long as the mean so far; the previous run's time of
    # each notebook (BatchControl.status_text) is a far better guess, so the bar shows that one instead.
    bar = tqdm(
        total=len(notebooks), desc="notebooks", unit="nb", disable=not progress, file=sys.stderr,
        bar_format="{desc}: {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
    )  # fmt: skip
    ticker_stop = threading.Event()
    if progress:
        progress_ticker(bar, control, ticker_stop)

    def finished(result: NotebookResult) -> None:
        control.notebook_done(result.path)
        if result.status != SKIPPED:
            manifest.store(result)
        if verbose:
            bar.write(result.line(), file=sys.stdout)
            sys.stdout.flush()  # one line per notebook as it ends, also when the output is a pipe or a log
        bar.update(1)
        bar.set_postfix_str(control.status_text(), refresh=True)
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

    with quiet_papermill(), terminations_as_interrupts():
        try:
            for result in list(results.values()):
                finished(result)
            futures.update({pool.submit(execute, **task): task for task in tasks})
            while futures:
                done, _ = wait(list(futures), timeout=0.5, return_when=FIRST_COMPLETED)
                collect(done)
        except KeyboardInterrupt as interrupt:
            control.stop_reason = "terminated" if isinstance(interrupt, Terminated) else "stopped by Ctrl-C"
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
    control: BatchControl,
    collect: Callable[[Iterable[Future]], None],
) -> None:
    """Ctrl-C or SIGTERM: cancel queued notebooks, interrupt the running kernels, kill those that do not stop."""
    control.stopping.set()
    pool.shutdown(wait=False, cancel_futures=True)
    print("\ninterrupted: stopping the running notebooks ...", file=sys.stderr, flush=True)
    control.interrupt_kernels()
    for then in (control.kill_kernels, None):
        deadline = time.monotonic() + INTERRUPT_GRACE_S
        while futures and time.monotonic() < deadline:
            try:
                done, _ = wait(list(futures), timeout=0.2, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting politely
                break
            collect(done)
        if not futures or then is None:
            break
        then()


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
                    f"-p {', '.join(parameters)}: {display_path(notebook)} has no cell tagged `parameters`, so "
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
