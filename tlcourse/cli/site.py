"""``tlcourse site``: the course as a static site, rendered from a recorded ``tlcourse run`` (lesson 00).

The site is built with Sphinx, MyST-NB and sphinx-book-theme (the ``site`` extra) from the notebooks a run
executed, never executing them again (``nb_execution_mode = "off"``), so it shows exactly the outputs and figures
of that run. :func:`build_site` writes a Sphinx source tree into a scratch folder and builds it offline:

- a landing page (what the course teaches, for whom, each lesson's time in the cpu profile, how to start);
- one page per lesson: a copy of the executed notebook whose Colab/Binder badges become plain links, with the
  course's extras added around it (diagrams, a reading list and self-check questions from
  ``tlcourse/resources/site/lessons/NN.toml``); the lessons themselves are never edited;
- the exercises, copied from the checkout's ``exercises/`` (never ``solutions/``);
- one page per lesson with the figures the run recorded (``report.json``).

The repository and git ref of the launch links come from pyproject.toml, read by the checkout's own
``tools/sync_notebook_links.py`` (the one place that knows that setting). Maths is written out as MathML at
build time (latex2mathml), so no page loads anything from outside the site.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import html
import importlib.util
import io
import json
import re
import shutil
import string
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat

from tlcourse.errors import TLCourseError

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "site"
"""The site's own content: ``index.md`` (landing page), ``lessons/NN.toml`` (extras), ``diagrams/*.svg``."""
CPU_RECORD = Path("lessons") / "figures.cpu.json"
"""The course's recorded cpu run (``tools/figures.py record``), relative to the repository: its ``runs`` give each
lesson's wall time, shown when the site's own run is not a cpu run."""
NOTEBOOK_NAME = re.compile(r"^(\d\d)_\w+\.ipynb$")
BADGE = re.compile(r"\[!\[([^\]]*)\]\([^)]*\)\]\(([^)]*)\)")
"""One badge of ``tools/sync_notebook_links.badges``: an image (from outside the site) inside a link."""
RECORD_MIME = "application/vnd.tlcourse.record+json"
NO_TIME = "time not recorded for this profile"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = nbformat.v4.new_output(
    "display_data",
    data={
        "text/markdown": "*An interactive widget appears here when the notebook runs: open it on Colab or Binder.*",
        "text/plain": "(an interactive widget: open the notebook on Colab or Binder to use it)",
    },
)
"""What a site shows instead of a live widget: its JavaScript would have to come from outside the site."""


@dataclass(frozen=True)
class Run:
    """What the site needs from a ``tlcourse run`` folder (its ``report.json`` and executed notebooks)."""

    folder: Path
    profile: str
    date: str
    lessons: dict[str, dict[str, Any]]
    """Lesson stem (``05_fine_tuning``) -> its report entry, with ``notebook`` (the executed file) added."""


@dataclass(frozen=True)
class SiteSummary:
    """What :func:`build_site` made: the folder, its pages, its size and the build time."""

    folder: Path
    pages: int
    megabytes: float
    seconds: float
    warnings: list[str]


def _date_of(notebook: Path) -> str | None:
    end = nbformat.read(notebook, as_version=4).metadata.get("papermill", {}).get("end_time")
    return str(end)[:10] if end else None


def read_run(run_dir: Path) -> Run:
    """Read ``report.json`` and find the executed lessons of a run folder; raise a clear error if it is not one."""
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        raise TLCourseError(
            f"{run_dir} has no report.json: give the --out folder of `tlcourse run lessons` (e.g. runs/latest)."
        )
    report = json.loads(report_path.read_text(encoding="utf-8"))
    lessons: dict[str, dict[str, Any]] = {}
    profiles: set[str] = set()
    for entry in report.get("notebooks", []):
        relative = Path(entry.get("path", ""))
        if not NOTEBOOK_NAME.match(relative.name) or relative.parent.name != "lessons":
            continue
        candidates = [
            run_dir / relative,
            run_dir / "lessons" / relative.name,
            Path(entry.get("output") or ""),
        ]
        notebook = next((path for path in candidates if path.is_file()), None)
        if notebook is None:
            continue
        lessons[relative.stem] = {**entry, "notebook": notebook}
        profiles.add(str((entry.get("parameters") or {}).get("PROFILE", "auto")))
    if not lessons:
        raise TLCourseError(
            f"{run_dir}/report.json lists no executed lesson (lessons/NN_name.ipynb) found there."
        )
    dates = sorted(filter(None, (_date_of(entry["notebook"]) for entry in lessons.values())))
    date = dates[-1] if dates else datetime.date.fromtimestamp(report_path.stat().st_mtime).isoformat()
    profile = profiles.pop() if len(profiles) == 1 else "mixed"
    return Run(run_dir, profile, date, dict(sorted(lessons.items())))


