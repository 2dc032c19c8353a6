"""Datasets as ready-to-train ``tf.data`` pipelines (introduced in lesson 04, used by every later lesson).

One call, :func:`load_dataset`, serves every source the course uses and always answers in the same shape:

- ``"flowers"``: the offline mirror's ``datasets/flower_photos_small`` (``train/`` + ``validation/``) when a
  mirror is configured, else the tensorflow-datasets ``tf_flowers`` catalog dataset;
- ``"tf_flowers"``, ``"cats_vs_dogs"`` (or ``"tfds:NAME"`` for any tfds image-classification dataset):
  through tensorflow-datasets, downloaded once when online;
- a folder path: ``class/`` sub-folders, with or without ``train/`` and ``validation/``; the folder is audited
  first (:func:`tlcourse.audit.audit_folder`), unusable files are skipped and reported;
- ``"synthetic"``: generated pictures (a colour and a pattern per class) that a model can learn, for
  offline smoke runs.

Conventions (the package docstring, :mod:`tlcourse`): images are ``float32`` in ``[0, 255]`` with shape ``[B, S, S, 3]``, labels
are ``int32`` class indices, class names are sorted alphabetically whichever source served them (tfds lists
``tf_flowers`` as dandelion, daisy, ... and is re-labelled). Backbone preprocessing belongs to the model.

Splits: a source without a validation split gets a seeded, *stratified* one (every class on both sides, in
proportion). ``max_per_class`` caps the training images of each class (a seeded sample) and the validation
images at ``max(2, max_per_class // 4)`` per class.

Speed: JPEG decoding and resizing, not the network, limit a plain ``image_dataset_from_directory`` pipeline on a
2-core machine. Here each file is decoded **once**, by Pillow at a reduced DCT scale
(:func:`tlcourse.imageio.load_image`), in a thread pool, and the small ``uint8`` result is kept in memory
(1,000 images at 160 px take 77 MB). Every epoch then streams from memory. Data too large for the memory
guard (``cache_limit_mb``) is decoded again each epoch, in parallel inside ``tf.data``.

Augmentation: off by default, because :mod:`tlcourse.train` augments itself (also when it caches augmented
feature passes). ``augment=True`` adds light random flips, rotations and zooms (Keras preprocessing layers
in ``tf.data``) to the training pipeline only, for lessons that train end to end.
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

from tlcourse.backend import tf_module as _tf
from tlcourse.config import Profile, quiet_tensorflow
from tlcourse.errors import AssetMissingError, DataError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from tlcourse.audit import AuditReport

FLOWER_CLASSES: tuple[str, ...] = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
"""The five flower classes in label order, identical for the mirror copy and tfds ``tf_flowers``."""

MIRROR_FLOWERS = "flower_photos_small"
CATALOG = {"tf_flowers": "tf_flowers", "cats_vs_dogs": "cats_vs_dogs"}
"""Names accepted as tensorflow-datasets sources (``"tfds:NAME"`` reaches any other tfds dataset)."""

DEFAULT_CACHE_LIMIT_MB = 512
"""Decoded images are kept in memory when they need at most this many megabytes (see ``cache_decoded``)."""

SYNTHETIC_PATTERNS = ("stripes", "bars", "disc", "checks", "ring", "diagonal")
SYNTHETIC_COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "purple")
_COLOUR_RGB = {
    "red": (210, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 210),
    "yellow": (225, 205, 40),
    "magenta": (200, 50, 190),
    "cyan": (40, 190, 200),
    "orange": (235, 130, 30),
    "purple": (120, 50, 170),
}
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
    from tlcourse import imageio

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
    from tlcourse import imageio

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


# --------------------------------------------------------------------------------------------- folders


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    image_size: int,
    batch_size: int = 32,
    max_per_class: int | None = None,
    validation_fraction: float = 0.2,
    seed: int = 42,
    shuffle_train: bool = True,
    augment: bool = False,
    min_per_class: int = 2,
    cache_decoded: bool | None = None,
    cache_limit_mb: float = DEFAULT_CACHE_LIMIT_MB,
    workers: int | None = None,
    source_name: str | None = None,
    report: AuditReport | None = None,
    test_fraction: float = 0.0,
) -> DatasetSplits:
    """Load an image folder (``class/`` folders, optionally inside ``train/`` and ``validation/``) (lesson 08).

    The folder is audited first (:func:`tlcourse.audit.audit_folder`): unusable files are skipped and listed
    in ``splits.audit.problems`` (and counted in ``splits.notes``); a folder that cannot train a classifier
    raises :class:`~tlcourse.errors.DataError` with the audit's reason. Without a ``validation/`` folder a
    seeded stratified split (``validation_fraction``) is drawn from the training images; a ``test/`` folder
    is used only as ``splits.test``. With ``test_fraction`` and no ``test/`` folder, that share of each class's
    training images (seeded, stratified, drawn before any cap) becomes ``splits.test``: for the mirror's flowers
    (160 training and 40 validation photos a class) ``test_fraction=0.25`` gives 120 / 40 / 40 a class.
    Nothing in the folder is written. Pass an existing ``report`` to skip re-auditing.
    """
    from tlcourse import audit

    _check_arguments(image_size, batch_size, max_per_class, validation_fraction)
    if report is None:
        report = audit.audit_folder(root, min_per_class=min_per_class)
    if not report.usable:
        raise DataError(
            f"Cannot train on the folder '{root}': {report.reason} "
            f"Run `tlcourse check-data {root}` for the full list of problems."
        )
    class_names = list(report.classes)
    index = {name: i for i, name in enumerate(class_names)}
    records = [r for r in report.records if r.label in index]
    notes: list[str] = []
    if report.problems:
        notes.append(
            f"{len(report.problems)} unusable file(s) skipped, e.g. {report.problems[0].path} "
            f"({report.problems[0].problem}); see splits.audit.problems."
        )
    if report.excluded:
        notes.append(f"class folder(s) left out (too few usable images): {', '.join(report.excluded)}")

    train_records = [r for r in records if r.split in ("train", None)]
    given_validation = [r for r in records if r.split == "validation"]
    test_records = [r for r in records if r.split == "test"]
    if test_records:
        notes.append("the test/ folder is held out as splits.test (not used for training or validation)")
    elif test_fraction:
        keep_idx, test_idx = stratified_split(
            [index[r.label] for r in train_records], test_fraction, seed=seed + 7
        )
        test_records = [train_records[i] for i in test_idx]
        train_records = [train_records[i] for i in keep_idx]
        notes.append(
            f"{len(test_records)} training images ({test_fraction:.0%} of each class, seed {seed}) held out as "
            "the test split"
        )
    if given_validation:
        validation_records = given_validation
    else:
        train_idx, val_idx = stratified_split(
            [index[r.label] for r in train_records], validation_fraction, seed=seed
        )
        validation_records = [train_records[i] for i in val_idx]
        train_records = [train_records[i] for i in train_idx]
        notes.append(
            f"no validation/ folder: {len(validation_records)} images ({validation_fraction:.0%} of each class, "
            f"seed {seed}) were set aside for validation"
        )

    def order(items: list[Any]) -> list[Any]:
        return sorted(items, key=lambda r: (index[r.label], r.relpath))

    def cap(items: list[Any], limit: int | None, salt: int) -> list[Any]:
        items = order(items)
        keep = _cap_per_class([index[r.label] for r in items], limit, seed + salt)
        return [items[i] for i in keep]

    train_records = cap(train_records, max_per_class, 1)
    validation_records = cap(validation_records, _validation_cap(max_per_class), 2)
    test_records = cap(test_records, _validation_cap(max_per_class), 3)

    name = source_name or f"folder:{report.root}"
    fingerprint = _fingerprint(
        {
            "source": "folder",
            "image_size": int(image_size),
            "augment": bool(augment),
            "classes": class_names,
            "train": [[r.relpath, r.label, r.sha256 or _stat_key(r.path)] for r in train_records],
            "validation": [[r.relpath, r.label, r.sha256 or _stat_key(r.path)] for r in validation_records],
            **({"test": [[r.relpath, r.label] for r in test_records]} if test_records else {}),
        }
    )
    splits = _assemble(
        name,
        class_names,
        train=_Selection([r.path for r in train_records], [index[r.label] for r in train_records]),
        validation=_Selection(
            [r.path for r in validation_records], [index[r.label] for r in validation_records]
        ),
        validation_ids=[r.relpath for r in validation_records],
        fingerprint=fingerprint,
        image_size=image_size,
        batch_size=batch_size,
        seed=seed,
        shuffle_train=shuffle_train,
        augment=augment,
        cache_decoded=cache_decoded,
        cache_limit_mb=cache_limit_mb,
        workers=workers,
        notes=notes,
        report=report,
    )
    if test_records:
        _attach_test(splits, test_records, index, image_size, batch_size, workers)
    return splits


def _attach_test(
    splits: DatasetSplits,
    records: list[Any],
    index: dict[str, int],
    image_size: int,
    batch_size: int,
    workers: int | None,
) -> None:
    """Decode the held-out test images once and give ``splits`` its ``test`` pipeline (never augmented)."""
    arrays, failed = _decode_files([r.path for r in records], image_size, workers)
    keep = np.ones(len(records), bool)
    keep[failed] = False
    labels = np.asarray([index[r.label] for r in records], np.int32)[keep]
    splits.test = _from_arrays(
        arrays[keep], labels, batch_size=batch_size, shuffle=False, seed=0, augment=False
    )
    splits.test_count = int(len(labels))
    splits.test_class_counts = _counts(labels, splits.class_names)
    splits.test_files = [r.relpath for r, k in zip(records, keep, strict=True) if k]


def _stat_key(path: Path) -> list[int]:
    """Size and modification time, when no content hash is known."""
    info = Path(path).stat()
    return [info.st_size, info.st_mtime_ns]


def _assemble(
    name: str,
    class_names: list[str],
    *,
    train: _Selection,
    validation: _Selection,
    validation_ids: list[str],
    fingerprint: str,
    image_size: int,
    batch_size: int,
    seed: int,
    shuffle_train: bool,
    augment: bool,
    cache_decoded: bool | None,
    cache_limit_mb: float,
    workers: int | None,
    notes: list[str],
    report: AuditReport | None,
) -> DatasetSplits:
    """Turn selected files into pipelines: decoded once into memory when they fit, else on the fly."""
    import time

    total = len(train.items) + len(validation.items)
    cached = _fits_in_memory(total, image_size, cache_decoded, cache_limit_mb)
    seconds = 0.0
    if cached:
        start = time.perf_counter()
        arrays, failed = _decode_files(list(train.items) + list(validation.items), image_size, workers)
        seconds = time.perf_counter() - start
        labels = np.asarray(list(train.labels) + list(validation.labels), np.int32)
        keep = np.ones(total, bool)
        if failed:  # a file changed or vanished since the audit: leave it out, say so
            keep[failed] = False
            every = list(train.items) + list(validation.items)
            notes.append(
                f"{len(failed)} file(s) could not be decoded while loading and were left out, "
                f"e.g. {Path(every[failed[0]]).name}"
            )
        n_train = len(train.items)
        train_keep, val_keep = keep[:n_train], keep[n_train:]
        train_ds = _from_arrays(
            arrays[:n_train][train_keep],
            labels[:n_train][train_keep],
            batch_size=batch_size,
            shuffle=shuffle_train,
            seed=seed,
            augment=augment,
        )
        val_ds = _from_arrays(
            arrays[n_train:][val_keep],
            labels[n_train:][val_keep],
            batch_size=batch_size,
            shuffle=False,
            seed=seed,
            augment=False,
        )
        train_labels = labels[:n_train][train_keep]
        val_labels = labels[n_train:][val_keep]
        validation_ids = [v for v, k in zip(validation_ids, val_keep, strict=True) if k]
    else:
        train_ds = _from_files(
            train.items,
            train.labels,
            image_size=image_size,
            batch_size=batch_size,
            shuffle=shuffle_train,
            seed=seed,
            augment=augment,
        )
        val_ds = _from_files(
            validation.items,
            validation.labels,
            image_size=image_size,
            batch_size=batch_size,
            shuffle=False,
            seed=seed,
            augment=False,
        )
        train_labels = np.asarray(train.labels, np.int32)
        val_labels = np.asarray(validation.labels, np.int32)
        notes.append(
            f"{total} images at {image_size}px exceed the in-memory limit ({cache_limit_mb:.0f} MB): "
            "they are decoded again every epoch"
        )
    return DatasetSplits(
        train=train_ds,
        validation=val_ds,
        class_names=list(class_names),
        source=name,
        train_count=int(len(train_labels)),
        validation_count=int(len(val_labels)),
        fingerprint=fingerprint,
        audit=report,
        image_size=int(image_size),
        batch_size=int(batch_size),
        train_class_counts=_counts(train_labels, class_names),
        validation_class_counts=_counts(val_labels, class_names),
        validation_files=list(validation_ids),
        cached=cached,
        decode_seconds=seconds,
        notes=notes,
    )


# --------------------------------------------------------------------------------------------- tfds


def _tfds_data_dir(data_dir: str | os.PathLike[str] | None) -> str:
    """Where tensorflow-datasets keeps prepared data: the argument, ``$TFDS_DATA_DIR``, or tfds' default."""
    if data_dir is not None:
        return str(Path(data_dir).expanduser())
    value = os.environ.get("TFDS_DATA_DIR", "").strip()
    if value:
        return str(Path(value).expanduser())
    return str(Path("~/tensorflow_datasets").expanduser())


