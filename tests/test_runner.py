"""The batch runner (``tlcourse run``) and metric recording, on tiny notebooks generated per test.

Kernel start-up is the slow part, so one module-wide batch (a notebook that records metrics, one that raises,
one that times out, one whose kernel dies) serves several tests, and the skip rule's many cases use a fake
executor. Real kernels: 4 in the batch, 2 for --jobs, 2 for the command line.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from tlcourse import __version__, cli, record
from tlcourse.cli import manifest, memory, progress, reports, runner
from tlcourse.cli import parameters as run_parameters
from tlcourse.errors import TLCourseError

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMETERS_CELL = "PROFILE = 'cpu'\nEPOCHS = 1\nRATE = 0.1\nFLAG = False\nNAME = 'dogs'"


def write_notebook(
    path: Path, *cells: str, parameters: str = PARAMETERS_CELL, kernel: str | None = "python3"
) -> Path:
    """A notebook with a ``parameters``-tagged cell followed by ``cells``."""
    nb = nbformat.v4.new_notebook()
    if kernel:
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    tagged = nbformat.v4.new_code_cell(parameters)
    tagged.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test notebook"), tagged]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def stream_text(path: Path) -> str:
    """Everything an executed notebook printed."""
    nb = nbformat.read(path, as_version=4)
    return "".join(
        output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


@pytest.fixture(scope="module")
def python3_kernel(tmp_path_factory):
    """Make sure a ``python3`` kernelspec exists (installing one for this interpreter into a temp dir if not)."""
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" in KernelSpecManager().find_kernel_specs():
        yield "python3"
        return
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("kernels")
    install(prefix=str(prefix), kernel_name="python3")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        yield "python3"


# ------------------------------------------------------------------------------------------------------------
# One real batch: ok (records), raises, times out, kernel dies


# Long enough for a busy 2-core CI machine to run ordinary cells; the hung cell sleeps far longer.
CELL_TIMEOUT = 10
FIX = "Fix: put one sub-folder of photos per class in data/ and run the notebook again."
LONG_ERROR = "The folder data/ holds no usable images: " + "a.txt is not an image; " * 12 + "\n" + FIX
"""A course error longer than a console line, whose last line says what to do."""
SPIKE = "spike = b'x' * (300 * 1024 * 1024)\ndel spike"
"""300 MiB held for a moment and freed within one cell: gone before most samples would see it."""


@pytest.fixture(scope="module")
def batch(python3_kernel, tmp_path_factory):
    folder = tmp_path_factory.mktemp("course") / "lessons"
    write_notebook(
        folder / "01_raises.ipynb",
        "x = 1",
        f"from tlcourse.errors import TLCourseError\nraise TLCourseError({LONG_ERROR!r})",
        "print('never')",
    )
    write_notebook(
        folder / "02_records.ipynb",
        "import os\nprint('cwd', os.getcwd())",
        "print('params', PROFILE, type(EPOCHS).__name__, EPOCHS, type(RATE).__name__, RATE, FLAG, NAME)",
        "from tlcourse.record import record\nrecord('val_accuracy', 0.8125)\nrecord('epochs_run', EPOCHS * 2)",
        "blob = b'x' * (40 * 1024 * 1024)",
        SPIKE,
    )
    write_notebook(folder / "03_sleeps.ipynb", "print('before')", "import time\ntime.sleep(300)")
    write_notebook(folder / "04_dies.ipynb", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    (folder / ".ipynb_checkpoints").mkdir()
    write_notebook(folder / ".ipynb_checkpoints" / "02_records-checkpoint.ipynb", "raise SystemError")
    out = folder.parent / "runs"
    parameters = {
        name: runner.parse_value(text)
        for name, text in [
            ("EPOCHS", "3"),
            ("RATE", "0.5"),
            ("FLAG", "true"),
            ("NAME", "cats"),
            ("EPOCS", "9"),
        ]
    }
    console = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(console):
        results = runner.run_notebooks(
            [folder],
            profile="smoke",
            out_dir=out,
            timeout=CELL_TIMEOUT,
            parameters=parameters,
            progress=False,
        )
    seconds = time.perf_counter() - start
    by_name = {Path(result.path).name: result for result in results}
    return {
        "folder": folder,
        "out": out,
        "results": results,
        "by": by_name,
        "console": console.getvalue(),
        "seconds": seconds,
    }


def test_folder_runs_every_notebook_in_order_skipping_checkpoints(batch):
    names = [Path(result.path).name for result in batch["results"]]
    assert names == ["01_raises.ipynb", "02_records.ipynb", "03_sleeps.ipynb", "04_dies.ipynb"]


def test_failing_notebook_reports_cell_number_and_error_and_the_batch_goes_on(batch):
    failed = batch["by"]["01_raises.ipynb"]
    assert failed.status == "failed" and not failed.ok
    # In [1] is the parameters cell, In [2] the injected one, In [3] "x = 1", In [4] the raise.
    assert failed.error_cell == 4
    assert failed.error.startswith("TLCourseError: The folder data/ holds no usable images")
    assert batch["by"]["02_records.ipynb"].status == "ok"  # the next notebook still ran
    assert failed.output.is_file() and "holds no usable images" in failed.output.read_text()


def test_a_failing_notebooks_error_is_shown_whole_with_its_fix_in_the_console_and_every_report(batch):
    """The "Fix:" sentence is what tells the reader what to do: no place that shows the error may cut it."""
    whole = "TLCourseError: " + " ".join(line.strip() for line in LONG_ERROR.splitlines())
    assert batch["by"]["01_raises.ipynb"].error == whole
    line = next(line for line in batch["console"].splitlines() if "01_raises" in line)
    assert line.endswith(whole)
    assert whole in (batch["out"] / "report.md").read_text()
    assert html.escape(whole) in (batch["out"] / "report.html").read_text()
    data = json.loads((batch["out"] / "report.json").read_text())
    assert [item["error"] for item in data["notebooks"] if item["path"].endswith("01_raises.ipynb")] == [
        whole
    ]


def test_recorded_metrics_reach_the_results(batch):
    ok = batch["by"]["02_records.ipynb"]
    assert ok.metrics == {"val_accuracy": 0.8125, "epochs_run": 6}
    assert record.read_records(ok.output) == ok.metrics


def test_timeout_is_its_own_status_with_the_cell_that_hung(batch):
    hung = batch["by"]["03_sleeps.ipynb"]
    assert hung.status == "timeout"
    assert hung.error_cell == 4 and f"{CELL_TIMEOUT} s" in hung.error
    assert hung.seconds < 20  # the kernel was stopped, not waited for


def test_killed_kernel_is_reported_as_dead_kernel(batch):
    dead = batch["by"]["04_dies.ipynb"]
    assert dead.status == "dead kernel"
    assert dead.error_cell == 3 and dead.error.startswith("DeadKernelError")


def test_profile_and_typed_parameters_are_injected_and_cwd_is_the_notebooks_folder(batch):
    ok = batch["by"]["02_records.ipynb"]
    printed = stream_text(ok.output)
    assert "params smoke int 3 float 0.5 True cats" in printed
    assert f"cwd {batch['folder'].resolve()}" in printed
    assert ok.parameters == {
        "PROFILE": "smoke",
        "EPOCHS": 3,
        "RATE": 0.5,
        "FLAG": True,
        "NAME": "cats",
        "EPOCS": 9,
    }


def test_a_parameter_the_notebook_does_not_declare_is_flagged_as_a_likely_typo(batch):
    ok = batch["by"]["02_records.ipynb"]
    assert ok.notes == ["not in the notebook's parameters cell (injected anyway): EPOCS"]
    row = next(line for line in (batch["out"] / "report.md").read_text().splitlines() if "02_records" in line)
    assert "EPOCS" in row


def test_peak_memory_is_the_kernels(batch):
    peaks = {name: result.peak_mib for name, result in batch["by"].items()}
    assert all(peak and peak > 20 for peak in peaks.values()), peaks
    # 02 holds an extra 40 MiB bytes object; the kernels that did nothing of the sort stay below it.
    assert peaks["02_records.ipynb"] > peaks["03_sleeps.ipynb"] + 30, peaks


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the recorded peak is read from /proc")
def test_peak_memory_is_the_kernels_maximum_resident_set_and_the_report_says_so(batch):
    """02 holds 300 MiB for a moment and frees it (SPIKE); its peak counts it, and the report names the method."""
    spiked = batch["by"]["02_records.ipynb"]
    assert spiked.peak_mib >= 300 and spiked.memory_method == memory.MEASURED
    assert batch["by"]["03_sleeps.ipynb"].peak_mib < 300
    assert "peak memory: the kernel's maximum resident set" in (batch["out"] / "report.md").read_text()
    assert "(sampled)" not in (batch["out"] / "report.md").read_text()


def test_where_the_system_records_no_peak_the_report_marks_the_figure_sampled(tmp_path):
    sampled = reports.NotebookResult(
        path="a.ipynb", source=tmp_path / "a.ipynb", output=tmp_path / "out" / "a.ipynb", status="ok",
        seconds=1.0, peak_mib=512.0, memory_method=memory.SAMPLED,
    )  # fmt: skip
    text = reports.render_markdown([sampled])
    assert "512 MiB (sampled)" in text and "peak memory: sampled every 0.2 s" in text


def test_executed_notebooks_mirror_relative_paths_in_the_out_folder(batch):
    for result in batch["results"]:
        assert result.output.is_file()
        assert result.output.resolve().is_relative_to(batch["out"].resolve())
        assert result.output.name == result.source.name
        assert result.output.parent.name == "lessons"


def test_markdown_report_has_one_row_per_notebook_totals_and_figures_grouped_per_notebook(batch):
    text = (batch["out"] / "report.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| notebook"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns == reports.REPORT_HEADER, "recorded figures are not columns: the table stays 7 wide"
    table, _, figures = text.partition("**Total:**")
    rows = {}
    for line in table.splitlines():
        if line.startswith("| ") and ".ipynb" in line:
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[Path(cells[0]).name] = dict(zip(columns, cells, strict=True))
    assert {name: row["status"] for name, row in rows.items()} == {
        "01_raises.ipynb": "failed",
        "02_records.ipynb": "ok",
        "03_sleeps.ipynb": "timeout",
        "04_dies.ipynb": "dead kernel",
    }
    section = figures.split("## ")[1]
    assert section.splitlines()[0].endswith("02_records.ipynb") and figures.count("## ") == 1
    assert "| val_accuracy | 0.8125 |" in section and "| epochs_run | 6 |" in section
    assert rows["01_raises.ipynb"]["failing cell"] == "4"
    assert "TLCourseError: The folder data/ holds" in rows["01_raises.ipynb"]["error / notes"]
    for row in rows.values():
        assert float(row["peak memory"].removesuffix(" MiB")) > 0
        assert float(row["time"].removesuffix(" s")) > 0
    assert "4 notebooks: 1 failed, 1 ok, 1 timeout, 1 dead kernel" in text
    assert "profile: smoke" in text


def test_html_and_json_reports_hold_the_same_rows(batch):
    page = (batch["out"] / "report.html").read_text()
    table = page.split("<h2")[0]
    assert table.count("<tr>") == 5  # header + 4 notebooks
    assert 'href="lessons/02_records.html"' in page, "executed notebooks are linked as HTML"
    # record() is silent in a notebook: the figure is in report.json, not on the student's page
    assert "recorded val_accuracy" not in (batch["out"] / "lessons" / "02_records.html").read_text()
    assert "dead kernel" in page and "0.8125" in page
    data = json.loads((batch["out"] / "report.json").read_text())
    assert data["summary"]["failed"] == 3 and data["summary"]["notebooks"] == 4
    assert [Path(item["path"]).name for item in data["notebooks"]] == list(batch["by"])


def test_one_console_line_per_notebook_with_status_time_memory_and_metrics(batch):
    lines = [line for line in batch["console"].splitlines() if ".ipynb" in line]
    assert len(lines) == 4
    ok_line = next(line for line in lines if "02_records" in line)
    assert re.fullmatch(
        r"ok  \S+02_records\.ipynb  \d+\.\d s  \d+ MiB  val_accuracy=0\.8125  epochs_run=6", ok_line
    )
    assert any(line.startswith("failed  ") and "cell [4] TLCourseError" in line for line in lines)


def test_batch_stays_fast(batch):
    # 4 kernels, one hung cell: anything much slower means kernels are waited on instead of stopped.
    assert batch["seconds"] < 4 * CELL_TIMEOUT + 60


# ------------------------------------------------------------------------------------------------------------
# --jobs: two kernels at once, each measured on its own


def test_two_jobs_run_at_once_and_keep_results_and_memory_apart(python3_kernel, tmp_path):
    started = "import time\nfrom tlcourse.record import record\nrecord('started', time.time())"
    write_notebook(
        tmp_path / "big.ipynb",
        started,
        "blob = b'x' * (300 * 1024 * 1024)\ntime.sleep(1.5)",
        "record('which', 'big')",
    )
    write_notebook(
        tmp_path / "small.ipynb", started, "time.sleep(1.5)", "record('which', 'small')\nrecord('done', True)"
    )
    results = runner.run_notebooks(
        [tmp_path], out_dir=tmp_path / "out", jobs=2, progress=False, verbose=False
    )
    big, small = results
    assert (big.status, small.status) == ("ok", "ok")
    assert (
        big.metrics["which"] == "big" and small.metrics["which"] == "small" and small.metrics["done"] is True
    )
    # Both kernels were running at the same time ...
    assert abs(big.metrics["started"] - small.metrics["started"]) < 1.5
    # ... and each notebook's peak is its own kernel's: only "big" holds 300 MiB.
    assert big.peak_mib > 300 > small.peak_mib, (big.peak_mib, small.peak_mib)


# ------------------------------------------------------------------------------------------------------------
# Skip-if-unchanged, with a fake executor (the rule, not the kernels, is under test)


@pytest.fixture
def fake_execute(monkeypatch):
    """Replace kernel execution: write the output, return the status chosen per notebook name; count calls."""
    calls: list[str] = []
    statuses: dict[str, str] = {}
    seconds: dict[str, float] = {}

    def execute(*, source, output, display, parameters, kernel, timeout, digest, notes, work_dir=None, **_):
        calls.append(source.name)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(source.read_text())
        status = statuses.get(source.name, "ok")
        return reports.NotebookResult(
            path=display, source=source, output=output, status=status, seconds=seconds.get(source.name, 0.5),
            peak_mib=64.0,
            metrics={"n": len(calls)}, kernel=kernel, parameters=parameters, notes=notes, digest=digest,
            work_dir=work_dir, error=None if status == "ok" else "ValueError: fake",
        )  # fmt: skip

    monkeypatch.setattr(runner, "execute", execute)
    execute.seconds = seconds  # type: ignore[attr-defined]
    return calls, statuses


def test_unchanged_successes_are_skipped_and_failures_always_rerun(fake_execute, tmp_path):
    calls, statuses = fake_execute
    write_notebook(tmp_path / "nb" / "a.ipynb", "1")
    write_notebook(tmp_path / "nb" / "b.ipynb", "2")
    statuses["b.ipynb"] = "failed"
    run = dict(
        out_dir=tmp_path / "out", profile="smoke", parameters={"EPOCHS": 2}, progress=False, verbose=False
    )

    first = runner.run_notebooks([tmp_path / "nb"], **run)
    assert calls == ["a.ipynb", "b.ipynb"]
    second = runner.run_notebooks([tmp_path / "nb"], **run)
    assert calls[2:] == ["b.ipynb"]
    assert second[0].status == reports.SKIPPED and second[0].ok
    assert second[0].metrics == first[0].metrics  # the report keeps the earlier run's figures
    assert second[1].status == "failed"

    statuses["b.ipynb"] = "ok"
    runner.run_notebooks([tmp_path / "nb"], **run)
    runner.run_notebooks([tmp_path / "nb"], **run)
    assert calls[3:] == ["b.ipynb"]  # fixed, then unchanged


def test_editing_the_notebook_or_changing_parameters_profile_or_force_reruns(fake_execute, tmp_path):
    calls, _ = fake_execute
    notebook = write_notebook(tmp_path / "nb" / "a.ipynb", "1")
    base = dict(
        out_dir=tmp_path / "out", profile="smoke", parameters={"EPOCHS": 2}, progress=False, verbose=False
    )

    def run(**changes) -> str:
        before = len(calls)
        (result,) = runner.run_notebooks([notebook], **{**base, **changes})
        assert (len(calls) > before) == (result.status != reports.SKIPPED)
        return "ran" if len(calls) > before else "skipped"

    assert run() == "ran"
    assert run() == "skipped"
    write_notebook(notebook, "1 + 1")
    assert run() == "ran"
    assert run(parameters={"EPOCHS": 3}) == "ran"
    assert run(parameters={"EPOCHS": 3}) == "skipped"
    assert run(parameters={"EPOCHS": 3}, profile="cpu") == "ran"
    assert run(parameters={"EPOCHS": 3}, profile="cpu", force=True) == "ran"
    next(tmp_path.glob("out/**/a.ipynb")).unlink()  # executed copy gone: run again
    assert run(parameters={"EPOCHS": 3}, profile="cpu") == "ran"


def test_notebooks_with_the_same_name_in_two_folders_get_separate_outputs(
    fake_execute, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    write_notebook(tmp_path / "alice" / "08_brief.ipynb", "1")
    write_notebook(tmp_path / "bob" / "08_brief.ipynb", "2")
    results = runner.run_notebooks(["*/08_brief.ipynb"], out_dir="runs", progress=False, verbose=False)
    assert [r.path for r in results] == ["alice/08_brief.ipynb", "bob/08_brief.ipynb"]
    assert (tmp_path / "runs" / "alice" / "08_brief.ipynb").read_text() != (
        tmp_path / "runs" / "bob" / "08_brief.ipynb"
    ).read_text()


def test_the_progress_line_estimates_the_time_left_from_the_previous_runs_times(
    fake_execute, tmp_path, capsys
):
    write_notebook(tmp_path / "nb" / "a.ipynb", "1")
    write_notebook(tmp_path / "nb" / "b.ipynb", "2")
    runner.execute.seconds.update({"a.ipynb": 100.0, "b.ipynb": 200.0})
    run = dict(out_dir=tmp_path / "out", verbose=False, force=True)
    runner.run_notebooks([tmp_path / "nb"], progress=False, **run)
    runner.run_notebooks([tmp_path / "nb"], progress=True, **run)
    shown = capsys.readouterr().err
    # once a.ipynb is done, b.ipynb is left: 200 s in the previous run
    assert "about 3:20 left (previous run's times)" in shown, shown


def test_the_estimate_counts_what_is_running_unknown_notebooks_and_parallel_kernels():
    expected = {"a": 100.0, "b": 200.0, "c": None}
    assert progress.remaining_seconds(expected, set(), {}) == 100 + 200 + 150
    assert progress.remaining_seconds(expected, {"a"}, {"b": 50.0}) == 150 + 150
    assert progress.remaining_seconds(expected, {"a"}, {"b": 500.0}) == 150  # b overran its estimate
    assert progress.remaining_seconds(expected, set(), {}, jobs=3) == 150
    assert progress.remaining_seconds({"a": None}, set(), {}) is None  # a first run: no estimate
    control = progress.BatchControl({"x.ipynb": 90.0})
    control.cell_started("x.ipynb", 1, 3)
    assert control.status_text().endswith("about 1:30 left (previous run's times)")


def test_the_report_and_manifest_name_no_folder_of_the_machine(fake_execute, tmp_path):
    notebook = write_notebook(
        tmp_path / "course" / "08_brief.ipynb", "1", parameters="OUTPUT_DIR = 'capstone_output'"
    )
    out = tmp_path / "runs"
    runner.run_notebooks([notebook], out_dir=out, progress=False, verbose=False)
    for name in ("report.json", "report.md", "report.html", manifest.MANIFEST_NAME):
        text = (out / name).read_text()
        assert str(tmp_path) not in text, f"{name} names {tmp_path}"
    (entry,) = json.loads((out / "report.json").read_text())["notebooks"]
    assert entry["output"] == "course/08_brief.ipynb" and entry["work_dir"] == "course/08_brief_files"
    assert entry["parameters"] == {"OUTPUT_DIR": "course/08_brief_files/capstone_output"}
    again = runner.run_notebooks([notebook], out_dir=out, progress=False, verbose=False)
    assert again[0].status == reports.SKIPPED, "the manifest still finds the notebook"


def test_the_skip_decision_depends_on_the_tlcourse_version(monkeypatch):
    before = runner.input_digest(b"{}", {"PROFILE": "smoke"}, "python3")
    assert before == runner.input_digest(b"{}", {"PROFILE": "smoke"}, "python3")
    monkeypatch.setattr(manifest, "__version__", __version__ + ".post1")
    assert runner.input_digest(b"{}", {"PROFILE": "smoke"}, "python3") != before


# ------------------------------------------------------------------------------------------------------------
# Finding notebooks, parsing parameters, kernels


def test_find_notebooks_skips_checkpoints_and_the_output_folder_and_dedupes(tmp_path):
    write_notebook(tmp_path / "b.ipynb", "1")
    write_notebook(tmp_path / "a.ipynb", "1")
    write_notebook(tmp_path / "sub" / "c.ipynb", "1")
    write_notebook(tmp_path / ".ipynb_checkpoints" / "a-checkpoint.ipynb", "1")
    write_notebook(tmp_path / "out" / "a.ipynb", "1")
    found = runner.find_notebooks([tmp_path, tmp_path / "a.ipynb"], out_dir=tmp_path / "out")
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.ipynb", "b.ipynb", "sub/c.ipynb"]


def test_find_notebooks_explains_missing_paths_and_empty_default_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TLCourseError, match="no lessons/ folder"):
        runner.find_notebooks(None)
    (tmp_path / "lessons").mkdir()
    with pytest.raises(TLCourseError, match="No notebooks found in lessons"):
        runner.find_notebooks(None)
    with pytest.raises(TLCourseError, match="does not exist"):
        runner.find_notebooks(["nowhere.ipynb"])
    with pytest.raises(TLCourseError, match="matches no files"):
        runner.find_notebooks(["submissions/*.ipynb"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", 3), ("0.5", 0.5), ("1e-3", 0.001), ("true", True), ("False", False), ("null", None),
     ("[1, 2]", [1, 2]), ("cats", "cats"), ("mobilenet_v2", "mobilenet_v2"), ("'3'", "3"), ("2024-01-02", "2024-01-02")],
)  # fmt: skip
def test_parameter_values_are_parsed_as_literals_when_they_are_one(text, expected):
    value = runner.parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_a_notebook_kernel_that_is_not_installed_falls_back_to_python3_with_a_note():
    node = {"metadata": {"kernelspec": {"name": "conda-env-student-py"}}}
    assert run_parameters.choose_kernel(node, None, {"python3"}) == (
        "python3",
        "kernel 'conda-env-student-py' is not installed here; used 'python3'",
    )
    assert run_parameters.choose_kernel(node, "other", {"python3"}) == ("other", None)
    assert run_parameters.choose_kernel({}, None, {"python3"}) == ("python3", None)


# ------------------------------------------------------------------------------------------------------------
# The command line


def test_cli_exit_status_skip_message_and_python_dash_m(python3_kernel, tmp_path, monkeypatch, capsys):
    good = tmp_path / "good"
    write_notebook(good / "ok.ipynb", "from tlcourse.record import record\nrecord('score', 1.5)")
    out = tmp_path / "out"
    assert cli.main(["run", str(good), "--out", str(out), "--profile", "smoke", "-p", "EPOCHS", "2"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^ok  .*ok\.ipynb  .*score=1\.5$", printed, re.MULTILINE), printed
    assert "report: " in printed and (out / "report.md").is_file()

    # Same inputs again, through `python -m tlcourse`: skipped, exit 0, and it says why.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    again = subprocess.run(
        [sys.executable, "-m", "tlcourse", "run", str(good), "--out", str(out), "--profile", "smoke", "-p", "EPOCHS", "2"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "skipped (unchanged; use --force to re-run)" in again.stdout

    bad = tmp_path / "bad"
    write_notebook(bad / "broken.ipynb", "1 / 0")
    assert cli.main(["run", str(bad), "--out", str(tmp_path / "out2")]) == 1
    assert "ZeroDivisionError: division by zero" in capsys.readouterr().out


def test_cli_without_notebooks_explains_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run"]) == 2
    assert "no lessons/ folder" in capsys.readouterr().err
    assert cli.main(["run", "--jobs", "0", str(tmp_path)]) == 2


def test_cli_refuses_a_parameter_for_a_notebook_without_a_parameters_cell(tmp_path, capsys):
    folder = tmp_path / "nbs"
    write_notebook(folder / "a_tagged.ipynb", "x = 1")
    untagged = nbformat.v4.new_notebook()
    untagged.cells = [
        nbformat.v4.new_markdown_cell("# no parameters"),
        nbformat.v4.new_code_cell("EPOCHS = 1"),
    ]
    nbformat.write(untagged, folder / "b_untagged.ipynb")
    out = tmp_path / "out"
    assert cli.main(["run", str(folder), "--out", str(out), "-p", "TYPO", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "b_untagged.ipynb has no cell tagged `parameters`" in err[0] and "TYPO" in err[0]
    # refused before any work
    assert not (out / manifest.MANIFEST_NAME).exists() and not list(out.rglob("*.ipynb"))


# ------------------------------------------------------------------------------------------------------------
# record() and read_records() without a kernel


def test_record_outside_a_kernel_prints_a_readable_line(capsys):
    record.record("val_accuracy", 0.873456)
    assert capsys.readouterr().out.strip() == "recorded val_accuracy = 0.8735"


def test_read_records_takes_the_last_value_of_each_name_and_ignores_other_outputs():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("...")
    mime = record.RECORD_MIME
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data", data={mime: {"name": "loss", "value": 0.9}, "text/plain": "x"}
        ),
        nbformat.v4.new_output("stream", name="stdout", text="recorded fake = 1\n"),
        nbformat.v4.new_output("display_data", data={"text/plain": "a plot"}),
        nbformat.v4.new_output("display_data", data={mime: {"name": "acc", "value": 0.5}, "text/plain": "y"}),
        nbformat.v4.new_output(
            "display_data", data={mime: {"name": "loss", "value": 0.4}, "text/plain": "z"}
        ),
    ]
    nb.cells = [cell, nbformat.v4.new_markdown_cell("recorded nothing")]
    nbformat.validate(nb)
    assert record.read_records(nb) == {"acc": 0.5, "loss": 0.4}


def test_record_unwraps_numpy_scalars_keeps_nan_readable_and_rejects_arrays(capsys):
    np = pytest.importorskip("numpy")
    record.record("count", np.int64(7))
    record.record("ratio", np.float32(0.25))
    record.record("bad", math.nan)
    assert capsys.readouterr().out.split("\n")[:3] == [
        "recorded count = 7",
        "recorded ratio = 0.25",
        "recorded bad = nan",
    ]
    with pytest.raises(TLCourseError, match="number, a string or a bool"):
        record.record("curve", np.arange(3))
    with pytest.raises(TLCourseError, match="name"):
        record.record("", 1)


# ------------------------------------------------------------------------------------------------------------
# The nbval sanitizer file


def test_nbval_sanitizer_removes_paths_timings_addresses_and_dates():
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((REPO_ROOT / "tests" / "nbval_sanitize.cfg").read_text())
    assert len(patterns) >= 10

    def clean(text: str) -> str:
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    assert clean("File /tmp/ipykernel_4242/1234567.py:3") == "File IPYKERNEL-CELL.py:3"
    assert clean("1/1 ━━━━ 2s 153ms/step") == clean("1/1 ━━━━ 0s 41ms/step")
    assert clean("<Functional name=m, built=True> at 0x7f3a2b4c5d60") == clean(
        "<Functional name=m, built=True> at 0x55aa"
    )
    assert clean("<Figure size 640x480 with 2 Axes>") == clean("<Figure size 800x600 with 1 Axes>")
    assert clean("features took 1.23 s") == clean("features took 14 s")
    assert clean("weights: /work/shared/assets/keras/models/x.h5") == "weights: MIRROR/keras/models/x.h5"
    assert clean("cache: /tmp/tlcourse-test-keras-ab_12/models") == "cache: KERAS_HOME/models"
    assert clean("/home/ci/checkout/lessons/data/x.jpg") == "REPO/lessons/data/x.jpg"
    assert clean("File /work/main/tlcourse/data.py:12") == "File REPO/tlcourse/data.py:12"
    assert clean("saved at 2026-11-23 12:27:04") == "saved at DATE"
    run_folder = "outputs: /tmp/ci/runs/latest/lessons/08_creative_brief_files/capstone_output"
    assert clean(run_folder) == clean("outputs: capstone_output") == "outputs: capstone_output"
    assert clean("accuracy: 0.875 on 16 samples") == "accuracy: 0.875 on 16 samples"  # figures stay compared


# ------------------------------------------------------------------------------------------------------------
# Isolated outputs: a notebook writes only under --out, never into its folder or the checkout


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


WRITES_OUTPUTS = (
    "from pathlib import Path\n"
    "for folder in (OUTPUT_DIR, CACHE_DIR):\n"
    "    Path(folder).mkdir(parents=True, exist_ok=True)\n"
    "    (Path(folder) / 'written.txt').write_text(NAME)"
)


@pytest.fixture(scope="module")
def isolation_batch(python3_kernel, tmp_path_factory):
    """Two copies of a two-cell notebook that writes into its OUTPUT_DIR and CACHE_DIR, in one flat folder, run
    at once (--jobs 2): the property lesson 08's copies in a class folder need, without training anything.

    That running the checkout's own lessons leaves ``git status`` clean is proven on the session's one execution
    of the lessons (tests/test_environments.py, the fresh laptop's ``git status --ignored``)."""
    flat = tmp_path_factory.mktemp("submissions")
    parameters = "PROFILE = 'cpu'\nNAME = 'x'\nOUTPUT_DIR = 'capstone_output'\nCACHE_DIR = 'cache'"
    for name in ("alice.ipynb", "bob.ipynb"):
        write_notebook(flat / name, WRITES_OUTPUTS, parameters=parameters)
    before = _snapshot(flat)
    out = tmp_path_factory.mktemp("runs") / "class"
    results = runner.run_notebooks(
        [flat], profile="smoke", out_dir=out, jobs=2, progress=False, verbose=False
    )
    return {"flat": flat, "out": out, "results": {r.source.name: r for r in results}, "before": before}


def test_each_copy_of_a_notebook_writes_under_its_own_run_folder_and_the_sources_stay_unchanged(
    isolation_batch,
):
    results = isolation_batch["results"]
    assert {name: r.status for name, r in results.items()} == dict.fromkeys(
        ["alice.ipynb", "bob.ipynb"], "ok"
    ), [r.error for r in results.values()]
    folders = []
    for result in results.values():
        for name, folder in (("OUTPUT_DIR", "capstone_output"), ("CACHE_DIR", "cache")):
            injected = Path(result.parameters[name])
            assert injected == result.work_dir / folder and injected.is_relative_to(isolation_batch["out"])
            assert (injected / "written.txt").is_file()
            folders.append(injected)
    assert len(set(folders)) == 4, "no two notebooks share an output folder"
    assert _snapshot(isolation_batch["flat"]) == isolation_batch["before"], (
        "the submissions folder is untouched"
    )


def test_output_parameters_are_re_rooted_only_when_relative_declared_and_not_given(tmp_path):
    declared = {"OUTPUT_DIR": "capstone_output", "CACHE_DIR": None, "UPLOAD_DIR": "/abs/uploads", "SEED": 1}
    assert runner.output_parameters(declared, tmp_path, {}) == {
        "OUTPUT_DIR": str(tmp_path / "capstone_output")
    }
    assert runner.output_parameters(declared, tmp_path, {"OUTPUT_DIR": "mine"}) == {}
    assert runner.output_parameters({"CACHE_DIR": "cache"}, tmp_path, {}) == {
        "CACHE_DIR": str(tmp_path / "cache")
    }


# ------------------------------------------------------------------------------------------------------------
# Ctrl-C, the lock per --out, and stale figures


def test_ctrl_c_stops_the_batch_records_what_finished_leaves_no_kernels_and_exits_130(
    python3_kernel, tmp_path
):
    import psutil

    pids = tmp_path / "pids"
    pids.mkdir()
    start = f"import os, time\nopen({str(pids)!r} + '/' + NAME, 'w').write(str(os.getpid()))"
    folder = tmp_path / "nbs"
    write_notebook(folder / "a_quick.ipynb", start, parameters="NAME = 'a'")
    write_notebook(folder / "b_sleeps.ipynb", start, "time.sleep(120)", parameters="NAME = 'b'")
    write_notebook(folder / "c_sleeps.ipynb", start, "time.sleep(120)", parameters="NAME = 'c'")
    write_notebook(folder / "d_queued.ipynb", start, parameters="NAME = 'd'")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    # Ctrl-C in a terminal reaches a process whose SIGINT is not ignored. pytest started in the background of a
    # non-interactive shell (`(bash .ci/run &)`) inherits SIGINT ignored, passes that on, and Python then keeps
    # ignoring it: give the child a terminal's disposition, whatever way pytest itself was started.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "tlcourse", "run", str(folder), "--out", str(out), "--jobs", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 120
    while not ((pids / "b").is_file() and (pids / "c").is_file()) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    time.sleep(1.0)  # both sleeping cells are running
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, (stdout, stderr)
    assert time.monotonic() - sent < 20, "stops within the interrupt grace, not after the sleeping cells"
    entries = json.loads((out / manifest.MANIFEST_NAME).read_text())["notebooks"]
    assert {Path(k).name: v["status"] for k, v in entries.items()} == {
        "a_quick.ipynb": "ok", "b_sleeps.ipynb": "interrupted", "c_sleeps.ipynb": "interrupted",
    }  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert [Path(item["path"]).name for item in report["notebooks"]] == [
        "a_quick.ipynb", "b_sleeps.ipynb", "c_sleeps.ipynb",
    ]  # fmt: skip
    assert not (pids / "d").exists(), "a queued notebook never starts after Ctrl-C"
    kernels = {name: int((pids / name).read_text()) for name in "abc"}
    time.sleep(0.5)
    alive = {name: pid for name, pid in kernels.items() if psutil.pid_exists(pid)}
    alive = {n: p for n, p in alive.items() if psutil.Process(p).status() != psutil.STATUS_ZOMBIE}
    assert not alive, f"kernels left running: {alive}"
    assert "interrupted" in stderr


def test_sigterm_writes_the_report_of_what_finished_leaves_no_kernels_and_exits_143(python3_kernel, tmp_path):
    """A scheduler or `timeout` ends a run with SIGTERM: the report is written as after Ctrl-C."""
    import psutil

    pid_file = tmp_path / "kernel.pid"
    folder = tmp_path / "nbs"
    write_notebook(folder / "a_quick.ipynb", "x = 1")
    write_notebook(
        folder / "b_sleeps.ipynb",
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))",
        "time.sleep(120)",
    )
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "tlcourse", "run", str(folder), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not pid_file.is_file() and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    time.sleep(1.0)  # the sleeping cell is running
    process.terminate()
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, (stdout, stderr)
    report = json.loads((out / "report.json").read_text())
    assert {Path(item["path"]).name: item["status"] for item in report["notebooks"]} == {
        "a_quick.ipynb": "ok", "b_sleeps.ipynb": "interrupted",
    }  # fmt: skip
    assert "terminated" in (out / "report.md").read_text() and "terminated" in stderr
    kernel = int(pid_file.read_text())
    time.sleep(0.5)
    assert not psutil.pid_exists(kernel) or psutil.Process(kernel).status() == psutil.STATUS_ZOMBIE


