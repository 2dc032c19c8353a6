"""The mirror administrator's side of ``tlcourse assets``: ``prepare`` (download every asset into a classroom
mirror, with checksums), ``verify`` (check a mirror against its checksums) and the command itself. Students never
import this; what they use (resolving weights and photos, ``status``) stays in :mod:`tlcourse.assets`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tlcourse.assets import (
    CLASS_INDEX_FILE,
    CLASSIFIER_FILES,
    COURSE_CLASSIFIERS,
    COURSE_FILES,
    COURSE_WEIGHTS,
    DEFAULT_DATASET,
    FLOWERS_URL,
    MANIFEST_FILE,
    MIRROR_ENV,
    MIRROR_SUBDIRS,
    MOBILENET_V2_SIZES,
    SUMS_FILE,
    AssetSpec,
    _DownloadFailed,
    _known_assets,
    _published_alpha,
    _read_sums,
    download_asset,
    file_sha256,
    mirror_dir,
    mobilenet_v2_file_name,
    online,
    user_mirror_dir,
)
from tlcourse.assetstatus import course_weight_file, format_status, status_report
from tlcourse.errors import AssetMissingError, TLCourseError
from tlcourse.paths import display_path

# ----------------------------------------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    """Result of :func:`verify_mirror` (lesson 00)."""

    mirror: Path
    checked: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, object]:
        return {
            "mirror": str(self.mirror),
            "checked": self.checked,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "ok": self.ok,
        }


def _inside_mirror(base: Path, rel: str) -> bool:
    """True when ``base / rel`` stays inside ``base`` (no absolute path, no ``..`` or symlink leading out)."""
    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        return False
    real_base = os.path.realpath(base)
    real = os.path.realpath(base / rel)
    return real == real_base or real.startswith(real_base.rstrip(os.sep) + os.sep)


def _check_sums(base: Path, sums_file: Path, prefix: str, report: VerifyReport) -> set[str]:
    listed: set[str] = set()
    try:
        entries = _read_sums(sums_file)
    except TLCourseError as error:
        report.problems.append({"path": prefix + sums_file.name, "problem": str(error)})
        return listed
    for digest, rel in entries:
        shown = prefix + rel
        report.checked += 1
        if not _inside_mirror(base, rel):
            report.problems.append(
                {"path": shown, "problem": "refused: the entry points outside the mirror (not checked)"}
            )
            continue
        listed.add(rel)
        target = base / rel
        if not target.is_file():
            report.problems.append({"path": shown, "problem": "missing"})
        elif file_sha256(target) != digest:
            report.problems.append(
                {"path": shown, "problem": f"corrupt (sha256 differs from {sums_file.name})"}
            )
    return listed


def verify_mirror(mirror: str | os.PathLike[str] | None = None) -> VerifyReport:
    """Check a mirror against its ``SHA256SUMS`` and each dataset's ``MANIFEST.sha256`` (lesson 00).

    Listed files that are missing or whose sha256 differs are problems. Files present but not listed are
    reported as warnings only. Datasets are checked only if the mirror has a ``datasets/`` folder: a mirror
    without datasets (weights and metadata only) is valid, but a dataset folder without a manifest is not.
    """
    root = mirror_dir(mirror)
    if root is None:
        raise AssetMissingError(
            f"No mirror to verify: pass --mirror DIR, set ${MIRROR_ENV}, or fill the per-user mirror with "
            "`tlcourse assets prepare`."
        )
    report = VerifyReport(mirror=root)
    sums = root / SUMS_FILE
    if not sums.is_file():
        report.problems.append({"path": SUMS_FILE, "problem": "missing (the mirror has no checksum list)"})
        listed: set[str] = set()
    else:
        listed = _check_sums(root, sums, "", report)
    for sub in MIRROR_SUBDIRS:
        folder = root / sub
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                rel = path.relative_to(root).as_posix()
                if path.is_file() and rel not in listed:
                    report.warnings.append(f"{rel} is not listed in {SUMS_FILE}")
    datasets = root / "datasets"
    if datasets.is_dir():
        for folder in sorted(p for p in datasets.iterdir() if p.is_dir()):
            prefix = f"datasets/{folder.name}/"
            manifest = folder / MANIFEST_FILE
            if not manifest.is_file():
                report.problems.append({"path": prefix + MANIFEST_FILE, "problem": "missing"})
                continue
            in_manifest = _check_sums(folder, manifest, prefix, report)
            for path in sorted(folder.rglob("*")):
                rel = path.relative_to(folder).as_posix()
                if (
                    path.is_file()
                    and rel not in in_manifest
                    and path.name not in (MANIFEST_FILE, "LICENSE_ATTRIBUTION.txt")
                ):
                    report.warnings.append(f"{prefix}{rel} is not listed in {MANIFEST_FILE}")
    return report


def format_verify(report: VerifyReport) -> str:
    """Plain-text lines for a :class:`VerifyReport` (lesson 00)."""
    lines = [f"{problem['path']}: {problem['problem']}" for problem in report.problems]
    lines += [f"warning: {warning}" for warning in report.warnings]
    if report.ok:
        lines.append(f"OK: {report.checked} files in {display_path(report.mirror)} match their checksums.")
    else:
        lines.append(
            f"FAILED: {len(report.problems)} problem(s) in {display_path(report.mirror)} ({report.checked} files checked)."
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- prepare


def _write_sums(base: Path, files: Iterable[Path], target: Path) -> None:
    lines = [f"{file_sha256(path)}  ./{path.relative_to(base).as_posix()}" for path in sorted(files)]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _build_flowers_small(target: Path, *, per_class: int = 200, seed: int = 0) -> Path:
    """Download TensorFlow's flower_photos and copy a seeded sample of ``per_class`` photos per class into
    ``target`` (mirror layout): a fifth of each class in ``validation/``, the rest in ``train/``."""
    spec = AssetSpec("flower_photos.tgz", FLOWERS_URL, None, "datasets", "TensorFlow flower_photos archive")
    with tempfile.TemporaryDirectory(prefix="tlcourse-flowers-") as tmp:
        archive = download_asset(spec, cache_dir=Path(tmp), subdir="datasets")
        import tarfile

        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        source = next(Path(tmp).rglob("daisy")).parent
        if target.exists():
            shutil.rmtree(target)
        chosen: list[str] = []
        for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
            files = sorted(p.name for p in class_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
            picked = random.Random(f"{seed}:{class_dir.name}").sample(files, min(per_class, len(files)))
            for index, name in enumerate(picked):
                split = "validation" if index < len(picked) // 5 else "train"
                dest = target / split / class_dir.name / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(class_dir / name, dest)
                chosen.append(f"{class_dir.name}/{name}")
        license_file = source / "LICENSE.txt"
        if license_file.is_file():
            keep = set(chosen)
            lines = [
                line
                for line in license_file.read_text(encoding="utf-8").splitlines()
                if "/" not in line.split(" ")[0] or line.split(" ")[0] in keep
            ]
            (target / "LICENSE_ATTRIBUTION.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    images = [p for p in target.rglob("*") if p.is_file() and p.parent.parent.name in ("train", "validation")]
    _write_sums(target, images, target / MANIFEST_FILE)
    return target


def profile_asset_names(profile_name: str) -> list[str]:
    """The files one profile reads at run time, by Keras cache name (used by ``assets prepare --profile``).

    Its MobileNetV2 feature-extractor weights for the lessons and for ``tlcourse train`` (the exact size when
    Keras publishes it, and the 224 px file that stands in for other sizes), lesson 01's ImageNet classifiers (Keras and TFLite, with the sample photos) and
    the class index that decodes them.
    """
    from tlcourse.config import get_profile

    names: list[str] = []
    lessons = get_profile(profile_name)
    for profile in (lessons, lessons.for_capstone()):  # the lessons' backbone and `tlcourse train`'s
        alpha = _published_alpha(profile.alpha)
        if profile.image_size in MOBILENET_V2_SIZES and profile.image_size != 224:
            names.append(mobilenet_v2_file_name(alpha, profile.image_size))
        names.append(mobilenet_v2_file_name(alpha, 224))
    names += [mobilenet_v2_file_name(1.0, 224, include_top=True), CLASS_INDEX_FILE, *CLASSIFIER_FILES]
    return list(dict.fromkeys(names))


def _fetch_into(root: Path, name: str) -> str | None:
    """Download one known asset into the mirror ``root``; the failure's reason, or None when it is there."""
    spec = _known_assets()[name]
    subdir = root / spec.mirror_subdir
    print(f"  {spec.description} -> {spec.mirror_subdir}/{name}", flush=True)
    try:
        download_asset(spec, cache_dir=subdir.parent, subdir=subdir.name)
    except _DownloadFailed as error:
        return f"downloading {spec.url} failed ({error})"
    return None


