"""tlcourse.models: backbone registry, classifiers, freezing, the trainable report and the mistake checker.

Everything runs on tiny MobileNetV2 (alpha 0.35, 32 px, random weights) models and a few random images.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tlcourse import models  # noqa: E402
from tlcourse.errors import TLCourseError  # noqa: E402

SIZE = 32
CLASSES = 3


def images(n: int = 8, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def labels(n: int = 8) -> np.ndarray:
    return (np.arange(n) % CLASSES).astype("int32")


def tiny_backbone(seed: int = 1):
    return models.build_backbone("mobilenet_v2", alpha=0.35, image_size=SIZE, weights="random", seed=seed)


def head_classifier(seed: int = 1):
    """The correct set-up for the head phase: frozen base, build_classifier, compiled at 1e-3."""
    backbone = tiny_backbone(seed)
    models.freeze(backbone)
    model = models.build_classifier(backbone, CLASSES)
    models.compile_classifier(model, 1e-3, num_classes=CLASSES)
    return backbone, model


def codes(mistakes) -> list[str]:
    return [m.code for m in mistakes]


# ------------------------------------------------------------------------------------------ registry


def test_registry_lists_the_course_backbones_with_cited_accuracy():
    assert set(models.BACKBONES) == {
        "mobilenet_v2",
        "vgg16",
        "resnet50",
        "inception_v3",
        "efficientnet_b0",
        "mobilenet_v3_small",
    }
    for spec in models.BACKBONES.values():
        assert 50 < spec.top1 < 90, spec.name
        assert "keras.io" in spec.citation
        assert spec.native_size in (224, 299)
        assert callable(spec.keras_constructor())
    assert models.BACKBONES["mobilenet_v2"].alphas == (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
    assert models.get_spec("MobileNetV2") is models.BACKBONES["mobilenet_v2"]


@pytest.mark.parametrize("name", list(models.BACKBONES))
def test_preprocessing_layer_matches_keras_preprocess_input_and_reloads_in_safe_mode(name, tmp_path):
    spec = models.BACKBONES[name]
    x = images(4, 8)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, models.preprocessing_layer(name)(inputs))
    ours = np.asarray(model(x))
    if spec.preprocessing == "none":
        np.testing.assert_allclose(ours, x)  # these networks rescale inside themselves
    else:
        np.testing.assert_allclose(ours, spec.preprocess_input()(x.copy()), atol=1e-4)
    lo, hi = spec.input_range
    assert lo - 1e-3 <= ours.min() and ours.max() <= hi + 1e-3
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded(x)), ours)


@pytest.mark.slow
def test_default_unfreeze_points_exist_in_each_backbone():
    for name, spec in models.BACKBONES.items():
        size = max(spec.min_size, 32)
        backbone = models.build_backbone(name, alpha=spec.default_alpha, image_size=size, weights="random")
        count = models.unfreeze_top(backbone, "default")
        assert 0 < count < len(backbone.layers), name
        assert models.spec_of(backbone) is spec


# ------------------------------------------------------------------------------------------ building


def test_random_backbones_are_seeded():
    a, b, c = tiny_backbone(seed=3), tiny_backbone(seed=3), tiny_backbone(seed=4)
    first = a.get_layer("Conv1").kernel.numpy()
    np.testing.assert_array_equal(first, b.get_layer("Conv1").kernel.numpy())
    assert not np.array_equal(first, c.get_layer("Conv1").kernel.numpy())


def test_imagenet_weights_come_from_assets_and_the_notice_prints_once(monkeypatch, tmp_path, capsys):
    from tlcourse import assets

    source = tiny_backbone(seed=7)
    weights_file = tmp_path / "stand_in.weights.h5"
    source.save_weights(weights_file)
    asked = []

    def fake(name, **kwargs):
        asked.append((name, kwargs.get("alpha"), kwargs.get("image_size")))
        return assets.ResolvedFile(weights_file, "mirror", "Note: the 224px file stands in for 32px.")

    monkeypatch.setattr(assets, "backbone_weights", fake)
    built = models.build_backbone("mobilenet_v2", alpha=0.35, image_size=SIZE, weights="imagenet")
    assert asked == [("mobilenet_v2", 0.35, SIZE)]
    for mine, theirs in zip(built.weights, source.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert capsys.readouterr().out.count("stands in") == 1
    assert built._tlcourse_notice == "Note: the 224px file stands in for 32px."


def test_the_stand_in_notice_prints_once_per_process_per_alpha_and_size(monkeypatch, tmp_path, capsys):
    from tlcourse import assets

    weights_file = tmp_path / "stand_in.weights.h5"
    tiny_backbone(seed=7).save_weights(weights_file)

    def fake(name, **kwargs):
        notice = (
            f"Note: no alpha {kwargs.get('alpha')} weights for {kwargs.get('image_size')}px; using 224px."
        )
        return assets.ResolvedFile(weights_file, "mirror", notice)

    monkeypatch.setattr(assets, "backbone_weights", fake)
    for _ in range(2):
        built = models.build_backbone("mobilenet_v2", alpha=0.35, image_size=SIZE, weights="imagenet")
    models.imagenet_weights("mobilenet_v2", alpha=0.35, image_size=SIZE)
    printed = capsys.readouterr().out
    assert printed.count(f"for {SIZE}px") == 1 and built._tlcourse_notice in printed
    models.imagenet_weights("mobilenet_v2", alpha=0.35, image_size=SIZE * 2)  # another size: its own notice
    models.imagenet_weights("mobilenet_v2", alpha=0.35, image_size=SIZE * 2)
    assert capsys.readouterr().out.count(f"for {SIZE * 2}px") == 1


def test_mirror_imagenet_weights_load_at_another_size(mirror, capsys):
    backbone = models.build_backbone(
        "mobilenet_v2", alpha=0.35, image_size=96, weights="imagenet", mirror=mirror
    )
    assert backbone.count_params() == 410_208
    assert "224" in capsys.readouterr().out  # the 224 px file stood in, and we said so
    # Real weights are not the initialiser's: BatchNorm moving variances are far from 1.
    assert not np.allclose(backbone.get_layer("bn_Conv1").moving_variance.numpy(), 1.0)


def test_a_missing_weights_path_is_a_clear_error(tmp_path):
    with pytest.raises(TLCourseError, match="does not exist"):
        models.build_backbone("mobilenet_v2", image_size=SIZE, weights=str(tmp_path / "nope.weights.h5"))
    with pytest.raises(TLCourseError, match="Unknown backbone"):
        models.build_backbone("alexnet", image_size=SIZE, weights="random")


@pytest.mark.parametrize("pooling", ["avg", "max", "flatten"])
def test_classifier_takes_raw_pixels_and_gives_logits(pooling):
    backbone = tiny_backbone()
    model = models.build_classifier(backbone, 5, pooling=pooling, dropout=0.0)
    out = np.asarray(model(images(2)))
    assert out.shape == (2, 5)
    assert not np.allclose(out.sum(axis=1), 1.0)  # logits, not probabilities
    assert model.get_layer("logits").units == 5


def test_binary_classifier_has_one_logit_and_a_matching_loss():
    backbone = tiny_backbone()
    models.freeze(backbone)
    binary = models.build_classifier(backbone, 2, binary=True)
    models.compile_classifier(binary, 1e-3, num_classes=2)
    assert binary.output_shape == (None, 1)
    assert isinstance(binary.loss, keras.losses.BinaryCrossentropy) and binary.loss.from_logits
    x, y = images(4), np.array([0, 1, 0, 1])
    logits = np.asarray(binary(x))[:, 0]
    expected = float(np.mean((logits > 0).astype(int) == y))
    assert binary.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] == pytest.approx(expected)


def test_head_for_feature_maps_pools_and_for_vectors_does_not():
    assert models.build_head((3, 3, 16), 4).output_shape == (None, 4)
    assert models.build_head(16, 4, dropout=0).output_shape == (None, 4)
    with pytest.raises(TLCourseError):
        models.build_head(16, 4, pooling="avg")


# ------------------------------------------------------------------------------------------ freezing


def test_frozen_backbone_weights_are_unchanged_after_fitting_the_head():
    backbone, model = head_classifier()
    before = models.snapshot_weights(model)
    base_before = [w.numpy().copy() for w in backbone.weights]
    head_before = model.get_layer("logits").kernel.numpy().copy()
    model.fit(images(8), labels(8), epochs=2, batch_size=4, verbose=0)
    for old, new in zip(base_before, backbone.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    assert np.abs(model.get_layer("logits").kernel.numpy() - head_before).max() > 0  # the head did learn
    assert models.check_mistakes(model, before_weights=before, sample_images=images(4)) == []


def test_unfreeze_top_by_block_name_makes_exactly_those_layers_trainable_and_keeps_batchnorm_frozen():
    backbone, model = head_classifier()
    start = [layer.name for layer in backbone.layers].index("block_13_expand")
    count = models.unfreeze_top(backbone, "block_13")
    expected = {
        layer.name
        for layer in backbone.layers[start:]
        if not isinstance(layer, keras.layers.BatchNormalization)
    }
    assert {layer.name for layer in backbone.layers if layer.trainable} == expected
    assert count == len(expected)
    assert all(not layer.trainable for layer in backbone.layers[:start])
    report = models.trainable_report(model)
    assert report.batchnorm and report.batchnorm_in_inference
    with_weights = {layer.name for layer in backbone.layers[start:] if layer.trainable_weights}
    assert report.trainable_layers == len(with_weights) + 1  # plus the Dense head


def test_unfreeze_top_by_count_and_the_tutorial_index():
    backbone = tiny_backbone()
    models.freeze(backbone)
    models.unfreeze_top(backbone, 4)
    top = backbone.layers[-4:]
    assert [layer.trainable for layer in backbone.layers[-4:]] == [
        not isinstance(layer, keras.layers.BatchNormalization) for layer in top
    ]
    assert not any(layer.trainable for layer in backbone.layers[:-4])
    models.unfreeze_from(backbone, 100, freeze_batchnorm=False)
    assert [i for i, layer in enumerate(backbone.layers) if layer.trainable] == list(
        range(100, len(backbone.layers))
    )


def test_report_counts_add_up_to_count_params():
    backbone, model = head_classifier()
    for step in ("frozen", "top", "all"):
        if step == "top":
            models.unfreeze_top(backbone, "block_15")
        if step == "all":
            models.unfreeze_top(backbone, len(backbone.layers))
        report = models.trainable_report(model)
        assert report.trainable_params + report.frozen_params == model.count_params() == report.total_params
        expected = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert report.trainable_params == expected
    assert report.trainable_params > models.trainable_report(head_classifier()[1]).trainable_params
    text = str(report)
    assert "trainable parameters" in text and f"{report.trainable_params:,}" in text
    json.dumps(report.to_dict())


def test_report_tells_when_a_recompile_is_needed():
    backbone, model = head_classifier()
    assert models.trainable_report(model).recompiled
    models.unfreeze_top(backbone, "block_16")
    report = models.trainable_report(model)
    assert report.needs_recompile and "RECOMPILE" in str(report)
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    assert not models.trainable_report(model).needs_recompile
    # A plain model.compile counts too.
    models.freeze(backbone)
    assert models.trainable_report(model).needs_recompile
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert not models.trainable_report(model).needs_recompile


# ------------------------------------------------------------------------------------------ mistakes


def test_correct_head_and_fine_tune_setups_raise_no_mistakes():
    backbone, model = head_classifier()
    assert models.check_mistakes(model, sample_images=images(4), phase="head") == []
    models.unfreeze_top(backbone, "block_16")
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    before = models.snapshot_weights(model)
    model.fit(images(8), labels(8), epochs=1, batch_size=4, verbose=0)
    found = models.check_mistakes(model, sample_images=images(4), before_weights=before, phase="fine_tune")
    assert found == []


def test_base_called_without_training_false_is_caught():
    backbone = tiny_backbone()
    models.freeze(backbone)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = models.preprocessing_layer("mobilenet_v2")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(backbone(x))  # no training=False
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(x))
    found = models.check_mistakes(model)
    assert codes(found) == ["base_training_mode"]
    assert "training=False" in found[0].message
    assert "base_training_mode" not in codes(
        models.check_mistakes(models.build_classifier(backbone, CLASSES))
    )


def test_trainable_batchnorm_is_caught_because_fit_overrides_training_false():
    backbone, model = head_classifier()
    models.unfreeze_top(backbone, "block_16", freeze_batchnorm=False)  # the TF tutorial's way
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    found = models.check_mistakes(model)
    assert codes(found) == ["batchnorm_training_mode"]
    assert not models.trainable_report(model).batchnorm_in_inference
    # The rule describes what really happens: a training step moves the statistics of a trainable BatchNorm.
    bn = backbone.get_layer("block_16_expand_BN")
    before = bn.moving_mean.numpy().copy()
    model(images(8), training=True)  # what each fit step does
    assert models.outer_training_overrides_nested() == (not np.array_equal(before, bn.moving_mean.numpy()))


def test_runtime_check_catches_batchnorm_training_in_a_subclassed_model():
    class Wrapped(keras.Model):
        def __init__(self, base):
            super().__init__()
            self.base = base
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.out = keras.layers.Dense(CLASSES)

        def call(self, x, training=None):
            return self.out(self.pool(self.base(x / 127.5 - 1.0, training=training)))

    backbone = tiny_backbone()
    model = Wrapped(backbone)
    model(images(2))
    sample = images(4)
    stats = backbone.get_layer("bn_Conv1").moving_mean.numpy().copy()
    assert codes(models.check_mistakes(model, sample_images=sample)) == ["base_training_mode"]
    np.testing.assert_array_equal(stats, backbone.get_layer("bn_Conv1").moving_mean.numpy())  # undone
    models.freeze(backbone)
    assert "base_training_mode" not in codes(models.check_mistakes(model, sample_images=sample))


def test_frozen_weights_that_changed_after_fit_are_caught():
    backbone, model = head_classifier()
    models.unfreeze_top(backbone, "block_16")
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    model.fit(images(8), labels(8), epochs=1, verbose=0)
    models.freeze(backbone)  # ...and forget to recompile: fit keeps training the old set
    before = models.snapshot_weights(model)
    model.fit(images(8), labels(8), epochs=1, verbose=0)
    found = models.check_mistakes(model, before_weights=before)
    assert "frozen_weights_changed" in codes(found)
    assert "block_16" in found[codes(found).index("frozen_weights_changed")].message
    # The quiet case (recompiled, frozen weights untouched) is test_frozen_backbone_weights_are_unchanged...


@pytest.mark.parametrize("scale", ["zero_one", "minus_one_one"])
def test_already_scaled_inputs_to_a_raw_pixel_model_are_caught(scale):
    _, model = head_classifier()
    raw = images(6)
    sample = raw / 255.0 if scale == "zero_one" else raw / 127.5 - 1.0
    found = models.check_mistakes(model, sample_images=sample)
    assert codes(found) == ["preprocessing_mismatch"]
    assert "[0, 255]" in found[0].message
    assert models.check_mistakes(model, sample_images=raw) == []


def test_wrong_scaling_inside_the_model_is_caught():
    backbone = tiny_backbone()
    models.freeze(backbone)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)  # [0, 1] into a [-1, 1] network
    x = keras.layers.GlobalAveragePooling2D()(backbone(x, training=False))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(x))
    assert codes(models.check_mistakes(model, sample_images=images(6))) == ["preprocessing_mismatch"]
    # A bare backbone fed raw pixels is caught too; fed preprocessed pixels it is fine.
    assert codes(models.check_mistakes(backbone, sample_images=images(6))) == ["preprocessing_mismatch"]
    assert models.check_mistakes(backbone, sample_images=images(6) / 127.5 - 1.0) == []


def test_not_recompiling_after_unfreezing_is_caught():
    backbone, model = head_classifier()
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    models.unfreeze_top(backbone, "block_16")
    assert "not_recompiled" in codes(models.check_mistakes(model))
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    assert "not_recompiled" not in codes(models.check_mistakes(model))


def test_a_learning_rate_too_high_for_fine_tuning_is_caught():
    backbone, model = head_classifier()
    assert models.check_mistakes(model) == []  # 1e-3 is right for the head alone
    models.unfreeze_top(backbone, "block_13")
    models.compile_classifier(model, 1e-3, num_classes=CLASSES)
    found = models.check_mistakes(model)
    assert codes(found) == ["learning_rate_too_high"]
    assert "0.001" in found[0].message
    assert codes(models.check_mistakes(model, learning_rate=1e-5)) == []
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    assert models.check_mistakes(model) == []


def test_an_unfrozen_base_in_the_head_phase_is_caught():
    backbone, model = head_classifier()
    models.unfreeze_top(backbone, 10)
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    assert codes(models.check_mistakes(model, phase="head")) == ["base_not_frozen"]
    assert models.check_mistakes(model, phase="fine_tune") == []


def test_a_saved_classifier_loads_in_safe_mode_and_still_passes_the_checks(tmp_path):
    backbone, model = head_classifier()
    from tlcourse import export

    path = export.save_keras(model, tmp_path / "clf.keras")  # compiled, never trained: see save_keras
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(images(2))), np.asarray(model(images(2))), atol=1e-5)
    assert models.check_mistakes(loaded, sample_images=images(4), learning_rate=1e-3) == []


def test_one_layer_resolver_serves_unfreezing_fine_tuning_and_the_explorer():
    from tlcourse import train, widgets

    backbone = models.build_backbone(
        "mobilenet_v2", alpha=0.35, image_size=96, weights="random", verbose=False
    )
    names = [layer.name for layer in backbone.layers]
    count = len(names)
    for where in ("block_13", "block_1", "block_16_project", 100, "100", -5):
        index = models.layer_index(backbone, where)
        assert train.resolve_layer(backbone, where) == index
        assert widgets.unfreeze_summary(backbone, where)["boundary_layer"] == names[index]
    assert names[models.layer_index(backbone, "block_1")].startswith("block_1_")  # not block_10 or block_11
    assert models.layer_index(backbone, count) == count  # unfreeze nothing
    with pytest.raises(TLCourseError):
        train.resolve_layer(backbone, count)  # ...which is no boundary to fine-tune from
    with pytest.raises(TLCourseError):
        models.layer_index(backbone, True)


def test_imagenet_weights_gives_a_path_keras_applications_loads_at_another_size(capsys):
    import keras

    path = models.imagenet_weights("mobilenet_v2", alpha=0.35, image_size=96, download=False)
    assert path is not None and path.endswith(".h5")
    notice = capsys.readouterr().out
    assert notice.count("\n") == 1 and "224px" in notice  # one short notice, once
    base = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=path
    )
    reference = models.build_backbone("mobilenet_v2", alpha=0.35, image_size=96, verbose=False)
    for a, b in zip(base.get_weights()[:3], reference.get_weights()[:3], strict=True):
        np.testing.assert_array_equal(a, b)
