"""The plain recipe on the given model, the opt-in fast path, resume, merged histories (tlcourse.train)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlcourse import train
from tlcourse.config import get_profile


def _last_dense(model):
    """The last Dense layer of ``model``, nested models included (where a head's weights are)."""
    import keras

    from tlcourse.backend import walk_layers

    return [layer for layer in walk_layers(model) if isinstance(layer, keras.layers.Dense)][-1]


SIZE = 32


@pytest.fixture(scope="module")
def splits():
    from tlcourse import data

    return data.synthetic_splits(num_classes=3, per_class=8, image_size=SIZE, seed=0)


@pytest.fixture(scope="module")
def profile():
    return get_profile(
        "smoke", image_size=SIZE, batch_size=8, head_epochs=2, fine_tune_epochs=2, augmented_passes=1
    )


@pytest.fixture(scope="module")
def head(splits, profile, tmp_path_factory):
    """A head trained once on a random-weight backbone, shared by the fine-tuning tests."""
    result = train.fit_head_fast(
        splits,
        alpha=0.35,
        image_size=SIZE,
        weights="random",
        profile=profile,
        cache_dir=tmp_path_factory.mktemp("features"),
        patience=None,
    )
    return result


def _mobilenet(size: int = SIZE):
    import keras

    return keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=0.35, include_top=False, weights=None
    )


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


def test_resolve_layer_accepts_index_numeric_string_and_block_prefix():
    backbone = _mobilenet()
    names = [layer.name for layer in backbone.layers]
    assert train.resolve_layer(backbone, 100) == 100
    assert train.resolve_layer(backbone, "100") == 100
    assert names[train.resolve_layer(backbone, "block_13")] == "block_13_expand"
    assert train.resolve_layer(backbone, "block_16_project") == names.index("block_16_project")
    with pytest.raises(Exception, match="No layer named or starting with"):
        train.resolve_layer(backbone, "block_99")


def test_split_inside_a_residual_block_carries_both_tensors_and_reproduces_the_backbone():
    backbone = _mobilenet()
    inside = train.resolve_layer(backbone, "block_11_depthwise")  # block 11 has a skip connection
    chain = train.resolve_layer(backbone, "block_13_expand")  # block 13 starts a new stage: one tensor
    assert len(train.boundary_tensors(backbone, inside)) == 2
    assert len(train.boundary_tensors(backbone, chain)) == 1
    bottom, top = train.split_backbone(backbone, inside)
    x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(top(bottom(x)).numpy(), backbone(x, training=False).numpy(), atol=1e-5)
    per_image = sum(int(np.prod(t.shape[1:])) for t in train.boundary_tensors(backbone, inside)) * 4
    assert train.boundary_bytes(backbone, inside, examples=10, passes=3) == per_image * 30


# ------------------------------------------------------------------------------------------- training


def test_fit_head_fast_leaves_backbone_weights_unchanged_and_trains_the_head(head, splits, tmp_path):
    import keras

    from tlcourse.config import seed_everything

    before = [w.copy() for w in head.backbone.get_weights()]
    # training again from this backbone must not move it either
    again = train.fit_head_fast(
        splits,
        head.backbone,
        alpha=0.35,
        profile=get_profile("smoke"),
        epochs=1,
        patience=None,
        cache_dir=tmp_path,
    )
    after = again.backbone.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert again.trainable_params == 3 * (again.head.input_shape[-1] + 1)
    seed_everything(
        42
    )  # fit_head_fast seeds the same way before building its head: these are its initial weights
    fresh = train._head_model(again.head.input_shape[-1], 3, 0.2)
    initial, trained = _last_dense(fresh).get_weights(), _last_dense(again.head).get_weights()
    np.testing.assert_array_equal(initial[0].shape, trained[0].shape)
    assert not np.allclose(initial[1], trained[1])  # the bias moved (random-weight features are tiny)
    # the end-to-end model carries the trained head's weights
    np.testing.assert_array_equal(
        _last_dense(again.model).get_weights()[0], _last_dense(again.head).get_weights()[0]
    )
    assert isinstance(again.model, keras.Model)


