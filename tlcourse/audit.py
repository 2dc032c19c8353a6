"""Audit a student's image folder before training on it (introduced in lesson 08; ``tlcourse check-data`` prints it).

A folder collected by hand holds more than photos: ``.DS_Store`` files, Jupyter checkpoint folders, half
downloaded JPEGs, web pages saved as ``.jpg``, phone pictures stored sideways, classes with one image, the same
photo in both train and validation... :func:`audit_folder` looks at every file once and sorts it into

- **usable images** (also odd-but-decodable ones: CMYK, grayscale, palette, 16-bit, RGBA, PNG named ``.jpg``,
  WebP, BMP, GIF, EXIF-rotated, tiny, huge), listed in :attr:`AuditReport.records` with their class;
- **problems**: files that look like images but cannot be used, each with a short reason;
- **ignored** entries: system files, hidden and checkpoint folders, files that are not images;
- **duplicates**: byte-identical images (within a split, across classes, across train/validation), and
  **near-duplicates**: resized, recompressed or lightly edited copies, found with a perceptual hash;
- **warnings**: empty or too-small classes, tiny images, duplicates that inflate validation accuracy, ...

Layouts: ``ROOT/<class>/...`` or ``ROOT/<split>/<class>/...`` with splits ``train``, ``validation`` (also
``val``/``valid``) and ``test``. Folders nested inside a class count for that class. Symlinks that lead outside
``ROOT`` are reported and not followed; symlinks inside are followed without looping.

The folder is walked once by :func:`tlcourse.folderscan.scan_folder`; this module checks each image it found.
The audit only ever reads: no file in the folder is written, moved, renamed or deleted.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from tlcourse.errors import DataError
from tlcourse.folderscan import SPLIT_ORDER, Candidate, Problem, Scan, scan_folder
from tlcourse.imageio import TINY_SIDE, ImageDecodeError, inspect_image

NEAR_DUPLICATE_DISTANCE = 6
"""Two images whose 64-bit perceptual hashes (``imagehash.phash``) differ in at most this many bits are
reported as near-duplicates (lesson 08). A resized or recompressed copy differs by 0-2 bits. On the course's
1000 mirror flower photos every pair at 6 bits or less is one photo edited (recoloured, grayscale, cropped)
or shot twice; the closest two different photos differ by 10 bits."""
_NEAR_DUPLICATE_LIMIT = 50_000  # images: above this the all-pairs comparison is skipped (with a warning)

_READ_WHOLE_LIMIT = 64 * 1024 * 1024  # bytes read into memory at once; bigger files are streamed twice


@dataclass(frozen=True)
class ImageRecord:
    """One usable image: where it is, its class and its split (lesson 08)."""

    path: Path
    relpath: str
    label: str
    split: str | None
    """``"train"``, ``"validation"``, ``"test"``, or None for a folder without splits."""
    sha256: str = ""
    width: int = 0
    height: int = 0
    notes: tuple[str, ...] = ()


@dataclass
class AuditReport:
    """Everything :func:`audit_folder` found (lesson 08). ``to_dict()`` gives the ``--json`` shape."""

    root: Path
    splits: list[str]
    classes: dict[str, int]
    """Classes that can be trained on -> usable images (all splits together), sorted by name."""
    split_counts: dict[str, dict[str, int]]
    records: list[ImageRecord]
    """Usable images of the classes in ``classes`` (images of left-out classes are not here)."""
    problems: list[Problem]
    ignored: list[str]
    duplicates: list[tuple[str, str]]
    warnings: list[str]
    usable: bool
    reason: str
    """One line: why the folder cannot be used for training ("" when it can)."""
    excluded: dict[str, int] = field(default_factory=dict)
    """Classes left out (empty, or fewer than ``min_per_class`` usable images) -> usable images."""
    notes: list[Problem] = field(default_factory=list)
    """Odd-but-usable files and what was odd about them (``problem`` holds the note)."""
    min_per_class: int = 2
    near_duplicates: list[tuple[str, str]] = field(default_factory=list)
    """Pairs of different files showing nearly the same picture (resized, recompressed, lightly edited):
    perceptual hashes at most :data:`NEAR_DUPLICATE_DISTANCE` bits apart; exact duplicates are not repeated."""

    @property
    def class_names(self) -> list[str]:
        """The trainable class names in label order (alphabetical)."""
        return list(self.classes)

    def to_dict(self) -> dict[str, object]:
        """The JSON shape of ``tlcourse check-data --json`` (lesson 08)."""
        return {
            "classes": dict(self.classes),
            "problems": [{"path": item.path, "problem": item.problem} for item in self.problems],
            "ignored": list(self.ignored),
            "duplicates": [[first, second] for first, second in self.duplicates],
            "near_duplicates": [[first, second] for first, second in self.near_duplicates],
            "usable": self.usable,
            "reason": self.reason,
            "warnings": list(self.warnings),
            "splits": list(self.splits),
            "split_counts": {split: dict(counts) for split, counts in self.split_counts.items()},
        }


# --------------------------------------------------------------------------------------------- checking


@dataclass
class _Checked:
    candidate: Candidate
    sha256: str = ""
    width: int = 0
    height: int = 0
    notes: tuple[str, ...] = ()
    problem: str = ""
    phash: str = ""


def _phash(image: Image.Image) -> str:
    """A 64-bit perceptual hash (DCT of a 32x32 grayscale copy), as 16 hex digits ("" if it cannot be made)."""
    import imagehash

    try:
        return str(imagehash.phash(image, hash_size=8))
    except Exception:  # noqa: BLE001 - a picture that decodes is usable even if it cannot be hashed
        return ""


def _near_duplicates_available() -> bool:
    try:
        import imagehash  # noqa: F401
    except ImportError:
        return False
    return True


def _check(
    candidate: Candidate,
    gate: Callable[[], AbstractContextManager[object]] | None = None,
    near: bool = True,
) -> _Checked:
    """Hash the bytes and decode the image (reduced-scale full decode); never writes anything."""
    result = _Checked(candidate)
    try:
        size = candidate.path.stat().st_size
        if size <= _READ_WHOLE_LIMIT:
            with open(candidate.path, "rb") as handle:
                data: bytes | None = handle.read()
            result.sha256 = hashlib.sha256(data).hexdigest()
        else:
            digest = hashlib.sha256()
            with open(candidate.path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            result.sha256, data = digest.hexdigest(), None
        info = inspect_image(candidate.path, data=data, gate=gate, fingerprint=_phash if near else None)
    except ImageDecodeError as error:
        result.problem = error.reason
    except PermissionError:
        result.problem = "permission denied (the file cannot be read)"
    except OSError as error:
        result.problem = f"cannot be read ({type(error).__name__})"
    except Exception as error:  # noqa: BLE001 - one odd file must never stop the audit
        result.problem = f"cannot be decoded ({type(error).__name__}: {str(error)[:60]})"
    else:
        result.width, result.height, result.notes = info.width, info.height, info.notes
        result.phash = info.fingerprint
    return result


def _check_all(
    candidates: list[Candidate], progress: bool, workers: int | None, near: bool = True
) -> list[_Checked]:
    if not candidates:
        return []
    workers = workers or min(8, (os.cpu_count() or 2) + 2)
    big_decode = threading.BoundedSemaphore(1)  # one big picture at a time: memory stays near one budget
    with warnings.catch_warnings():
        # Big-but-legal pictures (> 89 megapixels) are reduced while decoding: Pillow's warning is noise here.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tlcourse-audit") as pool:
            results = pool.map(functools.partial(_check, gate=lambda: big_decode, near=near), candidates)
            if progress:
                from tqdm.auto import tqdm

                results = tqdm(results, total=len(candidates), desc="checking images", unit="img")
            return list(results)


def _near_duplicates(
    items: list[_Checked], max_distance: int = NEAR_DUPLICATE_DISTANCE
) -> list[tuple[str, str]]:
    """Pairs (sorted relpaths) of images whose perceptual hashes are at most ``max_distance`` bits apart.

    Byte-identical files are left out (they are exact duplicates). All pairs are compared with numpy, a block
    of rows at a time (memory stays near ``128 * len(items)`` bytes times 8).
    """
    hashed = sorted((item for item in items if item.phash), key=lambda item: item.candidate.relpath)
    if len(hashed) < 2:
        return []
    import numpy as np

    values = np.array([int(item.phash, 16) for item in hashed], dtype=np.uint64)
    table = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint8)
    pairs: list[tuple[str, str]] = []
    for start in range(0, len(values), 128):
        block = values[start : start + 128, None] ^ values[None, :]
        distance = table[block.view(np.uint8)].reshape(*block.shape, 8).sum(axis=-1)
        rows, cols = np.nonzero(distance <= max_distance)
        for row, col in zip(rows + start, cols, strict=True):
            if col > row and hashed[row].sha256 != hashed[col].sha256:
                pairs.append((hashed[row].candidate.relpath, hashed[col].candidate.relpath))
    return sorted(pairs)


def _example(items: list[str], limit: int = 2) -> str:
    shown = ", ".join(f"'{item}'" for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def plural(count: int, word: str) -> str:
    if count == 1:
        return f"1 {word}"
    return f"{count} {word[:-1]}ies" if word.endswith("y") else f"{count} {word}s"


def _verb(count: int, singular: str, plural: str) -> str:
    return singular if count == 1 else plural


def audit_folder(
    root: str | os.PathLike[str],
    *,
    min_per_class: int = 2,
    check_duplicates: bool = True,
    progress: bool = False,
    workers: int | None = None,
) -> AuditReport:
    """Check every file of an image folder and say whether it can train a classifier (lesson 08).

    ``root`` holds class folders (``cats/``, ``dogs/``), optionally inside ``train/``, ``validation/``
    (or ``val/``, ``valid/``) and ``test/`` folders. Each image is fully decoded (JPEGs at reduced scale, in
    a thread pool) so corrupt and truncated files are caught; odd-but-decodable images count as usable.
    A class needs ``min_per_class`` usable images (and, with splits, at least one in ``train``) to be
    trained on; the folder is ``usable`` when at least two classes qualify. Byte-identical files are
    reported as ``duplicates`` (``check_duplicates=False`` skips that report). Nothing in the folder is
    ever written, moved or deleted. Raises :class:`~tlcourse.errors.DataError` when ``root`` is not a folder.
    """
    if not str(root).strip():
        raise DataError("The folder is an empty string: give the folder that holds one sub-folder per class.")
    base = Path(root).expanduser()
    try:
        base.stat()
    except FileNotFoundError:
        pass
    except OSError as error:
        raise DataError(
            f"Cannot read '{printable(str(root))}' ({error.strerror or type(error).__name__}): check the "
            "permissions of the folders above it."
        ) from None
    if not base.exists():
        raise DataError(
            f"No folder at '{root}' (looked in {base.absolute()}). Check the path, or upload the images first."
        )
    if not base.is_dir():
        raise DataError(
            f"'{root}' is a file, not a folder: give the folder that holds one sub-folder per class."
        )
    if min_per_class < 1:
        raise ValueError(f"min_per_class must be at least 1, got {min_per_class}")
    try:
        os.listdir(base)
    except OSError as error:
        raise DataError(
            f"Cannot read the folder '{root}' ({error.strerror}): check its permissions."
        ) from None

    scan, splits = scan_folder(base)
    near = check_duplicates and len(scan.candidates) <= _NEAR_DUPLICATE_LIMIT and _near_duplicates_available()
    checked = _check_all(scan.candidates, progress, workers, near=near)

    problems = list(scan.problems)
    good: list[_Checked] = []
    for item in checked:
        if item.problem:
            problems.append(Problem(item.candidate.relpath, item.problem))
        else:
            good.append(item)

    # Counts per class and split.
    per_class: Counter[str] = Counter()
    per_split: dict[str, Counter[str]] = defaultdict(Counter)
    for item in good:
        per_class[item.candidate.label] += 1
        if item.candidate.split is not None:
            per_split[item.candidate.split][item.candidate.label] += 1
    all_classes = sorted({label for _split, label in scan.class_folders} | set(per_class))

    warn = list(scan.warnings)
    eligible: list[str] = []
    excluded: dict[str, int] = {}
    for label in all_classes:
        total = per_class[label]
        in_train = per_split["train"][label] if splits else total
        if total == 0:
            where = [rel for (split, name), rel in scan.class_folders.items() if name == label]
            warn.append(
                f"class folder {_example(sorted(where))} holds no usable images: it is not used as a class."
            )
        elif splits and in_train == 0:
            if "train" in splits:
                warn.append(f"class '{label}' has no images in train/: it cannot be learned and is left out.")
        elif total < min_per_class:
            warn.append(
                f"class '{label}' has only {plural(total, 'usable image')} (at least {min_per_class} needed): "
                "it is left out; add more images or remove the folder."
            )
        else:
            eligible.append(label)
            if "validation" in splits and per_split["validation"][label] == 0:
                warn.append(f"class '{label}' has no validation images: its accuracy cannot be measured.")
            continue
        excluded[label] = total
    if splits and "train" not in splits:
        warn.append(f"there are {'/'.join(splits)} folders but no train/ folder: nothing can be learned.")
    if splits and "train" in splits and "validation" not in splits:
        warn.append(
            "there is a train/ folder but no validation/ folder: a validation split will be drawn from train."
        )
    if eligible:
        counts = [per_class[label] for label in eligible]
        if len(counts) >= 2 and max(counts) >= 5 * min(counts):
            warn.append(
                f"classes are unbalanced ({min(counts)} to {max(counts)} images): accuracy will favour the big "
                "classes; look at per-class recall."
            )

    # Duplicates (byte-identical files among decodable images) and near-duplicates (perceptual hash).
    duplicates: list[tuple[str, str]] = []
    near_duplicates: list[tuple[str, str]] = []
    by_path = {item.candidate.relpath: item.candidate for item in good}
    if check_duplicates:
        groups: dict[str, list[_Checked]] = defaultdict(list)
        for item in good:
            groups[item.sha256].append(item)
        cross_split, cross_class = [], []
        for group in groups.values():
            if len(group) < 2:
                continue
            group.sort(key=lambda item: item.candidate.relpath)
            first = group[0].candidate
            for other in group[1:]:
                duplicates.append((first.relpath, other.candidate.relpath))
                if other.candidate.split != first.split:
                    cross_split.append(f"{first.relpath} = {other.candidate.relpath}")
                if other.candidate.label != first.label:
                    cross_class.append(f"{first.relpath} = {other.candidate.relpath}")
        duplicates.sort()
        if cross_split:
            warn.append(
                f"{plural(len(cross_split), 'image')} {_verb(len(cross_split), 'appears', 'appear')} in more than one split (e.g. {cross_split[0]}): "
                "copies of training images in validation inflate validation accuracy; keep one copy."
            )
        if cross_class:
            warn.append(
                f"{plural(len(cross_class), 'image')} {_verb(len(cross_class), 'appears', 'appear')} in more than one class (e.g. {cross_class[0]}): "
                "their label is ambiguous."
            )
        within = len(duplicates) - len(cross_split)
        if within:
            warn.append(f"{plural(within, 'duplicate pair')} inside a split: each such image counts twice.")
        near_duplicates = _near_duplicates(good)
        near_split = [f"{a} ~ {b}" for a, b in near_duplicates if by_path[a].split != by_path[b].split]
        near_class = [f"{a} ~ {b}" for a, b in near_duplicates if by_path[a].label != by_path[b].label]
        if near_split:
            warn.append(
                f"{plural(len(near_split), 'image')} {_verb(len(near_split), 'has', 'have')} a near-duplicate (a "
                f"resized, recompressed or edited copy) in another split (e.g. {near_split[0]}): they inflate "
                "validation accuracy like exact copies; keep one of each pair."
            )
        if near_class:
            warn.append(
                f"{plural(len(near_class), 'image')} {_verb(len(near_class), 'has', 'have')} a near-duplicate in "
                f"another class (e.g. {near_class[0]}): their label is ambiguous."
            )
        near_within = len(near_duplicates) - len(near_split)
        if near_within:
            warn.append(
                f"{plural(near_within, 'near-duplicate pair')} inside a split: each such picture counts twice."
            )
        if not _near_duplicates_available():
            warn.append(
                "near-duplicates were not looked for: install the imagehash package (pip install imagehash)."
            )
        elif len(scan.candidates) > _NEAR_DUPLICATE_LIMIT:
            warn.append(
                f"more than {_NEAR_DUPLICATE_LIMIT:,} images: near-duplicates were not looked for (exact ones were)."
            )

    notes = [
        Problem(item.candidate.relpath, "; ".join(item.notes))
        for item in sorted(good, key=lambda item: item.candidate.relpath)
        if item.notes
    ]
    tiny = sorted(item.candidate.relpath for item in good if min(item.width, item.height) < TINY_SIDE)
    if tiny:
        warn.append(
            f"{plural(len(tiny), 'tiny image')} (under {TINY_SIDE} px), e.g. {_example(tiny, 1)}: usable, but they "
            "are blown up to the training size and carry little detail."
        )
    if problems:
        warn.append(f"{plural(len(problems), 'file')} cannot be used and will be skipped (see problems).")
    if scan.loose_images:
        warn.append(
            f"{plural(len(scan.loose_images), 'image')} {_verb(len(scan.loose_images), 'lies', 'lie')} outside any class folder "
            f"(e.g. {_example(scan.loose_images, 1)}): they are not used."
        )

    eligible_set = set(eligible)
    records = [
        ImageRecord(
            path=item.candidate.path,
            relpath=item.candidate.relpath,
            label=item.candidate.label,
            split=item.candidate.split,
            sha256=item.sha256,
            width=item.width,
            height=item.height,
            notes=item.notes,
        )
        for item in good
        if item.candidate.label in eligible_set
    ]
    split_rank = {split: rank for rank, split in enumerate(SPLIT_ORDER)}
    records.sort(key=lambda record: (split_rank.get(record.split or "", -1), record.label, record.relpath))

    usable = len(eligible) >= 2
    reason = "" if usable else _reason(base, splits, scan, per_class, eligible, good, min_per_class)
    return AuditReport(
        root=base,
        splits=splits,
        classes={label: per_class[label] for label in eligible},
        split_counts={split: {label: per_split[split][label] for label in eligible} for split in splits},
        records=records,
        problems=sorted(problems, key=lambda item: item.path),
        ignored=sorted(set(scan.ignored)),
        duplicates=duplicates,
        near_duplicates=near_duplicates,
        warnings=warn,
        usable=usable,
        reason=reason,
        excluded=excluded,
        notes=notes,
        min_per_class=min_per_class,
    )


def _reason(
    base: Path,
    splits: list[str],
    scan: Scan,
    per_class: Counter[str],
    eligible: list[str],
    good: list[_Checked],
    min_per_class: int,
) -> str:
    """One line saying why the folder cannot train a classifier."""
    if splits and "train" not in splits:
        return f"'{base}' has {'/'.join(splits)} folders but no train/ folder to learn from."
    if not scan.class_folders:
        if scan.loose_images:
            return (
                f"the images lie directly in '{base}': put each class's images in its own sub-folder "
                "(e.g. cats/, dogs/)."
            )
        return f"no class folders found in '{base}': put each class's images in its own sub-folder (e.g. cats/, dogs/)."
    if not good:
        return f"no usable images found in '{base}' (see problems and ignored files)."
    if len(eligible) == 1:
        return (
            f"only one class ('{eligible[0]}') has at least {min_per_class} usable images: "
            "a classifier needs at least two classes."
        )
    return f"no class has at least {min_per_class} usable images: add images so at least two classes do."


# --------------------------------------------------------------------------------------------- output


def printable(text: str) -> str:
    """A path safe to print on any terminal (undecodable bytes and control characters escaped)."""
    cleaned = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in cleaned)
