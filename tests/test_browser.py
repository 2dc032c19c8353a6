"""End to end in a real browser (issue 8): JupyterLab 4 + headless Chromium run the capstone's upload widget.

The test starts JupyterLab on 127.0.0.1 over a temporary copy of ``lessons/`` (smoke profile, the offline
mirror when there is one), opens ``lessons/08_creative_brief.ipynb`` in Debian's Chromium driven by
Playwright, runs all cells, uploads a real photo through the widget's own Upload button (a file chooser, as a
student would) and checks the prediction the page shows against the kernel's own result and the notebook's
classes. Screenshots and the server log go to ``$TLCOURSE_ARTIFACTS`` (default ``test-artifacts/``).

Needs ``/usr/bin/chromium`` (``tools/install_browser.sh``) and the Python package ``playwright`` (dev extra);
Playwright never downloads a browser of its own. Without them the test skips, except under CI (``$CI`` set),
where it fails: CI must run it.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import browser_support as support
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CAPSTONE = "08_creative_brief.ipynb"
FALLBACK_CLASSES = ["daisy", "roses", "tulips"]

#: Generous limits: TensorFlow's start-up plus the capstone's smoke run take a minute or more on 2 busy cores.
RUN_ALL_TIMEOUT_S = float(os.environ.get("TLCOURSE_BROWSER_TIMEOUT", "600"))
STEP_TIMEOUT_S = 180.0


def _require_browser() -> Path:
    """Chromium's path; skip (or fail under CI) when Chromium or Playwright is missing."""
    problems = []
    chromium = support.chromium_path()
    if chromium is None:
        wanted = os.environ.get("TLCOURSE_CHROMIUM", str(support.DEFAULT_CHROMIUM))
        problems.append(f"no Chromium at {wanted} (run tools/install_browser.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the Python package playwright is missing (pip install -e '.[dev]')")
    if problems:
        reason = "browser test needs " + "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test, but it {reason.removeprefix('browser test ')}")
        pytest.skip(reason)
    assert chromium is not None
    return chromium


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots and logs go: ``$TLCOURSE_ARTIFACTS`` or ``test-artifacts/`` at the repo root."""
    folder = Path(os.environ.get("TLCOURSE_ARTIFACTS") or REPO_ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("browser_*"):
        stale.unlink()
    return folder


@pytest.fixture
def course_root(tmp_path: Path) -> tuple[Path, str]:
    """A scratch copy of lessons/*.ipynb (JupyterLab's root) and the notebook to open, relative to it.

    Falls back to a tiny notebook that uses tlcourse.widgets when the capstone is not in the repository.
    """
    root = tmp_path / "course"
    (root / "lessons").mkdir(parents=True)
    for notebook in (REPO_ROOT / "lessons").glob("*.ipynb"):  # not the outputs of earlier runs in lessons/
        shutil.copy2(notebook, root / "lessons" / notebook.name)
    if (root / "lessons" / CAPSTONE).is_file():
        return root, f"lessons/{CAPSTONE}"
    support.write_widget_notebook(root / "lessons" / "browser_widget_check.ipynb", FALLBACK_CLASSES)
    return root, "lessons/browser_widget_check.ipynb"


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A real photo from the mirror's flowers, or a generated PNG when there is no mirror."""
    mirror = os.environ.get("TLCOURSE_MIRROR")
    flowers = Path(mirror) / "datasets" / "flower_photos_small" / "validation" if mirror else None
    if flowers is not None and flowers.is_dir():
        candidates = sorted(flowers.glob("*/*.jpg"))
        if candidates:
            return candidates[len(candidates) // 2]
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (160, 120), (40, 120, 60))
    ImageDraw.Draw(image).ellipse((40, 20, 120, 100), fill=(220, 60, 90))
    path = tmp_path / "generated_flower.png"
    image.save(path)
    return path


