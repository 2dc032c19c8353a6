"""Executed notebooks rendered as HTML: beside each notebook of a ``tlcourse run`` (lesson 00) and in the
gradebook's pages of graded submissions."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from tlcourse.record import RECORD_MIME


def without_records(notebook: Any) -> Any:
    """A copy of the notebook without the outputs that carry only recorded figures (invisible in Jupyter too).

    nbconvert knows no way to show ``application/vnd.tlcourse.record+json`` and warns once per such output.
    """
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = [
                out for out in cell.get("outputs", []) if set(out.get("data", {"": 0})) != {RECORD_MIME}
            ]
    return notebook


def notebook_html(notebook: Any, *, sanitize: bool = False) -> str | None:
    """One HTML page of an executed notebook (nbconvert's ``lab`` template), recorded figures left out;
    ``sanitize`` escapes the notebook's own HTML, Markdown and JavaScript outputs (a student's). None when
    nbconvert is missing or fails: the .ipynb stays the reference, HTML is a convenience."""
    try:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter(template_name="lab", sanitize_html=sanitize).from_notebook_node(
            without_records(notebook)
        )
    except Exception:  # noqa: BLE001 - nbconvert missing or failing: no HTML, never a failed run
        return None
    return body


def render_notebook_html(notebook: Path) -> Path | None:
    """Render an executed notebook as ``<name>.html`` beside it; None when that is impossible."""
    import nbformat

    body = notebook_html(nbformat.read(notebook, as_version=4))
    if body is None:
        return None
    target = notebook.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target