def prepare_mirror(
    mirror: str | os.PathLike[str] | None = None,
    *,
    include_datasets: bool = True,
    check_online: bool = True,
    names: Iterable[str] | None = None,
    keep_going: bool = False,
) -> Path:
    """Download the assets the course uses into a mirror folder and write its checksums (lesson 00).

    Needs the internet. With no ``mirror`` and no ``$TLCOURSE_MIRROR`` it fills the per-user mirror
    (:func:`tlcourse.assets.user_mirror_dir`), which lessons and commands find with no setting. The result has
    the layout of ``../shared/assets``: ``keras/models/``, ``imagenet/``,
    ``datasets/flower_photos_small/`` (with ``MANIFEST.sha256``) and ``SHA256SUMS``. Files already there are
    kept (Keras re-checks the ones it has a checksum for). ``names`` limits the files to those Keras cache
    names (see :func:`profile_asset_names`); with ``keep_going`` a failed download is reported in one line and
    the rest goes on (Binder's postBuild: a lesson can still download the file at run time).
    """
    root = mirror_dir(mirror, must_exist=False)
    if root is None:  # pragma: no cover - mirror_dir(must_exist=False) always names a folder
        raise TLCourseError(f"Say where to build the mirror: --mirror DIR (or set ${MIRROR_ENV}).")
    if check_online and not keep_going and not online():
        raise AssetMissingError(
            "`tlcourse assets prepare` downloads the course's weights and data, and this machine is offline. "
            f"Run it on a connected machine, copy the folder here, and point ${MIRROR_ENV} (or --mirror) at it."
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".tlcourse-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise TLCourseError(
            f"Cannot write to the mirror folder {display_path(root)} ({error.strerror}); choose another."
        ) from None
    if names is None:
        names = [course_weight_file(*entry) for entry in COURSE_WEIGHTS]
        names += [mobilenet_v2_file_name(alpha, size, include_top=True) for alpha, size in COURSE_CLASSIFIERS]
        names += list(COURSE_FILES) + list(CLASSIFIER_FILES)
    failures: list[str] = []
    optional: list[str] = []
    for name in names:
        failure = _fetch_into(root, name)
        if failure is not None:
            if name in CLASSIFIER_FILES:
                optional.append(f"{_known_assets()[name].mirror_subdir}/{name} ({failure})")
            else:
                failures.append(f"{name}: {failure}")
    if optional:
        print(
            f"  Could not fetch {len(optional)} file(s); copy them from another mirror if you need them "
            "(lesson 01 then uses the Keras classifier online only):"
        )
        for line in optional:
            print(f"    {line}")
    if include_datasets:
        target = root / "datasets" / DEFAULT_DATASET
        print(f"  dataset {DEFAULT_DATASET} -> datasets/{DEFAULT_DATASET}/", flush=True)
        if (target / MANIFEST_FILE).is_file():
            print("    already there: kept", flush=True)
        else:
            try:
                _build_flowers_small(target)
            except _DownloadFailed as error:
                failures.append(f"{DEFAULT_DATASET}: downloading {FLOWERS_URL} failed ({error})")
    for failure in failures:
        print(f"  could not fetch {failure}", flush=True)
    if failures and not keep_going:
        raise AssetMissingError(f"The mirror {display_path(root)} is incomplete: {failures[0]}.")
    if failures:
        print(
            f"  {len(failures)} file(s) missing from the mirror: the lessons download them when they need them."
        )
    files = [
        p for sub in MIRROR_SUBDIRS if (root / sub).is_dir() for p in (root / sub).rglob("*") if p.is_file()
    ]
    _write_sums(root, files, root / SUMS_FILE)
    return root


