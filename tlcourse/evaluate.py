"""Evaluating a trained classifier: metrics, uncertainty, calibration and what the model looks at (lesson 06).

Every function here takes plain NumPy arrays (labels as class indices, one row of scores per example), so
the same code serves a notebook, the ``tlcourse train`` pipeline and the exercise checks:

- :func:`predict_dataset` runs a model over a ``tf.data`` dataset once and returns ``(y_true, probs)``;
- :func:`classification_metrics` gives accuracy, per-class precision/recall/F1, averages and the confusion
  matrix (scikit-learn underneath);
- :func:`bootstrap_interval` puts a percentile-bootstrap interval around accuracy or macro F1, which matters
  on the small validation sets students have;
- :func:`calibration` measures whether the model's confidence can be trusted (ECE, MCE, reliability table);
- :func:`top_losses` finds the examples the model gets most confidently wrong;
- :func:`grad_cam` shows which part of an image drove a prediction, also when the last convolution sits
  inside a nested backbone model;
- :func:`evaluation_summary` does all of it in one call and returns a JSON-ready dict (lesson 08).

Models in this course output **logits**. Functions that need probabilities accept logits or probabilities:
``from_logits=None`` (the default) treats rows that are non-negative and sum to 1 as probabilities and
applies a softmax to anything else; pass ``True``/``False`` to decide explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from tlcourse import kerasprivate
from tlcourse.backbones import base_of
from tlcourse.backend import is_container, output_rank
from tlcourse.config import quiet_tensorflow
from tlcourse.errors import TLCourseError

__all__ = [
    "accuracy_interval",
    "bootstrap_interval",
    "calibration",
    "classification_metrics",
    "evaluation_summary",
    "grad_cam",
    "last_conv_layer",
    "paired_bootstrap",
    "per_example_loss",
    "predict_dataset",
    "to_probabilities",
    "top_losses",
]

_EPS = 1e-12


# --------------------------------------------------------------------------------------- probabilities


def to_probabilities(scores: Any, from_logits: bool | None = None) -> np.ndarray:
    """Turn model outputs into a ``[N, K]`` array of class probabilities (lesson 06).

    ``scores`` is ``[N, K]`` (multi-class) or ``[N]`` / ``[N, 1]`` (binary: the score of class 1, expanded to
    two columns ``[1 - p, p]``). ``from_logits=None`` guesses: multi-class rows that are non-negative and sum
    to 1 are kept, anything else gets a softmax; a binary column with every value in [0, 1] is kept, anything
    else gets a sigmoid. Pass ``from_logits=True`` when logits could look like probabilities by accident.
    """
    values = np.asarray(scores, dtype="float64")
    if values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1):
        column = values.reshape(-1)
        logits = from_logits if from_logits is not None else bool(np.any((column < 0) | (column > 1)))
        p = 1.0 / (1.0 + np.exp(-column)) if logits else column
        return np.stack([1.0 - p, p], axis=1)
    if values.ndim != 2:
        raise ValueError(f"Expected scores of shape [N, K], got {values.shape}.")
    if from_logits is None:
        from_logits = not (
            values.size and np.all(values >= 0) and np.allclose(values.sum(axis=1), 1.0, atol=1e-3)
        )
        if values.size == 0:
            from_logits = False
    if not from_logits:
        return values
    shifted = values - values.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _labels(y_true: Any) -> np.ndarray:
    """Class indices from sparse labels or one-hot rows."""
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(axis=1)
    return y.reshape(-1).astype("int64")


def predicted_classes(y_pred: Any) -> np.ndarray:
    """Class indices from predicted indices or from score rows (argmax) (lessons 06 and 07)."""
    y = np.asarray(y_pred)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1).astype("int64")
    if y.ndim == 2 and y.shape[1] == 1 and y.dtype.kind == "f":
        return to_probabilities(y).argmax(axis=1)
    return y.reshape(-1).astype("int64")


# ------------------------------------------------------------------------------------------ predictions


def predict_dataset(
    model: Any, dataset: Any, *, from_logits: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` over ``dataset`` once; return ``(y_true, probs)`` (lesson 06).

    ``dataset`` yields ``(images, labels)`` batches (a ``tf.data.Dataset`` or any iterable of pairs; extra
    elements such as sample weights are ignored), or is an ``(images, labels)`` pair of arrays. Labels and
    predictions come from the same pass, so a dataset that reshuffles on every iteration still lines up.
    ``y_true`` holds class indices (one-hot labels are converted); ``probs`` is ``[N, K]`` probabilities
    (the model's logits go through a softmax, see :func:`to_probabilities`).
    """
    if isinstance(dataset, tuple) and len(dataset) == 2 and not hasattr(dataset[0], "element_spec"):
        images, labels = np.asarray(dataset[0]), np.asarray(dataset[1])
        batches: Iterable[Any] = [(images[i : i + 64], labels[i : i + 64]) for i in range(0, len(images), 64)]
    else:
        batches = dataset
    ys: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for element in batches:
        if not isinstance(element, (tuple, list)) or len(element) < 2:
            raise TLCourseError(
                "predict_dataset needs a dataset of (images, labels) pairs; this one yields images only. "
                "Pass the labelled validation split (e.g. splits.validation)."
            )
        x, y = element[0], element[1]
        out = model.predict_on_batch(x) if hasattr(model, "predict_on_batch") else model(x, training=False)
        scores.append(np.asarray(out))
        ys.append(_labels(np.asarray(y)))
    if not ys:
        raise TLCourseError("The dataset is empty: there is nothing to evaluate. Check the validation split.")
    return np.concatenate(ys), to_probabilities(np.concatenate(scores), from_logits)


