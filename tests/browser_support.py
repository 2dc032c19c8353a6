"""Helpers for the end-to-end browser test (tests/test_browser.py, issue 8).

They start JupyterLab on loopback in a process group of its own, find Debian's Chromium, drive JupyterLab 4
with Playwright's sync API (open a notebook, run all cells) and write the small notebook the test falls back to
when the capstone is missing. Nothing here runs at import; nothing needs a network beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
import psutil

#: Where Debian's ``chromium`` package puts the browser (tools/install_browser.sh installs it).
DEFAULT_CHROMIUM = Path("/usr/bin/chromium")

#: Flags that keep Chromium from phoning home: on a closed network its background connections are refused and
#: slow everything down. The test adds a fresh ``--user-data-dir`` of its own.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)

#: JupyterLab user settings for a quiet, deterministic session: every cell stays in the DOM (no windowing), no
#: autosave, no news or update pop-ups.
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # The test's notebook copy is never written back, whatever the browser does to it.
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False,
        "fetchNews": "false",
    },
}


def chromium_path() -> Path | None:
    """The Chromium to drive: ``$TLCOURSE_CHROMIUM`` or /usr/bin/chromium, or None when it is not there."""
    path = Path(os.environ.get("TLCOURSE_CHROMIUM", str(DEFAULT_CHROMIUM)))
    return path if path.is_file() and os.access(path, os.X_OK) else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_lab_settings(settings_dir: Path) -> None:
    """Write :data:`LAB_SETTINGS` into a fresh JupyterLab user-settings folder."""
    for relative, values in LAB_SETTINGS.items():
        target = settings_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values, indent=2), encoding="utf-8")


class JupyterLabServer:
    """JupyterLab 4 on 127.0.0.1 with a known token, started in a session of its own.

    :meth:`stop` ends the server and every process it started (kernels run in sessions of their own, so it
    walks the process tree), even when the test failed, so no process outlives the test. Also a context
    manager.
    """

    def __init__(self, root_dir: Path, work_dir: Path, env: Mapping[str, str], log_path: Path) -> None:
        self.root_dir = root_dir
        self.work_dir = work_dir
        self.env = dict(env)
        self.log_path = log_path
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    def lab_url(self, notebook: str) -> str:
        """The address that opens ``notebook`` (relative to the root folder) in JupyterLab, token included."""
        return f"{self.base_url}/lab/tree/{notebook}?token={self.token}"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        settings = self.work_dir / "user-settings"
        return [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.allow_remote_access=False",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={self.work_dir / 'workspaces'}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        ]

    def start(self) -> None:
        """Start the server in the background, its output going to :attr:`log_path`."""
        write_lab_settings(self.work_dir / "user-settings")
        runtime = self.work_dir / "runtime"
        runtime.mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            "JUPYTER_RUNTIME_DIR": str(runtime),
            "JUPYTER_CONFIG_DIR": str(self.work_dir / "config"),
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.root_dir,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """Poll /api/status until the server answers; raise RuntimeError (with the log tail) if it never does."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        url = f"{self.base_url}/api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return json.loads(response.read().decode("utf-8"))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer {url} within {timeout:.0f} s:\n{self.log_tail()}")

    def start_and_wait(self, timeout: float = 120.0, attempts: int = 3) -> dict[str, Any]:
        """Start the server and wait until it answers; on a lost race for the port, retry on another one."""
        for attempt in range(1, attempts + 1):
            self.start()
            try:
                return self.wait_ready(timeout)
            except RuntimeError:
                exited = self.process is not None and self.process.poll() is not None
                if not exited or attempt == attempts:
                    raise
                self.stop()
                self.port = free_port()
        raise AssertionError("unreachable")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log."""
        if self._log_file is not None:
            self._log_file.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def process_tree(self) -> list[psutil.Process]:
        """The server and every process it started that is still alive (kernels run in sessions of their own)."""
        if self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 20.0) -> list[int]:
        """End the server and every process it started, kernels included: SIGTERM, then SIGKILL.

        Returns the ids of processes still alive afterwards (none, unless the system refused to end them).
        """
        tree = self.process_tree()
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()  # jupyter_server shuts its kernels down on SIGTERM
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        survivors = [p for p in tree if _alive(p)]
        for leftover in survivors:
            try:
                leftover.kill()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(survivors, timeout=timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return [p.pid for p in alive]

    def __enter__(self) -> JupyterLabServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _current_kernel_js() -> str:
    return (
        "const app = window.jupyterapp; const panel = app && app.shell.currentWidget;"
        " const kernel = panel && panel.sessionContext && panel.sessionContext.session"
        " && panel.sessionContext.session.kernel;"
    )


def wait_kernel_idle(page: Any, timeout_ms: float) -> None:
    """Wait until the open notebook has a started kernel that is idle."""
    page.wait_for_function(
        f"() => {{ {_current_kernel_js()} return Boolean(kernel) && kernel.status === 'idle'; }}",
        timeout=timeout_ms,
    )


def run_all_cells(page: Any, timeout_ms: float) -> bool:
    """Run every cell of the open notebook (Run > Run All Cells) and wait until the run is over.

    Goes through JupyterLab's command registry (``notebook:run-all-cells``, exposed by
    ``--LabApp.expose_app_in_browser``); its promise settles once every cell has finished or the run stopped
    at an error. Returns whether every cell succeeded.
    """
    page.evaluate(
        """() => {
            window.__tlcourseRunAll = {done: false};
            window.jupyterapp.commands.execute('notebook:run-all-cells').then(
                (ok) => { window.__tlcourseRunAll = {done: true, ok: ok !== false}; },
                (error) => { window.__tlcourseRunAll = {done: true, ok: false, error: String(error)}; },
            );
        }"""
    )
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("() => window.__tlcourseRunAll.done", timeout=timeout_ms, polling=500)
    except PlaywrightTimeout:
        raise TimeoutError(
            f"Run All Cells was still running after {timeout_ms / 1000:.0f} s; a slow machine may need a longer"
            " limit ($TLCOURSE_BROWSER_TIMEOUT, seconds)"
        ) from None
    return bool(page.evaluate("() => window.__tlcourseRunAll.ok"))


def notebook_errors(page: Any) -> list[str]:
    """``ename: evalue`` of every error output in the open notebook (empty when no cell raised)."""
    return page.evaluate(
        """() => {
            const panel = window.jupyterapp.shell.currentWidget;
            const errors = [];
            panel.content.widgets.forEach((cell, index) => {
                const outputs = (cell.model.toJSON().outputs) || [];
                outputs.filter((o) => o.output_type === 'error')
                    .forEach((o) => errors.push(`cell ${index}: ${o.ename}: ${o.evalue}`));
            });
            return errors;
        }"""
    )


def kernel_eval(page: Any, expression: str, timeout_ms: float = 60_000) -> str:
    """Evaluate a Python ``expression`` in the open notebook's kernel (silently) and return its ``repr``.

    Uses a Jupyter ``user_expressions`` request, so nothing is added to the notebook or its history.
    """
    result = page.evaluate(
        """async ([expression, timeout]) => {
            const app = window.jupyterapp;
            const kernel = app.shell.currentWidget.sessionContext.session.kernel;
            const future = kernel.requestExecute(
                {code: '', silent: true, store_history: false, user_expressions: {value: expression}});
            const timer = new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), timeout));
            const reply = await Promise.race([future.done, timer]);
            return reply.content.user_expressions.value;
        }""",
        [expression, timeout_ms],
    )
    if not isinstance(result, dict) or result.get("status") != "ok":
        raise RuntimeError(f"the kernel could not evaluate {expression!r}: {result!r}")
    return str(result["data"]["text/plain"])


def write_widget_notebook(path: Path, class_names: list[str]) -> Path:
    """Write a tiny notebook that builds a small Keras classifier and shows ``upload_and_predict`` for it.

    The test opens it when the capstone notebook is not in the repository: it still checks the course's real
    upload widget end to end in the browser.
    """
    setup = (
        "from tlcourse import config\n"
        "config.quiet_tensorflow()\n"
        "import keras\n"
        "from tlcourse import widgets\n"
        f"CLASS_NAMES = {class_names!r}\n"
        "keras.utils.set_random_seed(0)\n"
        "model = keras.Sequential([\n"
        "    keras.Input((64, 64, 3)),\n"
        "    keras.layers.Rescaling(1 / 255),\n"
        "    keras.layers.GlobalAveragePooling2D(),\n"
        "    keras.layers.Dense(len(CLASS_NAMES), activation='softmax'),\n"
        "])"
    )
    show = "predictor = widgets.upload_and_predict(model, CLASS_NAMES)\npredictor"
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Upload-and-predict widget (browser test)"),
        nbformat.v4.new_code_cell(setup),
        nbformat.v4.new_code_cell(show),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path
