"""Execute one student's notebook at arm's length from the instructor's files (lesson 00: ``tlcourse grade``).

What grading a submission with :func:`execute_isolated` guards against, and how:

- **its working folder**: a fresh temporary folder outside the submissions and the output folder, holding
  only a copy of the notebook (made from bytes read before any kernel started); it is deleted afterwards;
- **its environment**: a short allow-list of variables (:func:`minimal_environment`), ``HOME`` and ``TMPDIR``
  pointed into that scratch folder, so no instructor token, SSH agent or cloud credential is inherited;
- **what it leaves running**: each kernel starts in its own session; when the notebook ends, every process of
  that session and process group, every process still carrying the kernel's marker variable and (Linux)
  every orphan re-parented to the grader (it is a child subreaper while grading) is killed;
- **memory and output**: the kernel's process tree is killed when its resident memory passes
  ``Limits.memory_bytes``, and when its outputs pass ``Limits.output_bytes``; the status says which;
- **files it rewrites**: :class:`FileGuard` holds the bytes and SHA-256 of every template, every submission
  and the ``tlcourse`` package's source from before the first kernel, and after each notebook restores any
  that changed, naming them so the gradebook can flag the submission.

What it does not guard against: the notebook still runs as the instructor, so it can read and write whatever
the instructor can (other folders, the virtual environment, Python's caches, the network). Grading a class
you do not trust belongs in a container or under a separate user (the README shows both).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tlcourse
from tlcourse.cli.execution import cancel_leftover_tasks
from tlcourse.cli.memory import KernelMemory

MARKER = "TLCOURSE_GRADE_KERNEL"
"""The variable every kernel (and whatever it starts) inherits, with a value unique to that kernel."""
KEPT_VARIABLES = frozenset(
    {"PATH", "LANG", "LANGUAGE", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "KERAS_BACKEND", "MPLBACKEND",
     "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
     "TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "SYSTEMROOT", "COMSPEC", "PATHEXT", "WINDIR"}
)  # fmt: skip
"""Variables a kernel inherits from the instructor (with every ``LC_*`` and ``TLCOURSE_*``): nothing secret."""
KEPT_PREFIXES = ("LC_", "TLCOURSE_")
DEFAULT_MEMORY_BYTES = 8 * 2**30
DEFAULT_OUTPUT_BYTES = 32 * 2**20
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Limits:
    """What one submission may use: seconds per cell, resident memory of its processes, bytes of output."""

    timeout: float | None = 1800
    memory_bytes: int | None = DEFAULT_MEMORY_BYTES
    output_bytes: int | None = DEFAULT_OUTPUT_BYTES
    start_timeout: int = 120


@dataclass
class Execution:
    """What running one submission gave: the executed notebook (in memory) and how it ended."""

    notebook: Any
    status: str = "ok"
    """ok, timeout, dead kernel, memory limit, output limit, failed or interrupted."""
    error: str | None = None
    seconds: float = 0.0
    peak_mib: float | None = None
    killed: list[str] = field(default_factory=list)
    """Processes it left behind that were killed (``pid name``)."""


# --------------------------------------------------------------------------------------------------------------
# Environment


def minimal_environment(
    scratch: Path, marker: str, source: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a submission's kernel gets: the allow-listed variables of ``source`` (default
    ``os.environ``), ``HOME``, ``TMPDIR`` and Matplotlib's folder inside ``scratch``, ``KERAS_HOME`` kept at the
    instructor's Keras cache (downloaded public weights), and the kernel's :data:`MARKER`."""
    source = os.environ if source is None else source
    env = {
        name: value
        for name, value in source.items()
        if name in KEPT_VARIABLES or name.startswith(KEPT_PREFIXES)
    }
    home, tmp = scratch / "home", scratch / "tmp"
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    keras_home = source.get("KERAS_HOME") or str(Path(source.get("HOME") or Path.home()) / ".keras")
    env.update(
        HOME=str(home),
        USERPROFILE=str(home),
        TMPDIR=str(tmp),
        TEMP=str(tmp),
        TMP=str(tmp),
        MPLCONFIGDIR=str(home / ".matplotlib"),
        KERAS_HOME=keras_home,
        MALLOC_ARENA_MAX=source.get("MALLOC_ARENA_MAX", "2"),
        PYTHONNOUSERSITE="1",
    )
    env[MARKER] = marker
    return env


