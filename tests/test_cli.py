"""The `tlcourse` command itself: what it says when part of the install is missing."""

from __future__ import annotations

import sys

import nbformat

from tlcourse import cli


def test_run_without_the_instructors_extra_names_the_install_command(tmp_path, monkeypatch, capsys):
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("PROFILE = 'smoke'", metadata={"tags": ["parameters"]})]
    )
    nbformat.write(notebook, tmp_path / "00_tiny.ipynb")
    for name in cli.RUN_EXTRA_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # as on Colab, where papermill is not installed
    status = cli.main(["run", str(tmp_path / "00_tiny.ipynb"), "--out", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert status == 2
    assert "pip install 'tlcourse[run]'" in error and "Traceback" not in error


def test_train_help_states_the_default_settings_and_the_measured_time_per_1000_photos(capsys):
    import pytest

    from tlcourse import config

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    cpu = config.get_profile("cpu").for_capstone()
    assert f"profile cpu: MobileNetV2 alpha {cpu.alpha:g} at {cpu.image_size} px" in text
    assert "s per 1,000 photos, measured on 2 shared CPU cores" in text
    assert "profile gpu: MobileNetV2 alpha 1 at 224 px" in text


def test_train_runs_on_onednn_kernels_and_records_it_while_the_lessons_keep_tensorflows_own(tmp_path):
    """`tlcourse train` picks oneDNN before TensorFlow loads (a fresh process, the variable unset); notebooks run
    by `tlcourse run` keep TensorFlow's own kernels, the ones the lessons' figures were measured with."""
    import json
    import os
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    for name, colour in {"red": (200, 30, 30), "blue": (30, 40, 210)}.items():
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(6):
            noise = np.random.default_rng(i).integers(-30, 30, size=(36, 36, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype("uint8")
            Image.fromarray(pixels).save(tmp_path / "photos" / name / f"{i}.png")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    command = [
        sys.executable,
        "-m",
        "tlcourse",
        "train",
        str(tmp_path / "photos"),
        "--out",
        str(tmp_path / "out"),
    ]
    command += ["--profile", "smoke", "--size", "32", "--weights", "random"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    # TensorFlow's C++ side announces oneDNN once per native library, past TF_CPP_MIN_LOG_LEVEL: none of it shows
    assert "oneDNN custom operations" not in done.stderr and "absl::InitializeLog" not in done.stderr
    settings = json.loads((tmp_path / "out" / "metrics.json").read_text())["settings"]
    assert settings["onednn"] is True
    assert "onednn" in (tmp_path / "out" / "model_card.md").read_text()
    assert cli.build_parser().parse_args(["train", "d", "--out", "o"]).onednn is True
    assert not getattr(cli.build_parser().parse_args(["run", "lessons"]), "onednn", False)


def _subcommands() -> dict[str, object]:
    parser = cli.build_parser()
    (choices,) = [action.choices for action in parser._actions if action.dest == "command"]
    return {"tlcourse": parser, **choices}


def test_every_argument_of_every_command_has_help_text():
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, parser in _subcommands().items()
        for action in parser._actions
        if action.dest != "help" and not (action.help or "").strip()
    ]
    assert not missing, f"arguments without help: {missing}"


def test_every_commands_help_shows_its_defaults_an_example_and_the_exit_statuses():
    commands = _subcommands()
    assert set(commands) == {"tlcourse", "run", "grade", "check-data", "train", "predict", "assets"}
    for name, parser in commands.items():
        text = parser.format_help()
        example = f"\n  tlcourse {'' if name == 'tlcourse' else name}".rstrip()
        assert "examples:" in text and example in text, f"{name}: no example"
        assert "exit status:" in text, f"{name}: no exit statuses"
        for status in ("0 ", "1 ", "2 ", "130 ", "143 "):
            assert f"\n  {status}" in text, f"{name}: exit status {status} unexplained"
    run = " ".join(commands["run"].format_help().split())
    for default in ("(default: runs/latest)", "(default: 1)", "(default: 1800)", "(default: lessons/)"):
        assert default in run
    train = " ".join(commands["train"].format_help().split())
    assert "(default: mobilenet_v2)" in train and "(default: 42)" in train and "(default: auto)" in train
