"""Drop duplicate and near-duplicate pictures from an audited folder before it is split (lessons 04 and 08).

The audit (:func:`tlcourse.audit.audit_folder`) finds byte-identical files and near-duplicates (perceptual
hashes a few bits apart: a resized, recompressed or recoloured copy, or the same scene shot twice). A pair
that straddles train and validation lets validation accuracy reward memory; a pair inside one split counts
one picture twice. :func:`drop_duplicates` keeps one picture of each group and drops the others, the same
ones on every machine:

- pairs are joined into groups (a picture close to two others makes one group of three);
- in each group the picture kept is the one in the earliest split (``train``, then ``validation``, then
  ``test``, then a folder without splits), and among those the first relative path in sorted order;
- every other member is dropped, and :class:`DuplicateReport` says which, with the pair counts a model card
  or a lesson quotes ("the audit found 14 pairs, 7 across train/validation; one of each was dropped").

Nothing on disk changes: the result is a new :class:`~tlcourse.audit.AuditReport` without the dropped records.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from tlcourse.audit import AuditReport

_SPLIT_RANK = {"train": 0, "validation": 1, "test": 2, None: 3}


@dataclass(frozen=True)
class DuplicateReport:
    """What the audit found duplicated in a folder and which pictures were dropped for it (lesson 04).

    ``exact`` and ``near`` are the audit's pairs of relative paths; ``dropped`` maps each dropped picture to
    the one kept in its place. ``applied`` is False when the pairs were only found, not dropped.
    """

    exact: tuple[tuple[str, str], ...] = ()
    near: tuple[tuple[str, str], ...] = ()
    across: tuple[tuple[str, str], ...] = ()
    """The pairs (exact or near) whose two pictures sit in different splits, e.g. train and validation."""
    dropped: dict[str, str] = field(default_factory=dict)
    applied: bool = True
    splits: tuple[str, ...] = ()
    """The folder's splits (``("train", "validation")``), for the wording of :meth:`summary`."""

    @property
    def pairs(self) -> int:
        """How many duplicate pairs the audit found, exact and near together."""
        return len(self.exact) + len(self.near)

    def summary(self) -> str:
        """One sentence for a model card or a lesson: the pairs found, how many across splits, what was dropped."""
        if not self.pairs:
            return "The audit found no duplicate or near-duplicate pictures."
        where = "/".join(self.splits) if len(self.splits) > 1 else "splits"
        found = (
            f"The audit found {self.pairs} duplicate pair{'s' if self.pairs != 1 else ''} "
            f"({len(self.exact)} identical files, {len(self.near)} near-duplicates), "
            f"{len(self.across)} of them across {where}"
        )
        if not self.applied:
            return f"{found}; they were kept."
        return (
            f"{found}; one picture of each pair was dropped before splitting "
            f"({len(self.dropped)} picture{'s' if len(self.dropped) != 1 else ''} in all)."
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape a metrics file or model card stores (counts first, then the lists)."""
        return {
            "pairs": self.pairs,
            "exact_pairs": len(self.exact),
            "near_pairs": len(self.near),
            "across_splits": len(self.across),
            "dropped_count": len(self.dropped),
            "applied": self.applied,
            "summary": self.summary(),
            "dropped": dict(self.dropped),
        }


def _groups(paths: list[str], pairs: list[tuple[str, str]]) -> list[list[str]]:
    """Connected groups of ``pairs`` (union-find), each sorted; pictures without a pair are left out."""
    parent = {path: path for path in paths}

    def root(path: str) -> str:
        while parent[path] != path:
            parent[path] = parent[parent[path]]
            path = parent[path]
        return path

    for first, second in pairs:
        if first in parent and second in parent:
            a, b = root(first), root(second)
            if a != b:
                parent[max(a, b)] = min(a, b)
    members: dict[str, list[str]] = {}
    for path in paths:
        members.setdefault(root(path), []).append(path)
    return [sorted(group) for group in members.values() if len(group) > 1]


def find_duplicates(report: AuditReport) -> DuplicateReport:
    """The duplicate pairs of an audit and the pictures :func:`drop_duplicates` would drop (lesson 04)."""
    split_of = {record.relpath: record.split for record in report.records}
    pairs = [tuple(pair) for pair in (*report.duplicates, *report.near_duplicates)]
    across = tuple(
        pair
        for pair in pairs
        if pair[0] in split_of and pair[1] in split_of and split_of[pair[0]] != split_of[pair[1]]
    )
    dropped: dict[str, str] = {}
    for group in _groups(sorted(split_of), pairs):  # type: ignore[arg-type]
        keep = min(group, key=lambda path: (_SPLIT_RANK.get(split_of[path], 4), path))
        dropped.update({path: keep for path in group if path != keep})
    return DuplicateReport(
        exact=tuple(map(tuple, report.duplicates)),  # type: ignore[arg-type]
        near=tuple(map(tuple, report.near_duplicates)),  # type: ignore[arg-type]
        across=across,  # type: ignore[arg-type]
        dropped=dict(sorted(dropped.items())),
        applied=False,
        splits=tuple(split for split in ("train", "validation", "test") if split in set(split_of.values())),
    )


def drop_duplicates(report: AuditReport) -> tuple[AuditReport, DuplicateReport]:
    """``report`` without the duplicates' extra copies, and what was dropped (lessons 04 and 08).

    Deterministic: the same folder gives the same kept pictures on every machine (see the module docstring).
    The returned report's ``records``, ``classes`` and ``split_counts`` are recounted; its duplicate lists
    are empty, since no pair is left. Pass it to :func:`tlcourse.data.load_image_folder` as ``report=``.
    """
    found = find_duplicates(report)
    if not found.dropped:
        return report, dataclasses.replace(found, applied=True)
    records = [record for record in report.records if record.relpath not in found.dropped]
    classes = Counter(record.label for record in records)
    per_split = Counter((record.split, record.label) for record in records)
    cleaned = dataclasses.replace(
        report,
        records=records,
        classes={name: classes.get(name, 0) for name in report.classes},
        split_counts={
            split: {name: per_split[split, name] for name in report.classes} for split in report.splits
        },
        duplicates=[],
        near_duplicates=[],
    )
    return cleaned, dataclasses.replace(found, applied=True)