# -------------------------------------------------------------------------------------------- metrics


def classification_metrics(
    y_true: Any, probs: Any, class_names: Sequence[str], *, from_logits: bool | None = None
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, averages and confusion matrix (lesson 06).

    ``probs`` is ``[N, K]`` scores (probabilities or logits) or ``[N]`` predicted class indices. Returns plain
    Python values::

        {"n", "accuracy", "class_names",
         "per_class": {name: {"precision", "recall", "f1", "support"}},
         "macro": {"precision", "recall", "f1"}, "weighted": {...},
         "confusion_matrix": [[...]],          # rows = true class, columns = predicted class
         "absent_classes": [...]}              # classes with no example in y_true

    A class missing from a small validation set gets support 0 and zeros instead of a warning; the macro
    average runs over the classes that occur in ``y_true`` or in the predictions (scikit-learn's default),
    the weighted average weights by support.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    names = [str(c) for c in class_names]
    k = len(names)
    y = _labels(y_true)
    scores = np.asarray(probs)
    pred = predicted_classes(to_probabilities(scores, from_logits) if scores.ndim == 2 else scores)
    if len(y) != len(pred):
        raise ValueError(f"y_true has {len(y)} labels but there are {len(pred)} predictions.")
    if len(y) == 0:
        raise TLCourseError("No examples to evaluate: the validation set is empty.")
    bad = sorted({int(v) for v in np.concatenate([y, pred]) if v < 0 or v >= k})
    if bad:
        raise TLCourseError(
            f"Class index {bad[0]} is outside the {k} class names given; pass the class_names the model was "
            "trained with."
        )
    labels = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    present = sorted(set(y.tolist()) | set(pred.tolist()))
    macro = {
        "precision": float(np.mean(precision[present])),
        "recall": float(np.mean(recall[present])),
        "f1": float(np.mean(f1[present])),
    }
    total = float(support.sum())
    weighted = {
        "precision": float(np.dot(precision, support) / total),
        "recall": float(np.dot(recall, support) / total),
        "f1": float(np.dot(f1, support) / total),
    }
    return {
        "n": len(y),
        "accuracy": float(accuracy_score(y, pred)),
        "class_names": names,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(names)
        },
        "macro": macro,
        "weighted": weighted,
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).astype(int).tolist(),
        "absent_classes": [names[i] for i in labels if support[i] == 0],
    }


# ------------------------------------------------------------------------------------------ bootstrap