def test_on_windows_stopping_kills_kernels_through_psutil_without_posix_only_signals(monkeypatch):
    """Windows has no SIGKILL (and cannot send SIGINT to a kernel): the stop path must not need either."""
    import types

    import psutil

    from tlcourse.cli import signals

    windows_signal = types.SimpleNamespace(
        SIGINT=signal.SIGINT,
        SIGTERM=signal.SIGTERM,
        SIGBREAK=21,
        CTRL_C_EVENT=0,
        CTRL_BREAK_EVENT=1,
        signal=signal.signal,
    )
    monkeypatch.setattr(signals, "signal", windows_signal)
    monkeypatch.setattr(sys, "platform", "win32")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        control = progress.BatchControl()
        control.kernel_started(child.pid, "a.ipynb")
        pool = runner.ThreadPoolExecutor(max_workers=1)
        runner._stop_batch(pool, {}, control, lambda done: None)
        assert child.wait(timeout=10) is not None, "the kernel was ended"
        late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        control.kernel_started(late.pid, "b.ipynb")  # started after the stop: ended at once
        assert late.wait(timeout=10) is not None
    finally:
        for process in (child,):
            if process.poll() is None:
                process.kill()
    assert not psutil.pid_exists(child.pid) or psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE


def test_a_second_run_into_the_same_out_refuses_with_one_line_and_touches_nothing(tmp_path, capsys):
    write_notebook(tmp_path / "nbs" / "a.ipynb", "x = 1")
    out = tmp_path / "out"
    with runner.out_dir_lock(out.resolve()):
        status = cli.main(["run", str(tmp_path / "nbs"), "--out", str(out)])
        assert not (out / manifest.MANIFEST_NAME).exists() and not (out / "report.md").exists()
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert f"pid {os.getpid()}" in err and "another tlcourse run" in err and "--out" in err
    with runner.out_dir_lock(out.resolve()):  # released when the first run ends
        pass


def test_a_failed_notebooks_row_never_shows_the_previous_runs_figures(python3_kernel, tmp_path):
    notebook = write_notebook(
        tmp_path / "nbs" / "a.ipynb", "from tlcourse.record import record\nrecord('acc', 0.9)"
    )
    out = tmp_path / "out"
    first = runner.run_notebooks([notebook], out_dir=out, progress=False, verbose=False)
    assert first[0].metrics == {"acc": 0.9}
    again = runner.run_notebooks(
        [notebook], out_dir=out, progress=False, verbose=False, kernel_name="no-such-kernel", force=True
    )
    assert again[0].status == "failed" and again[0].metrics == {}
    assert "acc" not in (out / "report.md").read_text() and "0.9" not in (out / "report.html").read_text()
    assert record.read_records(again[0].output) == {}, "the previous executed copy is gone"


def test_running_notebook_and_cell_show_with_elapsed_time():
    control = progress.BatchControl()
    control.cell_started("lessons/08_creative_brief.ipynb", 3, 40)
    assert re.fullmatch(r"08_creative_brief\.ipynb cell 3/40 \(0:00, this cell 0:00\)", control.status_text())
    control.notebook_done("lessons/08_creative_brief.ipynb")
    assert control.status_text() == ""