def load_link_tool(repo_root: Path) -> ModuleType:
    """The checkout's ``tools/sync_notebook_links.py``, which reads the repository and ref from pyproject.toml."""
    path = repo_root / "tools" / "sync_notebook_links.py"
    if not path.is_file() or not (repo_root / "pyproject.toml").is_file():
        raise TLCourseError(
            f"{repo_root} is not a tlcourse checkout (no tools/sync_notebook_links.py or pyproject.toml): run "
            "`tlcourse site` from the repository's root, or give it with --repo."
        )
    spec = importlib.util.spec_from_file_location("tlcourse_sync_notebook_links", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def launch_links(tool: ModuleType, slug: str, ref: str, path: str) -> str:
    """Colab and Binder links for ``path`` as plain text links: the badges' URLs without their outside images."""
    links = " · ".join(f"[{label}]({url})" for label, url in BADGE.findall(tool.badges(slug, ref, path)))
    return f"Run it yourself: {links}"


def lesson_extras(number: str, resources: Path = RESOURCES) -> dict[str, Any]:
    """The reading list, self-check questions, diagrams and summary of lesson ``number`` (``"05"``)."""
    path = resources / "lessons" / f"{number}.toml"
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _markdown(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip() + "\n")


def diagram_markdown(diagram: Mapping[str, str]) -> str:
    """A MyST figure for one committed SVG diagram, with its alt text and caption."""
    alt = " ".join(diagram["alt"].split())
    return (
        f":::{{figure}} ../diagrams/{diagram['file']}\n:alt: {alt}\n:width: 100%\n\n"
        f"{' '.join(diagram['caption'].split())}\n:::"
    )


def reading_markdown(reading: list[Mapping[str, str]]) -> str:
    """The lesson's reading list: each work with one sentence on what to take from it."""
    items = [f"- {item['cite']} [{item['link_text']}]({item['url']}). {item['take']}" for item in reading]
    return "## Reading list\n\nThe papers this lesson relies on, and what to take from each.\n\n" + "\n".join(
        items
    )


def questions_markdown(questions: list[Mapping[str, str]]) -> str:
    """Self-check questions, each answer folded away in an HTML ``<details>`` block."""
    parts = ["## Self-check\n\nAnswer each question in your head or on paper, then unfold the answer."]
    for number, item in enumerate(questions, start=1):
        parts.append(
            f'**{number}.** {item["q"].strip()}\n\n<details class="tlcourse-answer">\n'
            f"<summary>Answer to question {number}</summary>\n\n{item['a'].strip()}\n\n</details>"
        )
    return "\n\n".join(parts)


def _split_before(cells: list[Any], heading: str, *, default: int) -> int:
    """Where a diagram goes: before the markdown line starting with ``heading`` (splitting its cell if the line is
    inside one), else ``default``."""
    for index, cell in enumerate(cells):
        lines = cell.source.splitlines() if cell.cell_type == "markdown" and heading else []
        line = next((n for n, text in enumerate(lines) if text.startswith(heading)), None)
        if line is None:
            continue
        if line > 0:
            cell.source = "\n".join(lines[:line]).rstrip() + "\n"
            cells.insert(index + 1, _markdown("\n".join(lines[line:])))
            return index + 1
        return index
    return default


PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
"""The tag of the banner cell papermill puts first in a notebook that stopped on an error."""


def lesson_notebook(
    notebook: nbformat.NotebookNode,
    extras: Mapping[str, Any],
    *,
    links: str,
    setup_source: str,
    status_note: str = "",
) -> nbformat.NotebookNode:
    """A copy of an executed lesson with the site's additions; the recorded outputs are kept as they are.

    The badge line of the first markdown cell becomes ``links`` (plain links: a site read offline loads no
    outside image), the Colab setup cell (``setup_source``, which does nothing outside Colab) is hidden, each
    diagram goes before the markdown line that starts with its ``before`` (else after the introduction),
    and the reading list and self-check questions follow the last cell.
    """
    page = copy.deepcopy(notebook)
    # papermill's red "An Exception was encountered" banner: the page says so in ``status_note`` instead
    page.cells = [cell for cell in page.cells if PAPERMILL_ERROR_TAG not in cell.metadata.get("tags", [])]
    cells = page.cells
    first = next(index for index, cell in enumerate(cells) if cell.cell_type == "markdown")
    head, _, rest = cells[first].source.partition("\n")
    body = [line for line in rest.splitlines() if not BADGE.search(line)]
    cells[first].source = "\n".join([head, "", links, status_note, *body]).rstrip() + "\n"
    page.metadata.pop("widgets", None)
    for cell in cells:
        if cell.cell_type != "code":
            continue
        if cell.source.strip() == setup_source.strip():
            cell.metadata.setdefault("tags", []).append("remove-cell")
        cell.outputs = [WIDGET_NOTE if WIDGET_MIME in out.get("data", {}) else out for out in cell.outputs]
    for diagram in extras.get("diagrams", []):
        cells.insert(
            _split_before(cells, diagram.get("before", ""), default=first + 1),
            _markdown(diagram_markdown(diagram)),
        )
    if extras.get("reading"):
        cells.append(_markdown(reading_markdown(extras["reading"])))
    if extras.get("questions"):
        cells.append(_markdown(questions_markdown(extras["questions"])))
    return page


def _title(notebook: nbformat.NotebookNode) -> str:
    first = next((cell.source for cell in notebook.cells if cell.cell_type == "markdown"), "")
    line = first.strip().splitlines()[0] if first.strip() else ""
    return line.lstrip("#").strip() or "untitled"


def _cell_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return html.escape(" ".join(text.split())).replace("|", "\\|")


def figures_markdown(stem: str, title: str, entry: Mapping[str, Any], profile: str) -> str:
    """The page of figures one lesson recorded in the run (``report.json``), with its status, time and memory."""
    seconds = entry.get("seconds") or 0.0
    peak = entry.get("peak_mib")
    rows = [
        f"| status | {_cell_text(entry.get('status', '?'))} |",
        f"| wall time | {seconds:.1f} s |",
        f"| kernel's peak memory | {'?' if peak is None else f'{peak:.0f} MiB'} |",
    ]
    checks = entry.get("checks") or []
    if checks:
        rows.append(f"| checks passed | {sum(1 for c in checks if c.get('passed'))} of {len(checks)} |")
    metrics = entry.get("metrics") or {}
    metric_rows = [f"| `{_cell_text(name)}` | {_cell_text(value)} |" for name, value in metrics.items()]
    table = "\n".join(metric_rows) if metric_rows else "| (none) | this lesson recorded no figure |"
    caution = (
        "\n\nThe smoke profile runs on a few images for one epoch, often with random weights: its figures prove "
        "that the code runs, not what the methods achieve."
        if profile == "smoke"
        else ""
    )
    return (
        f"# {stem[:2]} {_cell_text(title.split(':')[0])}: recorded figures\n\nWhat [{_cell_text(title)}](../lessons/{stem}.ipynb) recorded when "
        f"it ran in the **{profile}** profile (`report.json` of the run).{caution}\n\n"
        "| about the run | value |\n|---|---|\n"
        + "\n".join(rows)
        + "\n\n## Recorded figures\n\n| figure | value |\n|---|---|\n"
        + table
        + "\n"
    )


def _minutes(seconds: float) -> str:
    return "under a minute" if seconds < 60 else f"about {round(seconds / 60)} min"


def lesson_times(run: Run, record: Path) -> tuple[dict[str, str], str]:
    """Each lesson's time in the cpu profile as text, and where the times come from.

    From this run when it ran in cpu; else from the ``runs`` of the course's recorded cpu run ``record``
    (:data:`CPU_RECORD` in the repository, the same record the prose's figures come from); else every lesson
    says :data:`NO_TIME`.
    """
    if run.profile == "cpu":
        seconds = {stem: float(entry.get("seconds") or 0.0) for stem, entry in run.lessons.items()}
        source = f"measured by this cpu run on {run.date}"
    elif record.is_file():
        runs = json.loads(record.read_text(encoding="utf-8")).get("runs", {})
        seconds = {key.split("/", 1)[-1]: float(entry["seconds"]) for key, entry in runs.items()}
        source = (
            "measured by the course's recorded cpu run (the figures in the lessons' text come from it too)"
        )
    else:
        return {stem: NO_TIME for stem in run.lessons}, "no cpu run has been recorded yet"
    return {stem: _minutes(seconds[stem]) if stem in seconds else NO_TIME for stem in run.lessons}, source


def landing_markdown(
    run: Run, titles: Mapping[str, str], exercises: list[str], links: str, record: Path
) -> str:
    """The landing page, from ``resources/site/index.md`` with the lesson table and toctrees filled in."""
    times, source = lesson_times(run, record)
    rows = []
    for stem, title in titles.items():
        summary = lesson_extras(stem[:2]).get("summary", "")
        rows.append(
            f"| [{_cell_text(title)}](lessons/{stem}.ipynb) | {_cell_text(summary)} | {times[stem]} |"
        )

    def toctree(caption: str, entries: list[str]) -> str:
        return (
            f":::{{toctree}}\n:caption: {caption}\n:hidden:\n:maxdepth: 1\n\n" + "\n".join(entries) + "\n:::"
        )

    template = string.Template((RESOURCES / "index.md").read_text(encoding="utf-8"))
    return template.substitute(
        lesson_table="| lesson | what you do | time (cpu profile) |\n|---|---|---|\n" + "\n".join(rows),
        time_source=source,
        profile=run.profile,
        date=run.date,
        launch_links=links,
        toctrees="\n\n".join(
            [
                toctree("Lessons", [f"lessons/{stem}" for stem in titles]),
                toctree("Exercises", [f"exercises/{stem}" for stem in exercises]) if exercises else "",
                toctree("Figures of this run", [f"figures/{stem}" for stem in titles]),
            ]
        ),
    )


def sphinx_config(run: Run, slug: str, ref: str) -> dict[str, Any]:
    """The Sphinx settings of the site (no conf.py: :func:`build_site` passes these as overrides)."""
    banner = (
        f"Rendered from a <strong>{html.escape(run.profile)}</strong>-profile run of {html.escape(run.date)}"
        + (
            ": its figures prove the code runs, not what the methods achieve."
            if run.profile == "smoke"
            else "."
        )
    )
    return {
        "project": "tlcourse",
        "author": "the tlcourse authors",
        "copyright": f"{run.date[:4]}, the tlcourse authors",
        "extensions": ["myst_nb", "sphinx.ext.githubpages", "tlcourse.cli.site"],  # githubpages: .nojekyll
        "nb_execution_mode": "off",
        "nb_merge_streams": True,
        "nb_mime_priority_overrides": [("html", RECORD_MIME, None)],
        "nb_ipywidgets_js": {},  # widgets are replaced by a note (lesson_notebook): nothing loads from outside
        "myst_enable_extensions": ["dollarmath", "colon_fence"],
        "myst_heading_anchors": 3,
        "html_theme": "sphinx_book_theme",
        "html_title": "Transfer learning, hands-on",
        "html_math_renderer": "mathml",
        "html_static_path": [str(RESOURCES / "static")],
        "html_css_files": ["tlcourse-site.css"],
        "html_last_updated_fmt": None,
        "html_copy_source": False,
        "templates_path": [str(RESOURCES / "templates")],
        "html_theme_options": {
            "announcement": banner,
            "extra_footer": f"<p>{banner}</p>",
            "repository_url": f"https://github.com/{slug}",
            "repository_branch": ref,
            "use_repository_button": True,
            "use_download_button": False,
            "home_page_in_toc": True,
            "show_toc_level": 2,
        },
        "exclude_patterns": ["_build", "**.ipynb_checkpoints"],
        "suppress_warnings": ["myst.header", "mystnb.unknown_mime_type"],
    }


def repository(repo_root: Path) -> tuple[ModuleType, str, str]:
    """The link tool, and the ``owner/name`` and git ref it reads from the checkout's pyproject.toml."""
    tool = load_link_tool(repo_root)
    try:
        slug, ref = tool.settings(repo_root / "pyproject.toml")
    except SystemExit as error:  # the tool's own one-line message
        raise TLCourseError(str(error)) from None
    return tool, slug, ref


def write_source(run: Run, source: Path, repo_root: Path) -> int:
    """Write the Sphinx source tree of the site into ``source``; return how many pages it holds."""
    tool, slug, ref = repository(repo_root)
    setup_source = tool.setup_cell(slug, ref)
    shutil.copytree(RESOURCES / "diagrams", source / "diagrams")
    titles: dict[str, str] = {}
    for stem, entry in run.lessons.items():
        notebook = nbformat.read(entry["notebook"], as_version=4)
        titles[stem] = _title(notebook)
        status_note = ""
        if entry.get("status") in {"failed", "timeout", "dead kernel", "interrupted"}:
            status_note = (
                f"\n:::{{warning}}\nThis lesson stopped early in this run ({_cell_text(entry.get('status'))}"
                f": {_cell_text(entry.get('error') or 'see the run report')}); the outputs below end there.\n:::\n"
            )
        page = lesson_notebook(
            notebook,
            lesson_extras(stem[:2]),
            links=launch_links(tool, slug, ref, f"lessons/{stem}.ipynb")
            + f" · [Figures this run recorded](../figures/{stem}.md)",
            setup_source=setup_source,
            status_note=status_note,
        )
        (source / "lessons").mkdir(exist_ok=True)
        nbformat.write(page, source / "lessons" / f"{stem}.ipynb")
        (source / "figures").mkdir(exist_ok=True)
        figures = figures_markdown(stem, titles[stem], entry, run.profile)
        (source / "figures" / f"{stem}.md").write_text(figures, encoding="utf-8")
    exercises = []
    for path in sorted((repo_root / "exercises").glob("*.ipynb")):  # exercises only: never solutions/
        exercise = nbformat.read(path, as_version=4)
        links = launch_links(tool, slug, ref, f"exercises/{path.name}")
        page = lesson_notebook(exercise, {}, links=links, setup_source=setup_source)
        (source / "exercises").mkdir(exist_ok=True)
        nbformat.write(page, source / "exercises" / path.name)
        exercises.append(path.stem)
    start = launch_links(tool, slug, ref, f"lessons/{next(iter(run.lessons))}.ipynb")
    (source / "index.md").write_text(
        landing_markdown(run, titles, exercises, start, repo_root / CPU_RECORD), encoding="utf-8"
    )
    return 1 + 2 * len(titles) + len(exercises)


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def build_site(run_dir: Path, out_dir: Path, repo_root: Path) -> SiteSummary:
    """Render the run in ``run_dir`` into a static site in ``out_dir`` (replaced if it holds an earlier site)."""
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace, patch_docutils

    start = time.perf_counter()
    run = read_run(run_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / ".buildinfo").is_file():
            raise TLCourseError(
                f"{out_dir} is not empty and holds no earlier site: choose a new or empty --out."
            )
        shutil.rmtree(out_dir)
    warnings = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="tlcourse-site-") as scratch:
        source = Path(scratch) / "source"
        source.mkdir()
        pages = write_source(run, source, repo_root)
        _, slug, ref = repository(repo_root)
        with patch_docutils(source), docutils_namespace():
            app = Sphinx(
                source, None, out_dir, Path(scratch) / "doctrees", "html",
                confoverrides=sphinx_config(run, slug, ref), status=None, warning=warnings,
                freshenv=True, verbosity=0,
            )  # fmt: skip
            app.build(force_all=True)
    if app.statuscode:
        raise TLCourseError(f"Sphinx could not build the site:\n{warnings.getvalue()}")
    return SiteSummary(
        out_dir, pages, _folder_size(out_dir) / 2**20, time.perf_counter() - start,
        [line for line in warnings.getvalue().splitlines() if line.strip()],
    )  # fmt: skip


