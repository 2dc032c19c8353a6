"""The HTML a run writes beside each executed notebook (lesson 00)."""

from __future__ import annotations

import warnings

import nbformat

from tlcourse.cli.gradebook import render_sanitized
from tlcourse.cli.rendering import render_notebook_html
from tlcourse.record import RECORD_MIME


def _notebook_with_a_recorded_figure():
    cell = nbformat.v4.new_code_cell("record.record('x', 1)\nprint('hello')")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={RECORD_MIME: {"name": "x", "value": 1}}),
        nbformat.v4.new_output("stream", name="stdout", text="hello reader\n"),
    ]
    return nbformat.v4.new_notebook(cells=[cell])


def test_rendering_drops_recorded_figures_silently_and_keeps_what_the_reader_sees(tmp_path):
    path = tmp_path / "lesson.ipynb"
    nbformat.write(_notebook_with_a_recorded_figure(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nbconvert warns for an output it cannot show
        html = render_notebook_html(path)
    assert html is not None and "hello reader" in html.read_text(encoding="utf-8")


def test_a_graded_submissions_page_drops_recorded_figures_silently_and_leaves_the_notebook_whole():
    notebook = _notebook_with_a_recorded_figure()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        page = render_sanitized(notebook)
    assert page is not None and "hello reader" in page and "script-src 'none'" in page
    assert len(notebook.cells[0].outputs) == 2  # the gradebook keeps the executed notebook as it ran
