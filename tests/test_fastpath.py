"""The opt-in fast path (tlcourse.fastpath): cached features, the boundary split, boundary-cached fine-tuning,
and that it reaches the plain path's (tlcourse.train) predictions on the same batches."""

from __future__ import annotations

import numpy as np
import pytest
from trainkit import (
    SIZE,
    classifier,
    compile_with,
    last_dense,
    lively,
    mobilenet,
    random_base,
    small_profile,
    synthetic_splits,
)

from tlcourse import fastcache, fastpath, features, models, train
from tlcourse.backbones import spec_of
from tlcourse.config import get_profile


@pytest.fixture(scope="module")
def splits():
    return synthetic_splits()


@pytest.fixture(scope="module")
def profile():
    return small_profile()


@pytest.fixture(scope="module")
def head(splits, profile, tmp_path_factory):
    """A head trained once on a random-weight backbone, shared by the fine-tuning tests."""
    base = random_base()
    return fastpath.fit_head_fast(
        base, splits, profile=profile, cache_dir=tmp_path_factory.mktemp("features"), patience=None
    )


def test_split_inside_a_residual_block_carries_both_tensors_and_reproduces_the_backbone():
    backbone = mobilenet()
    inside = models.layer_index(backbone, "block_11_depthwise")  # block 11 has a skip connection
    chain = models.layer_index(backbone, "block_13_expand")  # block 13 starts a new stage: one tensor
    assert len(fastcache.boundary_tensors(backbone, inside)) == 2
    assert len(fastcache.boundary_tensors(backbone, chain)) == 1
    bottom, top = fastcache.split_backbone(backbone, inside)
    x = np.random.default_rng(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(top(bottom(x)).numpy(), backbone(x, training=False).numpy(), atol=1e-5)
    per_image = sum(int(np.prod(t.shape[1:])) for t in fastcache.boundary_tensors(backbone, inside)) * 4
    assert fastcache.boundary_bytes(backbone, inside, examples=10, passes=3) == per_image * 30


def test_fit_head_fast_leaves_backbone_weights_unchanged_and_trains_the_head(head, splits, tmp_path):
    import keras

    from tlcourse.config import seed_everything

    before = [w.copy() for w in head.backbone.get_weights()]
    # training again from this backbone must not move it either
    again = fastpath.fit_head_fast(
        head.backbone, splits, profile=get_profile("smoke", head_epochs=1), patience=None, cache_dir=tmp_path
    )
    after = again.backbone.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert again.trainable_params == 3 * (again.head.input_shape[-1] + 1)
    seed_everything(
        42
    )  # fit_head_fast seeds the same way before building its head: these are its initial weights
    fresh = models.build_head(again.head.input_shape[1:], 3, dropout=fastpath.HEAD_DROPOUT)
    initial, trained = last_dense(fresh).get_weights(), last_dense(again.head).get_weights()
    np.testing.assert_array_equal(initial[0].shape, trained[0].shape)
    assert not np.allclose(initial[1], trained[1])  # the bias moved (random-weight features are tiny)
    # the end-to-end model carries the trained head's weights
    np.testing.assert_array_equal(
        last_dense(again.model).get_weights()[0], last_dense(again.head).get_weights()[0]
    )
    assert isinstance(again.model, keras.Model)


def test_boundary_cached_fine_tune_equals_the_assembled_end_to_end_model(splits, profile, tmp_path):
    start = fastpath.fit_head_fast(
        random_base(), splits, profile=profile, patience=None, cache_dir=tmp_path, boundary="block_13"
    )
    assert start.boundary_cache is not None and start.boundary_cache.train[0].shape[:2] == (2, 24)
    frozen_before = [w.copy() for w in start.backbone.layers[5].get_weights()]
    top_layers = [start.backbone.get_layer(name) for name in ("block_13_expand", "Conv_1")]
    top_before = [layer.kernel.numpy().copy() for layer in top_layers]
    result = fastpath.fine_tune_fast(
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
    index = models.layer_index(start.backbone, "block_13")
    bottom, _ = fastcache.split_backbone(start.backbone, index)
    extractor = models.assemble(bottom, pooling=None, spec=spec_of(start.backbone))
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


def test_fine_tune_fast_falls_back_to_the_standard_path_and_never_ends_below_its_start(
    head, splits, profile, monkeypatch
):
    monkeypatch.setattr(fastcache, "MAX_CACHE_BYTES", 1)
    wild = profile.replace(fine_tune_epochs=1, fine_tune_learning_rate=1.0)
    result = fastpath.fine_tune_fast(head, splits, from_layer="block_16", profile=wild)
    assert any("standard path" in note for note in result.notes)
    assert result.epochs_run == 1
    # keep_better: even a wild learning rate cannot leave it below the head it started from
    assert result.val_accuracy >= head.val_accuracy - 1e-6


def test_fast_path_reaches_the_plain_paths_predictions_on_the_same_batches(splits):
    from tlcourse import models

    one_batch = get_profile("smoke", image_size=SIZE, batch_size=64, augmented_passes=0)
    import tensorflow as tf

    x = np.concatenate([a for a, _ in splits.train])
    y = np.concatenate([b for _, b in splits.train])
    whole = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)  # one batch: the order cannot matter
    same = type(splits)(**{**splits.__dict__, "train": whole})
    # ImageNet weights (the offline mirror's): a random base at 32 px gives all-zero features and no gradient
    plain_base, plain = classifier(splits, dropout=0.0, weights="imagenet")
    fast_base, fast = classifier(splits, dropout=0.0, weights="imagenet")
    fast.set_weights(plain.get_weights())
    models.unfreeze_from(plain_base, "block_13")
    start = [w.numpy().copy() for w in plain.trainable_weights]
    compile_with(plain, 0.5, sgd=True)
    compile_with(fast, 0.5, sgd=True)  # the fast path trains with a copy of the model's own optimizer
    train.fine_tune(plain, same, epochs=3, profile=one_batch, augment=False, patience=None)
    result = fastpath.fine_tune_fast(
        fast,
        same,
        from_layer="block_13",
        profile=one_batch.replace(fine_tune_epochs=3),
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


def test_models_are_built_inside_the_current_distribution_strategy(splits, tmp_path):
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        base = random_base()
        result = fastpath.fit_head_fast(
            base, splits, profile=get_profile("smoke", head_epochs=1), cache_dir=tmp_path
        )
    variable = last_dense(result.head).kernel
    assert isinstance(getattr(variable, "value", variable), tf.distribute.DistributedValues)


def _shared_folders(tmp_path):
    return {"cache_dir": tmp_path / "features", "run_dir": tmp_path / "run" / "head"}


def _reused(result) -> list[str]:
    return [note for note in result.notes if "read from the cache" in note or "reused" in note]


def test_two_widths_never_share_cached_features_or_a_saved_head_phase(splits, profile, tmp_path):
    """Issue 26: an alpha 0.5 base after an alpha 0.35 base, same size, same data and folders (both give 1,280
    features, so nothing fails when one is handed the other's)."""
    folders = _shared_folders(tmp_path)
    narrow = fastpath.fit_head_fast(
        lively(random_base(0.35)), splits, profile=profile, patience=None, **folders
    )
    wide = fastpath.fit_head_fast(lively(random_base(0.5)), splits, profile=profile, patience=None, **folders)
    assert (
        narrow.head.input_shape == wide.head.input_shape
    )  # the same feature size: only the key tells them apart
    assert _reused(wide) == []
    assert len(list(folders["cache_dir"].glob("*.npz"))) == 4  # train and validation of each width
    assert wide.resume_key != narrow.resume_key


def test_a_base_whose_weights_changed_never_reuses_features_a_head_phase_or_a_boundary_cache(
    splits, profile, tmp_path
):
    """Issue 26: the same base object before and after its weights change (as fine-tuning changes them)."""
    folders = _shared_folders(tmp_path)
    base = lively(random_base())
    before = fastpath.fit_head_fast(base, splits, profile=profile, patience=None, **folders)
    conv = base.get_layer("Conv_1")
    conv.kernel.assign(conv.kernel * 1.5)
    after = fastpath.fit_head_fast(base, splits, profile=profile, patience=None, **folders)
    assert _reused(after) == []
    assert len(list(folders["cache_dir"].glob("*.npz"))) == 4
    assert after.resume_key != before.resume_key
    kept = fastpath.fit_head_fast(base, splits, profile=profile, patience=None, boundary="block_16")
    conv.kernel.assign(conv.kernel * 1.5)  # changed between the head phase and fine-tuning
    tuned = fastpath.fine_tune_fast(kept, splits, from_layer="block_16", profile=profile, patience=None)
    assert any("boundary cache at block_16" in note and "computed" in note for note in tuned.notes)


@pytest.mark.slow
def test_a_resnet_base_goes_through_fit_head_the_feature_cache_the_fast_path_and_fine_tune(splits, tmp_path):
    """Nothing MobileNet-specific in the way: a ResNet50 (random weights, 32 px) through every training path."""
    profile = get_profile("smoke", image_size=SIZE, batch_size=8, head_epochs=1, fine_tune_epochs=1)
    base = models.build_backbone("resnet50", image_size=SIZE, weights="random", seed=0)
    model = models.build_classifier(base, splits.num_classes)
    models.freeze(base)
    models.compile_classifier(model, 1e-3)
    assert train.fit_head(model, splits, profile=profile).epochs_run == 1
    extractor = features.feature_extractor(base)
    kwargs = dict(data_fingerprint=splits.fingerprint, part="train", cache_dir=tmp_path, progress=False)
    assert features.cached_features(extractor, splits.train, **kwargs).features.shape[-1] == 2048
    assert features.cached_features(extractor, splits.train, **kwargs).from_cache
    head = fastpath.fit_head_fast(base, splits, profile=profile, cache_dir=tmp_path)
    tuned = fastpath.fine_tune_fast(head, splits, profile=profile)  # the record's unfreeze point: conv5
    assert tuned.boundary.startswith("conv5") and tuned.trainable_params > head.trainable_params
    models.unfreeze_from(base, "conv5")
    models.compile_classifier(model, 1e-5)
    assert train.fine_tune(model, splits, profile=profile).epochs_run == 1