# --------------------------------------------------------------------------------------------------------------
# Files a notebook must not change


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileGuard:
    """The bytes and SHA-256 of files read before any kernel starts; :meth:`restore_changed` puts back any
    file changed (or removed) since, and says which."""

    def __init__(self, paths: Iterable[Path]) -> None:
        self.saved: dict[Path, tuple[bytes, str]] = {}
        for path in paths:
            data = Path(path).read_bytes()
            self.saved[Path(path)] = (data, _digest(data))

    def bytes_of(self, path: Path) -> bytes:
        return self.saved[Path(path)][0]

    def digest_of(self, path: Path) -> str:
        return self.saved[Path(path)][1]

    def restore_changed(self) -> list[Path]:
        """Rewrite every guarded file whose content differs from the saved one; return those paths."""
        changed = []
        for path, (data, digest) in self.saved.items():
            try:
                same = not path.is_symlink() and _digest(path.read_bytes()) == digest
            except OSError:
                same = False
            if same:
                continue
            changed.append(path)
            with contextlib.suppress(OSError):
                if path.is_symlink() or path.is_dir():
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_name(f".{path.name}.{os.getpid()}.restore")
                temporary.write_bytes(data)
                os.replace(temporary, path)
        return changed


def package_sources() -> list[Path]:
    """The ``tlcourse`` package's Python files: what every later kernel imports its graders from."""
    root = Path(tlcourse.__file__).resolve().parent
    return sorted(path for path in root.rglob("*.py") if path.is_file())


# --------------------------------------------------------------------------------------------------------------
# Processes a notebook leaves behind


@contextlib.contextmanager
def adopting_orphans() -> Iterator[None]:
    """Make this process a child subreaper (Linux) while grading, so a process a kernel detached (double fork,
    ``setsid``) is re-parented here when its parent dies, and can be found and killed. Elsewhere a no-op."""
    prctl = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            prctl = ctypes.CDLL(None, use_errno=True).prctl
    was_set = ctypes.c_int(0)
    if prctl is not None and prctl(37, ctypes.byref(was_set), 0, 0, 0) != 0:  # PR_GET_CHILD_SUBREAPER
        prctl = None
    if prctl is not None:
        prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        if prctl is not None and not was_set.value:
            prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _our_children() -> set[int]:
    import psutil

    with contextlib.suppress(psutil.Error):
        return {child.pid for child in psutil.Process().children()}
    return set()


def _leftovers(session: int | None, group: int | None, marker: str, spared: set[int]) -> list[Any]:
    """Processes of this user in the kernel's session or process group, carrying its marker, or orphans
    adopted by this process (children of ours not in ``spared``)."""
    import psutil

    me, uid, found = os.getpid(), os.getuid() if hasattr(os, "getuid") else None, []
    adopted = _our_children() - spared
    for process in psutil.process_iter(["pid", "uids"]):
        pid = process.info["pid"]
        if pid == me:
            continue
        uids = process.info.get("uids")
        if uid is not None and (uids is None or uids.real != uid):
            continue
        try:
            hit = pid in adopted
            if not hit and session is not None and hasattr(os, "getsid"):
                hit = os.getsid(pid) == session or os.getpgid(pid) == group
            if not hit:
                hit = process.environ().get(MARKER) == marker
        except (psutil.Error, OSError):
            continue
        if hit:
            found.append(process)
    return found


