"""The threshold explorer: a slider over a binary classifier's decision threshold with its precision, recall and
counts, live (lesson 06; the figures are :func:`tlcourse.thresholds.at_threshold`).

Where no widget can be drawn (a headless run, a notebook rendered on GitHub or by nbconvert) the display falls back
to its plain-text form: the table of :func:`tlcourse.thresholds.threshold_table` at a few thresholds, with the
slider's starting position marked.
"""

from __future__ import annotations

from typing import Any

from tlcourse import thresholds
from tlcourse.widgets.display import (
    _BAR_COLOUR,
    _TRACK_COLOUR,
    CSS_PREFIX,
    LIVE_REGION,
    _display_widget,
    _set_tooltip,
    _widget_bundle,
)


def _bar(label: str, value: float) -> str:
    width = 0.0 if value != value else 100 * value  # NaN (no positive image) draws an empty bar
    return (
        f'<tr><td style="padding:2px 10px 2px 0">{label}</td><td><b>{value:.3f}</b></td>'
        f'<td><div style="width:200px;height:10px;background:{_TRACK_COLOUR};border-radius:3px">'
        f'<div style="height:100%;width:{width:.1f}%;background:{_BAR_COLOUR};border-radius:3px"></div>'
        "</div></td></tr>"
    )


def _render_threshold(row: dict[str, Any]) -> str:
    counts = (
        f"{row['tp']} positives found, {row['fn']} missed; {row['fp']} false alarms, "
        f"{row['tn']} negatives left alone ({row['flagged']:.0%} of the images flagged)"
    )
    return (
        f'<div class="{CSS_PREFIX}-threshold-report" {LIVE_REGION} data-threshold="{row["threshold"]:.2f}" '
        f'data-precision="{row["precision"]:.4f}" data-recall="{row["recall"]:.4f}">'
        f"<div>Threshold {row['threshold']:.2f}: an image is called positive when its probability is at least "
        "that.</div>"
        f"<table>{_bar('precision', row['precision'])}{_bar('recall', row['recall'])}"
        f"{_bar('F1', row['f1'])}</table><div>{counts}</div></div>"
    )


class ThresholdExplorer:
    """Slider over a decision threshold with a live precision/recall report (lesson 06).

    Attributes: ``widget`` (the ``VBox`` to display), ``slider`` (``FloatSlider``, 0.01 ... 0.99), ``report``
    (``HTML``). :meth:`row` gives :func:`tlcourse.thresholds.at_threshold` at the slider's position.
    """

    def __init__(self, y_true: Any, scores: Any, *, start: float = 0.5) -> None:
        import ipywidgets as widgets

        self.y_true, self.scores = thresholds.as_binary(y_true, scores)
        self.start = float(start)
        self.slider = widgets.FloatSlider(
            value=self.start, min=0.01, max=0.99, step=0.01, description="Threshold", continuous_update=True
        )
        self.report = widgets.HTML()
        self.widget = widgets.VBox([self.slider, self.report])
        _set_tooltip(self.slider, "Images whose probability is at least this are called positive")
        for widget, css in (
            (self.slider, "threshold-slider"),
            (self.report, "threshold-report"),
            (self.widget, "threshold-explorer"),
        ):
            widget.add_class(f"{CSS_PREFIX}-{css}")
        self.slider.observe(self._on_change, names="value")
        self._refresh()

    def row(self) -> dict[str, Any]:
        """Precision, recall and counts at the slider's current threshold."""
        return thresholds.at_threshold(self.y_true, self.scores, float(self.slider.value))

    def _on_change(self, _change: Any = None) -> None:
        self._refresh()

    def _refresh(self) -> None:
        self.report.value = _render_threshold(self.row())

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _widget_bundle(self, **kwargs)

    def _ipython_display_(self) -> None:
        _display_widget(self)

    def __repr__(self) -> str:
        """The table a headless run shows instead of the slider."""
        values = sorted({*thresholds.DEFAULT_THRESHOLDS, round(self.start, 2)})
        rows = thresholds.threshold_table(self.y_true, self.scores, values)
        return thresholds.format_table(rows, chosen=round(self.start, 2))


def threshold_explorer(y_true: Any, scores: Any, *, start: float = 0.5) -> ThresholdExplorer:
    """A slider over the decision threshold of a binary classifier with live precision and recall (lesson 06).

    ``y_true`` holds 0/1 labels, ``scores`` the probability of the positive class (the sigmoid of the head's logit);
    ``start`` is the slider's first position. End a cell with the explorer to show it; a headless run shows the
    plain-text table of :func:`tlcourse.thresholds.threshold_table` instead.
    """
    return ThresholdExplorer(y_true, scores, start=start)
