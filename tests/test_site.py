"""The course as a site (issue 29): ``tlcourse site`` renders a recorded run with Sphinx + MyST-NB, offline.

Fast tests build a site from a fake run of two tiny executed lessons and a fake checkout (its own repository
setting, an exercise and a solution) and read the HTML. The browser test builds the site from the smoke run the
suite already executes (the ``smoke_run`` fixture), serves it on 127.0.0.1 with every other request aborted, and
walks it in Chromium (Playwright, as tests/test_browser.py): every page by its next links, every image loaded,
previous links pointing back, the search finding lesson 05, and no serious or critical axe finding. Screenshots
of the landing page and lesson 05 (its top and its diagram) go to ``$TLCOURSE_ARTIFACTS/site/_screenshots``, with the
site itself (``$TLCOURSE_ARTIFACTS`` defaults to test-artifacts/).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import re
import shutil
import socket
import threading
import time
import tomllib
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import browser_support as support
import nbformat
import pytest
from test_browser import _require_browser

from tlcourse.cli import build_parser
from tlcourse.cli import site as course_site
from tlcourse.errors import TLCourseError

REPO_ROOT = Path(__file__).resolve().parents[1]
AXE = REPO_ROOT / ".test-extras" / "axe-core" / "axe.min.js"  # tools/install_test_extras.sh
SOLUTION_MARKER = "ONLY-IN-THE-SOLUTION-4f1c"
RUN_DATE = "2031-05-17"
CHECKOUT_SLUG, CHECKOUT_REF = "someone/elsewhere", "v9.9"
FAKE_LESSONS = ("00_welcome", "05_fine_tuning")
# Sphinx 9 announces API changes that myst-parser and sphinx-book-theme have yet to follow: not this project's.
pytestmark = pytest.mark.filterwarnings("ignore:.*Check CHANGES for Sphinx API modifications")


def _png() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 40, 40)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _badges(path: str) -> str:
    return (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/x/y/blob/main/{path}) "
        f"[![Binder](https://mybinder.org/badge_logo.svg)](https://mybinder.org/v2/gh/x/y/main?urlpath=lab/tree/{path})"
    )


def _executed_lesson(stem: str, setup: str) -> nbformat.NotebookNode:
    """A tiny lesson as papermill leaves it: outputs recorded, one cell that would fail if it ran again."""
    cells = [
        nbformat.v4.new_markdown_cell(
            f"# Lesson {stem[:2]}: a tiny lesson\n\n{_badges(f'lessons/{stem}.ipynb')}\n\nIntro."
        ),
        nbformat.v4.new_code_cell(setup),
        nbformat.v4.new_markdown_cell("## 1. Step one\n\nThe ratio is $x^2 + \\frac{1}{k}$."),
        nbformat.v4.new_code_cell(
            'raise SystemExit("a site must never execute a notebook")',
            outputs=[
                nbformat.v4.new_output("stream", name="stdout", text=f"recorded text of {stem} 31337\n")
            ],
        ),
        nbformat.v4.new_markdown_cell("## 2. How deep to unfreeze?\n\nChoose the boundary."),
        nbformat.v4.new_code_cell(
            "plot()",
            outputs=[
                nbformat.v4.new_output("display_data", data={"image/png": _png(), "text/plain": "<Figure>"}),
                nbformat.v4.new_output(
                    "display_data",
                    data={
                        course_site.WIDGET_MIME: {"model_id": "abc", "version_major": 2},
                        "text/plain": "VBox()",
                    },
                ),
            ],
        ),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["papermill"] = {
        "end_time": f"{RUN_DATE}T10:00:00+00:00",
        "parameters": {"PROFILE": "smoke"},
    }
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return notebook


def fake_checkout(root: Path) -> Path:
    """The parts of a course checkout the site reads, with its own repository setting, an exercise and a solution."""
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    pyproject = re.sub(
        r'Repository = "[^"]+"', f'Repository = "https://github.com/{CHECKOUT_SLUG}"', pyproject
    )
    pyproject = re.sub(r'notebook_ref = "[^"]+"', f'notebook_ref = "{CHECKOUT_REF}"', pyproject)
    (root / "tools").mkdir(parents=True)
    (root / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    shutil.copy(REPO_ROOT / "tools" / "sync_notebook_links.py", root / "tools")
    for folder, extra in (
        ("exercises", "# your answer here"),
        ("solutions", f"answer = '{SOLUTION_MARKER}'"),
    ):
        notebook = nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_markdown_cell(
                    f"# Exercise 05\n\n{_badges(f'{folder}/05_fine_tuning.ipynb')}"
                ),
                nbformat.v4.new_code_cell(extra),
            ]
        )
        (root / folder).mkdir()
        nbformat.write(notebook, root / folder / "05_fine_tuning.ipynb")
    return root


def fake_run(root: Path, setup: str, profile: str = "smoke") -> Path:
    """A ``tlcourse run`` folder with two executed lessons and their report.json."""
    (root / "lessons").mkdir(parents=True)
    entries = []
    for stem in FAKE_LESSONS:
        nbformat.write(_executed_lesson(stem, setup), root / "lessons" / f"{stem}.ipynb")
        entries.append(
            {
                "path": f"lessons/{stem}.ipynb",
                "output": str(root / "lessons" / f"{stem}.ipynb"),
                "status": "ok",
                "seconds": 95.0,
                "peak_mib": 700.0,
                "metrics": {f"{stem}_accuracy": 0.875, "verdict": "tied | within noise"},
                "parameters": {"PROFILE": profile},
                "checks": [],
            }
        )
    (root / "report.json").write_text(json.dumps({"summary": {}, "notebooks": entries}), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(site folder, checkout) of a site built once from the fake run; the tests below only read it."""
    root = tmp_path_factory.mktemp("site")
    checkout = fake_checkout(root / "checkout")
    setup = course_site.load_link_tool(checkout).setup_cell(CHECKOUT_SLUG, CHECKOUT_REF)
    run = fake_run(root / "run", setup)

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled: the site must build offline")

    with pytest.MonkeyPatch.context() as patch:  # as the no_network fixture, for this module-wide build
        for owner, name in (
            (socket, "getaddrinfo"),
            (socket, "create_connection"),
            (socket.socket, "connect"),
        ):
            patch.setattr(owner, name, no_network)
        summary = course_site.build_site(run, root / "html", checkout)
    assert summary.pages == 1 + 2 * len(FAKE_LESSONS) + 1
    return root / "html", checkout


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("href", "src"):
            if values.get(name):
                self.links.append((tag, str(values[name])))
        if tag == "img":
            self.images.append(values)


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _pages(site: Path) -> list[Path]:
    return sorted(
        path for path in site.rglob("*.html") if not path.relative_to(site).parts[0].startswith("_")
    )


