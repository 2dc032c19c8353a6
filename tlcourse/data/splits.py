"""The shape every data source answers in (:class:`DatasetSplits`), stratified splits and the in-memory
``tf.data`` pipelines behind them (lesson 04; the package docstring of :mod:`tlcourse.data` says how).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlcourse import imageio
from tlcourse.backend import tf_module as _tf
from tlcourse.config import quiet_tensorflow

if TYPE_CHECKING:  # pragma: no cover - typing only
    from tlcourse.audit import AuditReport

FLOWER_CLASSES: tuple[str, ...] = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
"""The five flower classes in label order, identical for the mirror copy and tfds ``tf_flowers``."""

DEFAULT_CACHE_LIMIT_MB = 512
"""Decoded images are kept in memory when they need at most this many megabytes (see ``cache_decoded``)."""

_FINGERPRINT_VERSION = "tlcourse-data-1"

# --------------------------------------------------------------------------------------------- result


@dataclass
class DatasetSplits:
    """Training and validation pipelines plus what they hold (lesson 04).

    ``train`` and ``validation`` are batched, prefetched ``tf.data.Dataset`` objects yielding
    ``(float32 images in [0, 255] of shape [B, S, S, 3], int32 labels [B])``. ``train`` is reshuffled every
    epoch (seeded) unless ``shuffle_train=False``; ``validation`` always comes in the same order.
    """

    train: Any
    validation: Any
    class_names: list[str]
    source: str
    """Where the data came from, e.g. ``"mirror:flower_photos_small"``, ``"tfds:tf_flowers"``, ``"folder:/x"``."""
    train_count: int
    validation_count: int
    fingerprint: str
    """A hash of the exact images chosen (names, contents, split) and the image size: equal fingerprints mean
    equal data, so feature caches can be keyed on it."""
    audit: AuditReport | None = None
    image_size: int = 0
    batch_size: int = 0
    train_class_counts: dict[str, int] = field(default_factory=dict)
    validation_class_counts: dict[str, int] = field(default_factory=dict)
    validation_files: list[str] = field(default_factory=list)
    """Relative paths (or tfds indices / synthetic ids) of the validation images, in pipeline order."""
    cached: bool = False
    """True when the decoded images are held in memory (decoded once, during loading)."""
    decode_seconds: float = 0.0
    """Time spent decoding while loading (0 when decoding happens lazily, inside the pipeline)."""
    notes: list[str] = field(default_factory=list)
    """Things worth knowing, e.g. skipped files or a synthetic stand-in."""
    synthetic_fallback: bool = False
    """True when generated images stand in for a source that was not available."""
    test: Any = None
    """A held-out TEST pipeline (like ``validation``: unshuffled, never augmented) that no choice may look at:
    epochs, early stopping and strategy choices use ``validation``; the headline figures use ``test``. Present
    when the folder has a ``test/`` folder or ``test_fraction`` carved one from the training images; else None."""
    test_count: int = 0
    test_class_counts: dict[str, int] = field(default_factory=dict)
    test_files: list[str] = field(default_factory=list)
    duplicates: Any = None
    """What the audit found duplicated and what was dropped before splitting (a
    :class:`tlcourse.data.dedupe.DuplicateReport`), for the course's own datasets and ``dedupe=True``; else None."""

    @property
    def num_classes(self) -> int:
        """How many classes there are."""
        return len(self.class_names)

    def summary(self) -> str:
        """A few readable lines: source, counts per class, image size, notes (lesson 04)."""
        lines = [
            f"source: {self.source}",
            f"classes ({self.num_classes}): {', '.join(self.class_names)}",
            f"train: {self.train_count} images {dict(self.train_class_counts)}",
            f"validation: {self.validation_count} images {dict(self.validation_class_counts)}",
            *(
                [f"test: {self.test_count} images {dict(self.test_class_counts)}"]
                if self.test is not None
                else []
            ),
            f"images: {self.image_size}x{self.image_size} RGB float32 0..255, batches of {self.batch_size}"
            + (", decoded once and kept in memory" if self.cached else ", decoded on the fly"),
            f"fingerprint: {self.fingerprint[:16]}",
        ]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class _Selection:
    """The chosen examples of one split: their identities and labels (class indices)."""

    items: list[Any]
    labels: list[int]


# --------------------------------------------------------------------------------------------- helpers


