"""record() is silent in a notebook and record.expect() checks a figure only where the run is real (issue 28)."""

from __future__ import annotations

import math

import nbformat
import pytest

from tlcourse import record


@pytest.fixture
def shown(monkeypatch):
    """What record() displays in a kernel: the bundles it hands to IPython's display."""
    bundles = []
    monkeypatch.setattr(record, "_shell", lambda: object())
    monkeypatch.setattr("IPython.display.display", lambda bundle, raw=False: bundles.append(bundle))
    return bundles


def test_record_in_a_notebook_stores_the_figure_without_showing_a_line(shown, capsys):
    record.record("val_accuracy", 0.8735)
    assert shown == [
        {record.RECORD_MIME: {"name": "val_accuracy", "value": 0.8735}}
    ]  # no text/plain to render
    assert capsys.readouterr().out == ""


def _notebook_of(bundles) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("...")
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle) for bundle in bundles]
    nb.cells = [cell]
    return nb


def test_expect_records_the_value_and_its_band_for_the_runner_and_the_figures_tool(shown):
    record.expect("head_test_accuracy", 0.88, record.Run("cpu"), cpu=(0.75, 0.97), gpu=(0.85, 0.99))
    nb = _notebook_of(shown)
    assert record.read_records(nb) == {"head_test_accuracy": 0.88}
    assert record.read_bands(nb) == {"head_test_accuracy": [0.75, 0.97]}
    assert shown[0][record.RECORD_MIME]["profile"] == "cpu" and shown[0][record.RECORD_MIME]["real"] is True


@pytest.mark.parametrize("value", [0.70, 0.98, math.nan, "tied"])
def test_expect_fails_a_real_run_outside_its_profiles_band(shown, value):
    with pytest.raises(
        record.FigureOutOfBand, match=r"head_test_accuracy = .* outside the cpu profile's .*0\.75 to 0\.97"
    ):
        record.expect("head_test_accuracy", value, record.Run("cpu"), cpu=(0.75, 0.97))
    assert len(shown) == 1, "the figure is recorded before the check"


def test_expect_checks_nothing_where_the_run_is_not_real_or_no_band_is_given(shown):
    record.expect("gain_low", -0.2, record.Run("cpu", real=False), cpu=(0.0, None))  # random weights
    record.expect("gain_low", -0.2, record.Run("gpu"), cpu=(0.0, None))  # no gpu band
    record.expect("gain_low", -0.2, record.Run("smoke"), cpu=(0.0, None))
    record.expect("gain_low", 0.01, record.Run("cpu"), cpu=(0.0, None))  # an open upper end
    with pytest.raises(record.FigureOutOfBand, match="0 to open"):
        record.expect("gain_low", -0.01, record.Run("cpu"), cpu=(0.0, None))
    assert [bundle[record.RECORD_MIME]["value"] for bundle in shown] == [-0.2, -0.2, -0.2, 0.01, -0.01]