@pytest.fixture
def lab(course_root: tuple[Path, str], tmp_path: Path, artifacts: Path) -> Iterator[support.JupyterLabServer]:
    """JupyterLab on loopback over the scratch course; stopped (kernels too) and its log kept afterwards."""
    _require_browser()
    root, _ = course_root
    env = dict(os.environ)
    env.update(TLCOURSE_PROFILE="smoke", MALLOC_ARENA_MAX="2", PYTHONUNBUFFERED="1")
    # The kernel imports this checkout's tlcourse even where the installed package points elsewhere.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    server = support.JupyterLabServer(root, tmp_path / "lab", env, tmp_path / "jupyterlab-server.log")
    try:
        server.start_and_wait(timeout=STEP_TIMEOUT_S)
        yield server
    finally:
        survivors = server.stop()
        if server.log_path.is_file():
            shutil.copyfile(server.log_path, artifacts / "browser_jupyterlab_server.log")
        assert not survivors, f"processes of the JupyterLab server outlived it: {survivors}"


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(RUN_ALL_TIMEOUT_S + 6 * STEP_TIMEOUT_S)
def test_capstone_upload_widget_predicts_a_notebook_class_in_jupyterlab(
    lab: support.JupyterLabServer,
    course_root: tuple[Path, str],
    photo: Path,
    artifacts: Path,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    chromium = _require_browser()
    _, notebook = course_root
    step_ms = STEP_TIMEOUT_S * 1000
    timings: dict[str, float] = {}
    start = time.perf_counter()
    console: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh, empty profile
            executable_path=str(chromium),
            args=list(support.CHROMIUM_ARGS),
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        try:
            page.goto(lab.lab_url(notebook), timeout=step_ms)
            page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=step_ms)
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.commands.isEnabled('notebook:run-all-cells')",
                timeout=step_ms,
            )
            support.wait_kernel_idle(page, timeout_ms=step_ms)
            timings["notebook open, kernel idle"] = time.perf_counter() - start

            ok = support.run_all_cells(page, timeout_ms=RUN_ALL_TIMEOUT_S * 1000)
            timings["run all cells"] = time.perf_counter() - start
            errors = support.notebook_errors(page)
            assert ok and not errors, f"running {notebook} in JupyterLab failed: {errors or 'see the log'}"

            predictor = page.locator(".tlcourse-upload-predictor").last
            predictor.wait_for(timeout=step_ms)
            upload = predictor.locator(".tlcourse-upload")
            results = predictor.locator(".tlcourse-result .tlcourse-results")

            # The student's path: click Upload, pick a photo in the file chooser.
            with page.expect_file_chooser(timeout=step_ms) as chooser:
                upload.click()
            chooser.value.set_files(photo)
            name = json.dumps(photo.name)  # a CSS string
            predictor.locator(
                f".tlcourse-prediction[data-name={name}], .tlcourse-rejected[data-name={name}],"
                ' .tlcourse-results[data-status="error"]'
            ).first.wait_for(timeout=step_ms)
            timings["prediction shown"] = time.perf_counter() - start
            page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # more room for the notebook
            predictor.scroll_into_view_if_needed()
            page.screenshot(path=artifacts / "browser_capstone_widget.png")
            predictor.screenshot(path=artifacts / "browser_capstone_widget_area.png")

            assert results.get_attribute("data-status") == "done", results.inner_text()
            prediction = predictor.locator(".tlcourse-prediction")
            assert prediction.count() == 1, predictor.inner_text()
            assert prediction.get_attribute("data-name") == photo.name
            shown_class = prediction.get_attribute("data-top-class")
            shown_classes = [
                row.get_attribute("data-class") for row in prediction.locator(".tlcourse-class").all()
            ]

            # What the kernel itself holds: the predictor's classes and the result it computed.
            kernel_view = ast.literal_eval(
                support.kernel_eval(
                    page,
                    "[(list(map(str, p.class_names)), [str(c) for c, _ in p.last_results[0]['top']])"
                    " for p in list(globals().values()) if type(p).__name__ == 'UploadPredictor'"
                    f" and [r['name'] for r in p.last_results] == [{photo.name!r}]][-1]",
                )
            )
            class_names, kernel_top = kernel_view
            assert len(class_names) >= 2
            assert shown_class in class_names, f"{shown_class!r} is not one of the notebook's {class_names}"
            assert shown_classes == kernel_top, "the page shows other classes than the kernel computed"
            assert shown_class == kernel_top[0]
            assert upload.is_visible()

            # What the widget shows meets WCAG AA in JupyterLab's light theme and, switched, its dark one.
            area = ".tlcourse-upload-predictor .tlcourse-result"
            assert not axe_violations(page, area), axe_violations(page, area)
            page.evaluate(
                "() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
            )
            page.wait_for_function(
                "() => document.body.dataset.jpThemeName === 'JupyterLab Dark' && !document.body.dataset.jpThemeLoading"
                " || getComputedStyle(document.body).getPropertyValue('--jp-layout-color0').trim() === '#111'",
                timeout=step_ms,
            )
            predictor.screenshot(path=artifacts / "browser_capstone_widget_dark.png")
            assert not axe_violations(page, area), axe_violations(page, area)
        except BaseException:
            page.screenshot(path=artifacts / "browser_capstone_failure.png")
            (artifacts / "browser_console.log").write_text("\n".join(console), encoding="utf-8")
            raise
        finally:
            context.close()
    summary = ", ".join(f"{step} at {seconds:.1f} s" for step, seconds in timings.items())
    print(f"browser test: {notebook}: {summary}; predicted {shown_class!r} for {photo.name}")


# ---------------------------------------------------------------- accessibility: axe on both JupyterLab themes

