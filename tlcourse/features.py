"""Feature extraction with an on-disk cache, and heads trained on cached features (introduced in lesson 04).

A frozen backbone gives the same output for the same image every epoch, so the course runs it **once**
over a dataset, keeps the features, and trains only the small head on them: seconds per epoch instead of
minutes. :func:`cached_features` stores them in ``.npz`` files keyed by the extractor's identity
(:func:`tlcourse.backbones.identity`: its base's architecture, width and input size, its layers, and a digest of
every weight) and a fingerprint of the data, so a second run (or a restarted kernel) reuses them, while another
width, another pooling, changed weights or a changed dataset compute new ones. Nothing the caller says about
the backbone enters the key: only the model itself. Files are written atomically: a run killed half-way never
leaves a half file.

Augmentation still helps: ``augmented_passes=K`` also stores K augmented copies of the training features.
:func:`join_head` puts the trained head back onto the backbone, giving one end-to-end model (raw pixels in,
logits out) to evaluate, fine-tune or export.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse import models
from tlcourse.backbones import Identity, identity, layers_digest
from tlcourse.backend import keras_module as _keras
from tlcourse.backend import tf_module as _tf
from tlcourse.data import augment_dataset
from tlcourse.errors import TLCourseError

CACHE_ENV = "TLCOURSE_CACHE"
CACHE_FORMAT = 1
"""Bumped when the file layout changes, so old cache files are ignored rather than misread."""


@dataclass
class FeatureSet:
    """Features computed by a frozen model over a dataset, with their labels (lesson 04)."""

    features: np.ndarray
    labels: np.ndarray
    key: str
    """Cache key (hash of the key parts and data fingerprint); empty when not cached."""
    from_cache: bool
    seconds: float
    """Time spent computing (or loading, when ``from_cache``)."""
    path: Path | None = None
    augmented_features: np.ndarray | None = None
    """``[K, N, ...]`` features of K augmented passes over the same dataset, or None."""
    augmented_labels: np.ndarray | None = None
    """``[K, N]`` labels for each augmented pass (a shuffling dataset yields a new order every pass)."""

    @property
    def count(self) -> int:
        """Number of examples."""
        return int(self.features.shape[0])

    @property
    def images_per_second(self) -> float:
        """Throughput of this extraction (or load)."""
        return self.count / self.seconds if self.seconds > 0 else float("inf")


def default_cache_dir() -> Path:
    """Where feature files go: ``$TLCOURSE_CACHE/features``, else ``~/.cache/tlcourse/features`` (lesson 04)."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "tlcourse") / "features"