# ---------------------------------------------------------------- the builder, on a fake run (seconds)


def test_site_has_a_landing_page_and_a_page_per_lesson_exercise_and_figures_table(built):
    site, _ = built
    names = {path.relative_to(site).as_posix() for path in _pages(site)}
    expected = {"index.html", "exercises/05_fine_tuning.html"}
    expected |= {f"{folder}/{stem}.html" for folder in ("lessons", "figures") for stem in FAKE_LESSONS}
    assert expected <= names
    figures = (site / "figures" / "05_fine_tuning.html").read_text(encoding="utf-8")
    assert "05_fine_tuning_accuracy" in figures and "0.875" in figures
    assert "tied | within noise" in figures  # a value holding a table separator stays in its cell
    landing = (site / "index.html").read_text(encoding="utf-8")
    assert "Colab" in landing and "Binder" in landing and "laptop" in landing


def test_every_internal_link_and_image_of_the_site_resolves(built):
    site, _ = built
    broken = []
    for page in _pages(site):
        for tag, target in _parse(page).links:
            parts = urlsplit(target)
            if parts.scheme or parts.netloc or target.startswith(("#", "mailto:", "javascript:")):
                continue
            resolved = (page.parent / unquote(parts.path)).resolve()
            if not resolved.exists():
                broken.append(f"{page.relative_to(site)}: <{tag}> {target}")
    assert not broken, broken


def test_lesson_pages_carry_their_diagram_reading_list_and_folded_answers(built):
    site, _ = built
    extras = course_site.lesson_extras("05")
    page = (site / "lessons" / "05_fine_tuning.html").read_text(encoding="utf-8")
    assert page.count('<details class="tlcourse-answer">') == len(extras["questions"]) >= 8
    for item in extras["reading"]:
        assert item["url"] in page
    diagram = extras["diagrams"][0]
    images = _parse(site / "lessons" / "05_fine_tuning.html").images
    alts = [" ".join((image.get("alt") or "").split()) for image in images]
    assert " ".join(diagram["alt"].split()) in alts
    article = page[page.index("<article") :]  # the page's own content, after the menus
    assert article.index(diagram["file"].removesuffix(".svg")) < article.index("How deep to unfreeze?")
    assert (
        article.index("How deep to unfreeze?") < article.index("Reading list") < article.index("Self-check")
    )


