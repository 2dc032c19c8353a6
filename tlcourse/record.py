"""Record named figures from a notebook so ``tlcourse run`` can put them in its report (lesson 00).

A notebook calls :func:`record` for the few numbers worth comparing across runs, e.g.
``record("val_accuracy", history.history["val_accuracy"][-1])``. Inside a Jupyter kernel the figure is
shown as a display output carrying a course-specific MIME type (plus a readable ``text/plain`` line), so it
is saved in the executed ``.ipynb`` and :func:`read_records` can read it back; in plain Python the readable
line is printed. Nothing else is stored anywhere, so a notebook that records is still an ordinary notebook.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat

from tlcourse.errors import TLCourseError

RECORD_MIME = "application/vnd.tlcourse.record+json"
"""The MIME type of a recorded figure's display output: ``{"name": ..., "value": ...}``."""

RecordValue = bool | int | float | str | None


def _plain_value(name: str, value: Any) -> RecordValue:
    """Turn ``value`` into a JSON-safe bool/int/float/str, unwrapping NumPy and TensorFlow scalars."""
    if hasattr(value, "numpy") and callable(value.numpy):  # an eager TensorFlow tensor
        value = value.numpy()
    if hasattr(value, "item") and callable(value.item) and getattr(value, "size", 1) == 1:
        value = value.item()  # NumPy scalars and one-element arrays
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # JSON has no NaN or infinity; keep them readable rather than breaking the notebook file.
        return value if math.isfinite(value) else str(value)
    raise TLCourseError(
        f"record({name!r}, ...) takes a number, a string or a bool, not {type(value).__name__}. "
        "Record one figure per name, e.g. record('val_accuracy', float(accuracy))."
    )


def format_value(value: RecordValue) -> str:
    """Short text for a recorded value: floats with 4 significant digits, others as they are (lesson 00)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def record(name: str, value: Any) -> None:
    """Record a named figure (number, string or bool) for the batch report of ``tlcourse run`` (lesson 00).

    Inside a notebook this shows ``recorded NAME = VALUE`` and stores the figure in the cell's output; outside
    a kernel it just prints that line. Recording the same name twice keeps the last value.
    """
    if not isinstance(name, str) or not name.strip() or "\n" in name:
        raise TLCourseError(f"record() needs a one-line, non-empty name, got {name!r}.")
    name = name.strip()
    plain = _plain_value(name, value)
    text = f"recorded {name} = {format_value(plain)}"
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        get_ipython = None  # noqa: N806
    shell = get_ipython() if get_ipython is not None else None
    if shell is None:
        print(text)
        return
    from IPython.display import display

    display({RECORD_MIME: {"name": name, "value": plain}, "text/plain": text}, raw=True)


def read_records(notebook: nbformat.NotebookNode | str | os.PathLike) -> dict[str, RecordValue]:
    """Return the figures a notebook recorded with :func:`record`, in recording order (lesson 00).

    ``notebook`` is an executed notebook (a ``NotebookNode``) or the path of one. Later records of the same
    name replace earlier ones.
    """
    if isinstance(notebook, str | os.PathLike):
        notebook = nbformat.read(Path(notebook), as_version=4)
    records: dict[str, RecordValue] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = (
                output.get("data")
                if output.get("output_type") in ("display_data", "execute_result")
                else None
            )
            payload = data.get(RECORD_MIME) if isinstance(data, Mapping) else None
            if isinstance(payload, Mapping) and isinstance(payload.get("name"), str):
                records.pop(payload["name"], None)  # a re-recorded name moves to its latest position
                records[payload["name"]] = payload.get("value")
    return records
