"""What the widgets share: CSS names, colours, escaping and showing a widget in ipywidgets 7 and 8."""

from __future__ import annotations

import html
from typing import Any

CSS_PREFIX = "tlcourse"

# Colours come from JupyterLab's theme variables, so the widgets follow the light and the dark theme with the
# contrast JupyterLab's own text has (WCAG AA, checked with axe in tests/test_browser.py). The fallbacks, for
# front ends without those variables (Colab, classic Notebook), pass AA on a white page.
_MUTED_COLOUR = "var(--jp-ui-font-color2, #555555)"
_BAR_COLOUR = "var(--jp-brand-color1, #1565c0)"
_ERROR_COLOUR = "var(--jp-error-color1, #b00020)"
_TRACK_COLOUR = "var(--jp-layout-color3, #e0e0e0)"
_BORDER_COLOUR = "var(--jp-border-color2, #d0d0d0)"

LIVE_REGION = 'role="status" aria-live="polite"'
"""Attributes of an element whose changes a screen reader announces without moving the reader's focus."""


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