def test_recorded_outputs_are_shown_without_executing_anything(built):
    site, _ = built
    page = (site / "lessons" / "00_welcome.html").read_text(encoding="utf-8")
    assert (
        "recorded text of 00_welcome 31337" in page
    )  # the cell that raises if run: its output is the record
    outputs = [
        img for img in _parse(site / "lessons" / "00_welcome.html").images if "_images" in str(img.get("src"))
    ]
    assert outputs, "the recorded PNG output is missing"
    assert "<math" in page, "maths should be written out as MathML"


def test_no_solution_is_copied_into_the_site(built):
    site, _ = built
    for path in site.rglob("*"):
        if path.is_file():
            assert SOLUTION_MARKER.encode() not in path.read_bytes(), path


def test_every_page_names_the_runs_profile_and_date(built):
    site, _ = built
    for page in _pages(site):
        text = page.read_text(encoding="utf-8")
        assert "<strong>smoke</strong>-profile run of " + RUN_DATE in text, page.relative_to(site)


def test_launch_links_follow_the_checkouts_setting_and_nothing_loads_from_outside(built):
    site, _ = built
    lesson = (site / "lessons" / "05_fine_tuning.html").read_text(encoding="utf-8")
    assert (
        f"colab.research.google.com/github/{CHECKOUT_SLUG}/blob/{CHECKOUT_REF}/lessons/05_fine_tuning.ipynb"
        in lesson
    )
    assert (
        f"mybinder.org/v2/gh/{CHECKOUT_SLUG}/{CHECKOUT_REF}?urlpath=lab/tree/lessons/05_fine_tuning.ipynb"
        in lesson
    )
    exercise = (site / "exercises" / "05_fine_tuning.html").read_text(encoding="utf-8")
    assert f"/blob/{CHECKOUT_REF}/exercises/05_fine_tuning.ipynb" in exercise
    assert "a site must never execute" in lesson
    assert "Setup: on Colab" not in lesson  # the Colab install cell is hidden
    for page in _pages(site):
        for tag, target in _parse(page).links:
            if tag in {"img", "script", "link"}:
                assert not urlsplit(target).netloc, f"{page.relative_to(site)} loads {target}"


def test_widget_outputs_become_a_note_instead_of_outside_scripts(built):
    site, _ = built
    page = (site / "lessons" / "05_fine_tuning.html").read_text(encoding="utf-8")
    assert "interactive widget appears here" in page
    assert "require.js" not in page and "widget-view" not in page


def test_lesson_times_come_from_a_cpu_run_else_the_courses_cpu_record_else_say_so(tmp_path):
    lessons = {"00_welcome": {"seconds": 30.0}, "05_fine_tuning": {"seconds": 240.0}}
    cpu = course_site.Run(tmp_path, "cpu", RUN_DATE, lessons)
    times, source = course_site.lesson_times(cpu, tmp_path / "absent.json")
    assert times == {"00_welcome": "under a minute", "05_fine_tuning": "about 4 min"} and RUN_DATE in source
    record = tmp_path / "figures.cpu.json"  # as tools/figures.py record writes it
    record.write_text(json.dumps({"runs": {"lessons/05_fine_tuning": {"seconds": 250.0, "peak_mib": 1200}}}))
    smoke = course_site.Run(tmp_path, "smoke", "2031-06-01", {**lessons, "09_new": {"seconds": 1.0}})
    times, source = course_site.lesson_times(smoke, record)
    assert times["05_fine_tuning"] == "about 4 min" and times["00_welcome"] == course_site.NO_TIME
    assert times["09_new"] == course_site.NO_TIME and "recorded cpu run" in source
    times, _ = course_site.lesson_times(smoke, tmp_path / "absent.json")
    assert set(times.values()) == {course_site.NO_TIME}