def test_boundary_cached_fine_tune_equals_the_assembled_end_to_end_model(splits, profile, tmp_path):
    start = train.fit_head_fast(
        splits,
        alpha=0.35,
        image_size=SIZE,
        weights="random",
        profile=profile,
        patience=None,
        cache_dir=tmp_path,
        boundary="block_13",
    )
    assert start.boundary_cache is not None and start.boundary_cache.train[0].shape[:2] == (2, 24)
    frozen_before = [w.copy() for w in start.backbone.layers[5].get_weights()]
    top_layers = [start.backbone.get_layer(name) for name in ("block_13_expand", "Conv_1")]
    top_before = [layer.kernel.numpy().copy() for layer in top_layers]
    result = train.fine_tune_fast(
        start, splits, from_layer="block_13", profile=profile, patience=None, keep_better=False
    )
    assert result.boundary == "block_13_expand"
    assert any("kept from the head phase" in note for note in result.notes)  # the bottom did not run again
    # the top was trained, the bottom was not
    # (random weights give tiny activations, hence tiny steps: compare exactly)
    for layer, before in zip(top_layers, top_before, strict=True):
        assert not np.array_equal(layer.kernel.numpy(), before), layer.name
    assert all(
        np.array_equal(a, b)
        for a, b in zip(frozen_before, start.backbone.layers[5].get_weights(), strict=True)
    )
    # assembled model == trainer(bottom(image)), numerically
    index = train.resolve_layer(start.backbone, "block_13")
    bottom, _ = train.split_backbone(start.backbone, index)
    extractor = train._bottom_model(start.backbone, "mobilenet_v2", bottom)
    images = next(iter(splits.validation))[0]
    end_to_end = result.model(images, training=False).numpy()
    via_boundary = result.trainer(extractor(images, training=False), training=False).numpy()
    np.testing.assert_allclose(end_to_end, via_boundary, atol=1e-5)
    # and it reports the accuracy the assembled model has
    y = np.concatenate([np.asarray(b[1]) for b in splits.validation])
    logits = result.model.predict(splits.validation.map(lambda a, b: a), verbose=0)
    assert result.val_accuracy == pytest.approx(float(np.mean(logits.argmax(1) == y)), abs=1e-6)
    # the end-to-end model comes back compiled: evaluate works and agrees
    assert result.model.evaluate(splits.validation, verbose=0)[1] == pytest.approx(
        result.val_accuracy, abs=1e-6
    )


def test_fine_tune_fast_falls_back_to_the_standard_path_and_never_ends_below_its_start(head, splits, profile):
    result = train.fine_tune_fast(
        head, splits, from_layer="block_16", profile=profile, epochs=1, max_cache_bytes=1, learning_rate=1.0
    )
    assert any("standard path" in note for note in result.notes)
    assert result.epochs_run == 1
    # keep_better: even a wild learning rate cannot leave it below the head it started from
    assert result.val_accuracy >= head.val_accuracy - 1e-6


# ------------------------------------------------------------------------ the plain recipe, given model


def _classifier(splits, *, dropout=0.2, seed=0, weights="random"):
    """What lessons 04/05 write out: a MobileNetV2 base, frozen, in a functional model."""
    from tlcourse import models

    base = models.build_backbone(
        "mobilenet_v2", alpha=0.35, image_size=SIZE, weights=weights, seed=seed, verbose=False
    )
    base.trainable = False
    return base, models.build_classifier(base, splits.num_classes, dropout=dropout)


def _compile(model, rate, sgd=False):
    import keras

    model.compile(
        optimizer=keras.optimizers.SGD(rate) if sgd else keras.optimizers.Adam(rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


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


def test_fast_path_reaches_the_plain_paths_predictions_on_the_same_batches(splits):
    from tlcourse import models

    one_batch = get_profile("smoke", image_size=SIZE, batch_size=64, augmented_passes=0)
    import tensorflow as tf

    x = np.concatenate([a for a, _ in splits.train])
    y = np.concatenate([b for _, b in splits.train])
    whole = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)  # one batch: the order cannot matter
    same = type(splits)(**{**splits.__dict__, "train": whole})
    # ImageNet weights (the offline mirror's): a random base at 32 px gives all-zero features and no gradient
    plain_base, plain = _classifier(splits, dropout=0.0, weights="imagenet")
    fast_base, fast = _classifier(splits, dropout=0.0, weights="imagenet")
    fast.set_weights(plain.get_weights())
    models.unfreeze_from(plain_base, "block_13")
    start = [w.numpy().copy() for w in plain.trainable_weights]
    _compile(plain, 0.5, sgd=True)
    _compile(fast, 0.5, sgd=True)  # the fast path trains with a copy of the model's own optimizer
    train.fine_tune(plain, same, epochs=3, profile=one_batch, augment=False, patience=None)
    result = train.fine_tune_fast(
        fast,
        same,
        from_layer="block_13",
        profile=one_batch,
        epochs=3,
        augmented_passes=0,
        patience=None,
        keep_better=False,
    )
    assert result.model is fast
    moved = [
        not np.array_equal(w.numpy(), old) for w, old in zip(plain.trainable_weights, start, strict=True)
    ]
    assert sum(moved) > len(moved) // 2  # the top of the base trained, not only the head
    images = tf.concat([x for x, _ in splits.validation], 0)
    # tolerance: float32 sums in another order over three Adam steps
    np.testing.assert_allclose(
        fast(images, training=False).numpy(), plain(images, training=False).numpy(), rtol=1e-3, atol=1e-4
    )


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


def test_models_are_built_inside_the_current_distribution_strategy(splits, tmp_path):
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        result = train.fit_head_fast(
            splits,
            alpha=0.35,
            image_size=SIZE,
            weights="random",
            profile=get_profile("smoke"),
            epochs=1,
            cache_dir=tmp_path,
        )
    variable = _last_dense(result.head).kernel
    assert isinstance(getattr(variable, "value", variable), tf.distribute.DistributedValues)


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
