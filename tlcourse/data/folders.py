"""Image folders (``class/`` sub-folders, optionally under ``train/``, ``validation/``, ``test/``) as
:class:`~tlcourse.data.splits.DatasetSplits`, audited first and decoded once (lessons 04 and 08).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tlcourse import audit
from tlcourse.data.splits import (
    DEFAULT_CACHE_LIMIT_MB,
    DatasetSplits,
    _cap_per_class,
    _check_arguments,
    _counts,
    _decode_files,
    _fingerprint,
    _fits_in_memory,
    _from_arrays,
    _from_files,
    _Selection,
    _validation_cap,
    stratified_split,
)
from tlcourse.errors import DataError
from tlcourse.paths import display_path

if TYPE_CHECKING:  # pragma: no cover - typing only
    from tlcourse.audit import AuditReport


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

    name = source_name or f"folder:{display_path(report.root)}"  # shown in summaries and model cards
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


def capped_copy(folder: str | os.PathLike[str], per_class: int) -> Path:
    """A copy of an image folder with at most ``per_class`` files per class in ``train/`` (a quarter of that, at
    least one, in every other split), the first by name; the original is never touched (lesson 05's Keras-only
    exercise in the smoke profile: code that reads a folder itself runs in seconds on the copy).

    Returns a fresh temporary folder laid out like ``folder``.
    """
    source = Path(folder)
    target = Path(tempfile.mkdtemp(prefix="tlcourse-capped-"))
    for class_dir in sorted(path for path in source.glob("*/*") if path.is_dir()):
        split = class_dir.parent.name
        keep = per_class if split == "train" else max(1, per_class // 4)
        (target / split / class_dir.name).mkdir(parents=True)
        for file in sorted(path for path in class_dir.iterdir() if path.is_file())[:keep]:
            shutil.copy2(file, target / split / class_dir.name / file.name)
    return target
