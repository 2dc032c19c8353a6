"""What ``tlcourse run`` injects into a notebook: ``-p`` values, kernels and re-rooted output folders (lesson 00).

A notebook's ``parameters`` cell is read with papermill's own parser (:func:`declared_parameters`), the same
one that decides what papermill injects; each output folder it declares with a relative path
(:data:`OUTPUT_PARAMETERS`) is re-rooted in the notebook's work folder under ``--out``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tlcourse.cli.reports import DEFAULT_KERNEL

OUTPUT_PARAMETERS = ("OUTPUT_DIR", "CACHE_DIR", "UPLOAD_DIR")
"""Parameters that name a folder a notebook writes to; a relative default is re-rooted in its work folder."""
WORK_SUFFIX = "_files"


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


def installed_kernels() -> set[str]:
    """The kernelspec names Jupyter finds here (empty when none can be read)."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        return set(KernelSpecManager().find_kernel_specs())
    except Exception:  # noqa: BLE001 - no kernelspecs readable: let execution report it
        return set()


def choose_kernel(
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


def declared_parameters(source: Path) -> dict[str, Any]:
    """Names and default values (Python literals, else their source text) of a notebook's ``parameters`` cell,
    as papermill reads them (a line it cannot parse declares nothing)."""
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
