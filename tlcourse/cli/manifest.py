"""The skip manifest of an output folder: which notebooks finished, how, how long they took (lesson 00).

``tlcourse run`` skips a notebook that succeeded before with the same inputs (:func:`input_digest`: its bytes,
injected parameters, kernel and the ``tlcourse`` version) and reads the times of the previous run to estimate
how long this one will take.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tlcourse import __version__
from tlcourse.cli.reports import NotebookResult

MANIFEST_NAME = ".tlcourse-run-manifest.json"


def input_digest(content: bytes, parameters: Mapping[str, Any], kernel: str) -> str:
    """Hash of what decides a notebook's result: its bytes, injected parameters, kernel and tlcourse version."""
    digest = hashlib.sha256(content)
    extra = {"parameters": dict(parameters), "kernel": kernel, "tlcourse": __version__}
    digest.update(json.dumps(extra, sort_keys=True, default=repr).encode())
    return digest.hexdigest()


class Manifest:
    """The out folder's record of finished notebooks, rewritten (atomically) after each one.

    Entries are keyed by the executed copy's path inside the out folder (``lessons/00_welcome.ipynb``), so the
    file names no folder of the machine and stays valid when the out folder is moved.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.path = out_dir / MANIFEST_NAME
        self.lock = threading.Lock()
        try:
            data = json.loads(self.path.read_text())
            self.entries: dict[str, dict[str, Any]] = dict(data.get("notebooks", {}))
        except (OSError, ValueError, AttributeError):
            self.entries = {}

    def key(self, output: Path) -> str:
        """``output``'s path inside the out folder (its absolute path when it lies elsewhere)."""
        try:
            return output.resolve().relative_to(self.out_dir.resolve()).as_posix()
        except ValueError:
            return str(output.resolve())

    def unchanged(self, digest: str, output: Path) -> dict[str, Any] | None:
        """The previous entry when this notebook succeeded with this digest and its executed copy is still there."""
        entry = self.entries.get(self.key(output))
        if entry and entry.get("digest") == digest and entry.get("status") == "ok" and output.is_file():
            return entry
        return None

    def previous_seconds(self, output: Path) -> float | None:
        """How long this notebook took the last time it ran to its end (status ``ok``), or None."""
        entry = self.entries.get(self.key(output)) or {}
        seconds = entry.get("seconds")
        return float(seconds) if entry.get("status") == "ok" and isinstance(seconds, int | float) else None

    def store(self, result: NotebookResult) -> None:
        """Record one finished notebook and rewrite the file."""
        with self.lock:
            self.entries[self.key(result.output)] = {
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