def _confusion_stack(t: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices of many resamples at once: ``t``, ``p`` are ``[B, N]`` -> ``[B, k, k]``."""
    b = t.shape[0]
    codes = (np.arange(b)[:, None] * (k * k) + t * k + p).reshape(-1)
    return np.bincount(codes, minlength=b * k * k).reshape(b, k, k)


def _macro_f1_from_confusion(cm: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Macro F1 over ``classes`` for a stack of confusion matrices (F1 = 2TP / (2TP + FP + FN), 0 if 0/0)."""
    tp = np.diagonal(cm, axis1=1, axis2=2).astype("float64")
    fp = cm.sum(axis=1) - tp
    fn = cm.sum(axis=2) - tp
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return f1[:, classes].mean(axis=1)


def _balanced_accuracy_from_confusion(cm: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Mean recall over the ``classes`` with support in each resample."""
    tp = np.diagonal(cm, axis1=1, axis2=2).astype("float64")
    support = cm.sum(axis=2).astype("float64")
    recall = np.divide(tp, support, out=np.full_like(tp, np.nan), where=support > 0)[:, classes]
    return np.nanmean(np.where(np.isnan(recall).all(axis=1, keepdims=True), 0.0, recall), axis=1)


_NAMED_METRICS = {"accuracy", "macro_f1", "f1_macro", "balanced_accuracy"}


def bootstrap_interval(
    y_true: Any,
    y_pred: Any,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "accuracy",
    n: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile-bootstrap confidence interval of a metric: ``(point, low, high)`` (lesson 06).

    Resamples the examples with replacement ``n`` times, recomputes the metric each time and takes the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles. ``y_pred`` is predicted class indices or score
    rows (argmax is taken). ``metric`` is ``"accuracy"`` (default), ``"macro_f1"`` or ``"balanced_accuracy"``
    (all computed for every resample at once with NumPy, so ``n=2000`` on 200 examples takes milliseconds),
    or any function ``metric(y_true, y_pred) -> float`` such as ``sklearn.metrics.f1_score`` wrapped in a
    lambda (looped, slower). The same ``seed`` gives the same interval.
    """
    y = _labels(y_true)
    p = predicted_classes(y_pred)
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} labels but y_pred has {len(p)}.")
    if len(y) == 0:
        raise TLCourseError("No examples to bootstrap: the validation set is empty.")
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1, e.g. 0.95.")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(int(n), len(y)))
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", "")
    if isinstance(metric, str) and metric not in _NAMED_METRICS:
        raise ValueError(f"Unknown metric {metric!r}: use one of {sorted(_NAMED_METRICS)} or a function.")
    if name == "accuracy" or (callable(metric) and name == "accuracy_score"):
        correct = (y == p).astype("float64")
        point = float(correct.mean())
        samples = correct[idx].mean(axis=1)
    elif isinstance(metric, str):
        k = int(max(y.max(), p.max())) + 1
        classes = np.unique(np.concatenate([y, p]))
        rate = (
            _macro_f1_from_confusion
            if metric in ("macro_f1", "f1_macro")
            else _balanced_accuracy_from_confusion
        )
        point = float(rate(_confusion_stack(y[None], p[None], k), classes)[0])
        samples = rate(_confusion_stack(y[idx], p[idx], k), classes)
    else:
        point = float(metric(y, p))
        samples = np.array([float(metric(y[row], p[row])) for row in idx])
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return point, float(low), float(high)


def paired_bootstrap(
    y_true: Any, pred_a: Any, pred_b: Any, *, n: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Accuracy of ``pred_b`` minus accuracy of ``pred_a`` on the same images, with a paired percentile-bootstrap
    interval: ``(difference, low, high)`` (lessons 05 and 07).

    Both predictions are resampled with the **same** image indices, so what the images have in common (hard
    ones, easy ones) cancels out; the interval is narrower than comparing two separate intervals. An interval
    that contains 0 means the two are not told apart on these images.
    """
    y = _labels(y_true)
    a, b = predicted_classes(pred_a), predicted_classes(pred_b)
    if not len(y) == len(a) == len(b):
        raise ValueError(f"y_true has {len(y)} labels but the predictions have {len(a)} and {len(b)}.")
    if len(y) == 0:
        raise TLCourseError("No examples to bootstrap: the evaluation set is empty.")
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1, e.g. 0.95.")
    gain = (b == y).astype("float64") - (a == y).astype("float64")
    idx = np.random.default_rng(seed).integers(0, len(y), size=(int(n), len(y)))
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(gain[idx].mean(axis=1), [tail, 100.0 - tail])
    return float(gain.mean()), float(low), float(high)


def accuracy_interval(accuracy: float, n: int, *, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of an accuracy measured on ``n`` images (lesson 05).

    Accuracy only depends on which images were right, so the bootstrap of ``round(accuracy * n)`` right
    answers out of ``n`` is the bootstrap of the real predictions (:func:`bootstrap_interval`).
    """
    n = int(n)
    if n <= 0:
        raise ValueError("n must be the number of images (at least 1).")
    right = int(round(float(accuracy) * n))
    y_true = np.zeros(n, dtype=int)
    y_pred = np.where(np.arange(n) < right, 0, 1)
    _, low, high = bootstrap_interval(y_true, y_pred, level=level, seed=seed)
    return float(low), float(high)


# ---------------------------------------------------------------------------------------- calibration


def calibration(
    y_true: Any, probs: Any, bins: int = 10, *, from_logits: bool | None = None
) -> dict[str, Any]:
    """How well the model's confidence matches its accuracy (lesson 06).

    Groups examples by confidence (the top class probability) into ``bins`` equal-width bins over [0, 1].
    Returns ``{"ece", "mce", "brier", "n", "bins": [{"lower", "upper", "confidence", "accuracy", "count"},
    ...]}``: ECE (expected calibration error) is the count-weighted mean of ``|accuracy - confidence|`` over
    the bins, MCE the largest gap of a non-empty bin; both are 0 for a perfectly calibrated model. Empty bins
    have ``count`` 0 and ``None`` for confidence and accuracy. ``brier`` is the multi-class Brier score.
    """
    y = _labels(y_true)
    p = to_probabilities(probs, from_logits)
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} labels but probs has {len(p)} rows.")
    if len(y) == 0:
        raise TLCourseError("No examples to measure calibration on: the validation set is empty.")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype("float64")
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    # bin i holds (edges[i], edges[i+1]]; confidence 0 falls into the first bin
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, int(bins) - 1)
    table: list[dict[str, Any]] = []
    ece = 0.0
    mce = 0.0
    for i in range(int(bins)):
        mask = which == i
        count = int(mask.sum())
        row: dict[str, Any] = {"lower": float(edges[i]), "upper": float(edges[i + 1]), "count": count}
        if count:
            conf = float(confidence[mask].mean())
            acc = float(correct[mask].mean())
            gap = abs(acc - conf)
            ece += count / len(y) * gap
            mce = max(mce, gap)
            row.update(confidence=conf, accuracy=acc)
        else:
            row.update(confidence=None, accuracy=None)
        table.append(row)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    brier = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    return {"ece": float(ece), "mce": float(mce), "brier": brier, "n": len(y), "bins": table}