def _not_prepared(name: str, data_dir: str, why: str) -> AssetMissingError:
    return AssetMissingError(
        f"The tensorflow-datasets dataset '{name}' is not prepared in {data_dir} (TFDS_DATA_DIR / data_dir) "
        f"and {why}. Fix: run the same call once while online (it downloads and prepares it), or use the "
        "offline mirror's flowers (source='flowers' with TLCOURSE_MIRROR set) or an image folder of your own."
    )


def _tfds_builder(name: str, data_dir: str, download: bool | None) -> Any:
    """A prepared tfds builder; downloads when allowed and online, else a clear AssetMissingError."""
    quiet_tensorflow()
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # noqa: BLE001 - unknown names and registry errors alike
        raise DataError(
            f"tensorflow-datasets has no dataset called '{name}' ({type(error).__name__}). "
            "Check the name at https://www.tensorflow.org/datasets/catalog, or give an image folder."
        ) from None
    if builder.is_prepared():
        return builder
    if download is False:
        raise _not_prepared(name, data_dir, "downloads are turned off (download=False)")
    if download is None:
        from tlcourse import assets

        if not assets.online():
            raise _not_prepared(name, data_dir, "this machine is offline")
    try:
        builder.download_and_prepare()
    except Exception as error:  # noqa: BLE001 - network, disk and tfds bugs: one clear message
        raise AssetMissingError(
            f"Downloading and preparing '{name}' into {data_dir} failed ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:120] if str(error) else ''}). Check the connection and free disk "
            "space and try again, or use the offline mirror's flowers or an image folder."
        ) from None
    return builder


