"""Figures for the lessons: learning curves, predictions, confusion matrix, Grad-CAM, filters (lessons 03-08).

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show()``: a notebook shows
the returned figure by itself, a script saves it with ``fig.savefig(...)``. Functions that draw one panel
accept ``ax=`` to draw into an existing axis. Images are expected as this course's datasets yield them
(float32 in [0, 255], ``[H, W, 3]``); uint8 and [0, 1] floats are shown correctly too.

Figures are built with :class:`matplotlib.figure.Figure` directly (not ``pyplot``), so no global figure
state piles up when a notebook draws many of them in a loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse.backend import leaf_layers

__all__ = [
    "accuracy_vs_time",
    "calibration",
    "confusion_matrix",
    "feature_maps",
    "filters",
    "grad_cam_overlay",
    "learning_curves",
    "prediction_grid",
    "reliability_diagram",
    "save_figure",
    "top_losses",
    "top_losses_gallery",
]

_RIGHT = "tab:green"
_WRONG = "tab:red"
_HISTORY_BOOKKEEPING = ("epoch", "phase", "phase_starts")


def _figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def save_figure(fig: Any, path: str | Path, *, dpi: int = 100) -> Path:
    """Write a figure from this module as a PNG (or any format matplotlib knows from the suffix); return the path.

    ``tlcourse train`` saves its learning curves and confusion matrix this way (lesson 08).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=dpi)
    return target


