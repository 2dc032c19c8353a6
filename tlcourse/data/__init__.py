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

Layout: this package's ``__init__`` holds the two entry points (:func:`load_dataset`, :func:`load_for_profile`)
and names the public API; each source lives in its own module: :mod:`tlcourse.data.folders` (image folders),
:mod:`tlcourse.data.catalog` (tensorflow-datasets), :mod:`tlcourse.data.synthetic` (generated pictures), all
answering through :mod:`tlcourse.data.splits` (:class:`DatasetSplits`, stratified splits, the pipelines and
the one :func:`default_augmentation`).

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

import os
import tempfile
from pathlib import Path
from typing import Any

from tlcourse import assets
from tlcourse.config import Profile
from tlcourse.data.catalog import CATALOG, load_tfds
from tlcourse.data.dedupe import DuplicateReport, drop_duplicates, find_duplicates
from tlcourse.data.folders import capped_copy, load_image_folder
from tlcourse.data.real import (
    EUROSAT_CLASSES,
    LANDUSE_CLASSES,
    DomainPair,
    flips_and_quarter_turns,
    load_course_folder,
    load_eurosat,
    load_sat2aerial,
)
from tlcourse.data.splits import (
    FLOWER_CLASSES,
    DatasetSplits,
    _validation_cap,
    augment_dataset,
    default_augmentation,
    stratified_split,
)
from tlcourse.data.synthetic import (
    announce_stand_in,
    synthetic_class_names,
    synthetic_image,
    synthetic_splits,
    write_synthetic_folder,
)
from tlcourse.errors import AssetMissingError, DataError

MIRROR_FLOWERS = "flower_photos_small"

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

    ``source``: ``"flowers"`` (the mirror's ``flower_photos_small``, else tfds ``tf_flowers``), ``"eurosat"``
    (the mirror's ``eurosat_rgb_small`` with a fixed test split: :func:`load_eurosat`), ``"tf_flowers"``,
    ``"cats_vs_dogs"``, ``"tfds:NAME"``, ``"synthetic"``, or the path of an image folder. The mirror's folders
    are audited and one picture of each duplicate pair is dropped before any split (``dedupe=False`` keeps
    them; ``dedupe=True`` does the same for a folder of your own): ``splits.duplicates`` says what was found.
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
    folder_only = {"min_per_class", "workers", "report", "source_name", "test_fraction", "dedupe"}
    eurosat_only = {"test_from", "test_per_class", "validation_per_class"} if key == "eurosat" else set()
    unknown = set(options) - tfds_only - folder_only - eurosat_only - {"cache_decoded", "cache_limit_mb"}
    if unknown:
        raise TypeError(f"load_dataset() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    tfds_kwargs = {k: v for k, v in kwargs.items() if k not in folder_only}
    folder_kwargs = {k: v for k, v in kwargs.items() if k not in tfds_only}
    dedupe = folder_kwargs.pop("dedupe", None)  # the course's own folders: on unless turned off
    try:
        if key == "synthetic":
            return _synthetic_for(None, kwargs)
        if key == "flowers":
            folder = _mirror_flowers(mirror)
            if folder is not None:
                return load_course_folder(
                    folder, name=MIRROR_FLOWERS, dedupe=dedupe is not False, **folder_kwargs
                )
            try:
                return load_tfds("tf_flowers", **tfds_kwargs)
            except AssetMissingError as error:
                raise AssetMissingError(
                    f"The flowers are not available: no offline mirror with datasets/{MIRROR_FLOWERS} "
                    f"(set TLCOURSE_MIRROR or pass mirror=), and {error}"
                ) from None
        if key == "eurosat":
            return load_eurosat(mirror=mirror, allow_synthetic=allow_synthetic, **folder_kwargs)
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
    if dedupe:
        return load_course_folder(path, **folder_kwargs)
    return load_image_folder(path, **folder_kwargs)


def _mirror_flowers(mirror: str | os.PathLike[str] | None) -> Path | None:
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
        announce_stand_in(splits, key or "synthetic", missing)
    return splits


def photo_folder(profile: Profile, *, mirror: str | os.PathLike[str] | None = None, seed: int = 42) -> Path:
    """The flower photos' folder, ``train/`` and ``validation/`` with one sub-folder per class, for code that
    reads a folder itself, e.g. ``keras.utils.image_dataset_from_directory`` (lesson 04).

    In a profile that allows stand-ins (smoke) with no mirror, generated pictures are written to a fresh
    temporary folder instead, with the same loud warning as :func:`load_for_profile`; other profiles raise the
    error that says how to get the photos.
    """
    folder = _mirror_flowers(mirror)
    if folder is not None:
        return folder
    if not profile.allow_synthetic:
        raise AssetMissingError(
            "The flower photos are not here: point TLCOURSE_MIRROR at the course's mirror (lesson 00) or run "
            "`tlcourse assets prepare`."
        )
    border = "!" * 78
    print(
        f"{border}\nWARNING: no flower photos here -> writing GENERATED SYNTHETIC IMAGES to a temporary "
        f"folder instead.\nResults below are NOT about real photos.\n{border}",
        flush=True,
    )
    generated = Path(tempfile.mkdtemp(prefix="tlcourse-photos-"))
    return write_synthetic_folder(generated, image_size=profile.image_size, seed=seed)


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
    "EUROSAT_CLASSES",
    "FLOWER_CLASSES",
    "LANDUSE_CLASSES",
    "DatasetSplits",
    "DomainPair",
    "DuplicateReport",
    "augment_dataset",
    "capped_copy",
    "default_augmentation",
    "drop_duplicates",
    "find_duplicates",
    "flips_and_quarter_turns",
    "load_course_folder",
    "load_eurosat",
    "load_sat2aerial",
    "load_dataset",
    "load_for_profile",
    "load_image_folder",
    "load_tfds",
    "photo_folder",
    "stratified_split",
    "synthetic_class_names",
    "synthetic_image",
    "synthetic_splits",
    "write_synthetic_folder",
]
