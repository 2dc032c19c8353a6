"""The unfreeze explorer: a slider over a backbone's layers with a live report of what fine-tuning from that
layer would train (lesson 05; the report is :func:`tlcourse.diagnose.unfreeze_summary`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tlcourse import diagnose
from tlcourse.errors import TLCourseError
from tlcourse.widgets.display import (
    _BAR_COLOUR,
    _MUTED_COLOUR,
    _TRACK_COLOUR,
    CSS_PREFIX,
    _display_widget,
    _esc,
    _set_tooltip,
    _widget_bundle,
)


def _render_unfreeze(summary: Mapping[str, Any], table: Sequence[diagnose.UnfreezeLayer]) -> str:
    index = summary["fine_tune_from"]
    share = summary["trainable_share"]
    first = summary["first_unfrozen"]
    if first is None:
        headline = "Nothing is unfrozen: only the new head would train (feature extraction)."
    else:
        headline = (
            f"Fine-tuning from layer {index} ({_esc(summary['boundary_layer'])}): "
            f"{summary['layers_unfrozen']} layers train, the first is <code>{_esc(first)}</code>."
        )
    rows = [
        (
            "Layers unfrozen",
            f"{summary['layers_unfrozen']} of {summary['layers_total']} "
            f"({summary['layers_with_weights_unfrozen']} of them with weights)",
        ),
        ("Trainable parameters", f"{summary['trainable_params']:,} ({100 * share:.1f}% of the backbone)"),
        ("Frozen parameters", f"{summary['frozen_params']:,}"),
        (
            "BatchNorm layers kept frozen",
            f"{summary['batchnorm_kept_frozen']} ({summary['batchnorm_params_kept_frozen']:,} parameters)",
        ),
    ]
    table_html = "".join(
        f'<tr><td style="padding:2px 10px 2px 0">{label}</td><td><b>{value}</b></td></tr>'
        for label, value in rows
    )
    context = []
    for i in range(max(0, index - 3), min(len(table), index + 3)):
        info = table[i]
        state = (
            "frozen"
            if i < index or info.is_input
            else ("frozen (BatchNorm)" if info.is_batchnorm else "trainable")
        )
        colour = _BAR_COLOUR if state == "trainable" else _MUTED_COLOUR
        context.append(
            f'<tr style="color:{colour}"><td style="padding:0 8px 0 0">{i}</td>'
            f"<td><code>{_esc(info.name)}</code></td><td style='padding:0 8px'>{_esc(info.kind)}</td>"
            f"<td>{state}</td></tr>"
        )
    return (
        f'<div class="{CSS_PREFIX}-unfreeze-report" data-fine-tune-from="{index}" '
        f'data-first-unfrozen="{_esc(first or "")}" data-trainable-params="{summary["trainable_params"]}">'
        f"<div>{headline}</div>"
        f'<div style="width:300px;height:10px;background:{_TRACK_COLOUR};border-radius:3px;margin:6px 0">'
        f'<div style="height:100%;width:{100 * share:.1f}%;background:{_BAR_COLOUR};border-radius:3px"></div></div>'
        f"<table>{table_html}</table>"
        f'<div style="margin-top:6px">Around the boundary:</div><table style="font-size:90%">{"".join(context)}</table>'
        "</div>"
    )


class UnfreezeExplorer:
    """Slider over a backbone's layers with a live report of what would train (lesson 05).

    Attributes: ``widget`` (the ``VBox`` to display), ``slider`` (``IntSlider``, 0 ... number of layers),
    ``report`` (``HTML``). :meth:`summary` gives :func:`tlcourse.diagnose.unfreeze_summary` at the slider's position. The
    backbone is never modified.
    """

    def __init__(self, backbone: Any, *, start: int | str | None = None) -> None:
        import ipywidgets as widgets

        self.backbone = backbone
        self._table, self._sizes, self._total = diagnose.unfreeze_table(backbone)
        count = len(self._table)
        index = (
            diagnose.resolve_unfreeze_index(backbone, start)
            if start is not None
            else _default_start(backbone, count)
        )
        self.slider = widgets.IntSlider(
            value=index, min=0, max=count, step=1, description="Unfreeze from", continuous_update=True
        )
        self.report = widgets.HTML()
        self.widget = widgets.VBox([self.slider, self.report])
        _set_tooltip(self.slider, "First layer to unfreeze (layers below it stay frozen)")
        for widget, css in (
            (self.slider, "unfreeze-slider"),
            (self.report, "unfreeze-report"),
            (self.widget, "unfreeze-explorer"),
        ):
            widget.add_class(f"{CSS_PREFIX}-{css}")
        self.slider.observe(self._on_change, names="value")
        self._refresh()

    def summary(self) -> dict[str, Any]:
        """:func:`tlcourse.diagnose.unfreeze_summary` for the slider's current position."""
        return diagnose.summarise_unfreeze(self._table, self._sizes, self._total, int(self.slider.value))

    def _on_change(self, _change: Any = None) -> None:
        self._refresh()

    def _refresh(self) -> None:
        self.report.value = _render_unfreeze(self.summary(), self._table)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _widget_bundle(self, **kwargs)

    def _ipython_display_(self) -> None:
        _display_widget(self)

    def __repr__(self) -> str:
        return f"UnfreezeExplorer({self.backbone.name!r}, fine_tune_from={self.slider.value})"


def _default_start(backbone: Any, count: int) -> int:
    """The registry's default unfreeze point for a known backbone, else three quarters of the way up."""
    try:
        from tlcourse import models

        spec = models.spec_of(backbone)
        if spec is not None:
            return diagnose.resolve_unfreeze_index(backbone, spec.default_unfreeze_from)
    except TLCourseError:
        pass
    return (3 * count) // 4


def unfreeze_explorer(backbone: Any, *, start: int | str | None = None) -> UnfreezeExplorer:
    """A slider over the unfreeze point of ``backbone`` with a live trainable-parameter report (lesson 05).

    ``start`` (index or layer/block name) sets the slider's first position; by default the backbone's
    registered unfreeze point (``block_13_expand`` for MobileNetV2). End a cell with the explorer to show it.
    """
    return UnfreezeExplorer(backbone, start=start)
