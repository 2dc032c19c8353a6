"""Record named figures from a notebook so ``tlcourse run`` can put them in its report (lesson 00).

A notebook calls :func:`record` for the few numbers worth comparing across runs, e.g.
``record("val_accuracy", history.history["val_accuracy"][-1])``. Inside a Jupyter kernel the figure is
shown as a display output carrying a course-specific MIME type (plus a readable ``text/plain`` line), so it
is saved in the executed ``.ipynb`` and :func:`read_records` can read it back; in plain Python the readable
line is printed. Nothing else is stored anywhere, so a notebook that records is still an ordinary notebook.

Graders record their outcome the same way (:func:`record_check`, called by
:meth:`tlcourse.checks.CheckResult.assert_passed`), under their own MIME type, and :func:`read_checks` reads
them back with the index of the cell that showed them: that is how ``tlcourse grade`` scores a notebook.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import nbformat

from tlcourse.errors import TLCourseError

RECORD_MIME = "application/vnd.tlcourse.record+json"
"""The MIME type of a recorded figure's display output: ``{"name": ..., "value": ...}``."""

CHECK_MIME = "application/vnd.tlcourse.check+json"
"""The MIME type of a grader's outcome: ``{"check": ..., "passed": ..., "message": ...}``."""

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
    if _shell() is None:
        print(text)
        return
    from IPython.display import display

    display({RECORD_MIME: {"name": name, "value": plain}, "text/plain": text}, raw=True)


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return None
    return get_ipython()


def record_check(check: str, passed: bool, message: str, text: str) -> None:
    """Record one grader's outcome in the cell that ran it, for ``tlcourse grade`` (lesson 02).

    ``check`` names the grader (e.g. ``check_separable_cost``), ``message`` is what was verified or the hint,
    ``text`` the one line the student reads. Inside a kernel the line is shown as a display output that also
    carries :data:`CHECK_MIME`; outside one the line is printed.
    """
    if _shell() is None:
        print(text)
        return
    from IPython.display import display

    payload = {"check": str(check), "passed": bool(passed), "message": str(message)}
    display({CHECK_MIME: payload, "text/plain": text}, raw=True)


def _payloads(cell: Mapping[str, Any], mime: str) -> Iterator[Mapping[str, Any]]:
    for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
        data = output.get("data") if output.get("output_type") in ("display_data", "execute_result") else None
        payload = data.get(mime) if isinstance(data, Mapping) else None
        if isinstance(payload, Mapping):
            yield payload


def _as_notebook(notebook: nbformat.NotebookNode | str | os.PathLike) -> nbformat.NotebookNode:
    if isinstance(notebook, str | os.PathLike):
        return nbformat.read(Path(notebook), as_version=4)
    return notebook


def read_checks(notebook: nbformat.NotebookNode | str | os.PathLike) -> list[dict[str, Any]]:
    """Every grader outcome an executed notebook recorded, in order: ``check``, ``passed``, ``message``, ``cell``.

    ``cell`` is the index (in ``notebook.cells``) of the cell that showed the outcome (lesson 02).
    """
    found = []
    for index, cell in enumerate(_as_notebook(notebook).get("cells", [])):
        for payload in _payloads(cell, CHECK_MIME):
            found.append(
                {
                    "check": str(payload.get("check", "")),
                    "passed": payload.get("passed") is True,
                    "message": str(payload.get("message", "")),
                    "cell": index,
                }
            )
    return found


def read_records(notebook: nbformat.NotebookNode | str | os.PathLike) -> dict[str, RecordValue]:
    """Return the figures a notebook recorded with :func:`record`, in recording order (lesson 00).

    ``notebook`` is an executed notebook (a ``NotebookNode``) or the path of one. Later records of the same
    name replace earlier ones.
    """
    records: dict[str, RecordValue] = {}
    for cell in _as_notebook(notebook).get("cells", []):
        for payload in _payloads(cell, RECORD_MIME):
            if isinstance(payload.get("name"), str):
                records.pop(payload["name"], None)  # a re-recorded name moves to its latest position
                records[payload["name"]] = payload.get("value")
    return records