# ---------------------------------------------------------------------------------------- top losses


def per_example_loss(y_true: Any, probs: Any, *, from_logits: bool | None = None) -> np.ndarray:
    """Cross-entropy loss of each example, ``-log p(true class)`` (lesson 06)."""
    y = _labels(y_true)
    p = to_probabilities(probs, from_logits)
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} labels but probs has {len(p)} rows.")
    return -np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0))


def top_losses(y_true: Any, probs: Any, k: int = 9, *, from_logits: bool | None = None) -> list[int]:
    """Indices of the ``k`` examples with the highest cross-entropy loss, worst first (lesson 06).

    These are the confidently wrong predictions (or the barely right ones): look at them to find label
    mistakes, confusing classes or images that do not belong in the data set. Ties keep data order.
    """
    losses = per_example_loss(y_true, probs, from_logits=from_logits)
    order = np.argsort(-losses, kind="stable")
    return [int(i) for i in order[: max(0, int(k))]]


# ------------------------------------------------------------------------------------------- Grad-CAM


def last_conv_layer(model: Any) -> Any:
    """The layer whose output Grad-CAM uses: the last layer with a 4-D (spatial) output (lesson 06).

    Looks inside the nested backbone when there is one. For MobileNetV2 this is ``out_relu``, the
    activation after the last 1x1 convolution.
    """
    backbone = base_of(model)
    owner = backbone if backbone is not None else model
    layers = [layer for layer in owner.layers if output_rank(layer) == 4 and not is_container(layer)]
    layers = [layer for layer in layers if type(layer).__name__ != "InputLayer"]
    if not layers:
        raise TLCourseError(
            f"Model {model.name!r} has no layer with a spatial (4-D) output, so Grad-CAM has nothing to map. "
            "Grad-CAM needs a convolutional network."
        )
    return layers[-1]


