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
