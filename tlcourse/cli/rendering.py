"""Each executed notebook of a ``tlcourse run`` rendered as HTML beside it (lesson 00)."""

from __future__ import annotations

from pathlib import Path


def render_notebook_html(notebook: Path) -> Path | None:
    """Render an executed notebook as ``<name>.html`` beside it with nbconvert; None when that is impossible."""
    try:
        import nbformat
        from nbconvert import HTMLExporter
    except ImportError:
        return None
    target = notebook.with_suffix(".html")
    try:
        body, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(notebook, as_version=4))
        target.write_text(body, encoding="utf-8")
    except Exception:  # noqa: BLE001 - the .ipynb stays the reference; HTML is a convenience
        return None
    return target
