"""Profiles, the auto rule, seeding and TF quieting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tlcourse import config


def test_every_profile_is_reachable_by_name_and_smoke_is_smallest():
    sizes = {name: config.get_profile(name).image_size for name in config.PROFILES}
    assert set(sizes) == {"smoke", "cpu", "gpu"}
    assert sizes["smoke"] < sizes["cpu"] <= sizes["gpu"]
    assert config.get_profile("smoke").allow_synthetic
    assert not config.get_profile("cpu").allow_synthetic


def test_auto_profile_follows_the_environment_variable(monkeypatch):
    monkeypatch.setenv(config.PROFILE_ENV, "smoke")
    assert config.get_profile("auto").name == "smoke"
    monkeypatch.setenv(config.PROFILE_ENV, "GPU")
    assert config.get_profile().name == "gpu"


def test_auto_profile_without_gpu_is_cpu(monkeypatch):
    monkeypatch.delenv(config.PROFILE_ENV, raising=False)
    monkeypatch.setattr(config, "gpu_available", lambda: False)
    assert config.get_profile("auto").name == "cpu"
    monkeypatch.setattr(config, "gpu_available", lambda: True)
    assert config.get_profile("auto").name == "gpu"


def test_unknown_profile_error_lists_the_choices():
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        config.get_profile("turbo")


def test_overrides_replace_single_fields_without_touching_the_registry():
    small = config.get_profile("cpu", image_size=128)
    assert small.image_size == 128 and small.name == "cpu"
    assert config.PROFILES["cpu"].image_size == 160


def test_seed_everything_makes_keras_initialisation_repeatable():
    import keras

    def first_kernel() -> list[float]:
        config.seed_everything(7)
        layer = keras.layers.Dense(3)
        layer.build((None, 4))
        return layer.kernel.numpy().ravel().tolist()

    assert first_kernel() == first_kernel()
    config.seed_everything(8)
    other = keras.layers.Dense(3)
    other.build((None, 4))
    assert other.kernel.numpy().ravel().tolist() != first_kernel()


def test_quiet_tensorflow_keeps_values_the_user_set(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    config.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_importing_tlcourse_does_not_import_tensorflow():
    code = "import sys, tlcourse, tlcourse.config, tlcourse.cli; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_quiet_tensorflow_silences_startup_messages_on_stderr():
    code = (
        "from tlcourse.config import quiet_tensorflow; quiet_tensorflow()\n"
        "import tensorflow as tf; tf.constant([1.0]) + 1\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "ABSL_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert "oneDNN" not in out.stderr
    assert "cpu_feature_guard" not in out.stderr


def test_environment_report_names_versions_platform_and_profile(monkeypatch):
    monkeypatch.setenv(config.PROFILE_ENV, "smoke")
    report = config.environment_report()
    import tensorflow as tf

    assert report["tensorflow"] == tf.__version__
    assert report["platform"] == "local"
    assert report["profile"] == "smoke" and report["profile_source"] == "$TLCOURSE_PROFILE"
    assert isinstance(report["gpus"], list)


def _memory_holder(mib: int) -> subprocess.Popen:
    """A process whose command line looks like a Jupyter kernel's and that holds ``mib`` MiB."""
    code = f"import sys, time; block = b'x' * ({mib} * 2**20); print('ready', flush=True); time.sleep(120)"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, "ipykernel_launcher"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "ready"
    return holder


def test_binder_lesson_warns_when_another_kernel_holds_memory(monkeypatch, capsys):
    holder = _memory_holder(260)
    try:
        assert holder.pid in {pid for pid, _ in config.other_kernels_mib()}
        monkeypatch.setenv("BINDER_LAUNCH_HOST", "https://mybinder.org/")
        config.get_profile("smoke")
        out = capsys.readouterr().out
        assert "other notebook kernel(s) still hold" in out and "Shut Down Kernel" in out
        monkeypatch.delenv("BINDER_LAUNCH_HOST")
        config.get_profile("smoke")
        assert capsys.readouterr().out == ""  # only Binder has the 2 GiB limit worth a warning
    finally:
        holder.kill()
        holder.wait()
    assert holder.pid not in {pid for pid, _ in config.other_kernels_mib()}


def test_small_kernels_and_this_process_are_not_counted():
    holder = _memory_holder(1)
    try:
        pids = {pid for pid, _ in config.other_kernels_mib()}
        assert holder.pid not in pids and os.getpid() not in pids
        assert holder.pid in {pid for pid, _ in config.other_kernels_mib(min_mib=0)}
    finally:
        holder.kill()
        holder.wait()


def test_for_capstone_swaps_in_the_capstone_width_size_and_passes_and_nothing_else():
    base = config.PROFILES["cpu"].replace(
        capstone_alpha=0.75, capstone_image_size=192, augmented_passes=2, capstone_augmented_passes=1
    )
    capstone = base.for_capstone()
    assert (capstone.alpha, capstone.image_size, capstone.augmented_passes) == (0.75, 192, 1)
    restored = capstone.replace(alpha=base.alpha, image_size=base.image_size, augmented_passes=2)
    assert restored == base
    plain = config.PROFILES["smoke"].replace(
        capstone_alpha=None, capstone_image_size=None, capstone_augmented_passes=None
    )
    assert plain.for_capstone() == plain


def test_the_capstone_caches_no_augmented_passes_while_the_lessons_keep_theirs():
    cpu = config.get_profile("cpu")
    assert cpu.augmented_passes == 2  # lesson 04's step on cached augmented passes reads these
    assert cpu.for_capstone().augmented_passes == 0
    assert "head epochs on cached features (no augmented passes)" in config.capstone_summary("cpu")
    assert "on 4 cached augmented pass(es)" in config.capstone_summary("gpu")


def test_the_lessons_cpu_profile_keeps_its_light_width_while_the_capstone_may_differ():
    cpu = config.get_profile("cpu")
    assert (cpu.alpha, cpu.image_size) == (0.35, 160)  # what the lessons were measured with (300 s, 2 GiB)
    summary = config.capstone_summary("cpu")
    capstone = cpu.for_capstone()
    assert f"alpha {capstone.alpha:g} at {capstone.image_size} px" in summary
    assert f"{config.CAPSTONE_SECONDS_PER_1000_IMAGES['cpu']:.0f} s per 1,000 photos" in summary


def test_quiet_tensorflow_chooses_onednn_only_when_asked_and_keeps_the_users_choice(monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    config.quiet_tensorflow(onednn=True)
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    config.quiet_tensorflow()  # a later call does not undo the first one's choice
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    config.quiet_tensorflow()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "false")
    config.quiet_tensorflow(onednn=True)
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "false"


def test_onednn_enabled_reads_tensorflows_own_answer_once_it_is_loaded():
    import tensorflow as tf

    tf.constant(1.0) + 1  # loaded: conftest turned oneDNN off before the first import
    assert config.onednn_enabled() is False
    code = "from tlcourse import config; print(config.onednn_enabled())"
    for value, expected in (("1", "True"), ("0", "False")):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": value}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == expected  # before TensorFlow loads: the variable, as TensorFlow reads it
