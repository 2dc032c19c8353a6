"""The plain recipe on the given model, its callbacks, resume and merged histories (tlcourse.train)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from trainkit import classifier as _classifier
from trainkit import compile_with as _compile
from trainkit import mobilenet as _mobilenet
from trainkit import small_profile, synthetic_splits

from tlcourse import fastcache, fastpath, models, train


@pytest.fixture(scope="module")
def splits():
    return synthetic_splits()


@pytest.fixture(scope="module")
def profile():
    return small_profile()


# ------------------------------------------------------------------------------------- merge_histories


def test_merge_histories_numbers_epochs_continuously_and_marks_phase_starts():
    first = {"loss": [1.0, 0.8, 0.7], "val_accuracy": [0.5, 0.6, 0.65]}
    second = {"loss": [0.6, 0.5], "val_accuracy": [0.7, 0.72]}
    merged = train.merge_histories(first, second, names=["head", "fine_tune"])
    assert merged["epoch"] == [1, 2, 3, 4, 5]
    assert merged["phase_starts"] == [1, 4]
    assert merged["phase"] == ["head"] * 3 + ["fine_tune"] * 2
    assert merged["loss"] == [1.0, 0.8, 0.7, 0.6, 0.5]
    assert merged["val_accuracy"][3:] == [0.7, 0.72]


def test_merge_histories_accepts_history_objects_and_pads_missing_metrics_with_nan():
    class FakeHistory:
        def __init__(self, history):
            self.history = history

    merged = train.merge_histories(FakeHistory({"loss": [2.0]}), {"loss": [1.0, 0.5], "lr": [1e-5, 1e-5]})
    assert merged["epoch"] == [1, 2, 3]
    assert math.isnan(merged["lr"][0]) and merged["lr"][1:] == [1e-5, 1e-5]
    # merging a merged history with a third phase keeps counting and keeps the earlier phases
    again = train.merge_histories(merged, {"loss": [0.1]}, names=["earlier", "third"])
    assert again["epoch"] == [1, 2, 3, 4] and again["phase_starts"] == [1, 2, 4]
    assert again["phase"] == ["phase 1", "phase 2", "phase 2", "third"]


# ---------------------------------------------------------------------------------------- the boundary


def test_layer_index_accepts_index_numpy_integer_numeric_string_and_block_prefix():
    backbone = _mobilenet()
    names = [layer.name for layer in backbone.layers]
    assert models.layer_index(backbone, 100) == 100
    assert models.layer_index(backbone, np.int64(100)) == 100
    assert models.layer_index(backbone, "100") == 100
    assert names[models.layer_index(backbone, "block_13")] == "block_13_expand"
    assert models.layer_index(backbone, "block_16_project") == names.index("block_16_project")
    with pytest.raises(Exception, match="No layer named or starting with"):
        models.layer_index(backbone, "block_99")


# ------------------------------------------------------------------------ the plain recipe, given model


def _top_kernel(base):
    return base.get_layer("block_16_project").kernel.numpy().copy()


def test_fine_tune_trains_the_model_it_was_given_with_its_own_compile(splits, profile):
    from tlcourse import models

    base, model = _classifier(splits)
    other_base, other = _classifier(splits)  # the same start, never handed to fine_tune
    models.unfreeze_from(base, "block_13")
    optimizer_before = None
    _compile(model, 1e-3)
    optimizer_before = model.optimizer
    frozen = base.get_layer("block_2_expand").kernel.numpy().copy()
    top, other_top = _top_kernel(base), _top_kernel(other_base)
    result = train.fine_tune(model, splits, epochs=1, profile=profile, patience=None)
    assert result.model is model
    assert model.optimizer is optimizer_before and int(model.optimizer.iterations.numpy()) > 0
    assert not np.array_equal(_top_kernel(base), top)  # the unfrozen top moved
    np.testing.assert_array_equal(base.get_layer("block_2_expand").kernel.numpy(), frozen)
    np.testing.assert_array_equal(_top_kernel(other_base), other_top)  # a model it was not given did not


def test_fine_tune_refuses_a_model_unfrozen_after_its_last_compile(splits, profile):
    from tlcourse import models
    from tlcourse.errors import TLCourseError

    base, model = _classifier(splits)
    _compile(model, 1e-3)
    models.unfreeze_from(base, "block_13")  # and no compile after it
    with pytest.raises(TLCourseError, match="compile"):
        train.fine_tune(model, splits, epochs=1, profile=profile)


def test_fit_head_trains_only_the_head_of_the_given_model(splits, profile):
    from tlcourse.errors import TLCourseError

    base, model = _classifier(splits)
    _compile(model, 1e-2)
    base_before = [w.copy() for w in base.get_weights()]
    dense_before = model.get_layer("logits").kernel.numpy().copy()
    result = train.fit_head(model, splits, epochs=1, profile=profile, patience=None)
    assert result.model is model and result.epochs_run == 1
    assert not np.array_equal(model.get_layer("logits").kernel.numpy(), dense_before)
    assert all(np.array_equal(a, b) for a, b in zip(base_before, base.get_weights(), strict=True))
    base.trainable = True
    _compile(model, 1e-2)
    with pytest.raises(TLCourseError, match="trainable = False"):
        train.fit_head(model, splits, epochs=1, profile=profile)


def test_resume_after_interruption_continues_from_that_epoch_and_ends_like_an_uninterrupted_run(tmp_path):
    import keras

    from tlcourse.config import seed_everything

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    total, stop_at = 6, 3

    def build():
        seed_everything(7)
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
        )
        model.compile(
            keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        return model

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == stop_at:
                raise RuntimeError("simulated crash")

    reference = build()
    reference.fit(x, y, batch_size=16, epochs=total, shuffle=False, verbose=0)

    run_dir = tmp_path / "run"
    model = build()
    with pytest.raises(RuntimeError, match="simulated crash"):
        model.fit(
            x,
            y,
            batch_size=16,
            epochs=total,
            shuffle=False,
            verbose=0,
            callbacks=[*train.training_callbacks(run_dir, patience=None, monitor="loss"), Crash()],
        )
    assert (run_dir / "backup").is_dir()
    resumed = build()  # a fresh process would start from a fresh model
    seen: list[int] = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch))
    history = resumed.fit(
        x,
        y,
        batch_size=16,
        epochs=total,
        shuffle=False,
        verbose=0,
        callbacks=[*train.training_callbacks(run_dir, patience=None, monitor="loss"), record],
    )
    assert seen == list(range(stop_at, total))
    assert len(history.history["loss"]) == total - stop_at
    for got, want in zip(resumed.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # optimizer state travelled too: same step counter as the uninterrupted run
    assert int(resumed.optimizer.iterations.numpy()) == int(reference.optimizer.iterations.numpy())


def test_early_stopping_restores_the_best_weights(tmp_path):
    import keras

    callbacks = train.training_callbacks(tmp_path, patience=2)
    kinds = {type(c).__name__ for c in callbacks}
    assert {"EarlyStopping", "ModelCheckpoint", "ResumableBackup"} <= kinds
    stopper = next(c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping))
    assert stopper.restore_best_weights and stopper.monitor == "val_accuracy"


def test_the_fast_path_has_left_train_with_no_alias_behind():
    for name in ("fit_head_fast", "fine_tune_fast"):
        assert hasattr(fastpath, name) and not hasattr(train, name), name
    for name in ("cache_boundary", "split_backbone", "BoundaryCache"):
        assert hasattr(fastcache, name) and not hasattr(train, name) and not hasattr(fastpath, name), name


def test_train_keeps_the_plain_recipe_and_no_pass_through_wrappers():
    wrappers = (
        "compile_model",
        "resolve_layer",
        "set_trainable_from",
        "default_augmentation",
        "resumable_backup",
    )
    wrappers += ("strategy_scope", "default_fine_tune_from", "models_learning_rate", "architecture_key")
    defined = {
        name for name, value in vars(train).items() if getattr(value, "__module__", "") == train.__name__
    }
    assert defined & set(wrappers) == set()
    assert {"fit_head", "fine_tune", "PhaseResult", "training_callbacks", "merge_histories"} <= defined
    assert not hasattr(train, "DEFAULT_FINE_TUNE_FROM")  # the unfreeze point is each backbone's record


def test_validation_accuracy_runs_the_model_as_one_traced_graph_not_eagerly():
    """An eager call holds every layer's output of a batch at once (lesson 08's peak memory went past 2 GB)."""
    import keras
    import tensorflow as tf

    eager_calls = []

    class Probe(keras.layers.Layer):
        def call(self, x):
            eager_calls.append(tf.executing_eagerly())
            return x

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(Probe()(inputs)))
    x = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
    y = np.arange(10) % 3
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    eager_calls.clear()  # building the model traced the layer once

    accuracy = train._accuracy(model, dataset)

    assert accuracy == pytest.approx(float(np.mean(model.predict(x, verbose=0).argmax(1) == y)))
    assert eager_calls and not any(eager_calls)
