"""The HTML a run writes beside each executed notebook (lesson 00)."""

from __future__ import annotations

import warnings

import nbformat

from tlcourse.cli.rendering import render_notebook_html
from tlcourse.record import RECORD_MIME


def test_rendering_drops_recorded_figures_silently_and_keeps_what_the_reader_sees(tmp_path):
    cell = nbformat.v4.new_code_cell("record.record('x', 1)\nprint('hello')")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={RECORD_MIME: {"name": "x", "value": 1}}),
        nbformat.v4.new_output("stream", name="stdout", text="hello reader\n"),
    ]
    path = tmp_path / "lesson.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nbconvert warns for an output it cannot show
        html = render_notebook_html(path)
    assert html is not None and "hello reader" in html.read_text(encoding="utf-8")
