"""Tests for tlcourse.shift (lesson 07): corruptions, shifted datasets and few-shot splits."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tlcourse import data, shift
from tlcourse.data.real import synthetic_stand_in
from tlcourse.errors import TLCourseError


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.uniform(0, 255, size=(5, 24, 24, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_splits() -> data.DatasetSplits:
    return data.synthetic_splits(
        num_classes=3, per_class=6, image_size=16, validation_per_class=2, batch_size=4
    )


@pytest.mark.parametrize("kind", shift.SHIFTS)
def test_severity_zero_returns_the_images_unchanged(kind, batch):
    out = shift.apply_shift(batch, kind, 0.0, seed=1)
    np.testing.assert_array_equal(out, batch)
    assert out is not batch


@pytest.mark.parametrize("kind", shift.SHIFTS)
def test_shifts_keep_shape_dtype_and_range_and_change_the_images(kind, batch):
    out = shift.apply_shift(batch, kind, 1.0, seed=0)
    assert out.shape == batch.shape
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert np.abs(out - batch).mean() > 1.0


@pytest.mark.parametrize("kind", shift.SHIFTS)
def test_same_seed_gives_the_same_result_also_over_several_chunks(kind, batch):
    first = shift.apply_shift(batch, kind, 0.7, seed=5)
    np.testing.assert_array_equal(first, shift.apply_shift(batch, kind, 0.7, seed=5))
    many = np.concatenate([batch] * 30)  # more than one CHUNK
    whole = shift.apply_shift(many, kind, 0.7, seed=5)
    np.testing.assert_array_equal(whole, shift.apply_shift(many, kind, 0.7, seed=5))
    assert whole.shape == many.shape


def test_different_seeds_give_different_noise(batch):
    a = shift.apply_shift(batch, "night", 1.0, seed=0)
    b = shift.apply_shift(batch, "night", 1.0, seed=1)
    assert not np.array_equal(a, b)


def test_a_single_image_keeps_its_shape(batch):
    out = shift.apply_shift(batch[0], "blur", 1.0)
    assert out.shape == batch[0].shape


def test_night_gets_darker_and_bluer_as_severity_grows(batch):
    levels = [
        shift.mean_brightness(shift.apply_shift(batch, "night", s, seed=0)) for s in (0, 0.25, 0.5, 1, 1.5, 2)
    ]
    assert all(later < earlier for earlier, later in itertools.pairwise(levels))
    night = shift.apply_shift(batch, "night", 1.0, seed=0)
    red, blue = night[..., 0].mean(), night[..., 2].mean()
    assert blue > red  # a cool cast, where the input has equal channel means on average
    assert abs(batch[..., 0].mean() - batch[..., 2].mean()) < 0.1 * (blue - red) + 5


def test_night_noise_is_relatively_larger_in_the_dark():
    flat = np.full((2, 32, 32, 3), 180.0, np.float32)
    spread = [shift.apply_shift(flat, "night", s, seed=0) for s in (0.3, 1.5)]
    relative = [x.std() / x.mean() for x in spread]
    assert relative[1] > relative[0]


def test_blur_removes_fine_detail(batch):
    out = shift.apply_shift(batch, "blur", 1.0)
    assert np.abs(np.diff(out, axis=2)).mean() < 0.5 * np.abs(np.diff(batch, axis=2)).mean()


def test_contrast_and_fog_shrink_the_spread_of_values(batch):
    for kind in ("contrast", "fog"):
        assert shift.apply_shift(batch, kind, 1.0).std() < 0.7 * batch.std()


def test_jpeg_quality_falls_with_severity():
    qualities = [shift.jpeg_quality(s) for s in (0.1, 0.5, 1.0, 2.0)]
    assert qualities == sorted(qualities, reverse=True) and qualities[-1] >= 1


def test_bad_arguments_raise_a_course_error(batch):
    with pytest.raises(TLCourseError, match="Unknown shift"):
        shift.apply_shift(batch, "rain")
    with pytest.raises(TLCourseError, match="severity"):
        shift.apply_shift(batch, "night", -0.5)
    with pytest.raises(TLCourseError, match="shaped"):
        shift.apply_shift(batch[..., :2], "night")


def test_shifted_splits_keep_classes_counts_and_order_with_a_new_fingerprint(tiny_splits):
    shifted = shift.shifted_splits(tiny_splits, "night", 1.0, seed=0)
    assert shifted.class_names == tiny_splits.class_names
    assert shifted.train_class_counts == tiny_splits.train_class_counts
    assert shifted.validation_count == tiny_splits.validation_count
    assert shifted.fingerprint != tiny_splits.fingerprint
    assert shift.shifted_splits(tiny_splits, "night", 0.5).fingerprint != shifted.fingerprint
    assert shift.shifted_splits(tiny_splits, "blur", 1.0).fingerprint != shifted.fingerprint
    assert shift.shifted_splits(tiny_splits, "night", 1.0, seed=0).fingerprint == shifted.fingerprint
    src_x, src_y = shift.split_arrays(tiny_splits, "validation")
    dst_x, dst_y = shift.split_arrays(shifted, "validation")
    np.testing.assert_array_equal(src_y, dst_y)
    assert dst_x.mean() < 0.6 * src_x.mean()
    images, labels = next(iter(shifted.train))
    assert images.dtype.name == "float32" and labels.dtype.name == "int32"


def test_shifted_validation_matches_apply_shift_with_the_same_seed(tiny_splits):
    shifted = shift.shifted_splits(tiny_splits, "night", 0.8, seed=4)
    images, _ = shift.split_arrays(tiny_splits, "validation")
    expected = np.rint(shift.apply_shift(images, "night", 0.8, seed=4))
    np.testing.assert_array_equal(shift.split_arrays(shifted, "validation")[0], expected)


def test_shifted_splits_are_deterministic_even_though_train_reshuffles(tiny_splits):
    a = shift.split_arrays(shift.shifted_splits(tiny_splits, "noise", 1.0, seed=2), "train")
    b = shift.split_arrays(shift.shifted_splits(tiny_splits, "noise", 1.0, seed=2), "train")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_few_shot_is_stratified_disjoint_and_complete(tiny_splits):
    few, rest = shift.few_shot(tiny_splits, 2, seed=0)
    assert few.train_class_counts == {name: 2 for name in tiny_splits.class_names}
    assert few.train_count + rest.train_count == tiny_splits.train_count
    few_x, _ = shift.split_arrays(few, "train")
    rest_x, _ = shift.split_arrays(rest, "train")
    all_x, _ = shift.split_arrays(tiny_splits, "train")
    key = lambda a: {image.tobytes() for image in a}  # noqa: E731
    assert not key(few_x) & key(rest_x)
    assert key(few_x) | key(rest_x) == key(all_x)
    assert few.validation_count == tiny_splits.validation_count
    assert few.fingerprint not in (rest.fingerprint, tiny_splits.fingerprint)
    again, _ = shift.few_shot(tiny_splits, 2, seed=0)
    np.testing.assert_array_equal(shift.split_arrays(again, "train")[0], few_x)
    other, _ = shift.few_shot(tiny_splits, 2, seed=1)
    assert not np.array_equal(shift.split_arrays(other, "train")[0], few_x)


def test_few_shot_refuses_more_images_than_a_class_has(tiny_splits):
    with pytest.raises(TLCourseError, match="fewer"):
        shift.few_shot(tiny_splits, 7)
    with pytest.raises(TLCourseError, match="at least 1"):
        shift.few_shot_indices([0, 1], 0)


def test_show_shifts_draws_one_panel_per_kind_and_severity(batch):
    fig = shift.show_shifts(batch[:1], kinds=("night", "fog"), severities=(0, 1))
    assert len(fig.axes) == 4


def test_accuracy_drop_is_source_minus_target_with_an_interval_around_it():
    source_true = np.zeros(40, dtype=int)
    target_true = np.zeros(60, dtype=int)
    source_pred = np.where(np.arange(40) < 36, 0, 1)  # 0.9 right
    target_pred = np.where(np.arange(60) < 30, 0, 1)  # 0.5 right
    drop, low, high = shift.accuracy_drop(source_true, source_pred, target_true, target_pred, seed=1)
    assert drop == pytest.approx(0.4)
    assert 0.0 < low < drop < high
    again = shift.accuracy_drop(source_true, source_pred, target_true, target_pred, seed=1)
    scores = np.eye(2)[target_pred]  # score rows count like their argmax
    as_scores = shift.accuracy_drop(source_true, source_pred, target_true, scores, seed=1)
    assert again == as_scores == (drop, low, high)


def test_accuracy_drop_of_a_model_as_good_on_both_sets_contains_zero():
    truth = np.arange(100) % 4
    right_half = np.where(np.arange(100) % 2 == 0, truth, (truth + 1) % 4)
    _, low, high = shift.accuracy_drop(truth, right_half, truth[:80], right_half[:80], seed=0)
    assert low < 0 < high
    with pytest.raises(TLCourseError, match="one prediction per label"):
        shift.accuracy_drop(truth, right_half[:5], truth, right_half)


def _tiny_batchnorm_base():
    import keras

    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    base = keras.Model(inputs, keras.layers.ReLU()(x), name="tiny_base")
    base.trainable = False
    return base


def test_reestimate_batchnorm_sets_the_statistics_of_all_target_images_and_keeps_the_base_frozen():
    base = _tiny_batchnorm_base()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(10, 6, 6, 3)).astype(np.float32)
    layer = base.get_layer("bn")
    momentum = layer.momentum
    count = shift.reestimate_batchnorm(base, images, preprocess=lambda x: x / 255.0, batch_size=4)
    conv = np.asarray(base.get_layer("conv")(images / 255.0)).reshape(-1, 4)
    np.testing.assert_allclose(np.asarray(layer.moving_mean), conv.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(layer.moving_variance), conv.var(axis=0), rtol=1e-3, atol=1e-5)
    assert count == 1 and layer.momentum == momentum and not layer.trainable and not base.trainable_weights


def test_reestimate_batchnorm_needs_to_know_the_preprocessing_and_a_batchnorm_layer():
    import keras

    with pytest.raises(TLCourseError, match="preprocess="):
        shift.reestimate_batchnorm(_tiny_batchnorm_base(), np.zeros((2, 6, 6, 3)))
    plain = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(2, 3)], name="plain")
    with pytest.raises(TLCourseError, match="no BatchNorm layer"):
        shift.reestimate_batchnorm(plain, np.zeros((2, 6, 6, 3)), preprocess=lambda x: x)


def test_reestimate_batchnorm_uses_a_course_backbones_own_preprocessing_by_default():
    from tlcourse import models

    images = np.random.default_rng(1).uniform(0, 255, size=(6, 32, 32, 3)).astype(np.float32)
    base = models.build_backbone("mobilenet_v2", alpha=0.35, image_size=32, weights="random", seed=0)
    shift.reestimate_batchnorm(base, images, batch_size=4)  # MobileNetV2's own: pixels / 127.5 - 1
    conv = np.asarray(base.get_layer("Conv1")(images / 127.5 - 1.0))
    moving_mean = np.asarray(base.get_layer("bn_Conv1").moving_mean)
    np.testing.assert_allclose(
        moving_mean, conv.reshape(-1, conv.shape[-1]).mean(axis=0), rtol=1e-4, atol=1e-5
    )


def test_reestimate_batchnorm_restores_the_layers_when_the_images_do_not_fit():
    base = _tiny_batchnorm_base()
    layer = base.get_layer("bn")
    before = (layer.momentum, layer.trainable, np.asarray(layer.moving_mean).copy())
    with pytest.raises(Exception):  # noqa: B017 - whatever Keras raises for a wrong input shape
        shift.reestimate_batchnorm(base, np.zeros((2, 9, 9, 1)), preprocess=lambda x: x)
    assert (layer.momentum, layer.trainable) == before[:2] and not base.trainable_weights
    np.testing.assert_array_equal(np.asarray(layer.moving_mean), before[2])


def test_split_arrays_reads_a_test_split_in_order(tiny_splits):
    with pytest.raises(TLCourseError, match="no test split"):
        shift.split_arrays(tiny_splits, "test")
    splits = synthetic_stand_in("toy", ("a", "b"), {"train": 3, "validation": 2, "test": 4}, image_size=8)
    images, labels = shift.split_arrays(splits, "test")
    assert images.dtype == np.uint8 and images.shape == (8, 8, 8, 3)
    assert np.array_equal(labels, np.concatenate([y for _, y in splits.test]))
