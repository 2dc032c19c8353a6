"""The strategy harness: a table of runners, paired differences on the same images, no winner within noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlcourse import models, strategies, train
from tlcourse.config import get_profile

SIZE = 32


@pytest.fixture(scope="module")
def splits():
    from tlcourse import data

    return data.synthetic_splits(num_classes=3, per_class=8, image_size=SIZE, seed=0)


def test_compare_strategies_gives_one_sane_row_per_strategy_with_paired_differences(
    splits, tmp_path, monkeypatch, no_network
):
    monkeypatch.delenv("TLCOURSE_MIRROR", raising=False)  # no ImageNet classifier: zero_shot is skipped
    names = ["zero_shot", "head_only", "fine_tune_from:block_16", "from_scratch"]
    profile = get_profile("smoke", image_size=SIZE, batch_size=8, head_epochs=1, fine_tune_epochs=1)
    base = models.build_backbone("mobilenet_v2", alpha=0.35, image_size=SIZE, weights="random", seed=0)
    before = base.get_weights()
    table = strategies.compare_strategies(
        base, splits, names, profile=profile, download=False, cache_dir=tmp_path / "cache"
    )
    untouched = zip(before, base.get_weights(), strict=True)
    assert all(np.array_equal(a, b) for a, b in untouched)  # every row worked on a copy of the base
    assert list(table.columns) == strategies.RESULT_COLUMNS
    assert list(table["strategy"]) == names
    rows = table.set_index("strategy")
    assert rows.loc["zero_shot", "notes"] == strategies.ZERO_SHOT_SKIPPED
    assert math.isnan(rows.loc["zero_shot", "val_accuracy"]) and math.isnan(
        rows.loc["zero_shot", "vs_baseline"]
    )
    trained = rows.drop(index="zero_shot")
    assert trained["val_accuracy"].between(0, 1).all() and trained["test_accuracy"].between(0, 1).all()
    assert (trained["train_seconds"] > 0).all() and (trained["epochs_run"] >= 1).all()
    assert rows.loc["head_only", ["vs_baseline", "vs_baseline_low", "vs_baseline_high"]].tolist() == [0, 0, 0]
    diff = trained["test_accuracy"] - rows.loc["head_only", "test_accuracy"]
    assert np.allclose(trained["vs_baseline"], diff)  # the paired difference is the difference of accuracies
    assert (trained["vs_baseline_low"] <= trained["vs_baseline"]).all()
    assert (trained["vs_baseline"] <= trained["vs_baseline_high"]).all()
    assert rows.loc["head_only", "trainable_params"] < rows.loc["fine_tune_from:block_16", "trainable_params"]
    assert (
        rows.loc["fine_tune_from:block_16", "trainable_params"] < rows.loc["from_scratch", "trainable_params"]
    )
    assert rows.loc["fine_tune_from:block_16", "epochs_run"] > rows.loc["head_only", "epochs_run"]
    assert table.attrs["evaluated_on"] == "validation" and table.attrs["n_test"] == splits.validation_count
    assert table.attrs["baseline"] == "head_only" and "test images" in table.attrs["verdict"]


@pytest.mark.parametrize("name", ["fine_tune_everything", "fine_tune_from", "fine_tune_from:", "head_only:3"])
def test_an_unknown_strategy_is_rejected_before_any_training(splits, name):
    with pytest.raises(ValueError, match="Unknown strategy"):
        strategies.compare_strategies(None, splits, ["head_only", name])


def test_every_default_strategy_has_a_runner_in_the_table():
    for name in strategies.DEFAULT_STRATEGIES:
        assert strategies.runner_for(name) in strategies.STRATEGIES.values()
    assert not hasattr(train, "compare_strategies")  # one home for the harness, no alias left behind


def test_verdict_says_tied_within_noise_when_the_paired_interval_contains_zero():
    labels = np.zeros(100, int)
    a, b = np.zeros(100, int), np.zeros(100, int)
    a[:10], b[:12] = 1, 1  # 90% against 88% right: two images apart
    text = strategies.verdict(labels, {"a": a, "b": b}, {"a": 0.9, "b": 0.8})
    assert strategies.TIED in text and text.startswith("a and b")


def test_verdict_names_a_winner_only_beyond_noise():
    labels = np.zeros(100, int)
    good, poor = np.zeros(100, int), np.zeros(100, int)
    poor[:40] = 1
    text = strategies.verdict(labels, {"good": good, "poor": poor}, {"good": 0.9, "poor": 0.5})
    assert text.startswith("good is best beyond noise") and strategies.TIED not in text


def test_verdict_chooses_on_validation_and_says_so_when_test_disagrees():
    labels = np.zeros(100, int)
    good, poor = np.zeros(100, int), np.zeros(100, int)
    poor[:40] = 1
    text = strategies.verdict(labels, {"good": good, "poor": poor}, {"good": 0.5, "poor": 0.9})
    assert text.startswith("validation chose poor, but it is behind good")


def test_verdict_with_one_strategy_that_ran_compares_nothing():
    text = strategies.verdict([0, 1], {"a": np.array([0, 1]), "b": None}, {"a": 1.0, "b": math.nan})
    assert text.startswith("fewer than two")


def test_the_cpu_harness_budget_is_short_and_leaves_out_the_costly_rows():
    cpu = get_profile("cpu")
    budget = strategies.harness_budget(cpu, fine_tune_learning_rate=1e-4)
    assert budget.strategies == ("zero_shot", "head_only", "fine_tune_from:block_15")
    assert budget.scratch_profile is None
    assert (budget.profile.augmented_passes, budget.profile.fine_tune_epochs) == (0, 2)
    assert budget.profile.fine_tune_learning_rate == 1e-4
    assert (budget.profile.image_size, budget.profile.head_epochs) == (cpu.image_size, cpu.head_epochs)
    assert "no full fine-tune" in budget.describe()


def test_the_gpu_harness_budget_runs_every_row_with_the_profiles_schedule():
    gpu = get_profile("gpu")
    budget = strategies.harness_budget(gpu)
    assert budget.strategies[-1] == "full_fine_tune" and "fine_tune_from:100" in budget.strategies
    assert budget.profile.augmented_passes == gpu.augmented_passes
    assert budget.profile.fine_tune_learning_rate == gpu.fine_tune_learning_rate
    scratch = budget.scratch_profile
    assert (scratch.head_epochs, scratch.fine_tune_epochs) == (gpu.head_epochs, gpu.fine_tune_epochs)


def test_harness_budget_takes_other_depths_and_refuses_a_bad_one_before_training():
    budget = strategies.harness_budget(get_profile("smoke"), depths=("block_13", 100))
    assert budget.strategies[2:] == ("fine_tune_from:block_13", "fine_tune_from:100")
    with pytest.raises(ValueError, match="Unknown strategy"):
        strategies.harness_budget(get_profile("smoke"), depths=("",))
