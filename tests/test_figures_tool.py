"""tools/figures.py: the prose's figures come from one recorded cpu run (issue 28)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import pytest

from tlcourse import record

REPO = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("figures_tool", REPO / "tools" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


figures = _tool()

PROSE = (
    "In the cpu profile expect about <!--fig:head_test_accuracy:.2f-->0.89<!--/fig--> on test, a gain of "
    "<!--fig:gain_low,gain_high:pts+.1f;brackets-->[+1.2, +7.4]<!--/fig--> points, in "
    "<!--fig:seconds:.0f-->52<!--/fig--> s, keeping <!--fig:share:.1%-->13.3%<!--/fig--> of it "
    "(the cell asserts <!--fig:head_test_accuracy#band:.2f-->0.75 to 0.97<!--/fig-->)."
)
RECORDED = {
    "head_test_accuracy": 0.8912,
    "gain_low": 0.012,
    "gain_high": 0.0744,
    "seconds": 51.6,
    "share": 0.1333,
}
BANDS = {"head_test_accuracy": [0.75, 0.97]}


def _notebook(path: Path, *markdown: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), *(nbformat.v4.new_markdown_cell(m) for m in markdown)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _figures_json(path: Path, values=None, bands=None) -> Path:
    payload = {
        "profile": "cpu",
        "notebooks": {"lessons/05_fine_tuning": dict(RECORDED if values is None else values)},
        "bands": {"lessons/05_fine_tuning": dict(BANDS if bands is None else bands)},
    }
    path.write_text(json.dumps(payload))
    return path


@pytest.fixture
def course(tmp_path):
    lesson = _notebook(tmp_path / "lessons" / "05_fine_tuning.ipynb", PROSE)
    solution = _notebook(
        tmp_path / "solutions" / "05_fine_tuning.ipynb",
        "Head alone: <!--fig:head_test_accuracy:.3f-->0.891<!--/fig-->.",
    )
    return {"lesson": lesson, "solution": solution, "json": _figures_json(tmp_path / "figures.cpu.json")}


def _run(course, *extra):
    return figures.main(
        [*extra, "--figures", str(course["json"]), str(course["lesson"]), str(course["solution"])]
    )


def test_check_passes_when_every_marker_reads_what_the_run_recorded(course, capsys):
    assert _run(course, "--check") == 0
    assert capsys.readouterr().out == ""


def test_check_fails_and_names_the_marker_when_one_recorded_figure_changes(course, capsys):
    _figures_json(course["json"], {**RECORDED, "gain_high": 0.081})
    before = course["lesson"].read_text()
    assert _run(course, "--check") == 1
    out = capsys.readouterr().out
    assert "05_fine_tuning.ipynb cell 1: gain_low,gain_high reads '[+1.2, +7.4]'" in out
    assert "'[+1.2, +8.1]'" in out and "1 figure(s)" in out
    assert course["lesson"].read_text() == before, "--check writes nothing"


def test_rewrite_mode_writes_the_recorded_figures_and_leaves_everything_else(course):
    _figures_json(course["json"], {**RECORDED, "head_test_accuracy": 0.8437, "seconds": 61.2})
    assert _run(course) == 0
    lesson = nbformat.read(course["lesson"], as_version=4)
    expected = PROSE.replace("-->0.89<", "-->0.84<").replace("-->52<", "-->61<")
    assert lesson.cells[1].source == expected and lesson.cells[0].source == "x = 1"
    solution = nbformat.read(course["solution"], as_version=4)
    assert (
        "<!--fig:head_test_accuracy:.3f-->0.844<!--/fig-->" in solution.cells[1].source
    )  # the lesson's record
    assert _run(course, "--check") == 0


def test_a_marker_whose_name_is_not_recorded_is_refused(course, tmp_path, capsys):
    _notebook(course["lesson"], "Expect <!--fig:head_tset_accuracy:.2f-->0.89<!--/fig--> on test.")
    assert _run(course, "--check") == 2
    assert "'head_tset_accuracy' is not recorded" in capsys.readouterr().err
    assert _run(course) == 2  # nor rewritten


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("<!--fig:seconds:.0f-->52<!--/fig--> s is the time.", "starts a line"),
        ("A list:\n\n- <!--fig:seconds:.0f-->52<!--/fig--> s", "starts a line"),
        ("It took <!--fig:seconds:.0f-->52 s.", "never closed"),
        ("It took 52<!--/fig--> s.", "without its opening"),
        ("It took <!--fig:seconds:.0q-->52<!--/fig--> s.", "bad format"),
        ("It took <!--fig:seconds:.0f;brackets-->52<!--/fig--> s.", "only for an interval"),
        ("It took <!--fig:seconds:.0f-->5\n2<!--/fig--> s.", "spans lines"),
    ],
)
def test_bad_marker_syntax_is_an_error_that_names_the_cell(source, message):
    with pytest.raises(figures.FigureError, match=message):
        figures.parse_markers(source, 3)


def test_formats_cover_percent_points_seconds_minutes_and_intervals():
    assert figures.format_value(0.8912, ".2f") == "0.89"
    assert figures.format_value(0.1333, ".1%") == "13.3%"
    assert figures.format_value(0.042, "pts+.1f") == "+4.2"
    assert figures.format_value(-0.096, "pts+.1f") == "-9.6"
    assert figures.format_value(125.0, "min.1f") == "2.1"
    assert figures.format_value(12, ".0f") == "12"
    assert figures.format_value([0.012, 0.074], "pts+.1f") == "+1.2 to +7.4"
    assert figures.format_value([0.75, 0.97], ".2f;dash") == "0.75–0.97"
    assert figures.format_value("tied within noise") == "tied within noise"
    assert figures.format_value(0.123456) == "0.1235"


def test_record_reads_a_cpu_run_report_with_its_bands_and_keeps_other_notebooks(tmp_path):
    run = tmp_path / "run"
    executed = run / "lessons" / "05_fine_tuning.ipynb"
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("record.expect(...)")
    payload = {
        "name": "head_test_accuracy",
        "value": 0.88,
        "profile": "cpu",
        "real": True,
        "band": [0.75, 0.97],
    }
    cell.outputs = [nbformat.v4.new_output("display_data", data={record.RECORD_MIME: payload})]
    nb.cells = [cell]
    executed.parent.mkdir(parents=True)
    nbformat.write(nb, executed)
    item = {"path": "lessons/05_fine_tuning.ipynb", "output": str(executed), "status": "ok", "seconds": 201.3}
    item |= {"peak_mib": 1501.0, "metrics": {"head_test_accuracy": 0.88}, "parameters": {"PROFILE": "cpu"}}
    (run / "report.json").write_text(json.dumps({"notebooks": [item]}))
    out = tmp_path / "figures.cpu.json"
    out.write_text(json.dumps({"notebooks": {"lessons/04_feature_extraction": {"x": 1}}}))
    written = figures.record_run(run, out)
    assert written["notebooks"] == {
        "lessons/04_feature_extraction": {"x": 1},
        "lessons/05_fine_tuning": item["metrics"],
    }
    assert written["bands"] == {"lessons/05_fine_tuning": {"head_test_accuracy": [0.75, 0.97]}}
    assert written["runs"]["lessons/05_fine_tuning"] == {"seconds": 201.3, "peak_mib": 1501.0}
    assert json.loads(out.read_text()) == written


def test_record_reads_the_bands_from_the_executed_notebook_the_report_names_relative_to_its_run(
    tmp_path, monkeypatch
):
    """The runner writes each notebook's output path relative to its --out folder; run from the repository,
    that same relative path names the lesson itself (no outputs), which must not be read instead."""
    run = tmp_path / "run"
    executed = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("record.expect(...)")
    payload = {"name": "ece", "value": 0.03, "profile": "cpu", "real": True, "band": [None, 0.08]}
    cell.outputs = [nbformat.v4.new_output("display_data", data={record.RECORD_MIME: payload})]
    executed.cells = [cell]
    for folder, notebook in ((run, executed), (tmp_path / "repo", nbformat.v4.new_notebook())):
        (folder / "lessons").mkdir(parents=True)
        nbformat.write(notebook, folder / "lessons" / "06_evaluation.ipynb")
    item = {"path": "lessons/06_evaluation.ipynb", "output": "lessons/06_evaluation.ipynb", "status": "ok"}
    item |= {"seconds": 90.0, "peak_mib": 900.0, "metrics": {"ece": 0.03}, "parameters": {"PROFILE": "cpu"}}
    (run / "report.json").write_text(json.dumps({"notebooks": [item]}))
    monkeypatch.chdir(tmp_path / "repo")
    written = figures.record_run(run, tmp_path / "figures.cpu.json")
    assert written["bands"] == {"lessons/06_evaluation": {"ece": [None, 0.08]}}


@pytest.mark.parametrize(
    ("change", "message"),
    [({"status": "failed"}, "failed notebooks"), ({"parameters": {"PROFILE": "smoke"}}, "not a cpu run")],
)
def test_record_refuses_a_failed_run_or_another_profile(tmp_path, change, message):
    item = {
        "path": "lessons/05_fine_tuning.ipynb",
        "status": "ok",
        "metrics": {},
        "parameters": {"PROFILE": "cpu"},
    }
    (tmp_path / "report.json").write_text(json.dumps({"notebooks": [item | change]}))
    with pytest.raises(figures.FigureError, match=message):
        figures.record_run(tmp_path, tmp_path / "figures.cpu.json")
    assert not (tmp_path / "figures.cpu.json").exists()


def test_the_committed_prose_agrees_with_the_committed_record():
    assert figures.main(["--check"]) == 0


def test_the_recorded_cpu_run_holds_every_lesson_within_300_s_and_1_6_gib():
    """Issue 27's budget, read from the run the prose's figures come from (2 cores, mirror, no GPU)."""
    recorded = json.loads(figures.FIGURES_FILE.read_text(encoding="utf-8"))["runs"]
    lessons = {f"lessons/{path.stem}" for path in (REPO / "lessons").glob("[0-9][0-9]_*.ipynb")}
    assert lessons <= set(recorded), f"no recorded cpu run for {sorted(lessons - set(recorded))}"
    over = {
        key: entry
        for key, entry in recorded.items()
        if entry["seconds"] > 300 or entry["peak_mib"] > 1.6 * 1024
    }
    assert not over, f"over 300 s or 1.6 GiB in the recorded cpu run: {over}"


# ------------------------------------------------------------------------------------------ hand-typed figures


def _found(*markdown: str) -> list[str]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(m) for m in markdown]
    return [item.figure for item in figures.find_hand_typed_figures(nb)]


def test_hand_typed_run_figures_are_found_in_sentences_about_a_run():
    assert _found("In the cpu profile expect about 0.89 on test (0.885 when measured).") == ["0.89", "0.885"]
    assert _found("Fine-tuning took 58 s against 775 s and kept 13.3% of the variance, as measured.") == [
        "58 s",
        "775 s",
        "13.3%",
    ]
    # a signed difference later in a paragraph that talks about a run
    assert _found(
        "Expect the head at 0.50. Read the other line: BatchNorm adds about +0.13 (+0.05 to +0.21)."
    ) == [
        "0.50",
        "+0.13",
        "+0.05",
        "+0.21",
    ]


def test_settings_facts_bounds_code_and_marked_figures_are_not_flagged():
    assert _found("The learning rate is 0.001 and MobileNetV2 alpha 0.35 in the cpu profile.") == []
    assert _found("ImageNet holds about 1.28 million photos, as measured by its authors.") == []
    assert _found("Expect the head near chance level of 0.20 (the cell asserts 0.75-0.97).") == []
    assert (
        _found("In the cpu profile expect `accuracy > 0.8` and <!--fig:a:.2f-->0.89<!--/fig--> on test.")
        == []
    )
    assert _found("A sigmoid's derivative is at most 0.25; dropout keeps 0.5 of the units.") == []
    assert _found("Version 2.21 of TensorFlow is used; 160 px images, 20 epochs.") == []
    assert _found("In the cpu profile expect a 95% interval of the paired differences above 0.") == []


def test_no_run_figure_is_typed_by_hand_in_any_lesson_solution_or_exercise():
    """Every figure a run computes reaches the prose through a marker (issue 28): `--hand-typed` finds none."""
    found = [
        f"{path.relative_to(figures.REPO_ROOT)} {item}"
        for path in figures.notebooks_under()
        for item in figures.find_hand_typed_figures(path)
    ]
    assert not found, "figures typed by hand (put them in <!--fig:...--> markers):\n" + "\n".join(found)