def load_tfds(
    name: str,
    *,
    image_size: int,
    batch_size: int = 32,
    max_per_class: int | None = None,
    validation_fraction: float = 0.2,
    seed: int = 42,
    shuffle_train: bool = True,
    augment: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool | None = None,
    cache_decoded: bool | None = None,
    cache_limit_mb: float = DEFAULT_CACHE_LIMIT_MB,
) -> DatasetSplits:
    """Load a tensorflow-datasets image-classification dataset, e.g. ``tf_flowers`` (lesson 04).

    ``download=None`` downloads and prepares the data once when it is missing and the machine is online;
    ``True`` tries to download without checking first; ``False`` never downloads. Missing data offline raises :class:`~tlcourse.errors.AssetMissingError` that
    says where tfds looked. Labels are renumbered so class names are alphabetical. Datasets with only a
    ``train`` split (``tf_flowers``, ``cats_vs_dogs``) get a seeded stratified validation split.
    """
    _check_arguments(image_size, batch_size, max_per_class, validation_fraction)
    tf = _tf()
    import tensorflow_datasets as tfds

    folder = _tfds_data_dir(data_dir)
    builder = _tfds_builder(name, folder, download)
    info = builder.info
    raw_names = list(info.features["label"].names)
    class_names = sorted(raw_names)
    remap = np.asarray([class_names.index(n) for n in raw_names], np.int32)
    splits_available = set(info.splits.keys())

    def raw(split: str) -> Any:
        return builder.as_dataset(
            split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
        )

    def labels_of(split: str) -> np.ndarray:
        batches = raw(split).map(lambda ex: ex["label"]).batch(4096).as_numpy_iterator()
        values = [remap[np.asarray(b, np.int64)] for b in batches]
        return np.concatenate(values) if values else np.zeros(0, np.int32)

    if "validation" in splits_available and "train" in splits_available:
        train_split, val_split = "train", "validation"
        train_labels_all, val_labels_all = labels_of("train"), labels_of("validation")
        train_idx = list(range(len(train_labels_all)))
        val_idx = list(range(len(val_labels_all)))
        note = f"tfds splits train / validation of {name}"
    else:
        train_split = val_split = "train"
        train_labels_all = val_labels_all = labels_of("train")
        train_idx, val_idx = stratified_split(train_labels_all, validation_fraction, seed=seed)
        note = (
            f"{name} has only a train split: {validation_fraction:.0%} of each class (seed {seed}) "
            "set aside for validation"
        )
    train_idx = [train_idx[i] for i in _cap_per_class(train_labels_all[train_idx], max_per_class, seed + 1)]
    val_idx = [
        val_idx[i] for i in _cap_per_class(val_labels_all[val_idx], _validation_cap(max_per_class), seed + 2)
    ]

    def pipeline_of(split: str, indices: list[int], total: int) -> Any:
        mask = np.zeros(total, bool)
        mask[indices] = True
        mask_t = tf.constant(mask)
        remap_t = tf.constant(remap)

        def decode(example: dict[str, Any]) -> tuple[Any, Any]:
            image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
            image = tf.image.resize(image, [image_size, image_size], antialias=True)
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
            return image, tf.gather(remap_t, example["label"])

        return (
            raw(split)
            .enumerate()
            .filter(lambda i, ex: tf.gather(mask_t, i))
            .map(lambda i, ex: decode(ex), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        )

    version = str(info.version)
    fingerprint = _fingerprint(
        {
            "source": f"tfds:{name}",
            "version": version,
            "image_size": int(image_size),
            "augment": bool(augment),
            "train": [train_split, train_idx],
            "validation": [val_split, val_idx],
        }
    )
    train_ds = pipeline_of(train_split, train_idx, len(train_labels_all))
    val_ds = pipeline_of(val_split, val_idx, len(val_labels_all))
    total = len(train_idx) + len(val_idx)
    cached = _fits_in_memory(total, image_size, cache_decoded, cache_limit_mb)
    seconds = 0.0
    if cached:
        import time

        start = time.perf_counter()
        arrays = []
        for dataset in (train_ds, val_ds):
            images, labels = [], []
            for x, y in dataset.batch(256).as_numpy_iterator():
                images.append(x)
                labels.append(y)
            arrays.append(
                (
                    np.concatenate(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8),
                    np.concatenate(labels).astype(np.int32) if labels else np.zeros(0, np.int32),
                )
            )
        seconds = time.perf_counter() - start
        (train_x, train_y), (val_x, val_y) = arrays
        train_out = _from_arrays(
            train_x, train_y, batch_size=batch_size, shuffle=shuffle_train, seed=seed, augment=augment
        )
        val_out = _from_arrays(val_x, val_y, batch_size=batch_size, shuffle=False, seed=seed, augment=False)
    else:
        train_y = train_labels_all[train_idx]
        val_y = val_labels_all[val_idx]
        train_out = _finish(
            train_ds,
            count=len(train_idx),
            batch_size=batch_size,
            shuffle=shuffle_train,
            seed=seed,
            augment=augment,
        )
        val_out = _finish(
            val_ds, count=len(val_idx), batch_size=batch_size, shuffle=False, seed=seed, augment=False
        )
    return DatasetSplits(
        train=train_out,
        validation=val_out,
        class_names=class_names,
        source=f"tfds:{name}",
        train_count=len(train_idx),
        validation_count=len(val_idx),
        fingerprint=fingerprint,
        audit=None,
        image_size=int(image_size),
        batch_size=int(batch_size),
        train_class_counts=_counts(train_y, class_names),
        validation_class_counts=_counts(val_y, class_names),
        validation_files=[f"{val_split}[{i}]" for i in val_idx],
        cached=cached,
        decode_seconds=seconds,
        notes=[note],
    )


# --------------------------------------------------------------------------------------------- synthetic


def synthetic_class_names(num_classes: int) -> list[str]:
    """Names of the generated classes, e.g. ``"blue_disc"``, in label (alphabetical) order (lesson 00)."""
    if not 2 <= num_classes <= len(SYNTHETIC_COLOURS):
        raise ValueError(f"num_classes must be between 2 and {len(SYNTHETIC_COLOURS)}, got {num_classes}")
    return sorted(
        f"{SYNTHETIC_COLOURS[i]}_{SYNTHETIC_PATTERNS[i % len(SYNTHETIC_PATTERNS)]}"
        for i in range(num_classes)
    )


def synthetic_image(name: str, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """One generated picture of class ``name`` (``colour_pattern``), uint8 [S, S, 3] (lesson 00).

    The colour and the pattern identify the class; position, scale, phase, brightness and noise vary, so a
    classifier has something to learn but nothing trivial to memorise.
    """
    colour, pattern = name.split("_", 1)
    size = image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    period = rng.uniform(0.15, 0.3)
    phase = rng.uniform(0, 1)
    cx, cy = rng.uniform(0.3, 0.7, 2)
    radius = rng.uniform(0.18, 0.32)
    distance = np.hypot(xx - cx, yy - cy)
    if pattern == "stripes":
        mask = ((yy / period + phase) % 1.0) < 0.5
    elif pattern == "bars":
        mask = ((xx / period + phase) % 1.0) < 0.5
    elif pattern == "disc":
        mask = distance < radius
    elif pattern == "checks":
        mask = (((xx / period + phase) // 1 + (yy / period + phase) // 1) % 2) < 1
    elif pattern == "ring":
        mask = np.abs(distance - radius) < 0.06
    else:  # diagonal
        mask = (((xx + yy) / period + phase) % 1.0) < 0.5
    foreground = np.asarray(_COLOUR_RGB[colour], np.float32) * rng.uniform(0.8, 1.1)
    background = np.full(3, rng.uniform(70, 200), np.float32)
    image = np.where(mask[..., None], foreground, background)
    image += rng.normal(0.0, 12.0, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_splits(
    num_classes: int = 3,
    per_class: int = 8,
    image_size: int = 96,
    *,
    validation_per_class: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    shuffle_train: bool = True,
    augment: bool = False,
    class_names: Sequence[str] | None = None,
) -> DatasetSplits:
    """Generated, learnable data (a colour and a pattern per class), deterministic by seed (lesson 00).

    ``per_class`` training and ``validation_per_class`` (default ``max(2, per_class // 4)``) validation images
    per class. Used by the smoke profile when no real data is available offline, and by fast tests.
    ``class_names`` relabels the generated classes (e.g. to stand in for the flowers); the pictures stay
    the synthetic patterns.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 for synthetic images, got {image_size}")
    patterns = synthetic_class_names(num_classes)
    names = sorted(class_names) if class_names is not None else patterns
    if len(names) != num_classes:
        raise ValueError(f"class_names must hold {num_classes} names, got {len(names)}")
    n_val = validation_per_class if validation_per_class is not None else max(2, per_class // 4)
    rng = np.random.default_rng(seed)

    def make(count: int) -> tuple[np.ndarray, np.ndarray]:
        images = np.zeros((num_classes * count, image_size, image_size, 3), np.uint8)
        labels = np.repeat(np.arange(num_classes, dtype=np.int32), count)
        for i, label in enumerate(labels):
            images[i] = synthetic_image(patterns[label], image_size, rng)
        return images, labels

    train_x, train_y = make(per_class)
    val_x, val_y = make(n_val)
    fingerprint = _fingerprint(
        {
            "source": "synthetic",
            "classes": names,
            "per_class": per_class,
            "validation_per_class": n_val,
            "image_size": image_size,
            "seed": seed,
            "augment": bool(augment),
        }
    )
    return DatasetSplits(
        train=_from_arrays(
            train_x, train_y, batch_size=batch_size, shuffle=shuffle_train, seed=seed, augment=augment
        ),
        validation=_from_arrays(val_x, val_y, batch_size=batch_size, shuffle=False, seed=seed, augment=False),
        class_names=list(names),
        source="synthetic",
        train_count=len(train_y),
        validation_count=len(val_y),
        fingerprint=fingerprint,
        audit=None,
        image_size=int(image_size),
        batch_size=int(batch_size),
        train_class_counts=_counts(train_y, names),
        validation_class_counts=_counts(val_y, names),
        validation_files=[f"synthetic[{i}]" for i in range(len(val_y))],
        cached=True,
        notes=["generated images (a colour and a pattern per class), not photos"],
    )


# --------------------------------------------------------------------------------------------- entry points


def load_dataset(
    source: str | os.PathLike[str] = "flowers",
    *,
    image_size: int,
    batch_size: int = 32,
    max_per_class: int | None = None,
    validation_fraction: float = 0.2,
    seed: int = 42,
    mirror: str | os.PathLike[str] | None = None,
    allow_synthetic: bool = False,
    shuffle_train: bool = True,
    augment: bool = False,
    **options: Any,
) -> DatasetSplits:
    """Load a dataset as batched, prefetched ``tf.data`` pipelines (lesson 04).

    ``source``: ``"flowers"`` (the mirror's ``flower_photos_small``, else tfds ``tf_flowers``),
    ``"tf_flowers"``, ``"cats_vs_dogs"``, ``"tfds:NAME"``, ``"synthetic"``, or the path of an image folder.
    Images come as float32 in [0, 255], ``image_size`` square; labels as int32 in alphabetical class order.
    ``max_per_class`` caps training images per class (validation at ``max(2, max_per_class // 4)``).
    When a catalog source is missing offline, ``allow_synthetic=True`` substitutes generated data and prints
    a warning; otherwise :class:`~tlcourse.errors.AssetMissingError` says what is missing and how to fix it.

    Extra options: ``data_dir`` and ``download`` (tfds), ``min_per_class`` and ``test_fraction`` (folders,
    the mirror's flowers included: see :func:`load_image_folder`), ``cache_decoded``
    (``None``: keep decoded images in memory when they fit ``cache_limit_mb``, default 512), ``workers``.
    """
    kwargs = dict(
        image_size=image_size,
        batch_size=batch_size,
        max_per_class=max_per_class,
        validation_fraction=validation_fraction,
        seed=seed,
        shuffle_train=shuffle_train,
        augment=augment,
        **options,
    )
    text = os.fspath(source)
    key = text.strip().lower()
    tfds_only = {"data_dir", "download"}
    folder_only = {"min_per_class", "workers", "report", "source_name", "test_fraction"}
    unknown = set(options) - tfds_only - folder_only - {"cache_decoded", "cache_limit_mb"}
    if unknown:
        raise TypeError(f"load_dataset() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    tfds_kwargs = {k: v for k, v in kwargs.items() if k not in folder_only}
    folder_kwargs = {k: v for k, v in kwargs.items() if k not in tfds_only}
    try:
        if key == "synthetic":
            return _synthetic_for(None, kwargs)
        if key == "flowers":
            folder = _mirror_flowers(mirror)
            if folder is not None:
                return load_image_folder(folder, source_name=f"mirror:{MIRROR_FLOWERS}", **folder_kwargs)
            try:
                return load_tfds("tf_flowers", **tfds_kwargs)
            except AssetMissingError as error:
                raise AssetMissingError(
                    f"The flowers are not available: no offline mirror with datasets/{MIRROR_FLOWERS} "
                    f"(set TLCOURSE_MIRROR or pass mirror=), and {error}"
                ) from None
        if key in CATALOG:
            return load_tfds(CATALOG[key], **tfds_kwargs)
        if key.startswith("tfds:"):
            return load_tfds(text.strip()[5:], **tfds_kwargs)
    except AssetMissingError as error:
        if not allow_synthetic:
            raise
        return _synthetic_for(key, kwargs, missing=str(error))
    path = Path(text).expanduser()
    if not path.exists() and os.sep not in text and "/" not in text:
        raise DataError(
            f"Unknown dataset '{text}': use 'flowers', 'tf_flowers', 'cats_vs_dogs', 'tfds:NAME', 'synthetic', "
            "or the path of an image folder."
        )
    return load_image_folder(path, **folder_kwargs)


def _mirror_flowers(mirror: str | os.PathLike[str] | None) -> Path | None:
    from tlcourse import assets

    return assets.dataset_dir(MIRROR_FLOWERS, mirror=mirror)


def _synthetic_for(key: str | None, kwargs: dict[str, Any], missing: str | None = None) -> DatasetSplits:
    """Synthetic data standing in for ``key`` (or asked for directly); prints a loud warning when standing in."""
    per_class = kwargs.get("max_per_class") or 16
    num_classes = (
        len(FLOWER_CLASSES) if key in ("flowers", "tf_flowers") else 2 if key == "cats_vs_dogs" else 3
    )
    splits = synthetic_splits(
        num_classes=num_classes,
        per_class=per_class,
        image_size=kwargs["image_size"],
        validation_per_class=_validation_cap(per_class),
        batch_size=kwargs.get("batch_size", 32),
        seed=kwargs.get("seed", 0),
        shuffle_train=kwargs.get("shuffle_train", True),
        augment=kwargs.get("augment", False),
    )
    if missing is not None:
        message = (
            f"WARNING: '{key}' is not available ({missing}) -> using GENERATED SYNTHETIC IMAGES instead. "
            "Results below are NOT about real photos."
        )
        border = "!" * 78
        print(f"{border}\n{message}\n{border}", flush=True)
        splits.notes.insert(0, message)
        splits.source = f"synthetic (stand-in for {key})"
        splits.synthetic_fallback = True
    return splits


def load_for_profile(
    profile: Profile, source: str | os.PathLike[str] = "flowers", **overrides: Any
) -> DatasetSplits:
    """Load ``source`` with a profile's image size, batch size, per-class cap and fallback rule (lesson 04).

    Keyword arguments override the profile (``image_size``, ``batch_size``, ``max_per_class``,
    ``allow_synthetic``) or pass through to :func:`load_dataset` (``seed``, ``mirror``, ...). With the
    ``smoke`` profile a catalog source that is unavailable offline is replaced by synthetic data, with a
    loud warning; other profiles raise the error that says how to get the data.
    """
    kwargs: dict[str, Any] = {
        "image_size": profile.image_size,
        "batch_size": profile.batch_size,
        "max_per_class": profile.max_images_per_class,
        "allow_synthetic": profile.allow_synthetic,
    }
    kwargs.update(overrides)
    return load_dataset(source, **kwargs)


__all__ = [
    "CATALOG",
    "FLOWER_CLASSES",
    "DatasetSplits",
    "default_augmentation",
    "load_dataset",
    "load_for_profile",
    "load_image_folder",
    "load_tfds",
    "stratified_split",
    "synthetic_class_names",
    "synthetic_image",
    "synthetic_splits",
]