AXE_SCRIPT = REPO_ROOT / ".test-extras" / "axe-core" / "axe.min.js"  # tools/install_test_extras.sh
"""axe-core, installed from npm by tools/install_test_extras.sh: never fetched while the tests run."""
AXE_RULES = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}


def _require_axe() -> Path:
    if AXE_SCRIPT.is_file():
        return AXE_SCRIPT
    reason = "the accessibility check needs axe-core: bash tools/install_test_extras.sh installs it from npm"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run it, but {reason}")
    pytest.skip(reason)


def _theme_css(theme: str) -> str:
    """JupyterLab's own stylesheet of a theme ("light" or "dark"), as JupyterLab serves it."""
    from jupyter_core.paths import jupyter_path

    for folder in jupyter_path("lab", "themes"):
        sheet = Path(folder) / "@jupyterlab" / f"theme-{theme}-extension" / "index.css"
        if sheet.is_file():
            return sheet.read_text(encoding="utf-8")
    pytest.fail(f"JupyterLab's {theme} theme stylesheet is not installed (jupyterlab is a dependency)")


def axe_violations(page, selector: str = "body") -> list[str]:
    """axe's WCAG 2.1 A/AA violations inside the last element ``selector`` matches, one line each (with the
    failing HTML)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(_require_axe()))
    found = page.evaluate(
        """async ([selector, options]) => {
            const result = await axe.run(Array.from(document.querySelectorAll(selector)).pop(), options);
            return result.violations.flatMap(v => v.nodes.map(n =>
                `${v.id}: ${n.failureSummary.replace(/\\s+/g, " ")} in ${n.html.slice(0, 160)}`));
        }""",
        [selector, AXE_RULES],
    )
    return list(found)


@pytest.mark.browser
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_widget_state_passes_axe_wcag_aa_on_jupyterlabs_theme(theme: str, tmp_path: Path) -> None:
    """Each widget's HTML on a page styled by JupyterLab's own theme: no contrast failure, no unnamed region."""
    from playwright.sync_api import sync_playwright
    from widget_samples import widget_html

    chromium = _require_browser()
    _require_axe()
    sections = "".join(
        f'<section aria-label="{name}" class="jp-OutputArea-output">{markup}</section>'
        for name, markup in widget_html().items()
    )
    page_html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>tlcourse widgets</title><style>'
        + _theme_css(theme)
        + "body{background:var(--jp-layout-color0);color:var(--jp-content-font-color1);"
        "font-family:var(--jp-content-font-family);font-size:var(--jp-content-font-size1)}</style></head>"
        f"<body><main>{sections}</main></body></html>"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), args=list(support.CHROMIUM_ARGS), headless=True
        )
        try:
            page = browser.new_page()
            page.set_content(page_html)
            violations = axe_violations(page)
        finally:
            browser.close()
    assert not violations, f"{theme} theme:\n" + "\n".join(violations)


# ---------------------------------------------------------------- fast checks of the set-up around the test


def test_missing_browser_skips_with_the_install_hint_outside_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("TLCOURSE_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="tools/install_browser.sh"):
        _require_browser()


def test_missing_browser_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("TLCOURSE_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser test"):
        _require_browser()


def _run_install_script(tmp_path: Path, chromium: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run tools/install_browser.sh with fake apt-get/sudo that log their calls and 'install' ``chromium``."""
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    log = tmp_path / "apt.log"
    (fakebin / "apt-get").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> "{log}"\n'
        'if [ "$1" = install ]; then\n'
        f'  printf \'#!/bin/sh\\necho Chromium 1.2.3 fake\\n\' > "{chromium}"; chmod +x "{chromium}"\n'
        "fi\n"
    )
    (fakebin / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    for tool in fakebin.iterdir():
        tool.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fakebin}{os.pathsep}{os.environ['PATH']}",
        "TLCOURSE_CHROMIUM": str(chromium),
    }
    script = REPO_ROOT / "tools" / "install_browser.sh"
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    return done, log


def test_install_script_installs_chromium_and_driver_when_missing(tmp_path):
    chromium = tmp_path / "chromium"
    done, log = _run_install_script(tmp_path, chromium)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("update")
    assert calls[1].startswith("install") and calls[1].split()[-2:] == ["chromium", "chromium-driver"]
    assert "Chromium 1.2.3 fake" in done.stdout


def test_install_script_does_nothing_when_chromium_is_there(tmp_path):
    chromium = tmp_path / "chromium"
    chromium.write_text("#!/bin/sh\necho Chromium 9.9 already\n")
    chromium.chmod(0o755)
    done, log = _run_install_script(tmp_path, chromium)
    assert done.returncode == 0, done.stderr
    assert not log.exists(), "apt-get ran although Chromium was installed"
    assert "already installed" in done.stdout and "Chromium 9.9 already" in done.stdout