def test_the_committed_cpu_record_gives_every_lesson_a_time():
    lessons = {
        path.stem: {"seconds": 1.0} for path in sorted((REPO_ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))
    }
    smoke = course_site.Run(REPO_ROOT, "smoke", RUN_DATE, lessons)
    times, _ = course_site.lesson_times(smoke, REPO_ROOT / course_site.CPU_RECORD)
    assert course_site.NO_TIME not in times.values(), times


def test_the_site_command_refuses_a_folder_that_is_no_run_or_no_site(tmp_path):
    with pytest.raises(TLCourseError, match="no report.json"):
        course_site.read_run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    run = fake_run(tmp_path / "run", "pass")
    with pytest.raises(TLCourseError, match="holds no earlier site"):
        course_site.build_site(run, tmp_path, REPO_ROOT)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    args = build_parser().parse_args(["site", "runs/x", "--out", "runs/x/html"])
    assert (args.module, args.function, args.run_dir, args.out) == (
        "tlcourse.cli.site",
        "site_command",
        "runs/x",
        "runs/x/html",
    )


def test_every_lesson_has_reading_questions_and_its_diagrams_have_alt_text():
    for notebook in sorted((REPO_ROOT / "lessons").glob("[0-9][0-9]_*.ipynb")):
        number = notebook.name[:2]
        extras = course_site.lesson_extras(number)
        assert len(extras.get("questions", [])) >= 8, notebook.name
        assert all(item["q"].strip() and item["a"].strip() for item in extras["questions"])
        assert len(extras.get("reading", [])) >= 2, notebook.name
        assert all(item["url"].startswith("https://") and item["take"].strip() for item in extras["reading"])
        assert extras.get("summary"), notebook.name
        cells = nbformat.read(notebook, as_version=4).cells
        lines = [line for cell in cells if cell.cell_type == "markdown" for line in cell.source.splitlines()]
        for diagram in extras.get("diagrams", []):
            svg = (course_site.RESOURCES / "diagrams" / diagram["file"]).read_text(encoding="utf-8")
            assert "<title" in svg and re.search(r'<svg[^>]* width="\d+" height="\d+"', svg), diagram["file"]
            assert len(diagram["alt"].split()) >= 15, diagram["file"]
            assert any(line.startswith(diagram["before"]) for line in lines), (
                notebook.name,
                diagram["before"],
            )
    with_diagrams = {path.name[:2] for path in (course_site.RESOURCES / "lessons").glob("*.toml")}
    assert {"00", "03", "05", "07"} <= {
        n for n in with_diagrams if course_site.lesson_extras(n).get("diagrams")
    }


def test_package_data_lists_every_site_resource():
    patterns = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = REPO_ROOT / "tlcourse"
    shipped = {path for pattern in patterns["tlcourse"] for path in package.glob(pattern)}
    resources = {
        path
        for path in course_site.RESOURCES.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert resources <= shipped, sorted(str(p.relative_to(package)) for p in resources - shipped)


# ---------------------------------------------------------------- the real site in Chromium (about a minute)


def _require_axe(path: Path = AXE) -> Path:
    """axe-core's script; skip (or fail under CI) when tools/install_test_extras.sh has not installed it."""
    if path.is_file():
        return path
    reason = f"axe-core at {path} (tools/install_test_extras.sh)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the site's browser test, but it needs {reason}")
    pytest.skip(f"the site's browser test needs {reason}")


