"""Record named figures from a notebook so ``tlcourse run`` can put them in its report (lesson 00).

A notebook calls :func:`record` for the few numbers worth comparing across runs, e.g.
``record("val_accuracy", history.history["val_accuracy"][-1])``. Inside a Jupyter kernel the figure is
a display output carrying only a course-specific MIME type: no front end has a renderer for it, so the student
sees nothing, but it is saved in the executed ``.ipynb`` and :func:`read_records` reads it back (that is how
``tlcourse run`` collects every figure). In plain Python a readable line is printed instead. Nothing else is
stored anywhere, so a notebook that records is still an ordinary notebook.

:func:`expect` records a figure and checks it against the band the prose promises for one profile, e.g.
``record.expect("head_test_accuracy", accuracy, run, cpu=(0.75, 0.97))``: one line after the teaching code,
asserting only where the run is real (``run``: a :class:`Run`, the profile with real weights and data), so a
lesson needs no ``if profile.name == ...`` guard. ``tools/figures.py`` writes the prose's figures from a
recorded cpu run.

Graders record their outcome the same way (:func:`record_check`, called by
:meth:`tlcourse.checks.CheckResult.assert_passed`), under their own MIME type, and :func:`read_checks` reads
them back with the index of the cell that showed them: that is how ``tlcourse grade`` scores a notebook.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or "\n" in name:
        raise TLCourseError(f"record() needs a one-line, non-empty name, got {name!r}.")
    return name.strip()


def _emit(payload: dict[str, Any], text: str) -> None:
    """Store ``payload`` in the cell's output, invisibly (a kernel), or print ``text`` (plain Python)."""
    if _shell() is None:
        print(text)
        return
    from IPython.display import display

    # Only the course's MIME type: no front end renders it (JupyterLab, nbconvert and Colab show nothing),
    # and the executed notebook keeps it for read_records.
    display({RECORD_MIME: payload}, raw=True)


def record(name: str, value: Any) -> None:
    """Record a named figure (number, string or bool) for the batch report of ``tlcourse run`` (lesson 00).

    Inside a notebook the figure is stored in the cell's output without showing anything; outside a kernel
    ``recorded NAME = VALUE`` is printed. Recording the same name twice keeps the last value.
    """
    name = _checked_name(name)
    plain = _plain_value(name, value)
    _emit({"name": name, "value": plain}, f"recorded {name} = {format_value(plain)}")


@dataclass(frozen=True)
class Run:
    """Which kind of run a notebook is (lesson 00): the profile's name, and whether its figures are real.

    ``real`` is True when the run uses the pretrained weights and the real data it was written for (not random
    weights or generated stand-ins): only then can a figure be held to the band the prose states.
    """

    profile: str
    real: bool = True


class FigureOutOfBand(TLCourseError, AssertionError):
    """Raised by :func:`expect` when a real run's figure falls outside the band given for its profile."""


Band = tuple[float, float]


def expect(
    name: str,
    value: Any,
    run: Run,
    *,
    cpu: Band | None = None,
    gpu: Band | None = None,
    smoke: Band | None = None,
) -> None:
    """Record ``value`` under ``name`` and, where the run is real, check it lies in its profile's band (lesson 00).

    ``cpu=(low, high)`` (and ``gpu=``, ``smoke=``) is the inclusive range the prose promises for that profile;
    ``None`` on either side leaves that side open. The check runs only when ``run.real`` and a band is given
    for ``run.profile``; elsewhere the figure is just recorded. Outside the band it raises
    :class:`FigureOutOfBand` naming the figure, its value and the band. The band travels with the record, so
    ``tools/figures.py`` can report it.
    """
    name = _checked_name(name)
    plain = _plain_value(name, value)
    bands = {"cpu": cpu, "gpu": gpu, "smoke": smoke}
    band = bands.get(run.profile)
    payload: dict[str, Any] = {"name": name, "value": plain, "profile": run.profile, "real": bool(run.real)}
    if band is not None:
        payload["band"] = [band[0], band[1]]
    _emit(payload, f"recorded {name} = {format_value(plain)}")
    if band is None or not run.real:
        return
    low, high = band
    number = plain if isinstance(plain, int | float) and not isinstance(plain, bool) else None
    if number is None or (low is not None and number < low) or (high is not None and number > high):
        shown = " to ".join("open" if v is None else format_value(v) for v in (low, high))
        raise FigureOutOfBand(
            f"{name} = {format_value(plain)} is outside the {run.profile} profile's expected range {shown}. "
            "The text around this cell states that range: if the change is real, measure again and update both."
        )


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


def read_bands(notebook: nbformat.NotebookNode | str | os.PathLike) -> dict[str, list[float | None]]:
    """The bands a notebook's :func:`expect` calls checked its figures against, by name (lesson 00).

    Only figures recorded with a band for the run's profile appear; ``tools/figures.py`` writes them into
    prose such as "the cell asserts 0.75 to 0.97".
    """
    bands: dict[str, list[float | None]] = {}
    for cell in _as_notebook(notebook).get("cells", []):
        for payload in _payloads(cell, RECORD_MIME):
            band = payload.get("band")
            if isinstance(payload.get("name"), str) and isinstance(band, list) and len(band) == 2:
                bands[payload["name"]] = list(band)
    return bands