def _resolve_layer(model: Any, backbone: Any | None, layer: Any) -> tuple[Any, bool]:
    """``(layer object, inside_backbone)`` for a layer given by name or object, or the default."""
    if layer is None:
        found = last_conv_layer(model)
        return found, backbone is not None
    if not isinstance(layer, str):
        inside = backbone is not None and any(x is layer for x in backbone.layers)
        return layer, inside
    if backbone is not None:
        try:
            return backbone.get_layer(layer), True
        except ValueError:
            pass
    try:
        return model.get_layer(layer), False
    except ValueError:
        raise TLCourseError(
            f"No layer called {layer!r} in {model.name!r} or its backbone. Leave layer=None to use the last "
            "convolutional layer."
        ) from None


def _graph_node(model: Any, layer: Any) -> Any:
    """Where ``model``'s graph calls ``layer`` (:func:`tlcourse.kerasprivate.graph_node`), or a clear error."""
    node = kerasprivate.graph_node(model, layer)
    if node is None:
        raise TLCourseError(
            f"Could not find where {model.name!r} calls {layer.name!r}; Grad-CAM needs a functional classifier "
            "(keras.Model(inputs, outputs)) and a layer on its path from input to output."
        )
    return node


def grad_cam(
    model: Any,
    image: Any,
    class_index: int | None = None,
    layer: str | Any | None = None,
) -> np.ndarray:
    """Grad-CAM heat map: where in ``image`` the evidence for a class lies (lesson 06).

    ``model`` is a classifier that takes raw pixels; ``image`` is one ``[H, W, 3]`` image (or a batch of one)
    prepared the way the model expects (raw [0, 255] pixels for this course's classifiers). ``class_index``
    defaults to the predicted class; ``layer`` (name or layer object) defaults to the last layer with a
    spatial output, looked for inside the nested backbone when the classifier has one. Returns an
    ``[H, W]`` float32 map in [0, 1] at the image's own size (all zeros when nothing speaks for the class).

    How: the gradient of the class logit with respect to the chosen layer's feature maps is averaged over
    space to weight each channel; the weighted sum of the channels, clipped at 0, is the map. When the
    layer lives in a nested backbone, the classifier is split into the part before the backbone, a model from
    the backbone's input to ``[layer output, backbone output]``, and the part after it.
    """
    quiet_tensorflow()
    import keras
    import tensorflow as tf

    pixels = np.asarray(image, dtype="float32")
    if pixels.ndim == 3:
        pixels = pixels[None]
    if pixels.ndim != 4 or pixels.shape[0] != 1:
        raise ValueError(f"grad_cam takes one image [H, W, C] (or [1, H, W, C]), got shape {pixels.shape}.")
    height, width = pixels.shape[1], pixels.shape[2]

    backbone = base_of(model)
    target, inside = _resolve_layer(model, backbone, layer)
    if inside:
        node = _graph_node(model, backbone)
        before = keras.Model(model.input, node.input_tensors[0])
        after = keras.Model(node.output_tensors[0], model.output)
        inner = keras.Model(
            backbone.input, [_graph_node(backbone, target).output_tensors[0], backbone.output]
        )

        def forward(x: Any) -> tuple[Any, Any]:
            features, base = inner(before(x, training=False), training=False)
            return features, after(base, training=False)
    else:
        whole = keras.Model(model.input, [_graph_node(model, target).output_tensors[0], model.output])

        def forward(x: Any) -> tuple[Any, Any]:
            features, out = whole(x, training=False)
            return features, out

    x = tf.convert_to_tensor(pixels)
    with tf.GradientTape() as tape:
        tape.watch(x)  # records every op, even when all weights are frozen
        features, logits = forward(x)
        if isinstance(logits, (list, tuple)):
            logits = logits[0]
        logits = tf.reshape(logits, (1, -1))
        chosen = int(tf.argmax(logits[0])) if class_index is None else int(class_index)
        if logits.shape[-1] == 1:  # binary single-logit model: class 0 is the negative logit
            score = logits[0, 0] if chosen == 1 else -logits[0, 0]
        else:
            if not 0 <= chosen < logits.shape[-1]:
                raise ValueError(f"class_index {chosen} is out of range for {logits.shape[-1]} classes.")
            score = logits[0, chosen]
    grads = tape.gradient(score, features)
    if grads is None:
        raise TLCourseError(
            f"The output does not depend on layer {target.name!r}, so Grad-CAM cannot use it. Pick a layer "
            "on the path from the input to the output."
        )
    weights = tf.reduce_mean(grads, axis=(1, 2))  # [1, C]
    cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", features, weights))[..., None]
    cam = tf.image.resize(cam, (height, width), method="bilinear")[0, :, :, 0].numpy()
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    if not math.isfinite(peak) or peak <= 0:
        return np.zeros((height, width), dtype="float32")
    return (cam / peak).astype("float32")