def test_missing_axe_skips_with_the_install_hint_outside_ci(monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install_test_extras.sh"):
        _require_axe(tmp_path / "axe.min.js")


def test_missing_axe_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the site's browser test"):
        _require_axe(tmp_path / "axe.min.js")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def served_site(smoke_run: Path) -> Iterator[tuple[str, Path, float]]:
    """The site built from the smoke run, served on 127.0.0.1: (base URL, folder, build seconds)."""
    _require_browser()
    _require_axe()
    artifacts = Path(os.environ.get("TLCOURSE_ARTIFACTS") or REPO_ROOT / "test-artifacts")
    site = artifacts / "site"
    summary = course_site.build_site(smoke_run, site, REPO_ROOT)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", site, summary.seconds
    finally:
        server.shutdown()
        server.server_close()


CHECK_IMAGES = """async () => {
    const images = Array.from(document.images);
    images.forEach((img) => { img.loading = 'eager'; });
    await Promise.all(images.map((img) => img.decode().catch(() => null)));
    return images.filter((img) => !img.complete || img.naturalWidth === 0).map((img) => img.src);
}"""
RUN_AXE = """async () => {
    const result = await axe.run(document, {resultTypes: ['violations']});
    return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ')}`);
}"""


@pytest.mark.browser
@pytest.mark.timeout(600)
def test_the_site_of_the_smoke_run_works_offline_in_chromium(served_site):
    from playwright.sync_api import sync_playwright

    base, site, build_seconds = served_site
    start = time.perf_counter()
    outside: list[str] = []
    problems: list[str] = []
    visited: list[str] = []
    shots = site / "_screenshots"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(_require_browser()), args=list(support.CHROMIUM_ARGS), headless=True
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})

        def only_this_site(route):
            if route.request.url.startswith(base):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_this_site)
        page = context.new_page()
        try:
            page.goto(base + "index.html")
            page.screenshot(path=shots / "landing.png")
            previous = None
            while True:  # every page, in the order of the next links
                here = page.url.removeprefix(base).split("#")[0]
                visited.append(here)
                broken = page.evaluate(CHECK_IMAGES)
                problems += [f"{here}: image did not load: {src}" for src in broken]
                if here.startswith("lessons/") and page.locator("article img").count() == 0:
                    problems.append(f"{here}: no figure")
                back = page.locator("a.left-prev")
                href = back.first.get_attribute("href") if back.count() else None
                if previous and not _same(page.url, href, base + previous):
                    problems.append(f"{here}: its previous link does not lead back to {previous}")
                page.add_script_tag(path=str(AXE))
                problems += [f"{here}: axe {finding}" for finding in page.evaluate(RUN_AXE)]
                if here == "lessons/05_fine_tuning.html":
                    page.screenshot(path=shots / "lesson05.png")
                    page.locator("article figure").first.scroll_into_view_if_needed()
                    page.screenshot(path=shots / "lesson05_diagram.png")
                following = page.locator("a.right-next")
                if following.count() == 0:
                    break
                previous = here
                with page.expect_navigation():
                    following.first.click()
            # the search, as a student uses it: the search field, a word from lesson 05, Enter
            page.goto(base + "index.html")
            page.keyboard.press("Control+k")
            field = page.locator("#pst-search-dialog input[name=q]")
            field.fill("harness")
            with page.expect_navigation():
                field.press("Enter")
            # Sphinx adds the hits one by one; its summary line says when the last one is in
            page.locator("p.search-summary", has_text="Search finished").wait_for(timeout=30_000)
            hits = [a.get_attribute("href") or "" for a in page.locator("ul.search li a").all()]
            if not any("lessons/05_fine_tuning.html" in hit for hit in hits):
                problems.append(f"search for 'harness' does not find lesson 05: {hits}")
        finally:
            context.close()
            browser.close()
    expected = {path.relative_to(site).as_posix() for path in _pages(site)} - {"search.html", "genindex.html"}
    assert set(visited) == expected, f"not reached by next links: {sorted(expected - set(visited))}"
    assert not outside, f"the site asked for outside addresses: {sorted(set(outside))}"
    assert not problems, "\n".join(problems)
    print(
        f"site: built in {build_seconds:.1f} s, {len(visited)} pages checked in {time.perf_counter() - start:.1f} s"
    )


def _same(page_url: str, href: str | None, expected: str) -> bool:
    """True when ``href``, relative to ``page_url``, is the address ``expected``."""
    return href is not None and urljoin(page_url, href).split("#")[0] == expected


def test_a_lesson_that_stopped_early_keeps_its_page_free_of_outside_images_and_papermills_banner():
    """papermill puts a red banner cell first in a notebook that failed; the badges below it still become links."""
    lesson = _executed_lesson("01_tiny", "pass")
    banner = nbformat.v4.new_markdown_cell("<span>An Exception was encountered at 'In [3]'.</span>")
    banner.metadata["tags"] = [course_site.PAPERMILL_ERROR_TAG]
    lesson.cells.insert(0, banner)
    page = course_site.lesson_notebook(
        lesson,
        {},
        links="[Open In Colab](https://colab.example/x)",
        setup_source="pass",
        status_note="stopped",
    )
    markdown = "\n".join(cell.source for cell in page.cells if cell.cell_type == "markdown")
    assert "badge" not in markdown and "An Exception was encountered" not in markdown
    assert (
        page.cells[0].source.startswith("# Lesson 01")
        and "[Open In Colab](https://colab.example/x)" in markdown
    )
