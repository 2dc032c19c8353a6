"""Every piece of HTML the course's widgets show, rendered from made-up results (no model, no kernel), for the
colour and accessibility checks of tests/test_widgets.py and tests/test_browser.py."""

from __future__ import annotations

from tlcourse import diagnose, thresholds
from tlcourse.widgets import predictor, threshold, unfreeze

FAKE_THUMBNAIL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"


def _unfreeze_report() -> str:
    table = [
        diagnose.UnfreezeLayer(f"block_{i}_{kind}", kind, i == 0, kind == "BatchNormalization", (i,))
        for i, kind in enumerate(["InputLayer", "Conv2D", "BatchNormalization", "ReLU", "Conv2D", "Dense"])
    ]
    summary = {
        "fine_tune_from": 3, "trainable_share": 0.4, "first_unfrozen": "block_3_ReLU", "boundary_layer": "block_3",
        "layers_unfrozen": 3, "layers_total": 6, "layers_with_weights_unfrozen": 2, "trainable_params": 1200,
        "frozen_params": 1800, "batchnorm_kept_frozen": 1, "batchnorm_params_kept_frozen": 64,
    }  # fmt: skip
    return unfreeze._render_unfreeze(summary, table)


def widget_html() -> dict[str, str]:
    """name -> the HTML one state of a widget shows."""
    results = [
        {"name": "daisy.jpg", "top": [("daisy", 0.81), ("tulips", 0.12), ("roses", 0.07)]},
        {
            "name": "notes.jpg",
            "error": "not an image",
            "reason": "not an image (looks like text)",
            "advice": None,
        },
        {"name": "IMG_7.heic", "error": "x", "reason": "unsupported format (AVIF)", "advice": "Convert it."},
    ]
    return {
        "predictions": predictor.render_results(results, {0: FAKE_THUMBNAIL}),
        "empty": predictor.render_results([]),
        "unfreeze": _unfreeze_report(),
        "threshold": threshold._render_threshold(
            thresholds.at_threshold([0, 1, 1, 0], [0.2, 0.9, 0.4, 0.6], 0.5)
        ),
    }