# -------------------------------------------------------------------------------------------- summary


def evaluation_summary(
    model: Any | None,
    dataset: Any | None,
    class_names: Sequence[str],
    *,
    y_true: Any | None = None,
    probs: Any | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    bins: int = 10,
    k: int = 9,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything lesson 08's capstone reports about a model, in one JSON-serialisable dict (lesson 08).

    Runs ``model`` over ``dataset`` (or uses ``y_true`` and ``probs`` when given) and returns the
    :func:`classification_metrics` fields plus ``accuracy_interval`` and ``macro_f1_interval`` (``[low,
    high]`` percentile-bootstrap intervals at ``level``), ``macro_f1``, ``bootstrap`` (settings used),
    ``calibration`` (:func:`calibration`) and ``top_losses`` (the ``k`` worst examples with their true and
    predicted class, confidence and loss). Every number is a plain ``float``/``int``.
    """
    if y_true is None or probs is None:
        if model is None or dataset is None:
            raise ValueError("Give a model and a dataset, or y_true and probs.")
        y_true, probs = predict_dataset(model, dataset)
    y = _labels(y_true)
    p = to_probabilities(probs)
    names = [str(c) for c in class_names]
    summary = classification_metrics(y, p, names)
    pred = p.argmax(axis=1)
    _, acc_low, acc_high = bootstrap_interval(y, pred, "accuracy", n=n_boot, level=level, seed=seed)
    f1_point, f1_low, f1_high = bootstrap_interval(y, pred, "macro_f1", n=n_boot, level=level, seed=seed)
    summary["accuracy_interval"] = [acc_low, acc_high]
    summary["macro_f1"] = float(summary["macro"]["f1"])
    summary["macro_f1_interval"] = [f1_low, f1_high]
    summary["bootstrap"] = {
        "n": int(n_boot),
        "level": float(level),
        "seed": int(seed),
        "method": "percentile",
    }
    summary["calibration"] = calibration(y, p, bins=bins)
    losses = per_example_loss(y, p)
    summary["top_losses"] = [
        {
            "index": i,
            "true": names[int(y[i])],
            "predicted": names[int(pred[i])],
            "confidence": float(p[i].max()),
            "loss": float(losses[i]),
        }
        for i in top_losses(y, p, k)
    ]
    return summary
