"""What the widgets share: CSS names, colours, escaping and showing a widget in ipywidgets 7 and 8."""

from __future__ import annotations

import html
from typing import Any

CSS_PREFIX = "tlcourse"


_BAR_COLOUR = "#4c8bf5"


_ERROR_COLOUR = "#b00020"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _widget_bundle(owner: Any, **kwargs: Any) -> dict[str, Any] | None:
    """The widget's display bundle (ipywidgets 8) with ``repr(owner)`` as its short plain-text form."""
    make = getattr(owner.widget, "_repr_mimebundle_", None)
    bundle = make(**kwargs) if make is not None else None
    if bundle:
        bundle = {**bundle, "text/plain": repr(owner)}
    return bundle


def _display_widget(owner: Any) -> None:
    """Show ``owner.widget``: from its bundle in ipywidgets 8, by ``display(widget)`` in ipywidgets 7."""
    from IPython.display import display

    bundle = _widget_bundle(owner)
    if bundle and "application/vnd.jupyter.widget-view+json" in bundle:
        display(bundle, raw=True)
    else:
        display(owner.widget)


def _set_tooltip(widget: Any, text: str) -> None:
    """``tooltip`` in ipywidgets 8, ``description_tooltip`` in 7."""
    for trait in ("tooltip", "description_tooltip"):
        if widget.has_trait(trait):
            setattr(widget, trait, text)
            return