# ---------------------------------------------------------------- maths as MathML, written at build time


def _mathml(latex: str, display: str) -> str:
    from latex2mathml.converter import convert

    try:
        return convert(latex.strip(), display=display)
    except Exception:  # noqa: BLE001 - an expression latex2mathml cannot read is shown as its source
        return f"<code>{html.escape(latex)}</code>"


def _visit_math(self: Any, node: Any) -> None:
    from docutils import nodes

    self.body.append(f'<span class="math">{_mathml(node.astext(), "inline")}</span>')
    raise nodes.SkipNode


def _visit_math_block(self: Any, node: Any) -> None:
    from docutils import nodes

    parts = [part for part in node.astext().split("\n\n") if part.strip()]
    rendered = "".join(_mathml(part, "block") for part in parts)
    self.body.append(f'<div class="math">{rendered}</div>')
    raise nodes.SkipNode


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension hook (the site lists this module in ``extensions``): the ``mathml`` math renderer."""
    app.add_html_math_renderer("mathml", (_visit_math, None), (_visit_math_block, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def site_command(args: argparse.Namespace) -> int:
    """``tlcourse site RUN_DIR --out SITE_DIR [--repo DIR]``."""
    try:
        import myst_nb  # noqa: F401
        import sphinx_book_theme  # noqa: F401
    except ModuleNotFoundError as error:
        raise TLCourseError(
            f"`tlcourse site` needs {error.name}, from the site extra: python -m pip install -e '.[site]'."
        ) from None
    summary = build_site(Path(args.run_dir), Path(args.out), Path(args.repo or "."))
    for line in summary.warnings:
        print(line, file=sys.stderr)
    print(
        f"site: {summary.pages} pages, {summary.megabytes:.1f} MiB, built in {summary.seconds:.1f} s: "
        f"open {summary.folder / 'index.html'}"
    )
    return 0
