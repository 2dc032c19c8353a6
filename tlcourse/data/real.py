"""The course's own real datasets from the offline mirror, cleaned and split so that no choice ever sees a test
image (lessons 04, 05 and 07).

- ``flower_photos_small`` (lesson 04 on): five flower classes, near ImageNet. :func:`load_course_folder` audits
  it, drops one picture of every duplicate pair (:mod:`tlcourse.data.dedupe`) and only then splits it.
- ``eurosat_rgb_small`` (lesson 05): Sentinel-2 land use, 10 classes, 64x64, far from ImageNet.
  :func:`load_eurosat` keeps the mirror's ``validation/`` folder for every choice (epochs, early stopping,
  settings) and carves the **test** split out of ``train/``: the ``test_per_class`` pictures of each class
  whose name ranks first under a fixed hash (:func:`rank_by_name`). The same pictures are test on every
  machine, whatever the seed, so a figure measured on them can be compared across runs and stated in prose.
- ``landuse_sat2aerial`` (lesson 07): the same five land-use classes seen by a satellite (source) and from an
  aircraft (target). :func:`load_sat2aerial` returns a :class:`DomainPair`: satellite train/validation/test,
  and an aerial ``target`` whose ``train`` is the adaptation pool (its labels serve k-shot re-fitting, its
  pixels alone serve BatchNorm re-estimation) and whose ``validation`` is the held-out aerial set every
  adaptation is measured on. Every role is chosen by name hash too, so the sets are disjoint and fixed.

When the mirror lacks a dataset, ``allow_synthetic=True`` (the smoke profile) substitutes generated pictures
with the same class names and split sizes, and says so loudly; otherwise
:class:`~tlcourse.errors.AssetMissingError` says what is missing. The conventions are the package's: float32
images in [0, 255], int32 labels in alphabetical class order, batched and prefetched ``tf.data`` pipelines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tlcourse.data.dedupe import DuplicateReport, drop_duplicates, find_duplicates
from tlcourse.data.folders import load_image_folder
from tlcourse.data.splits import DatasetSplits, _counts, _fingerprint, _from_arrays, _validation_cap
from tlcourse.data.synthetic import announce_stand_in, synthetic_image
from tlcourse.errors import AssetMissingError

FLOWERS = "flower_photos_small"
EUROSAT = "eurosat_rgb_small"
SAT2AERIAL = "landuse_sat2aerial"
EUROSAT_CLASSES: tuple[str, ...] = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)
"""EuroSAT's ten classes in label order."""
LANDUSE_CLASSES: tuple[str, ...] = ("agricultural", "forest", "highway", "residential", "river")
"""The five classes ``landuse_sat2aerial`` shares between its two domains, in label order."""
EUROSAT_TEST_PER_CLASS = 50
"""Test pictures per EuroSAT class, carved from ``train/`` (150 a class): 100 train, 50 validation, 50 test."""


def rank_by_name(relpath: str, salt: str) -> str:
    """The key that orders pictures for a fixed, seed-free choice: sha256 of ``salt/relpath`` (lessons 05, 07).

    Sorting a class's relative paths by this key and taking the first few gives the same pictures on every
    machine, in every run, and another ``salt`` gives an independent choice.
    """
    return hashlib.sha256(f"{salt}/{relpath}".encode()).hexdigest()


def assign_roles(records: Iterable[Any], sizes: Mapping[str, int | None], *, salt: str) -> dict[str, str]:
    """Give each audited record a role, class by class, in :func:`rank_by_name` order (lessons 05 and 07).

    ``sizes`` maps a role to how many pictures of each class take it, in order; the last role may be None
    ("all the rest"). Returns relpath -> role. A class with too few pictures fills the roles in order and
    leaves the later ones short (never empty when it has at least one picture per role).
    """
    by_class: dict[str, list[str]] = {}
    for record in records:
        by_class.setdefault(record.label, []).append(record.relpath)
    roles: dict[str, str] = {}
    for paths in by_class.values():
        ordered = sorted(paths, key=lambda path: rank_by_name(path, salt))
        start = 0
        for role, size in sizes.items():
            stop = len(ordered) if size is None else min(len(ordered), start + size)
            roles.update({path: role for path in ordered[start:stop]})
            start = stop
    return roles


def _mirror_folder(name: str, mirror: str | os.PathLike[str] | None) -> Path | None:
    from tlcourse import assets

    return assets.dataset_dir(name, mirror=mirror)


def _missing(name: str) -> AssetMissingError:
    return AssetMissingError(
        f"The dataset {name} is not available: no offline mirror with datasets/{name} (set TLCOURSE_MIRROR or "
        "pass mirror=). Fix: point TLCOURSE_MIRROR at the course's mirror, or run in the smoke profile, which "
        "uses generated pictures instead."
    )


