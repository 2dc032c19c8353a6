"""What ``tlcourse run`` reports (lesson 00): one :class:`NotebookResult` per notebook, the totals, and the
``report.md`` / ``report.html`` / ``report.json`` files :func:`write_reports` writes beside the executed notebooks.

:mod:`tlcourse.cli.runner` executes the notebooks and hands its results here; nothing here runs a kernel.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tlcourse import __version__
from tlcourse.paths import display_path
from tlcourse.record import format_value

DEFAULT_KERNEL = "python3"
SKIPPED = "skipped (unchanged)"
INTERRUPTED = "interrupted"
FAILED_STATUSES = frozenset({"failed", "timeout", "dead kernel", INTERRUPTED})
MEASURED = "maximum resident set"
"""The memory method of a kernel whose peak the system recorded (:data:`tlcourse.cli.memory.MEASURED`)."""


@dataclass
class NotebookResult:
    """What happened to one notebook in a batch (lesson 00)."""

    path: str
    """The notebook as shown in the report: relative to the current folder when it is inside it."""
    source: Path
    output: Path
    status: str
    """``ok``, ``failed``, ``timeout``, ``dead kernel`` or ``skipped (unchanged)``."""
    seconds: float = 0.0
    peak_mib: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error_cell: int | None = None
    """The failing cell's execution number, as in ``In [n]`` (1 = the first code cell that ran)."""
    error: str | None = None
    kernel: str = DEFAULT_KERNEL
    parameters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    digest: str = ""
    checks: list[dict[str, Any]] = field(default_factory=list)
    """Grader outcomes the notebook recorded (:func:`tlcourse.record.read_checks`)."""
    html: Path | None = None
    """The executed notebook rendered as HTML, when nbconvert could render it."""
    work_dir: Path | None = None
    """The folder that received what the notebook wrote (its injected output parameters)."""
    memory_method: str | None = None
    """How ``peak_mib`` was obtained: the kernel's maximum resident set, or sampled (:mod:`tlcourse.cli.memory`)."""

    @property
    def ok(self) -> bool:
        """True for ``ok`` and ``skipped (unchanged)``."""
        return self.status not in FAILED_STATUSES

    def line(self) -> str:
        """One line for the console, e.g. ``ok  lessons/00_welcome.ipynb  12.3 s  640 MiB  val_accuracy=0.87``."""
        if self.status == SKIPPED:
            return f"{SKIPPED[:-1]}; use --force to re-run)  {self.path}"
        parts = [self.status, self.path, f"{self.seconds:.1f} s", _mib_text(self.peak_mib)]
        parts += [f"{name}={format_value(value)}" for name, value in self.metrics.items()]
        if self.checks:
            parts.append(f"checks {checks_text(self.checks)}")
        if self.error:
            where = f"cell [{self.error_cell}] " if self.error_cell is not None else ""
            parts.append(f"{where}{self.error}")
        return "  ".join(parts)

    def to_dict(self, out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
        """Plain JSON-ready values; paths as :func:`tlcourse.paths.display_path` shows them, those inside
        ``out_dir`` relative to it, so a report names no folder of the machine it ran on."""
        data = asdict(self)
        for key in ("source", "output", "html", "work_dir"):
            data[key] = None if data[key] is None else display_path(data[key], base=out_dir)
        data["parameters"] = {
            name: display_path(value, base=out_dir) if _looks_absolute(value) else value
            for name, value in self.parameters.items()
        }
        return data


def _looks_absolute(value: object) -> bool:
    return isinstance(value, str) and Path(value).is_absolute()


def checks_text(checks: Sequence[Mapping[str, Any]]) -> str:
    """``3/4 passed`` for a notebook's recorded grader outcomes (lesson 00)."""
    return f"{sum(1 for check in checks if check.get('passed'))}/{len(checks)} passed"


def _mib_text(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} MiB"


def summarize(results: Sequence[NotebookResult]) -> dict[str, Any]:
    """Counts per status, total time of this run and the largest peak memory (lesson 00)."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    ran = [r for r in results if r.status != SKIPPED]
    peaks = [r.peak_mib for r in results if r.peak_mib]
    return {
        "notebooks": len(results),
        "counts": counts,
        "failed": sum(1 for r in results if not r.ok),
        "seconds": sum(r.seconds for r in ran),
        "max_peak_mib": max(peaks) if peaks else None,
    }


def summary_line(results: Sequence[NotebookResult]) -> str:
    """One line of totals, e.g. ``9 notebooks: 8 ok, 1 failed; 312.4 s executing; largest peak 830 MiB``."""
    summary = summarize(results)
    counts = ", ".join(f"{n} {status}" for status, n in summary["counts"].items())
    peak = _mib_text(summary["max_peak_mib"])
    plural = "" if summary["notebooks"] == 1 else "s"
    return f"{summary['notebooks']} notebook{plural}: {counts}; {summary['seconds']:.1f} s executing; largest peak {peak}"


def memory_text(results: Sequence[NotebookResult]) -> str:
    """What the peak memory column is, e.g. ``the kernel's maximum resident set (as /usr/bin/time reports it)``."""
    methods = {r.memory_method for r in results if r.memory_method and r.status != SKIPPED}
    if not methods:
        return "from the previous run" if results else "-"
    if methods == {MEASURED}:
        return "the kernel's maximum resident set, as the system recorded it (what /usr/bin/time reports)"
    return (
        "sampled every 0.2 s where marked (sampled): this system records no peak, so a short spike can be "
        "missed; elsewhere the kernel's maximum resident set"
    )


REPORT_HEADER = ["notebook", "status", "time", "peak memory", "checks", "failing cell", "error / notes"]


def _row(result: NotebookResult) -> list[str]:
    time_text = f"{result.seconds:.1f} s" + (" (previous run)" if result.status == SKIPPED else "")
    peak = _mib_text(result.peak_mib)
    if result.peak_mib is not None and result.memory_method and result.memory_method != MEASURED:
        peak += " (sampled)"
    cells = [result.path, result.status, time_text, peak]
    cells.append(checks_text(result.checks) if result.checks else "")
    cells.append("" if result.error_cell is None else str(result.error_cell))
    cells.append(result.error or "; ".join(result.notes if result.status != SKIPPED else []))
    return cells


def render_markdown(results: Sequence[NotebookResult], *, profile: str | None = None, parameters=None) -> str:
    """The Markdown report: one row per notebook, totals, then each notebook's recorded figures (lesson 00).

    The figures are listed per notebook (name, value) rather than as one column each, so the table stays
    readable however many figures the notebooks record.
    """

    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "# tlcourse run report",
        "",
        f"- finished: {time.strftime('%Y-%m-%d %H:%M:%S')}, tlcourse {__version__}",
        f"- profile: {profile or '(notebook default)'}",
        f"- parameters: {json.dumps(dict(parameters or {}), default=repr) if parameters else '(none)'}",
        f"- peak memory: {memory_text(results)}",
        "",
        "| " + " | ".join(REPORT_HEADER) + " |",
        "|" + "|".join(["---"] * len(REPORT_HEADER)) + "|",
    ]
    lines += ["| " + " | ".join(escape(c) for c in _row(r)) + " |" for r in results]
    lines += ["", f"**Total:** {summary_line(results)}", ""]
    for result in results:
        if not (result.metrics or result.checks):
            continue
        lines += [f"## {escape(result.path)}", ""]
        if result.metrics:
            lines += ["| figure | value |", "|---|---|"]
            lines += [f"| {escape(k)} | {escape(format_value(v))} |" for k, v in result.metrics.items()]
            lines.append("")
        for check in result.checks:
            mark = "passed" if check["passed"] else "not yet"
            lines.append(f"- {escape(check['check'] or 'check')}: {mark}: {escape(check['message'])}")
        lines.append("")
    return "\n".join(lines)