def _batches(dataset: Any, batch_size: int) -> tuple[Any, int | None]:
    """An iterable of (images, labels-or-None) batches and the number of batches if known."""
    if isinstance(dataset, tuple | list) and len(dataset) == 2 and not hasattr(dataset, "element_spec"):
        images, labels = np.asarray(dataset[0]), np.asarray(dataset[1])
        steps = -(-len(images) // batch_size)
        pairs = (
            (images[i : i + batch_size], labels[i : i + batch_size])
            for i in range(0, len(images), batch_size)
        )
        return pairs, steps
    if isinstance(dataset, np.ndarray):
        steps = -(-len(dataset) // batch_size)
        return ((dataset[i : i + batch_size], None) for i in range(0, len(dataset), batch_size)), steps
    steps = None
    try:
        cardinality = int(dataset.cardinality())
        steps = cardinality if cardinality >= 0 else None
    except (AttributeError, TypeError):
        pass

    def pairs() -> Any:
        for batch in dataset:
            if isinstance(batch, tuple | list):
                yield batch[0], (batch[1] if len(batch) > 1 else None)
            else:
                yield batch, None

    return pairs(), steps


def batch_predictor(model: Any) -> Any:
    """``model.predict_on_batch``, or a traced ``model(x, training=False)`` under a strategy of several replicas.

    Keras 3.15's ``predict_on_batch`` hands the whole batch to every replica of a ``MirroredStrategy`` and
    concatenates their outputs (8 images in, 16 rows out), so it cannot be used there (tests/test_distribute.py).
    """
    tf = _tf()
    strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync == 1:
        return model.predict_on_batch
    return tf.function(lambda images: model(images, training=False), reduce_retracing=True)


def extract_features(
    model: Any,
    dataset: Any,
    *,
    progress: bool = True,
    batch_size: int = 32,
    description: str = "features",
) -> FeatureSet:
    """Run ``model`` once over ``dataset`` in inference mode and collect its outputs (lesson 04).

    ``dataset`` yields ``(images, labels)`` batches (a ``tf.data.Dataset``), or is a pair of NumPy arrays
    ``(images, labels)`` / an image array, batched here by ``batch_size``. Uses the compiled predict step
    (``model.predict_on_batch``) one batch at a time, with a ``tqdm`` progress bar.
    """
    from tqdm.auto import tqdm

    pairs, steps = _batches(dataset, batch_size)
    outputs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    start = time.perf_counter()
    predict = batch_predictor(model)
    with tqdm(total=steps, desc=description, unit="batch", disable=not progress, leave=False) as bar:
        for images, batch_labels in pairs:
            outputs.append(np.asarray(predict(images)))
            if batch_labels is not None:
                labels.append(np.asarray(batch_labels))
            bar.update(1)
    seconds = time.perf_counter() - start
    if not outputs:
        raise TLCourseError("The dataset is empty: there were no images to extract features from.")
    features = np.concatenate(outputs, axis=0).astype("float32", copy=False)
    label_array = np.concatenate(labels, axis=0) if labels else np.zeros((0,), dtype="int32")
    if label_array.ndim == 1 and label_array.size:
        label_array = label_array.astype("int32")
    return FeatureSet(features=features, labels=label_array, key="", from_cache=False, seconds=seconds)


def cache_key(
    who: Identity,
    data_fingerprint: str,
    *,
    part: str = "",
    augmented_passes: int = 0,
    augmentation: Any = None,
) -> str:
    """Stable 20-hex-digit key of one model's features on one dataset (lesson 04).

    Derived from the model's :func:`~tlcourse.backbones.identity` ``who``, the data fingerprint, the ``part``
    (``"train"``, ``"validation"``...), the number of augmented passes and the augmentation's own layers (its
    seeds are in their configuration).
    """
    payload = {
        "format": CACHE_FORMAT,
        "model": who.key,
        "data": str(data_fingerprint),
        "part": str(part),
        "augmented_passes": int(augmented_passes),
        "augmentation": layers_digest(augmentation)
        if augmentation is not None and augmented_passes
        else None,
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _file_stem(who: Identity, part: str) -> str:
    width = f"{who.width:g}" if who.width is not None else ""
    wanted = [who.architecture, width, who.input_size, part]
    stem = "-".join(str(v) for v in wanted if v) or "features"
    return "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in stem)[:80]


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` next to ``path`` and move it into place in one step (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp", delete=False
    )
    try:
        with handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _load(path: Path, key: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception:  # unreadable or truncated by something other than us: recompute
        return None
    meta = arrays.get("meta")
    try:
        if meta is None or json.loads(str(meta))["key"] != key:
            return None
    except (ValueError, KeyError, TypeError):
        return None
    return arrays


def _augmented_dataset(dataset: Any, augmentation: Any) -> Any:
    if isinstance(dataset, tuple | list) and len(dataset) == 2:
        images = np.asarray(augmentation(np.asarray(dataset[0], dtype="float32"), training=True))
        return images, np.asarray(dataset[1])
    return augment_dataset(dataset, augmentation)


def cached_features(
    model: Any,
    dataset: Any,
    *,
    data_fingerprint: str,
    part: str = "",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    augmented_passes: int = 0,
    augmentation: Any = None,
    refresh: bool = False,
    batch_size: int = 32,
) -> FeatureSet:
    """Features of ``dataset`` under ``model``, computed once and then read from disk (lesson 04).

    The key is :func:`cache_key`: the identity of ``model`` itself (its base's architecture, width and input
    size, its layers, a digest of every weight), ``data_fingerprint`` (``DatasetSplits.fingerprint``, the exact
    data) and ``part`` (``"train"``, ``"validation"``: tells splits of the same data apart). The same key reuses
    the file (``from_cache=True``); another width, pooling or weights (a fine-tuned base), or other data,
    computes and stores new features.
    ``cache_dir`` defaults to :func:`default_cache_dir`. With ``augmented_passes=K`` and an
    ``augmentation`` model, K augmented copies are stored too (``augmented_features``, shape ``[K, N, ...]``).
    ``refresh=True`` recomputes even when a file exists.
    """
    passes = int(augmented_passes)
    if passes and augmentation is None:
        raise TLCourseError(
            "augmented_passes needs an augmentation model (e.g. RandomFlip + RandomRotation)."
        )
    who = identity(model)
    key = cache_key(
        who,
        data_fingerprint,
        part=part,
        augmented_passes=passes,
        augmentation=augmentation if passes else None,
    )
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = directory / f"{_file_stem(who, part)}-{key}.npz"
    if not refresh and path.is_file():
        start = time.perf_counter()
        arrays = _load(path, key)
        if arrays is not None:
            return FeatureSet(
                features=arrays["features"],
                labels=arrays["labels"],
                key=key,
                from_cache=True,
                seconds=time.perf_counter() - start,
                path=path,
                augmented_features=arrays.get("augmented_features"),
                augmented_labels=arrays.get("augmented_labels"),
            )
    clean = extract_features(model, dataset, progress=progress, batch_size=batch_size)
    seconds = clean.seconds
    arrays = {"features": clean.features, "labels": clean.labels}
    if passes:
        copies, copy_labels = [], []
        for k in range(passes):
            extra = extract_features(
                model,
                _augmented_dataset(dataset, augmentation),
                progress=progress,
                batch_size=batch_size,
                description=f"augmented pass {k + 1}/{passes}",
            )
            copies.append(extra.features)
            copy_labels.append(extra.labels)
            seconds += extra.seconds
        arrays["augmented_features"] = np.stack(copies)
        arrays["augmented_labels"] = np.stack(copy_labels)
    meta = {
        "key": key,
        "model": who.describe(),
        "data": str(data_fingerprint),
        "part": part,
        "passes": passes,
    }
    _write_atomic(path, {**arrays, "meta": np.asarray(json.dumps(meta, default=str))})
    return FeatureSet(
        features=arrays["features"],
        labels=arrays["labels"],
        key=key,
        from_cache=False,
        seconds=seconds,
        path=path,
        augmented_features=arrays.get("augmented_features"),
        augmented_labels=arrays.get("augmented_labels"),
    )


def feature_extractor(backbone: Any, *, pooling: str | None = "avg", name: str = "feature_extractor") -> Any:
    """Raw [0, 255] pixels -> preprocessing -> frozen backbone (inference mode) -> pooling (lesson 04).

    Built by :func:`tlcourse.models.assemble` with no head; the preprocessing follows the backbone's record.
    ``pooling=None`` keeps the feature map (for heads that pool themselves). Freezes the backbone.
    """
    models.freeze(backbone)
    return models.assemble(backbone, pooling=pooling, name=name)


def train_head_on_features(
    features: np.ndarray | FeatureSet,
    labels: np.ndarray | None = None,
    val_features: np.ndarray | FeatureSet | None = None,
    val_labels: np.ndarray | None = None,
    *,
    num_classes: int,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 32,
    dropout: float = 0.2,
    augmented_features: np.ndarray | None = None,
    augmented_labels: np.ndarray | None = None,
    patience: int | None = None,
    seed: int | None = 42,
    verbose: int = 0,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, Any]:
    """Train a new head (``models.build_head``) on cached features; returns ``(head, history)`` (lesson 04).

    ``features``/``val_features`` may be arrays or :class:`FeatureSet` objects (their labels are used).
    Augmented copies (from ``FeatureSet.augmented_features`` or the arguments) are added to the training
    set, so one epoch sees every image once plain and once per augmented pass. ``patience`` turns on early
    stopping on validation accuracy, keeping the best weights. ``callbacks`` go to ``fit`` as well, e.g.
    ``[tlcourse.progress.epoch_lines("head")]`` for one line per epoch.
    """
    keras = _keras()
    if isinstance(features, FeatureSet):
        if augmented_features is None and features.augmented_features is not None:
            augmented_features, augmented_labels = features.augmented_features, features.augmented_labels
        labels = features.labels if labels is None else labels
        features = features.features
    if isinstance(val_features, FeatureSet):
        val_labels = val_features.labels if val_labels is None else val_labels
        val_features = val_features.features
    if labels is None:
        raise TLCourseError("train_head_on_features needs labels for the training features.")
    x = np.asarray(features, dtype="float32")
    y = np.asarray(labels).astype("int32")
    if augmented_features is not None:
        aug = np.asarray(augmented_features, dtype="float32")
        aug_y = np.asarray(
            augmented_labels if augmented_labels is not None else np.broadcast_to(y, aug.shape[:2])
        )
        x = np.concatenate([x, aug.reshape((-1,) + aug.shape[2:])])
        y = np.concatenate([y, aug_y.reshape(-1).astype("int32")])
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    head = models.build_head(x.shape[1:], num_classes, dropout=dropout)
    models.compile_classifier(head, lr, num_classes=num_classes)
    validation = None
    if val_features is not None and val_labels is not None:
        validation = (np.asarray(val_features, dtype="float32"), np.asarray(val_labels).astype("int32"))
    fit_callbacks = list(callbacks)
    if patience is not None and validation is not None:
        fit_callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", patience=int(patience), restore_best_weights=True, mode="max"
            )
        )
    history = head.fit(
        x,
        y,
        validation_data=validation,
        epochs=int(epochs),
        batch_size=int(batch_size),
        shuffle=True,
        callbacks=fit_callbacks,
        verbose=verbose,
    )
    return head, history


def join_head(
    backbone: Any,
    head: Any,
    *,
    pooling: str | None = "avg",
    augmentation: Any = None,
    name: str = "classifier",
) -> Any:
    """One end-to-end classifier from a backbone and a head trained on its cached features (lesson 04).

    ``Input(raw pixels) -> [augmentation] -> preprocessing -> backbone(training=False) -> pooling -> head``,
    built by :func:`tlcourse.models.assemble` like :func:`feature_extractor`, so its predictions equal
    ``head(features)`` for the same images. The head's layers are reused (same weights, no copy). Pooling
    is skipped when the head takes a feature map. The result can be evaluated, exported, or fine-tuned
    (:func:`tlcourse.models.unfreeze_top`, then compile again).
    """
    pooled = pooling if len(head.input_shape) == 2 else None
    height, width, channels = backbone.output_shape[1:]
    got = {None: (height, width, channels), "flatten": (height * width * channels,)}.get(pooled, (channels,))
    expected = tuple(head.input_shape[1:])
    if expected != got:
        raise TLCourseError(
            f"The head takes features of shape {expected} but this backbone gives {got}: join the head with "
            "the backbone (and pooling) whose features it was trained on."
        )
    return models.assemble(backbone, head, pooling=pooled, augmentation=augmentation, name=name)