# ----------------------------------------------------------------------------------------------- command


def ready_line(root: Path) -> str:
    """What ``prepare`` says at the end: where the mirror is and what, if anything, finds it."""
    if root.resolve() == user_mirror_dir().resolve():
        return (
            f"Per-user mirror ready: {display_path(root)}. Lessons and tlcourse commands on this account find it "
            "offline with no setting (`tlcourse assets status` lists what it holds)."
        )
    return f"Mirror ready: {display_path(root)}. Use it with: export {MIRROR_ENV}={root}"


def assets_command(args: object) -> int:
    """``tlcourse assets status|prepare|verify [--mirror DIR] [--json]`` (lesson 00)."""
    action = getattr(args, "action", "status")
    mirror = getattr(args, "mirror", None)
    as_json = bool(getattr(args, "as_json", False))
    if action == "status":
        report = status_report(mirror)
        print(json.dumps(report, indent=2) if as_json else format_status(report))
        return 0
    if action == "verify":
        result = verify_mirror(mirror)
        print(json.dumps(result.to_dict(), indent=2) if as_json else format_verify(result))
        return 0 if result.ok else 1
    if action == "prepare":
        profile = getattr(args, "profile", None)
        keep_going = bool(getattr(args, "keep_going", False))
        names = profile_asset_names(profile) if profile else None
        root = prepare_mirror(mirror, names=names, keep_going=keep_going)
        result = verify_mirror(root)
        if as_json:
            print(json.dumps(result.to_dict(), indent=2))
        else:
            print(ready_line(root))
            print(format_verify(result))
        return 0 if result.ok else 1
    print(f"tlcourse assets: unknown action {action!r} (status, prepare, verify)", file=sys.stderr)
    return 2