_STATUS_COLOURS = {
    "ok": "#1a7f37", "failed": "#cf222e", "timeout": "#bc4c00", "dead kernel": "#8250df", INTERRUPTED: "#bc4c00",
}  # fmt: skip


def render_html(
    results: Sequence[NotebookResult], *, profile: str | None = None, parameters=None, out_dir=None
) -> str:
    """The same report as a self-contained HTML page, linking each executed notebook's HTML (lesson 00)."""
    rows, sections = [], []
    for result in results:
        cells = _row(result)
        colour = _STATUS_COLOURS.get(result.status, "#57606a")
        target = result.html if result.html is not None else result.output
        anchor = f"nb-{len(sections)}"
        tds = [f'<td><a href="{html.escape(_link(target, out_dir))}">{html.escape(cells[0])}</a></td>']
        tds.append(f'<td style="color:{colour};font-weight:bold">{html.escape(cells[1])}</td>')
        tds += [f"<td>{html.escape(c)}</td>" for c in cells[2:]]
        if result.metrics or result.checks:
            tds[-1] = tds[-1][:-5] + f' <a href="#{anchor}">figures</a></td>'
            items = [
                f"<tr><td>{html.escape(k)}</td><td>{html.escape(format_value(v))}</td></tr>"
                for k, v in result.metrics.items()
            ]
            items += [
                f"<tr><td>{html.escape(c['check'] or 'check')}</td>"
                f"<td>{'✔ passed' if c['passed'] else '✘ not yet'}: {html.escape(c['message'])}</td></tr>"
                for c in result.checks
            ]
            sections.append(
                f'<h2 id="{anchor}">{html.escape(result.path)}</h2><table>'
                "<tr><th>figure</th><th>value</th></tr>" + "".join(items) + "</table>"
            )
        rows.append("<tr>" + "".join(tds) + "</tr>")
    params = json.dumps(dict(parameters or {}), default=repr) if parameters else "(none)"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8"><title>tlcourse run report</title>',
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}"
            "td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left}th{background:#f6f8fa}</style>",
            "</head><body>",
            "<h1>tlcourse run report</h1>",
            f"<p>finished {html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))}, tlcourse {html.escape(__version__)}; "
            f"profile: {html.escape(profile or '(notebook default)')}; parameters: {html.escape(params)}; "
            f"peak memory: {html.escape(memory_text(results))}</p>",
            "<table>",
            "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in REPORT_HEADER) + "</tr>",
            *rows,
            "</table>",
            f"<p><strong>Total:</strong> {html.escape(summary_line(results))}</p>",
            *sections,
            "</body></html>",
            "",
        ]
    )


def _link(path: Path, out_dir: str | os.PathLike | None) -> str:
    """A link from the report in ``out_dir`` to ``path``: relative, so the folder can be moved or shared."""
    if out_dir is not None:
        try:
            return Path(os.path.relpath(path.resolve(), Path(out_dir).resolve())).as_posix()
        except ValueError:  # another drive (Windows)
            pass
    return path.resolve().as_uri()


def write_reports(
    results: Sequence[NotebookResult],
    out_dir: str | os.PathLike,
    *,
    profile: str | None = None,
    parameters=None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``report.json`` into ``out_dir``; return their paths (lesson 00)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "html": out / "report.html", "json": out / "report.json"}
    paths["md"].write_text(render_markdown(results, profile=profile, parameters=parameters), encoding="utf-8")
    page = render_html(results, profile=profile, parameters=parameters, out_dir=out)
    paths["html"].write_text(page, encoding="utf-8")
    payload = {"summary": summarize(results), "notebooks": [r.to_dict(out) for r in results]}
    paths["json"].write_text(json.dumps(payload, indent=1, default=repr), encoding="utf-8")
    return paths