def reap(pid: int | None, marker: str, spared: set[int], session: int | None = None) -> list[str]:
    """Kill the kernel ``pid`` and everything it left (see :func:`_leftovers`); return ``pid name`` of each
    process killed besides the kernel. ``spared``: this process's children that are not the kernel's."""
    import psutil

    group = session
    killed: dict[int, str] = {}
    if group is not None and hasattr(os, "killpg"):
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)
    for _ in range(5):  # a process may fork while its family is being killed: sweep until none is left
        found = _leftovers(session, group, marker, spared)
        if not found:
            break
        for process in found:
            with contextlib.suppress(psutil.Error):
                name = process.name()
                process.kill()
                if process.pid != pid:
                    killed[process.pid] = f"{process.pid} {name}"
        time.sleep(0.05)
    for child in _our_children() - spared:  # collect the adopted ones, so no zombie stays
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(child, os.WNOHANG)
    return list(killed.values())


class Batch:
    """What the notebooks of one grading run share: the grader's own children from before the first kernel,
    the kernels running now (never taken for leftovers of another one) and the Ctrl-C flag."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.before = _our_children()
        self.kernels: set[int] = set()

    def spared(self, pid: int | None) -> set[int]:
        """Children of this process that are not leftovers of kernel ``pid``."""
        with self.lock:
            return self.before | (self.kernels - {pid})


class _Watch(KernelMemory):
    """The runner's :class:`~tlcourse.cli.memory.KernelMemory` that also kills the kernel's session past the
    memory limit or when the batch is stopping (Ctrl-C)."""

    def __init__(self, limit: int | None, batch: Batch, interval: float = 0.2) -> None:
        super().__init__(interval)
        self.limit, self.batch = limit, batch
        self.session: int | None = None
        self.over = False

    def attach(self, pid: int | None) -> None:
        if not pid:
            return
        with contextlib.suppress(OSError, AttributeError):
            self.session = os.getsid(pid)
        with self.batch.lock:
            self.batch.kernels.add(pid)
        super().attach(pid)
        if self.batch.stopping.is_set():
            self.kill()

    def kill(self) -> None:
        if self.session is not None and hasattr(os, "killpg"):
            with contextlib.suppress(OSError):
                os.killpg(self.session, signal.SIGKILL)
        elif self.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)

    def sample(self) -> int:
        if self.batch.stopping.is_set():
            self.kill()
        total = super().sample()
        if self.limit and total > self.limit and not self.over:
            self.over = True
            self.kill()
        return total

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        with self.batch.lock:
            self.batch.kernels.discard(self.pid or 0)


# --------------------------------------------------------------------------------------------------------------
# Running one notebook


def _client_class(watch: _Watch, output_limit: int | None, spent: dict[str, int]) -> type:
    """An nbclient ``NotebookClient`` that stops a kernel whose outputs pass ``output_limit`` bytes (counted
    in ``spent["bytes"]``; ``spent["over"]`` is 1 once it did)."""
    from nbclient import NotebookClient

    class GuardedClient(NotebookClient):
        def output(
            self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int
        ) -> Any:
            if spent["over"]:
                return None
            spent["bytes"] += len(json.dumps(msg.get("content", {}), default=str))
            if output_limit and spent["bytes"] > output_limit:
                spent["over"] = 1
                watch.kill()
                return None
            return super().output(outs, msg, display_id, cell_index)

    return GuardedClient


def _kernel_manager_class(env: Mapping[str, str], watch: _Watch) -> type:
    from jupyter_client.manager import AsyncKernelManager

    class IsolatedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            if self.ipykernel:  # keep ipykernel's start-up chatter out of the grader's console
                kw["extra_arguments"] = [*kw.get("extra_arguments", []), "--IPKernelApp.log_level=ERROR"]
            kw["env"] = dict(env)
            await super().start_kernel(**kw)
            watch.attach(getattr(self.provisioner, "pid", None))

    return IsolatedKernelManager


def _parameterized(notebook: Any, parameters: Mapping[str, Any], kernel: str) -> Any:
    """``notebook`` with papermill's ``injected-parameters`` cell after its ``parameters`` cell."""
    from papermill.parameterize import parameterize_notebook

    notebook.metadata.setdefault("papermill", {})
    for cell in notebook.cells:  # papermill looks for the `parameters` tag in every cell's metadata
        cell.metadata.setdefault("tags", [])
    logger = logging.getLogger("papermill")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its warning for a notebook without a parameters cell is noise here
    try:
        return parameterize_notebook(notebook, dict(parameters), kernel_name=kernel, language="python")
    finally:
        logger.setLevel(level)


