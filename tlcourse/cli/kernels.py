"""Which notebooks the course can execute: Python ones only (lesson 00: ``tlcourse run`` and ``tlcourse grade``).

A notebook names its kernel in ``metadata.kernelspec`` (``name``, ``language``) and the language it was last run
in under ``metadata.language_info.name``. An R or Julia notebook handed to ``tlcourse run`` or ``tlcourse grade``
would otherwise be executed by the fallback ``python3`` kernel and could even be reported ok, so both commands
ask :func:`kernel_problem` first and refuse such a notebook with its one line. A notebook that declares no
language at all is taken as Python (papermill and nbclient do the same).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PYTHON = "python"


def _installed_language(name: str) -> str | None:
    """The language of the installed kernel ``name`` (None when it is not installed or cannot be read)."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        try:
            return str(KernelSpecManager().get_kernel_spec(name).language or "") or None
        except NoSuchKernel:
            return None
    except Exception:  # noqa: BLE001 - unreadable kernelspecs: decide from the notebook alone
        return None


def notebook_language(notebook: Mapping[str, Any]) -> str | None:
    """The programming language a notebook declares, as written there (None when it declares none)."""
    metadata = notebook.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        return None
    for section, key in (("kernelspec", "language"), ("language_info", "name")):
        part = metadata.get(section) or {}
        value = part.get(key) if isinstance(part, Mapping) else None
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def kernel_problem(notebook: Mapping[str, Any], requested: str | None = None) -> str | None:
    """Why the course will not execute ``notebook`` (one line), or None when it is a Python notebook.

    ``requested`` is a kernel named on the command line (``--kernel``); it must be a Python kernel too. A
    notebook whose ``kernelspec`` names an installed kernel is judged by that kernel's own language.
    """
    if requested:
        language = _installed_language(requested)
        if language is not None and language.lower() != PYTHON:
            return f"--kernel {requested} runs {language}, and tlcourse executes Python notebooks only."
    declared = notebook_language(notebook)
    spec = (notebook.get("metadata") or {}).get("kernelspec") or {}
    name = spec.get("name") if isinstance(spec, Mapping) else None
    installed = _installed_language(str(name)) if isinstance(name, str) and name else None
    language = installed or declared
    if language is None or language.lower() == PYTHON:
        return None
    kernel = f" (kernel {name!r})" if name else ""
    return (
        f"it is a {language} notebook{kernel}, and tlcourse runs Python notebooks only: "
        "run it in its own kernel with Jupyter instead."
    )