def audited(root: str | os.PathLike[str], *, dedupe: bool = True) -> tuple[Any, DuplicateReport]:
    """Audit a folder and, with ``dedupe``, drop one picture of each duplicate pair (lessons 04 and 08).

    Returns the (cleaned) :class:`~tlcourse.audit.AuditReport` and the :class:`DuplicateReport` of what the
    audit found and what was dropped (``applied`` False without ``dedupe``).
    """
    from tlcourse import audit

    report = audit.audit_folder(root)
    if dedupe:
        return drop_duplicates(report)
    return report, find_duplicates(report)


def load_course_folder(
    root: str | os.PathLike[str],
    *,
    name: str | None = None,
    dedupe: bool = True,
    roles: Mapping[str, str] | None = None,
    report: Any = None,
    duplicates: DuplicateReport | None = None,
    **options: Any,
) -> DatasetSplits:
    """Load one of the course's folders (``name``: its mirror name), duplicates dropped before any split
    (lessons 04, 05 and 07).

    ``roles`` (relpath -> ``"train"``, ``"validation"`` or ``"test"``) overrides the folders' own splits, so a
    test split can be carved by name (:func:`assign_roles`); a record without a role keeps its folder's split.
    The rest of ``options`` goes to :func:`tlcourse.data.load_image_folder`. The result's ``duplicates`` says
    what the audit found and dropped, and a note repeats it.
    """
    if report is None:
        report, duplicates = audited(root, dedupe=dedupe)
    if roles:
        records = [dataclasses.replace(r, split=roles.get(r.relpath, r.split)) for r in report.records]
        report = dataclasses.replace(report, records=records)
    source_name = options.pop("source_name", None) or (f"mirror:{name}" if name else None)
    splits = load_image_folder(root, report=report, source_name=source_name, **options)
    if roles:  # the test split was carved by role, not found in a test/ folder
        splits.notes = [note for note in splits.notes if not note.startswith("the test/ folder")]
    splits.duplicates = duplicates
    if duplicates is not None and duplicates.pairs:
        splits.notes.append(duplicates.summary())
    return splits


def load_eurosat(
    *,
    image_size: int = 64,
    batch_size: int = 32,
    test_from: str = "train",
    test_per_class: int = EUROSAT_TEST_PER_CLASS,
    validation_per_class: int = 20,
    max_per_class: int | None = None,
    seed: int = 42,
    mirror: str | os.PathLike[str] | None = None,
    allow_synthetic: bool = False,
    shuffle_train: bool = True,
    augment: bool = False,
    **options: Any,
) -> DatasetSplits:
    """EuroSAT RGB (10 land-use classes, native 64 px) with train, validation and test pipelines (lesson 05).

    ``test_from="train"``: ``validation`` is the mirror's ``validation/`` folder (50 a class), for every choice;
    ``test`` is the ``test_per_class`` pictures of each class of ``train/`` that rank first by name
    (:func:`rank_by_name`), the same in every run; ``train`` is the rest (100 a class by default).
    ``test_from="validation"``: ``test`` is the whole ``validation/`` folder (50 a class) and ``validation``
    the ``validation_per_class`` pictures of each class of ``train/`` that rank first by name; ``train`` is
    the rest (130 a class by default). ``max_per_class`` caps training pictures (validation and test at
    ``max(2, max_per_class // 4)``), as :func:`tlcourse.data.load_dataset` does. Without the mirror,
    ``allow_synthetic`` gives generated pictures.
    """
    if test_from not in ("train", "validation"):
        raise ValueError(f"test_from must be 'train' or 'validation', got {test_from!r}")
    folder = _mirror_folder(EUROSAT, mirror)
    common = dict(
        image_size=image_size, batch_size=batch_size, seed=seed, shuffle_train=shuffle_train, augment=augment
    )
    if folder is None:
        if not allow_synthetic:
            raise _missing(EUROSAT)
        per_class = max_per_class or 16
        held = _validation_cap(per_class) or 2
        return synthetic_stand_in(
            EUROSAT, EUROSAT_CLASSES, {"train": per_class, "validation": held, "test": held}, **common
        )
    report, duplicates = audited(folder)
    train_records = [r for r in report.records if r.split == "train"]
    if test_from == "train":
        roles = assign_roles(train_records, {"test": test_per_class, "train": None}, salt="eurosat-test")
        how = f"test: the {test_per_class} pictures a class of train/ that rank first by name hash"
    else:
        roles = assign_roles(
            train_records, {"validation": validation_per_class, "train": None}, salt="eurosat-validation"
        )
        roles.update({r.relpath: "test" for r in report.records if r.split == "validation"})
        how = (
            f"test: the validation/ folder; validation: the {validation_per_class} pictures a class of train/ "
            "that rank first by name hash"
        )
    splits = load_course_folder(
        folder,
        name=EUROSAT,
        roles=roles,
        report=report,
        duplicates=duplicates,
        max_per_class=max_per_class,
        **common,
        **options,
    )
    splits.notes.append(f"{how} (fixed in every run); every choice uses validation only")
    return splits