def _validation_cap(max_per_class: int | None) -> int | None:
    """Validation images allowed per class when training images are capped at ``max_per_class``."""
    return None if max_per_class is None else max(2, max_per_class // 4)


def _check_arguments(image_size: int, batch_size: int, max_per_class: int | None, fraction: float) -> None:
    if not isinstance(image_size, int | np.integer) or image_size < 1:
        raise ValueError(f"image_size must be a positive int (one side of the square), got {image_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if max_per_class is not None and max_per_class < 1:
        raise ValueError(f"max_per_class must be at least 1 or None, got {max_per_class}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_fraction must be between 0 and 1 (exclusive), got {fraction}")


def stratified_split(
    labels: Sequence[int], validation_fraction: float = 0.2, *, seed: int = 42
) -> tuple[list[int], list[int]]:
    """Split example indices into (train, validation), class by class, reproducibly (lesson 04).

    Each class with ``n >= 2`` examples sends ``round(n * validation_fraction)`` of them to validation, but
    at least one and never all, so every class appears on both sides; a class with a single example stays
    in training. The same ``seed`` gives the same split; indices come back sorted.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must be between 0 and 1 (exclusive), got {validation_fraction}"
        )
    rng = np.random.default_rng(seed)
    array = np.asarray(labels)
    train: list[int] = []
    validation: list[int] = []
    for label in np.unique(array):
        members = np.flatnonzero(array == label)
        members = members[rng.permutation(len(members))]
        count = len(members)
        n_val = 0 if count < 2 else min(count - 1, max(1, round(count * validation_fraction)))
        validation.extend(int(i) for i in members[:n_val])
        train.extend(int(i) for i in members[n_val:])
    return sorted(train), sorted(validation)


def _cap_per_class(labels: Sequence[int], cap: int | None, seed: int) -> list[int]:
    """Indices of a seeded sample of at most ``cap`` examples per class (all, sorted, when ``cap`` is None)."""
    if cap is None:
        return list(range(len(labels)))
    rng = np.random.default_rng(seed)
    array = np.asarray(labels)
    keep: list[int] = []
    for label in np.unique(array):
        members = np.flatnonzero(array == label)
        if len(members) > cap:
            members = np.sort(rng.choice(members, size=cap, replace=False))
        keep.extend(int(i) for i in members)
    return sorted(keep)


def _counts(labels: Sequence[int], class_names: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    return {name: int(counts[i]) for i, name in enumerate(class_names)}


def _fingerprint(payload: object) -> str:
    text = json.dumps([_FINGERPRINT_VERSION, payload], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _fits_in_memory(count: int, image_size: int, cache_decoded: bool | None, limit_mb: float) -> bool:
    if cache_decoded is not None:
        return bool(cache_decoded)
    return count * image_size * image_size * 3 <= limit_mb * 1024 * 1024


# --------------------------------------------------------------------------------------------- pipelines


def _finish(
    dataset: Any,
    *,
    count: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    augment: bool,
    shuffle_before: Callable[[Any], Any] | None = None,
) -> Any:
    """Shuffle (per epoch, seeded), batch, cast to float32, optionally augment, prefetch."""
    tf = _tf()
    if shuffle and count > 1:
        dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    if shuffle_before is not None:
        dataset = shuffle_before(dataset)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(
        lambda images, labels: (tf.cast(images, tf.float32), tf.cast(labels, tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if augment:
        layers = default_augmentation(seed)
        dataset = dataset.map(
            lambda images, labels: (tf.clip_by_value(layers(images, training=True), 0.0, 255.0), labels),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def default_augmentation(seed: int = 42) -> Any:
    """The course's one default augmentation: random horizontal flip, rotation up to +-10% of a turn (36
    degrees) and zoom up to +-10%, reflecting at the borders, seeded (lesson 04 writes these layers out).

    A ``keras.Sequential`` of Keras' own augmentation layers; it works on [0, 255] float images inside a model
    (active only while training) and in a ``tf.data`` map (call it with ``training=True``).
    """
    quiet_tensorflow()
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.1, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 2),
        ],
        name="augmentation",
    )


def augment_dataset(dataset: Any, augmentation: Any) -> Any:
    """``dataset`` of ``(images, labels)`` with ``augmentation(images, training=True)`` applied to every batch,
    afresh each epoch (lesson 04)."""
    return dataset.map(
        lambda x, y: (augmentation(x, training=True), y), num_parallel_calls=_tf().data.AUTOTUNE
    )


def _from_arrays(
    images: np.ndarray, labels: np.ndarray, *, batch_size: int, shuffle: bool, seed: int, augment: bool
) -> Any:
    """A pipeline over decoded ``uint8`` images held in memory."""
    tf = _tf()
    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32)))
    return _finish(
        dataset, count=len(labels), batch_size=batch_size, shuffle=shuffle, seed=seed, augment=augment
    )


def _decode_files(
    paths: Sequence[Path], image_size: int, workers: int | None
) -> tuple[np.ndarray, list[int]]:
    """Decode ``paths`` to one uint8 array [N, S, S, 3] with Pillow in a thread pool; returns failures too."""
    out = np.zeros((len(paths), image_size, image_size, 3), np.uint8)
    failed: list[int] = []

    def work(index: int) -> None:
        try:
            out[index] = imageio.load_image(paths[index], image_size)
        except imageio.ImageDecodeError:
            failed.append(index)

    threads = workers or max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(work, range(len(paths))))
    return out, sorted(failed)


def _from_files(
    paths: Sequence[Path],
    labels: Sequence[int],
    *,
    image_size: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    augment: bool,
) -> Any:
    """A pipeline that decodes files on the fly, in parallel (for data too large to keep in memory)."""
    tf = _tf()

    def decode(path: bytes) -> np.ndarray:
        try:
            return imageio.load_image(path.decode("utf-8", "surrogateescape"), image_size)
        except imageio.ImageDecodeError:  # changed since the audit: a gray stand-in, never a crash
            return np.full((image_size, image_size, 3), 128, np.uint8)

    def load(path: Any, label: Any) -> tuple[Any, Any]:
        image = tf.numpy_function(decode, [path], tf.uint8, stateful=False)
        image.set_shape([image_size, image_size, 3])
        return image, label

    names = [os.fsencode(str(p)).decode("utf-8", "surrogateescape") for p in paths]
    dataset = tf.data.Dataset.from_tensor_slices((names, np.asarray(labels, np.int32)))
    return _finish(
        dataset,
        count=len(names),
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        augment=augment,
        shuffle_before=lambda ds: ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True),
    )
