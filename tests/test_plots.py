"""tlcourse.plots: every figure function returns a Figure with the expected axes and artists (Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from tlcourse import evaluate, plots  # noqa: E402

NAMES = ["ant", "bee", "cat"]


@pytest.fixture(autouse=True)
def no_pyplot_figures_left_behind():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before, "a plot function opened a pyplot figure (it should build a Figure)"


def _images(n: int = 6, size: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (n, size, size, 3)).astype("float32")


def _vlines(ax) -> list[Line2D]:
    """Vertical lines (both x the same) drawn on an axis."""
    return [line for line in ax.get_lines() if len(set(np.asarray(line.get_xdata(), dtype=float))) == 1]


def test_learning_curves_draw_both_phases_on_one_axis_with_a_fine_tuning_marker():
    merged = {
        "loss": [1.0, 0.8, 0.6, 0.5, 0.4],
        "val_loss": [1.1, 0.9, 0.7, 0.65, 0.6],
        "accuracy": [0.5, 0.6, 0.7, 0.8, 0.85],
        "val_accuracy": [0.45, 0.55, 0.65, 0.7, 0.72],
        "epoch": [1, 2, 3, 4, 5],
        "phase": ["head", "head", "head", "fine_tune", "fine_tune"],
        "phase_starts": [1, 4],
    }
    fig = plots.learning_curves(merged)
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    for ax in fig.axes:
        curves = [line for line in ax.get_lines() if line not in _vlines(ax)]
        assert len(curves) == 2  # training and validation
        assert list(curves[0].get_xdata()) == [1, 2, 3, 4, 5]  # both phases on one epoch axis
        marks = _vlines(ax)
        assert len(marks) == 1 and marks[0].get_xdata()[0] == pytest.approx(3.5)
        assert "fine_tune starts" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_learning_curves_take_a_keras_history_and_an_explicit_phase_start():
    class FakeHistory:  # the shape of keras.callbacks.History
        history = {"loss": [3.0, 2.0, 1.0, 0.5], "val_loss": [3.1, 2.2, 1.5, 1.0]}

    fig = plots.learning_curves(FakeHistory(), phase_starts=3)
    assert len(fig.axes) == 1
    marks = _vlines(fig.axes[0])
    assert len(marks) == 1 and marks[0].get_xdata()[0] == pytest.approx(2.5)
    no_marker = plots.learning_curves(FakeHistory())
    assert _vlines(no_marker.axes[0]) == []


def test_learning_curves_draw_into_a_given_axis():
    fig = Figure()
    ax = fig.add_subplot()
    returned = plots.learning_curves({"loss": [1, 0.5], "accuracy": [0.2, 0.6]}, ax=ax)
    assert returned is fig and len(fig.axes) == 1 and len(ax.get_lines()) == 2


def test_prediction_grid_colours_right_and_wrong_titles():
    y = np.array([0, 1, 2, 0, 1])
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])
    fig = plots.prediction_grid(_images(5), y, probs, NAMES, ncols=3)
    assert isinstance(fig, Figure) and len(fig.axes) == 5
    colours = [ax.title.get_color() for ax in fig.axes]
    right = probs.argmax(1) == y
    assert [c == "tab:green" for c in colours] == right.tolist()
    assert "true: cat" in fig.axes[2].get_title() and fig.axes[2].get_title().startswith("ant")
    assert len(plots.prediction_grid(_images(6), [0] * 6, np.eye(3)[[0] * 6], NAMES, max_images=4).axes) == 4


def test_confusion_matrix_has_one_number_per_cell_and_normalises_rows():
    cm = [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    fig = plots.confusion_matrix(cm, NAMES)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9 and texts[:3] == ["2", "1", "1"]
    assert [t.get_text() for t in ax.get_xticklabels()] == NAMES
    normalised = plots.confusion_matrix(cm, NAMES, normalize="true").axes[0]
    assert [t.get_text() for t in normalised.texts][:3] == ["0.50", "0.25", "0.25"]
    assert len(plots.confusion_matrix(cm, NAMES, colorbar=True).axes) == 2
    with pytest.raises(ValueError):
        plots.confusion_matrix(cm, NAMES[:2])


def test_top_losses_gallery_shows_the_worst_examples_first():
    y = np.array([0, 1, 2, 0])
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.3, 0.3, 0.4], [0.6, 0.2, 0.2]])
    fig = plots.top_losses(_images(4), y, probs, NAMES, k=3)
    assert len(fig.axes) == 3
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("ant / bee")  # example 1: p(true) 0.05, the worst
    assert titles[1].startswith("cat / cat")  # example 2: p(true) 0.4
    assert plots.top_losses_gallery is plots.top_losses


def test_grad_cam_overlay_shows_image_and_heat_map_resized_to_the_image():
    image = _images(1, 16)[0]
    heat = np.zeros((4, 4), dtype="float32")
    heat[:, :2] = 1.0
    fig = plots.grad_cam_overlay(image, heat)
    assert len(fig.axes) == 2
    overlay = fig.axes[1].get_images()
    assert len(overlay) == 2 and overlay[1].get_array().shape == (16, 16)
    shown = np.asarray(overlay[1].get_array())
    assert shown[:, :6].mean() > shown[:, 10:].mean()
    fig = Figure()
    ax = fig.add_subplot()
    assert plots.grad_cam_overlay(image, heat, ax=ax) is fig and len(fig.axes) == 1


def test_filters_draw_one_rgb_tile_per_filter_from_a_kernel_or_a_model():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 3, 10))
    fig = plots.filters(kernel, max_filters=8, ncols=4)
    assert len(fig.axes) == 8
    tile = fig.axes[0].get_images()[0].get_array()
    assert tile.shape == (3, 3, 3) and float(np.min(tile)) == 0.0 and float(np.max(tile)) == 1.0

    import keras

    inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="first")])
    outer = keras.Sequential([keras.Input((8, 8, 3)), inner])
    assert len(plots.filters(outer).axes) == 4


def test_feature_maps_show_n_channels_or_the_strongest():
    activation = np.zeros((1, 5, 5, 6))
    activation[..., 4] = 3.0
    activation[..., 2] = 1.0
    assert len(plots.feature_maps(activation, n=4).axes) == 4
    strongest = plots.feature_maps(activation, n=2, strongest=True)
    assert [ax.get_title() for ax in strongest.axes] == ["#4", "#2"]
    assert len(plots.feature_maps(activation[0], n=50).axes) == 6


def test_reliability_diagram_has_a_bar_per_filled_bin_and_the_ece_in_its_title():
    probs = np.array([[0.95, 0.05]] * 6 + [[0.55, 0.45]] * 4)
    y = np.array([0, 0, 0, 1, 1, 1, 0, 0, 1, 1])
    result = evaluate.calibration(y, probs, bins=10)
    fig = plots.reliability_diagram(result)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * 2  # two filled bins: accuracy bar + gap bar each
    assert f"{result['ece']:.3f}" in ax.get_title()
    assert plots.calibration(y_true=y, probs=probs).axes[0].get_title() == ax.get_title()


def test_accuracy_vs_time_labels_each_strategy_and_skips_missing_accuracy():
    import pandas as pd

    table = pd.DataFrame(
        {
            "strategy": ["zero_shot", "head_only", "fine_tune", "scratch"],
            "val_accuracy": [float("nan"), 0.8, 0.9, 0.3],
            "train_seconds": [0.0, 5.0, 30.0, 60.0],
        }
    )
    fig = plots.accuracy_vs_time(table)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["head_only", "fine_tune", "scratch"]
    assert ax.collections[0].get_offsets().shape == (3, 2)
    assert "zero_shot" in ax.get_title()
    rows = [{"strategy": "a", "val_accuracy": 0.5, "seconds": 2.0}]
    assert len(plots.accuracy_vs_time(rows).axes[0].texts) == 1