def flips_and_quarter_turns(seed: int = 42) -> Callable[[Any], Any]:
    """A function that flips each picture of a batch left-right and up-down at random and turns it by a random
    multiple of 90 degrees: the 8 orientations of a square (lesson 05's far domain).

    For pictures taken from above (satellite and aerial tiles, microscopy), which have no "up": every
    orientation is as real as the original, unlike a landscape photo turned upside down. The function takes and
    returns a float batch ``[B, S, S, 3]`` (square) and, like lesson 04's
    :func:`~tlcourse.data.default_augmentation`, goes to :func:`~tlcourse.data.augment_dataset`:
    ``data.augment_dataset(far.train, data.flips_and_quarter_turns(SEED))``. On EuroSAT it made fine-tuning's gain over the head clear the noise
    where the default augmentation did not (benchmarks/eurosat_fine_tune.py).
    """
    from tlcourse.backend import tf_module

    tf = tf_module()  # here, not inside the traced function below

    def turn(images: Any, training: bool = True) -> Any:
        if not training:  # like Keras' augmentation layers: nothing changes at inference
            return images
        count = tf.shape(images)[0]
        coin = [tf.random.uniform([count, 1, 1, 1], seed=seed + i) < 0.5 for i in range(2)]
        flipped = tf.where(coin[0], tf.reverse(images, axis=[2]), images)
        flipped = tf.where(coin[1], tf.reverse(flipped, axis=[1]), flipped)
        turns = tf.stack([tf.image.rot90(flipped, k) for k in range(4)], axis=1)  # [B, 4, S, S, 3]
        return tf.gather(turns, tf.random.uniform([count], 0, 4, dtype=tf.int32, seed=seed + 2), batch_dims=1)

    return turn


@dataclass
class DomainPair:
    """A source and a target domain with the same classes (lesson 07).

    ``source``: :class:`DatasetSplits` of the source domain with ``train``, ``validation`` and ``test``.
    ``target``: :class:`DatasetSplits` of the target domain whose ``train`` is the **adaptation pool** (pick
    k labelled pictures a class from it with :func:`tlcourse.shift.few_shot`, or use its pixels without labels
    to re-estimate BatchNorm) and whose ``validation`` is the **held-out target set**: every adaptation is
    measured on it, and nothing is chosen with it (fix epochs and rates in advance).
    """

    source: DatasetSplits
    target: DatasetSplits
    source_domain: str
    target_domain: str
    notes: list[str] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        """The classes both domains share, in label order."""
        return list(self.source.class_names)

    @property
    def synthetic_fallback(self) -> bool:
        """True when generated pictures stand in for the real pair."""
        return self.source.synthetic_fallback or self.target.synthetic_fallback

    def summary(self) -> str:
        """A few lines: the two domains, their parts and counts, the notes."""
        source, target = self.source, self.target
        lines = [
            f"source ({self.source_domain}): train {source.train_count}, validation {source.validation_count}, "
            f"test {source.test_count}",
            f"target ({self.target_domain}): adaptation pool {target.train_count} (target.train), held-out test "
            f"{target.validation_count} (target.validation)",
            f"classes ({len(self.class_names)}): {', '.join(self.class_names)}; "
            f"images {source.image_size}x{source.image_size}",
        ]
        return "\n".join(lines + [f"note: {note}" for note in self.notes])


