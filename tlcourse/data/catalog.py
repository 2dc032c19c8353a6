"""tensorflow-datasets sources (``tf_flowers``, ``cats_vs_dogs``, ``tfds:NAME``) as
:class:`~tlcourse.data.splits.DatasetSplits`, prepared once when online (lesson 04).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlcourse import downloads
from tlcourse.backend import tf_module as _tf
from tlcourse.config import quiet_tensorflow
from tlcourse.data.splits import (
    DEFAULT_CACHE_LIMIT_MB,
    DatasetSplits,
    _cap_per_class,
    _check_arguments,
    _counts,
    _fingerprint,
    _finish,
    _fits_in_memory,
    _from_arrays,
    _validation_cap,
    stratified_split,
)
from tlcourse.errors import AssetMissingError, DataError

if TYPE_CHECKING:  # pragma: no cover - typing only
    pass

CATALOG = {"tf_flowers": "tf_flowers", "cats_vs_dogs": "cats_vs_dogs"}
"""Names accepted as tensorflow-datasets sources (``"tfds:NAME"`` reaches any other tfds dataset)."""

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
        if not downloads.online():
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
