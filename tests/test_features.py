"""tlcourse.features: extraction, the on-disk cache (reuse, invalidation, atomic writes), heads and joining."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from tlcourse import (  # noqa: E402
    diagnose,  # noqa: E402
    features,
    models,
)
from tlcourse.backbones import identity  # noqa: E402
from tlcourse.errors import TLCourseError  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def backbone():
    """A random MobileNetV2 whose BatchNorm statistics are set from one batch.

    Freshly initialised, its activations shrink block after block (features ~1e-11); with statistics
    measured on real inputs the features are O(1), so the tests below compare meaningful numbers.
    """
    net = models.build_backbone("mobilenet_v2", alpha=0.35, image_size=SIZE, weights="random", seed=1)
    batchnorms = [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batchnorms:
        layer.momentum = 0.0
    sample = np.random.default_rng(5).uniform(-1, 1, (16, SIZE, SIZE, 3)).astype("float32")
    net(sample, training=True)
    for layer in batchnorms:
        layer.momentum = 0.99
    return net


@pytest.fixture(scope="module")
def extractor(backbone):
    return features.feature_extractor(backbone)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (10, SIZE, SIZE, 3)).astype("float32")
    y = (np.arange(10) % 2).astype("int32")
    return x, y


def as_dataset(data, batch_size=4):
    return tf.data.Dataset.from_tensor_slices(data).batch(batch_size)


def test_extract_features_keeps_order_and_labels_for_datasets_and_arrays(extractor, data):
    fs = features.extract_features(extractor, as_dataset(data), progress=False)
    assert fs.features.std() > 1e-3  # meaningful numbers, not a dead network
    assert fs.features.shape == (10, extractor.output_shape[-1])
    np.testing.assert_array_equal(fs.labels, data[1])
    assert fs.labels.dtype == np.int32 and not fs.from_cache and fs.seconds > 0
    direct = np.asarray(extractor(data[0], training=False))
    np.testing.assert_allclose(fs.features, direct, rtol=1e-4, atol=1e-4)
    from_arrays = features.extract_features(extractor, data, progress=False, batch_size=3)
    np.testing.assert_allclose(from_arrays.features, fs.features, rtol=1e-4, atol=1e-4)


def test_the_cache_is_reused_without_running_the_backbone(extractor, data, tmp_path, monkeypatch):
    first = features.cached_features(
        extractor, as_dataset(data), part="train", data_fingerprint="abc", cache_dir=tmp_path, progress=False
    )
    assert not first.from_cache and first.path.is_file()

    def no_extraction(*args, **kwargs):
        raise AssertionError("extract_features must not run when the cache holds the features")

    monkeypatch.setattr(features, "extract_features", no_extraction)
    second = features.cached_features(
        extractor, as_dataset(data), part="train", data_fingerprint="abc", cache_dir=tmp_path, progress=False
    )
    assert second.from_cache and second.key == first.key
    np.testing.assert_array_equal(second.features, first.features)
    np.testing.assert_array_equal(second.labels, first.labels)
    assert second.seconds < first.seconds  # reading the file, not running the base (the key's digest aside)


def test_a_changed_fingerprint_or_part_recomputes(extractor, data, tmp_path, monkeypatch):
    calls = []
    real = features.extract_features

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "extract_features", counting)
    kwargs = dict(part="train", cache_dir=tmp_path, progress=False)
    a = features.cached_features(extractor, as_dataset(data), data_fingerprint="v1", **kwargs)
    b = features.cached_features(extractor, as_dataset(data), data_fingerprint="v1", **kwargs)
    c = features.cached_features(extractor, as_dataset(data), data_fingerprint="v2", **kwargs)
    d = features.cached_features(
        extractor, as_dataset(data), data_fingerprint="v2", **{**kwargs, "part": "validation"}
    )
    assert [a.from_cache, b.from_cache, c.from_cache, d.from_cache] == [False, True, False, False]
    assert len(calls) == 3
    assert len({a.key, c.key, d.key}) == 3


def test_a_killed_write_leaves_no_half_file_and_the_old_file_intact(extractor, data, tmp_path, monkeypatch):
    kwargs = dict(part="train", cache_dir=tmp_path, progress=False)
    good = features.cached_features(extractor, as_dataset(data), data_fingerprint="v1", **kwargs)
    original = good.path.read_bytes()
    real_savez = np.savez

    def dies_half_way(file, **arrays):
        real_savez(file, **arrays)
        file.truncate(100)
        raise KeyboardInterrupt("kernel killed while writing")

    monkeypatch.setattr(features.np, "savez", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        features.cached_features(extractor, as_dataset(data), data_fingerprint="v1", refresh=True, **kwargs)
    with pytest.raises(KeyboardInterrupt):
        features.cached_features(extractor, as_dataset(data), data_fingerprint="v9", **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.path.name]  # no temp files, no v9 file
    assert good.path.read_bytes() == original
    monkeypatch.setattr(features.np, "savez", real_savez)
    assert features.cached_features(extractor, as_dataset(data), data_fingerprint="v1", **kwargs).from_cache


def test_a_corrupt_cache_file_is_recomputed(extractor, data, tmp_path):
    kwargs = dict(part="train", data_fingerprint="v1", cache_dir=tmp_path, progress=False)
    first = features.cached_features(extractor, as_dataset(data), **kwargs)
    first.path.write_bytes(b"not an npz")
    again = features.cached_features(extractor, as_dataset(data), **kwargs)
    assert not again.from_cache
    np.testing.assert_allclose(again.features, first.features, rtol=1e-4, atol=1e-4)


def test_augmented_passes_are_stored_and_differ_from_the_clean_features(extractor, data, tmp_path):
    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=3)])
    kwargs = dict(part="train", data_fingerprint="v1", cache_dir=tmp_path, progress=False)
    fs = features.cached_features(
        extractor, as_dataset(data), augmented_passes=2, augmentation=augmentation, **kwargs
    )
    assert fs.augmented_features.shape == (2,) + fs.features.shape
    np.testing.assert_array_equal(fs.augmented_labels, np.stack([data[1], data[1]]))
    assert not np.allclose(fs.augmented_features[0], fs.features)
    again = features.cached_features(
        extractor, as_dataset(data), augmented_passes=2, augmentation=augmentation, **kwargs
    )
    assert again.from_cache
    np.testing.assert_array_equal(again.augmented_features, fs.augmented_features)
    with pytest.raises(TLCourseError):
        features.cached_features(extractor, as_dataset(data), augmented_passes=1, **kwargs)


def test_the_key_is_read_from_the_model_another_width_pooling_or_weights_give_another(backbone, extractor):
    def key(model):
        return features.cache_key(identity(features.feature_extractor(model)), "v1", part="train")

    assert key(backbone) == features.cache_key(identity(extractor), "v1", part="train")  # a rebuild: the same
    wider = models.build_backbone("mobilenet_v2", alpha=0.5, image_size=SIZE, weights="random", seed=1)
    assert key(wider) != key(backbone)
    pooled_max = features.feature_extractor(backbone, pooling="max")
    assert features.cache_key(identity(pooled_max), "v1", part="train") != key(backbone)
    twin = keras.models.clone_model(backbone)
    twin.set_weights(backbone.get_weights())
    assert key(twin) == key(backbone)  # the same weights in another object
    kernel = twin.get_layer("Conv_1").kernel
    kernel.assign(kernel + 1e-6)  # one weight array moves a little
    assert key(twin) != key(backbone)


def test_the_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TLCOURSE_CACHE", str(tmp_path))
    assert features.default_cache_dir() == tmp_path / "features"
    monkeypatch.delenv("TLCOURSE_CACHE")
    assert features.default_cache_dir().parts[-3:] == (".cache", "tlcourse", "features")


def test_joined_model_predicts_exactly_what_the_head_predicts_on_features(backbone, extractor, data):
    fs = features.extract_features(extractor, data, progress=False)
    head, history = features.train_head_on_features(
        fs, val_features=fs, num_classes=2, epochs=3, lr=1e-2, batch_size=4
    )
    assert len(history.history["val_accuracy"]) == 3
    assert history.history["loss"][-1] < history.history["loss"][0]
    joined = features.join_head(backbone, head)
    via_head = np.asarray(head.predict(fs.features, verbose=0))
    end_to_end = np.asarray(joined.predict(data[0], verbose=0))
    np.testing.assert_allclose(end_to_end, via_head, rtol=1e-4, atol=1e-4)
    assert joined.input_shape == (None, SIZE, SIZE, 3)
    assert diagnose.check_mistakes(joined, sample_images=data[0], learning_rate=1e-3) == []


def test_a_head_trained_on_another_backbone_does_not_join(backbone):
    head = models.build_head((7,), 2)
    with pytest.raises(TLCourseError, match="features of shape"):
        features.join_head(backbone, head)


def test_a_head_on_features_takes_callbacks_for_one_line_per_epoch(capsys):
    from tlcourse import progress

    x = np.random.default_rng(0).normal(size=(12, 4)).astype("float32")
    y = np.arange(12) % 2
    _, history = features.train_head_on_features(
        x,
        y,
        val_features=x,
        val_labels=y,
        num_classes=2,
        epochs=3,
        patience=5,
        callbacks=[progress.epoch_lines("head")],
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("head epoch")]
    assert len(lines) == len(history.history["loss"]) == 3 and lines[-1].startswith("head epoch 3/3")