def load_sat2aerial(
    *,
    image_size: int = 64,
    batch_size: int = 32,
    source_test_per_class: int = 20,
    source_validation_per_class: int = 10,
    target_test_per_class: int = 40,
    seed: int = 42,
    mirror: str | os.PathLike[str] | None = None,
    allow_synthetic: bool = False,
    **options: Any,
) -> DomainPair:
    """The satellite -> aerial land-use pair as a :class:`DomainPair` (lesson 07).

    Satellite (source, EuroSAT 64x64, 70 a class): ``source_test_per_class`` test and
    ``source_validation_per_class`` validation pictures a class chosen by name hash, the rest (40) train.
    Aerial (target, UC Merced orthophotos 256x256, 70 a class) resized to ``image_size``:
    ``target_test_per_class`` held-out pictures a class (``target.validation``) and the rest (30) as the
    adaptation pool (``target.train``). Every role is fixed by name, whatever ``seed``; ``seed`` only orders
    the training pipelines. Duplicates are looked for in each domain and dropped before the roles are drawn.
    """
    folder = _mirror_folder(SAT2AERIAL, mirror)
    common = dict(image_size=image_size, batch_size=batch_size, seed=seed)
    if folder is None:
        if not allow_synthetic:
            raise _missing(SAT2AERIAL)
        sizes = {"train": 8, "validation": 2, "test": 2}
        source = synthetic_stand_in(SAT2AERIAL, LANDUSE_CLASSES, sizes, **common)
        target = synthetic_stand_in(
            SAT2AERIAL, LANDUSE_CLASSES, {"train": 6, "validation": 4}, tint=(0.55, 0.75, 1.0), **common
        )
        return DomainPair(
            source, target, "satellite (generated)", "aerial (generated)", list(source.notes[:1])
        )
    parts = {}
    for domain, sizes, salt in (
        (
            "satellite",
            {"test": source_test_per_class, "validation": source_validation_per_class, "train": None},
            "sat",
        ),
        ("aerial", {"validation": target_test_per_class, "train": None}, "aerial"),
    ):
        report, duplicates = audited(folder / domain)
        roles = assign_roles(report.records, sizes, salt=f"{SAT2AERIAL}-{salt}")
        parts[domain] = load_course_folder(
            folder / domain,
            name=f"{SAT2AERIAL}/{domain}",
            roles=roles,
            report=report,
            duplicates=duplicates,
            **common,
            **options,
        )
    notes = [
        "roles by name hash (fixed in every run): satellite train/validation/test; aerial adaptation pool "
        "(target.train) and held-out test (target.validation)",
        "the two sensors differ: satellite 10 m pixels (a 640 m tile), aerial 0.3 m pixels (a 77 m tile)",
    ]
    return DomainPair(parts["satellite"], parts["aerial"], "satellite", "aerial", notes)


def synthetic_stand_in(
    name: str,
    class_names: Iterable[str],
    sizes: Mapping[str, int],
    *,
    image_size: int,
    batch_size: int = 32,
    seed: int = 0,
    shuffle_train: bool = True,
    augment: bool = False,
    tint: tuple[float, float, float] | None = None,
) -> DatasetSplits:
    """Generated pictures standing in for dataset ``name``: its class names, ``sizes`` pictures a class per
    part (``train``, ``validation``, optionally ``test``), an optional colour ``tint`` (a second domain), and a
    loud warning (the smoke profile without the mirror; lessons 05 and 07)."""
    from tlcourse.data.synthetic import synthetic_class_names

    names = sorted(class_names)
    patterns = synthetic_class_names(len(names))
    rng = np.random.default_rng(seed)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for part, count in sizes.items():
        labels = np.repeat(np.arange(len(names), dtype=np.int32), count)
        images = np.stack([synthetic_image(patterns[label], image_size, rng) for label in labels])
        if tint is not None:
            images = np.clip(images * np.asarray(tint, np.float32), 0, 255).astype(np.uint8)
        arrays[part] = images, labels

    def pipeline(part: str, shuffle: bool) -> Any:
        images, labels = arrays[part]
        return _from_arrays(
            images, labels, batch_size=batch_size, shuffle=shuffle, seed=seed, augment=augment and shuffle
        )

    test = arrays.get("test")
    splits = DatasetSplits(
        train=pipeline("train", shuffle_train),
        validation=pipeline("validation", False),
        class_names=names,
        source="synthetic",
        train_count=len(arrays["train"][1]),
        validation_count=len(arrays["validation"][1]),
        fingerprint=_fingerprint(
            {
                "source": "synthetic",
                "stand_in": name,
                "sizes": dict(sizes),
                "tint": tint,
                "image_size": image_size,
                "seed": seed,
                "augment": bool(augment),
            }
        ),
        image_size=int(image_size),
        batch_size=int(batch_size),
        train_class_counts=_counts(arrays["train"][1], names),
        validation_class_counts=_counts(arrays["validation"][1], names),
        validation_files=[f"synthetic[{i}]" for i in range(len(arrays["validation"][1]))],
        cached=True,
        test=pipeline("test", False) if test is not None else None,
        test_count=len(test[1]) if test is not None else 0,
        test_class_counts=_counts(test[1], names) if test is not None else {},
    )
    return announce_stand_in(splits, name, f"no offline mirror with datasets/{name}")
