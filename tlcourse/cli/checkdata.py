"""``tlcourse check-data DIR``: the audit of an image folder, printed for a person or as JSON (lesson 08).

The audit itself is :func:`tlcourse.audit.audit_folder`, which lessons call too; this module only prints it.
"""

from __future__ import annotations

import json
import sys

from tlcourse.audit import AuditReport, audit_folder, plural, printable
from tlcourse.errors import DataError


def format_report(report: AuditReport, *, limit: int = 20) -> str:
    """A readable multi-line summary of an :class:`AuditReport` (lesson 08); long lists stop after ``limit``."""
    lines = [f"Image folder: {printable(str(report.root))}"]
    lines.append(
        f"Layout: {' + '.join(report.splits) + ' splits' if report.splits else 'class folders, no splits'}"
    )

    def section(title: str, rows: list[str]) -> None:
        if not rows:
            return
        lines.append("")
        lines.append(title)
        lines.extend(f"  {row}" for row in rows[:limit])
        if len(rows) > limit:
            lines.append(f"  ... and {len(rows) - limit} more")

    width = max((len(printable(name)) for name in report.classes), default=0)
    class_rows = []
    for name, count in report.classes.items():
        detail = ""
        if report.splits:
            detail = (
                "  ("
                + ", ".join(f"{split} {report.split_counts[split][name]}" for split in report.splits)
                + ")"
            )
        class_rows.append(f"{printable(name):<{width}}  {count:>5} images{detail}")
    section(f"Classes used for training ({len(report.classes)}):", class_rows)
    section(
        "Classes left out:",
        [f"{printable(name)}: {plural(count, 'usable image')}" for name, count in report.excluded.items()],
    )
    section(
        f"Problems ({plural(len(report.problems), 'file')} skipped):",
        [f"{printable(item.path)}: {item.problem}" for item in report.problems],
    )
    section(
        f"Duplicates ({plural(len(report.duplicates), 'pair')} of identical files):",
        [f"{printable(first)} = {printable(second)}" for first, second in report.duplicates],
    )
    section(
        f"Near-duplicates ({plural(len(report.near_duplicates), 'pair')} of nearly identical pictures):",
        [f"{printable(first)} ~ {printable(second)}" for first, second in report.near_duplicates],
    )
    section(
        f"Odd but usable ({plural(len(report.notes), 'file')}):",
        [f"{printable(item.path)}: {item.problem}" for item in report.notes],
    )
    section(
        f"Ignored ({plural(len(report.ignored), 'entry')}: system files, hidden folders, non-images):",
        [printable(item) for item in report.ignored],
    )
    section("Warnings:", [f"- {printable(text)}" for text in report.warnings])
    lines.append("")
    total = sum(report.classes.values())
    if report.usable:
        lines.append(f"Result: usable ({plural(total, 'image')} in {len(report.classes)} classes).")
    else:
        lines.append(f"Result: NOT usable: {printable(report.reason)}")
    return "\n".join(lines)


def check_data_command(args: object) -> int:
    """``tlcourse check-data DIR [--json] [--min-per-class N]`` (lesson 08).

    Prints the readable report (or, with ``--json``, one JSON object) on stdout. Exit status 0 when the
    folder can train a classifier, 1 otherwise with the one-line reason on stderr; a missing path raises
    :class:`~tlcourse.errors.DataError` (the CLI turns it into exit status 2).
    """
    directory = getattr(args, "directory")  # noqa: B009 - argparse namespace
    as_json = bool(getattr(args, "as_json", False))
    min_per_class = getattr(args, "min_per_class", 2)
    min_per_class = 2 if min_per_class is None else int(min_per_class)
    if min_per_class < 1:
        raise DataError(f"--min-per-class {min_per_class}: a class needs at least 1 image; give 1 or more.")
    report = audit_folder(
        directory, min_per_class=min_per_class, progress=not as_json and sys.stderr.isatty()
    )
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=True))
    else:
        print(format_report(report))
    if not report.usable:
        print(f"tlcourse check-data: {printable(report.reason)}", file=sys.stderr)
        return 1
    return 0