def _axis(ax: Any | None, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """``(figure, axis)``: the given axis and its figure, or a new figure with one axis."""
    if ax is not None:
        return ax.figure, ax
    fig = _figure(figsize)
    return fig, fig.add_subplot(1, 1, 1)


def _grid(n: int, ncols: int | None, cell: float = 2.0) -> tuple[Any, list[Any]]:
    """A figure with exactly ``n`` image axes on a grid (no empty leftover axes)."""
    n = max(1, n)
    cols = max(1, min(ncols or math.ceil(math.sqrt(n)), n))
    rows = math.ceil(n / cols)
    fig = _figure((cell * cols, cell * rows + 0.3))
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def _displayable(image: Any) -> np.ndarray:
    """An image ready for ``imshow``: uint8 HxWx3 (or HxW), from [0, 255] floats, [0, 1] floats or uint8."""
    array = np.asarray(image)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.uint8:
        return array
    array = array.astype("float64")
    if array.size and np.nanmax(array) <= 1.0 and np.nanmin(array) >= 0.0:
        array = array * 255.0
    return np.clip(array, 0, 255).astype("uint8")


def _probabilities(probs: Any) -> np.ndarray:
    from tlcourse.evaluate import to_probabilities

    return to_probabilities(probs)


# ------------------------------------------------------------------------------------ learning curves


def learning_curves(
    history: Any,
    phase_starts: int | Sequence[int] | None = None,
    *,
    metrics: Sequence[str] | None = None,
    phase_names: Sequence[str] | None = None,
    ax: Any | None = None,
    figsize: tuple[float, float] | None = None,
) -> Any:
    """Training and validation curves of all phases on one epoch axis (lessons 04-05).

    ``history`` is a ``keras.callbacks.History``, its ``.history`` dict, or the dict from
    :func:`tlcourse.train.merge_histories` (whose ``"epoch"`` and ``"phase_starts"`` are used). One panel per
    metric (``loss``, ``accuracy``, ...; ``metrics`` picks them), training solid and validation dashed. A
    dotted vertical line marks where each later phase (fine-tuning) starts; ``phase_starts`` (1-based epoch
    numbers, or one int for the fine-tuning start) overrides what the history says. With ``ax`` every
    chosen metric is drawn on that one axis.
    """
    data = dict(getattr(history, "history", history) or {})
    if phase_starts is None:
        phase_starts = data.get("phase_starts")
    starts = [int(phase_starts)] if isinstance(phase_starts, (int, np.integer)) else list(phase_starts or [])
    series = {k: np.asarray(v, dtype="float64") for k, v in data.items() if k not in _HISTORY_BOOKKEEPING}
    if not series:
        raise ValueError("The history has no metrics to plot; pass History.history or merge_histories(...).")
    length = max(len(v) for v in series.values())
    epochs = np.asarray(data.get("epoch") or range(1, length + 1), dtype="float64")
    if metrics is None:
        metrics = [k for k in series if not k.startswith("val_")]
        metrics += [k[4:] for k in series if k.startswith("val_") and k[4:] not in metrics]
        metrics.sort(key=lambda m: (m != "loss", m))
    metrics = [m for m in metrics if m in series or f"val_{m}" in series]
    if not metrics:
        raise ValueError(f"None of the requested metrics are in the history (it has {sorted(series)}).")
    names = list(phase_names or data.get("phase") and _unique(data["phase"]) or [])

    if ax is not None:
        fig, axes = ax.figure, [ax] * len(metrics)
    else:
        fig = _figure(figsize or (5.0 * len(metrics), 3.6))
        axes = [fig.add_subplot(1, len(metrics), i + 1) for i in range(len(metrics))]
    for axis, metric in zip(axes, metrics, strict=True):
        for key, style, label in ((metric, "-", "training"), (f"val_{metric}", "--", "validation")):
            if key in series:
                values = series[key]
                axis.plot(
                    epochs[: len(values)],
                    values,
                    style,
                    marker="o",
                    markersize=3,
                    label=f"{label} {metric}" if ax is not None else label,
                )
        for i, start in enumerate(starts):
            if start <= 1:
                continue
            phase = names[i] if i < len(names) else "fine-tuning"
            axis.axvline(start - 0.5, color="grey", linestyle=":", label=f"{phase} starts")
        axis.set_xlabel("epoch")
        if ax is None:
            axis.set_ylabel(metric)
            axis.set_title(metric)
        axis.grid(alpha=0.3)
    if ax is None:
        for axis in axes:
            axis.legend(fontsize="small")
    else:
        ax.legend(fontsize="small")
    return fig


def _unique(values: Sequence[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen


# ------------------------------------------------------------------------------------ prediction grids


def prediction_grid(
    images: Any,
    y_true: Any,
    probs: Any,
    class_names: Sequence[str],
    *,
    max_images: int = 16,
    ncols: int | None = None,
    indices: Sequence[int] | None = None,
) -> Any:
    """Images titled with prediction, confidence and truth; green when right, red when wrong (lesson 04).

    ``probs`` is ``[N, K]`` logits or probabilities. Shows the first ``max_images`` images, or those at
    ``indices``; the figure has one axis per image shown.
    """
    images = np.asarray(images)
    labels = np.asarray(y_true).reshape(-1)
    p = _probabilities(probs)
    chosen = list(indices) if indices is not None else list(range(min(len(images), max_images)))
    fig, axes = _grid(len(chosen), ncols)
    for axis, i in zip(axes, chosen, strict=False):
        predicted = int(p[i].argmax())
        truth = int(labels[i])
        axis.imshow(_displayable(images[i]))
        colour = _RIGHT if predicted == truth else _WRONG
        axis.set_title(
            f"{class_names[predicted]} {p[i, predicted]:.0%}\n(true: {class_names[truth]})",
            color=colour,
            fontsize="small",
        )
        for spine in axis.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(2)
    return fig


def top_losses(
    images: Any,
    y_true: Any,
    probs: Any,
    class_names: Sequence[str],
    k: int = 9,
    *,
    ncols: int | None = None,
) -> Any:
    """Gallery of the ``k`` examples with the highest loss, worst first (lesson 06).

    Each title gives predicted class / true class / loss / probability of the true class, which is how
    mislabelled or ambiguous images show up.
    """
    from tlcourse import evaluate

    p = _probabilities(probs)
    labels = np.asarray(y_true).reshape(-1)
    order = evaluate.top_losses(labels, p, k)
    losses = evaluate.per_example_loss(labels, p)
    images = np.asarray(images)
    fig, axes = _grid(len(order), ncols)
    for axis, i in zip(axes, order, strict=False):
        predicted, truth = int(p[i].argmax()), int(labels[i])
        axis.imshow(_displayable(images[i]))
        axis.set_title(
            f"{class_names[predicted]} / {class_names[truth]}\nloss {losses[i]:.2f}, p(true) {p[i, truth]:.2f}",
            color=_RIGHT if predicted == truth else _WRONG,
            fontsize="small",
        )
    fig.suptitle("top losses: predicted / true", fontsize="medium")
    return fig


top_losses_gallery = top_losses


# ----------------------------------------------------------------------------------- confusion matrix


def confusion_matrix(
    cm: Any,
    class_names: Sequence[str],
    *,
    normalize: str | None = None,
    ax: Any | None = None,
    cmap: str = "Blues",
    colorbar: bool = False,
) -> Any:
    """Confusion matrix as a heat map with a number in every cell (lesson 06).

    ``cm`` is the ``[K, K]`` count matrix (rows = true class), e.g. ``classification_metrics(...)
    ["confusion_matrix"]``. ``normalize``: ``None`` (counts), ``"true"`` (each row sums to 1: recall on the
    diagonal), ``"pred"`` (each column sums to 1: precision on the diagonal) or ``"all"``.
    """
    counts = np.asarray(cm, dtype="float64")
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] != len(class_names):
        raise ValueError(f"cm must be {len(class_names)}x{len(class_names)}, got shape {counts.shape}.")
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError("normalize must be None, 'true', 'pred' or 'all'.")
    values = counts
    if normalize == "true":
        values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    elif normalize == "pred":
        values = counts / np.maximum(counts.sum(axis=0, keepdims=True), 1)
    elif normalize == "all":
        values = counts / max(counts.sum(), 1)
    k = len(class_names)
    fig, axis = _axis(ax, (1.0 + 0.7 * k, 0.8 + 0.7 * k))
    image = axis.imshow(values, cmap=cmap, vmin=0, vmax=1 if normalize else max(values.max(), 1))
    threshold = (1 if normalize else max(values.max(), 1)) / 2
    for r in range(k):
        for c in range(k):
            text = f"{values[r, c]:.2f}" if normalize else f"{int(values[r, c])}"
            axis.text(
                c,
                r,
                text,
                ha="center",
                va="center",
                fontsize="small",
                color="white" if values[r, c] > threshold else "black",
            )
    axis.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right")
    axis.set_yticks(range(k), labels=list(class_names))
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title("confusion matrix" + (f" (normalised over {normalize})" if normalize else ""))
    if colorbar:
        fig.colorbar(image, ax=axis)
    return fig


# ----------------------------------------------------------------------------------------- Grad-CAM


def _resize_map(heatmap: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if heatmap.shape == (height, width):
        return heatmap
    image = Image.fromarray(np.ascontiguousarray(heatmap, dtype="float32"))  # mode "F"
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))


def grad_cam_overlay(
    image: Any,
    heatmap: Any,
    *,
    alpha: float = 0.45,
    cmap: str = "jet",
    ax: Any | None = None,
    title: str | None = None,
) -> Any:
    """Grad-CAM heat map laid over its image (lesson 06).

    Without ``ax`` the figure has two panels (the image, then the overlay); with ``ax`` only the overlay is
    drawn there. ``heatmap`` is :func:`tlcourse.evaluate.grad_cam`'s ``[h, w]`` map in [0, 1]; it is
    resized to the image when the sizes differ.
    """
    picture = _displayable(image)
    heat = np.asarray(heatmap, dtype="float32")
    heat = _resize_map(heat, picture.shape[0], picture.shape[1])
    if ax is None:
        fig = _figure((6.0, 3.2))
        left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        left.imshow(picture)
        left.set_title("image")
        left.axis("off")
    else:
        fig, right = ax.figure, ax
    right.imshow(picture)
    right.imshow(heat, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
    right.set_title(title or "Grad-CAM")
    right.axis("off")
    return fig


# -------------------------------------------------------------------------------- filters and features


def _kernel(conv: Any) -> np.ndarray:
    """The ``[kh, kw, in, out]`` kernel from an array, a Conv2D layer or a model's first Conv2D."""
    if hasattr(conv, "layers"):
        for layer in leaf_layers(conv):
            kernel = getattr(layer, "kernel", None)
            if kernel is not None and len(kernel.shape) == 4:
                return np.asarray(kernel)
        raise ValueError(f"No convolution layer with a 4-D kernel in {conv.name!r}.")
    kernel = getattr(conv, "kernel", conv)
    return np.asarray(kernel)


def filters(conv_kernel: Any, *, max_filters: int = 32, ncols: int = 8) -> Any:
    """The first convolution's filters as small RGB tiles (lesson 03).

    ``conv_kernel`` is a ``[kh, kw, 3, out]`` kernel array, a Conv2D layer, or a model (its first Conv2D,
    searched inside nested models, is used). Each filter is min-max scaled on its own, so the tile shows its
    colour and edge pattern rather than its strength. Kernels with other than 3 input channels are shown
    per filter as the grey-scale mean over input channels. One axis per filter shown.
    """
    kernel = _kernel(conv_kernel).astype("float64")
    if kernel.ndim != 4:
        raise ValueError(f"Expected a [kh, kw, in, out] kernel, got shape {kernel.shape}.")
    count = min(kernel.shape[-1], max_filters)
    fig, axes = _grid(count, min(ncols, count), cell=1.0)
    for i, axis in enumerate(axes):
        tile = kernel[..., i]
        if tile.shape[-1] != 3:
            tile = tile.mean(axis=-1)
        low, high = tile.min(), tile.max()
        tile = (tile - low) / (high - low) if high > low else np.zeros_like(tile)
        axis.imshow(tile, cmap=None if tile.ndim == 3 else "gray", interpolation="nearest")
        axis.set_title(str(i), fontsize="x-small")
    fig.suptitle(
        f"{count} of {kernel.shape[-1]} filters ({kernel.shape[0]}x{kernel.shape[1]})", fontsize="small"
    )
    return fig


def feature_maps(
    activation: Any,
    n: int = 16,
    *,
    ncols: int = 8,
    strongest: bool = False,
    cmap: str = "viridis",
) -> Any:
    """The first ``n`` channels of one image's activation ``[H, W, C]`` (or ``[1, H, W, C]``) (lesson 03).

    ``strongest=True`` shows the ``n`` channels with the largest mean activation instead of the first ones.
    One axis per channel shown, titled with its channel number.
    """
    maps = np.asarray(activation, dtype="float64")
    if maps.ndim == 4 and maps.shape[0] == 1:
        maps = maps[0]
    if maps.ndim != 3:
        raise ValueError(f"Expected an activation [H, W, C] for one image, got shape {maps.shape}.")
    channels = maps.shape[-1]
    count = min(n, channels)
    order = np.argsort(-maps.mean(axis=(0, 1)), kind="stable")[:count] if strongest else np.arange(count)
    fig, axes = _grid(count, min(ncols, count), cell=1.3)
    for axis, channel in zip(axes, order, strict=True):
        axis.imshow(maps[..., channel], cmap=cmap)
        axis.set_title(f"#{int(channel)}", fontsize="x-small")
    fig.suptitle(f"{count} of {channels} feature maps ({maps.shape[0]}x{maps.shape[1]})", fontsize="small")
    return fig


# -------------------------------------------------------------------------------------- calibration


def reliability_diagram(
    result: Mapping[str, Any] | None = None,
    *,
    y_true: Any | None = None,
    probs: Any | None = None,
    bins: int = 10,
    ax: Any | None = None,
) -> Any:
    """Reliability diagram: accuracy against confidence per bin, with the diagonal of perfect calibration.

    ``result`` is :func:`tlcourse.evaluate.calibration`'s dict (or pass ``y_true`` and ``probs`` and it is
    computed). Bars show each bin's accuracy, red marks the gap to its mean confidence; the title gives the
    ECE (lesson 06).
    """
    if result is None:
        if y_true is None or probs is None:
            raise ValueError("Pass calibration(...)'s result, or y_true and probs.")
        from tlcourse.evaluate import calibration as compute

        result = compute(y_true, probs, bins=bins)
    fig, axis = _axis(ax, (4.2, 4.0))
    rows = [row for row in result["bins"] if row["count"]]
    width = result["bins"][0]["upper"] - result["bins"][0]["lower"] if result["bins"] else 0.1
    centres = [(row["lower"] + row["upper"]) / 2 for row in rows]
    axis.bar(
        centres,
        [row["accuracy"] for row in rows],
        width=width * 0.95,
        color="tab:blue",
        edgecolor="black",
        label="accuracy",
    )
    axis.bar(
        centres,
        [row["confidence"] - row["accuracy"] for row in rows],
        bottom=[row["accuracy"] for row in rows],
        width=width * 0.95,
        color="tab:red",
        alpha=0.35,
        label="gap to confidence",
    )
    axis.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("confidence")
    axis.set_ylabel("accuracy")
    axis.set_title(f"reliability (ECE {result['ece']:.3f})")
    axis.legend(fontsize="small", loc="upper left")
    return fig


calibration = reliability_diagram


# ------------------------------------------------------------------------------------ strategy harness


def accuracy_vs_time(
    results: Any,
    *,
    x: str | None = None,
    y: str = "val_accuracy",
    label: str = "strategy",
    ax: Any | None = None,
    log_time: bool = False,
) -> Any:
    """Scatter of validation accuracy against training time, one labelled point per strategy (lesson 05).

    ``results`` is :func:`tlcourse.strategies.compare_strategies`'s table (a DataFrame, or a list of dicts) with
    columns ``strategy``, ``val_accuracy`` and ``seconds`` (``train_seconds`` is used when there is no
    ``seconds``). Rows with a missing accuracy (a strategy that could not run) are left out and named in
    the title.
    """
    import pandas as pd

    table = results if isinstance(results, pd.DataFrame) else pd.DataFrame(list(results))
    if x is None:
        x = next((c for c in ("seconds", "train_seconds", "time") if c in table.columns), None)
    if x is None or x not in table.columns or y not in table.columns:
        raise ValueError(f"Need columns for time and {y!r}; the table has {list(table.columns)}.")
    usable = table[table[y].notna() & table[x].notna()]
    skipped = [str(v) for v in table.loc[~table.index.isin(usable.index), label]] if label in table else []
    fig, axis = _axis(ax, (5.5, 4.0))
    axis.scatter(usable[x].astype(float), usable[y].astype(float), s=40, zorder=3)
    for _, row in usable.iterrows():
        axis.annotate(
            str(row.get(label, "")),
            (float(row[x]), float(row[y])),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize="small",
        )
    if log_time:
        axis.set_xscale("log")
    axis.set_xlabel(f"{x} (s)" if "second" in x else x)
    axis.set_ylabel(y)
    axis.grid(alpha=0.3)
    axis.set_title("accuracy vs time" + (f" (not run: {', '.join(skipped)})" if skipped else ""))
    return fig
