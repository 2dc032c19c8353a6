"""Each executed notebook of a ``tlcourse run`` rendered as HTML beside it (lesson 00)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tlcourse.record import RECORD_MIME


def without_records(notebook: Any) -> Any:
    """The notebook without the outputs that carry only recorded figures (they are invisible in Jupyter too).

    nbconvert knows no way to show ``application/vnd.tlcourse.record+json`` and warns once per such output.
    """
    for cell in notebook.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = [
                out for out in cell.get("outputs", []) if set(out.get("data", {"": 0})) != {RECORD_MIME}
            ]
    return notebook


def render_notebook_html(notebook: Path) -> Path | None:
    """Render an executed notebook as ``<name>.html`` beside it with nbconvert; None when that is impossible."""
    try:
        import nbformat
        from nbconvert import HTMLExporter
    except ImportError:
        return None
    target = notebook.with_suffix(".html")
    try:
        body, _ = HTMLExporter(template_name="lab").from_notebook_node(
            without_records(nbformat.read(notebook, as_version=4))
        )
        target.write_text(body, encoding="utf-8")
    except Exception:  # noqa: BLE001 - the .ipynb stays the reference; HTML is a convenience
        return None
    return target
