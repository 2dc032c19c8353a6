"""Where each asset the course uses resolves from right now (lesson 00; ``tlcourse assets status``).

:func:`status_report` asks :mod:`tlcourse.assets`' resolver, without touching the network, where each file of
:data:`tlcourse.assets.COURSE_FILES`, :data:`~tlcourse.assets.COURSE_WEIGHTS`, the ImageNet classifiers and the
course's dataset would come from; :func:`format_status` prints it as a table.
"""

from __future__ import annotations

import os

from tlcourse.assets import (
    CLASSIFIER_FILES,
    COURSE_CLASSIFIERS,
    COURSE_DATASETS,
    COURSE_FILES,
    COURSE_WEIGHTS,
    MIRROR_ENV,
    MIRROR_SUBDIRS,
    backbone_weights,
    keras_cache_dir,
    mirror_dir,
    mobilenet_v2_file_name,
    mobilenet_v2_weights,
    published_width,
    resolve_file,
    user_mirror_dir,
)
from tlcourse.backbones import get_spec
from tlcourse.errors import AssetMissingError
from tlcourse.paths import display_path


def course_weight_file(backbone: str, alpha: float | None, size: int | None) -> str:
    """The file name a course backbone's weights resolve to first (the exact size where sizes differ)."""
    spec = get_spec(backbone)
    files = [f for f in spec.weight_files(published_width(spec, alpha)) if not f.converted]
    return next((f.file for f in files if f.size == (size or 224)), files[0].file)


def status_report(mirror: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """Where each course asset resolves from right now, without touching the network (lesson 00).

    Returns ``{"mirror", "mirror_kind" ("named", "per-user" or None), "keras_cache", "assets": [{"asset", "file", "in_mirror", "in_cache", "resolves_from",
    "path", "notice"}], "missing": [asset...]}``; ``resolves_from`` is ``"mirror"``, ``"cache"`` or None.
    """
    root = mirror_dir(mirror)
    cache = keras_cache_dir()
    rows: list[dict[str, object]] = []

    def where(file_name: str) -> tuple[str | None, str | None]:
        in_mirror = next(
            (
                str(root / sub / file_name)
                for sub in MIRROR_SUBDIRS
                if root and (root / sub / file_name).is_file()
            ),
            None,
        )
        in_cache = str(cache / file_name) if (cache / file_name).is_file() else None
        return in_mirror, in_cache

    def add(asset: str, file_name: str, resolve) -> None:  # noqa: ANN001 - a zero-argument callable
        in_mirror, in_cache = where(file_name)
        try:
            resolved = resolve()
            origin, path, notice = resolved.origin, str(resolved.path), resolved.notice
        except AssetMissingError:
            origin = path = notice = None
        rows.append(
            {
                "asset": asset,
                "file": file_name,
                "in_mirror": in_mirror,
                "in_cache": in_cache,
                "resolves_from": origin,
                "path": path,
                "notice": notice,
            }
        )

    for name in COURSE_FILES + CLASSIFIER_FILES:
        add(name, name, lambda name=name: resolve_file(name, mirror=root, download=False))
    for backbone, alpha, size in COURSE_WEIGHTS:
        label = backbone + (f" alpha {alpha} {size}px" if backbone == "mobilenet_v2" else "")
        add(
            label,
            course_weight_file(backbone, alpha, size),
            lambda b=backbone, a=alpha, s=size: backbone_weights(
                b, alpha=a, image_size=s, mirror=root, download=False
            ),
        )
    for alpha, size in COURSE_CLASSIFIERS:
        add(
            f"mobilenet_v2 classifier alpha {alpha} {size}px",
            mobilenet_v2_file_name(alpha, size, include_top=True),
            lambda a=alpha, s=size: mobilenet_v2_weights(a, s, include_top=True, mirror=root, download=False),
        )
    for name in COURSE_DATASETS:
        folder = root / "datasets" / name if root else None
        present = folder is not None and folder.is_dir()
        rows.append(
            {
                "asset": f"dataset {name}",
                "file": f"datasets/{name}/",
                "in_mirror": str(folder) if present else None,
                "in_cache": None,
                "resolves_from": "mirror" if present else None,
                "path": str(folder) if present else None,
                "notice": None,
            }
        )
    user = user_mirror_dir()
    kind = None if root is None else ("per-user" if root.resolve() == user.resolve() else "named")
    return {
        "mirror": str(root) if root else None,
        "mirror_kind": kind,
        "keras_cache": str(cache),
        "assets": rows,
        "missing": [row["asset"] for row in rows if row["resolves_from"] is None],
    }


def format_status(report: dict[str, object]) -> str:
    """A plain-text table of :func:`status_report` (lesson 00)."""
    rows = report["assets"]
    assert isinstance(rows, list)
    mirror = report["mirror"]
    if not mirror:
        where = (
            f"(none: run `tlcourse assets prepare --profile cpu` while online to fill the per-user mirror "
            f"{display_path(user_mirror_dir())}, or set ${MIRROR_ENV})"
        )
    else:
        where = display_path(str(mirror))
        if report.get("mirror_kind") == "per-user":
            where += " (the per-user mirror)"
    lines = [f"mirror:      {where}", f"Keras cache: {display_path(str(report['keras_cache']))}", ""]
    width = max(len(str(row["asset"])) for row in rows) + 2
    lines.append(f"{'ASSET':<{width}}{'RESOLVES FROM':<15}{'MIRROR':<8}{'CACHE':<7}")
    for row in rows:
        origin = row["resolves_from"] or "MISSING"
        if row["notice"]:
            origin += "*"
        lines.append(
            f"{row['asset']!s:<{width}}{origin:<15}{'yes' if row['in_mirror'] else '-':<8}"
            f"{'yes' if row['in_cache'] else '-':<7}"
        )
    if any(row["notice"] for row in rows):
        lines.append("* a stand-in file (another input size or a converted checkpoint) is used.")
    missing = report["missing"]
    if missing:
        lines.append(
            f"{len(missing)} missing: they are downloaded on first use when online; to have them offline, run "  # type: ignore[arg-type]
            f"`tlcourse assets prepare --profile cpu` (or without --profile: everything) while online, or set "
            f"${MIRROR_ENV} to a mirror that has them."
        )
    return "\n".join(lines)