def _close(client: Any, km: Any) -> None:
    """Stop the client's channels and the (killed) kernel's manager, then cancel what nbclient left pending
    on this thread's event loop (else asyncio complains, at exit, of tasks destroyed while pending)."""
    from jupyter_core.utils import run_sync

    with contextlib.suppress(Exception):
        if client.kc is not None:
            client.kc.stop_channels()
    with contextlib.suppress(Exception):
        run_sync(km.shutdown_kernel)(now=True)
    # nbclient's exit hook checks the (now dead) kernel again; without a manager it asserts at exit
    client.km = km
    cancel_leftover_tasks()


def _one_line(text: str, limit: int = 240) -> str:
    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def execute_isolated(
    content: bytes,
    name: str,
    *,
    kernel: str,
    batch: Batch,
    parameters: Mapping[str, Any] | None = None,
    limits: Limits = Limits(),  # noqa: B008 - a frozen dataclass: one shared default is safe
) -> Execution:
    """Run the notebook ``content`` (file name ``name``) as the module docstring describes; never raises for
    what the notebook does. ``batch.stopping`` set (Ctrl-C) kills the kernel at once."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    scratch = Path(tempfile.mkdtemp(prefix="tlcourse-grade-"))
    work = scratch / "work"
    work.mkdir()
    (work / Path(name).name).write_bytes(content)
    marker = secrets.token_hex(16)
    env = minimal_environment(scratch, marker)
    notebook = nbformat.reads(content.decode("utf-8"), as_version=4)
    if parameters:
        notebook = _parameterized(notebook, parameters, kernel)
    watch, spent = _Watch(limits.memory_bytes, batch), {"bytes": 0, "over": 0}
    km = _kernel_manager_class(env, watch)(kernel_name=kernel)  # ours, so its end is ours too (_close)
    client = _client_class(watch, limits.output_bytes, spent)(
        notebook, km=km, timeout=int(limits.timeout) if limits.timeout else None,
        startup_timeout=limits.start_timeout, kernel_name=kernel, allow_errors=True,
        resources={"metadata": {"path": str(work)}}, record_timing=False,
    )  # fmt: skip
    result = Execution(notebook=notebook)
    started = time.perf_counter()
    with watch:
        try:
            client.execute()
        except CellTimeoutError:
            result.status = "timeout"
            result.error = f"a cell ran longer than the {limits.timeout:g} s limit (--timeout)"
        except DeadKernelError as error:
            result.status, result.error = "dead kernel", _one_line(f"the kernel died: {error}")
        except Exception as error:  # noqa: BLE001 - one broken submission must not stop the class
            result.status, result.error = "failed", _one_line(f"{type(error).__name__}: {error}")
        finally:
            result.seconds = time.perf_counter() - started
            watch.kill()  # the kernel's whole session, at once: nothing of it outlives the notebook
            _close(client, km)
            result.killed = reap(watch.pid, marker, batch.spared(watch.pid), watch.session)
            shutil.rmtree(scratch, ignore_errors=True)
    if batch.stopping.is_set():
        result.status, result.error = "interrupted", "stopped by Ctrl-C"
    elif watch.over:
        limit = (limits.memory_bytes or 0) / 2**30
        result.status = "memory limit"
        result.error = f"its processes used more than {limit:g} GiB of memory (--memory-limit): stopped"
    elif spent["over"]:
        limit = (limits.output_bytes or 0) / 2**20
        result.status = "output limit"
        result.error = f"its output passed {limit:g} MiB (--max-output): stopped"
    result.peak_mib = watch.peak_mib
    return result
