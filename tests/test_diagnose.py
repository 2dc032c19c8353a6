"""tlcourse.diagnose: the trainable report, weight snapshots and the mistake checker.

Everything runs on tiny MobileNetV2 (alpha 0.35, 32 px, random weights) models and a few random images.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tinymodels import CLASSES, SIZE, codes, head_classifier, images, labels, tiny_backbone  # noqa: E402

from tlcourse import diagnose, layermodes, models  # noqa: E402


def test_frozen_backbone_weights_are_unchanged_after_fitting_the_head():
    backbone, model = head_classifier()
    before = diagnose.snapshot_weights(model)
    base_before = [w.numpy().copy() for w in backbone.weights]
    head_before = model.get_layer("logits").kernel.numpy().copy()
    model.fit(images(8), labels(8), epochs=2, batch_size=4, verbose=0)
    for old, new in zip(base_before, backbone.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())
    assert np.abs(model.get_layer("logits").kernel.numpy() - head_before).max() > 0  # the head did learn
    assert diagnose.check_mistakes(model, before_weights=before, sample_images=images(4)) == []


def test_report_counts_add_up_to_count_params():
    backbone, model = head_classifier()
    for step in ("frozen", "top", "all"):
        if step == "top":
            models.unfreeze_top(backbone, "block_15")
        if step == "all":
            models.unfreeze_top(backbone, len(backbone.layers))
        report = diagnose.trainable_report(model)
        assert report.trainable_params + report.frozen_params == model.count_params() == report.total_params
        expected = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert report.trainable_params == expected
    assert report.trainable_params > diagnose.trainable_report(head_classifier()[1]).trainable_params
    text = str(report)
    assert "trainable parameters" in text and f"{report.trainable_params:,}" in text
    json.dumps(report.to_dict())


def test_report_tells_when_a_recompile_is_needed():
    backbone, model = head_classifier()
    assert diagnose.trainable_report(model).recompiled
    models.unfreeze_top(backbone, "block_16")
    report = diagnose.trainable_report(model)
    assert report.needs_recompile and "RECOMPILE" in str(report)
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    assert not diagnose.trainable_report(model).needs_recompile
    # A plain model.compile counts too.
    models.freeze(backbone)
    assert diagnose.trainable_report(model).needs_recompile
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert not diagnose.trainable_report(model).needs_recompile


# ------------------------------------------------------------------------------------------ mistakes


def test_correct_head_and_fine_tune_setups_raise_no_mistakes():
    backbone, model = head_classifier()
    assert diagnose.check_mistakes(model, sample_images=images(4), phase="head") == []
    models.unfreeze_top(backbone, "block_16")
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    before = diagnose.snapshot_weights(model)
    model.fit(images(8), labels(8), epochs=1, batch_size=4, verbose=0)
    found = diagnose.check_mistakes(model, sample_images=images(4), before_weights=before, phase="fine_tune")
    assert found == []


def test_base_called_without_training_false_is_caught():
    backbone = tiny_backbone()
    models.freeze(backbone)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = models.preprocessing_layer("mobilenet_v2")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(backbone(x))  # no training=False
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(x))
    found = diagnose.check_mistakes(model)
    assert codes(found) == ["base_training_mode"]
    assert "training=False" in found[0].message
    assert "base_training_mode" not in codes(
        diagnose.check_mistakes(models.build_classifier(backbone, CLASSES))
    )


def test_trainable_batchnorm_is_caught_because_fit_overrides_training_false():
    backbone, model = head_classifier()
    models.unfreeze_top(backbone, "block_16", freeze_batchnorm=False)  # the TF tutorial's way
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    found = diagnose.check_mistakes(model)
    assert codes(found) == ["batchnorm_training_mode"]
    assert not diagnose.trainable_report(model).batchnorm_in_inference
    # The rule describes what really happens: a training step moves the statistics of a trainable BatchNorm.
    bn = backbone.get_layer("block_16_expand_BN")
    before = bn.moving_mean.numpy().copy()
    model(images(8), training=True)  # what each fit step does
    assert layermodes.outer_training_overrides_nested() == (
        not np.array_equal(before, bn.moving_mean.numpy())
    )


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
    assert codes(diagnose.check_mistakes(model, sample_images=sample)) == ["base_training_mode"]
    np.testing.assert_array_equal(stats, backbone.get_layer("bn_Conv1").moving_mean.numpy())  # undone
    models.freeze(backbone)
    assert "base_training_mode" not in codes(diagnose.check_mistakes(model, sample_images=sample))


def test_frozen_weights_that_changed_after_fit_are_caught():
    backbone, model = head_classifier()
    models.unfreeze_top(backbone, "block_16")
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    model.fit(images(8), labels(8), epochs=1, verbose=0)
    models.freeze(backbone)  # ...and forget to recompile: fit keeps training the old set
    before = diagnose.snapshot_weights(model)
    model.fit(images(8), labels(8), epochs=1, verbose=0)
    found = diagnose.check_mistakes(model, before_weights=before)
    assert "frozen_weights_changed" in codes(found)
    assert "block_16" in found[codes(found).index("frozen_weights_changed")].message
    # The quiet case (recompiled, frozen weights untouched) is test_frozen_backbone_weights_are_unchanged...


@pytest.mark.parametrize("scale", ["zero_one", "minus_one_one"])
def test_already_scaled_inputs_to_a_raw_pixel_model_are_caught(scale):
    _, model = head_classifier()
    raw = images(6)
    sample = raw / 255.0 if scale == "zero_one" else raw / 127.5 - 1.0
    found = diagnose.check_mistakes(model, sample_images=sample)
    assert codes(found) == ["preprocessing_mismatch"]
    assert "[0, 255]" in found[0].message
    assert diagnose.check_mistakes(model, sample_images=raw) == []


def test_wrong_scaling_inside_the_model_is_caught():
    backbone = tiny_backbone()
    models.freeze(backbone)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)  # [0, 1] into a [-1, 1] network
    x = keras.layers.GlobalAveragePooling2D()(backbone(x, training=False))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES)(x))
    assert codes(diagnose.check_mistakes(model, sample_images=images(6))) == ["preprocessing_mismatch"]
    # A bare backbone fed raw pixels is caught too; fed preprocessed pixels it is fine.
    assert codes(diagnose.check_mistakes(backbone, sample_images=images(6))) == ["preprocessing_mismatch"]
    assert diagnose.check_mistakes(backbone, sample_images=images(6) / 127.5 - 1.0) == []


def test_not_recompiling_after_unfreezing_is_caught():
    backbone, model = head_classifier()
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    models.unfreeze_top(backbone, "block_16")
    assert "not_recompiled" in codes(diagnose.check_mistakes(model))
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    assert "not_recompiled" not in codes(diagnose.check_mistakes(model))


def test_a_learning_rate_too_high_for_fine_tuning_is_caught():
    backbone, model = head_classifier()
    assert diagnose.check_mistakes(model) == []  # 1e-3 is right for the head alone
    models.unfreeze_top(backbone, "block_13")
    models.compile_classifier(model, 1e-3, num_classes=CLASSES)
    found = diagnose.check_mistakes(model)
    assert codes(found) == ["learning_rate_too_high"]
    assert "0.001" in found[0].message
    assert codes(diagnose.check_mistakes(model, learning_rate=1e-5)) == []
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    assert diagnose.check_mistakes(model) == []


def test_an_unfrozen_base_in_the_head_phase_is_caught():
    backbone, model = head_classifier()
    models.unfreeze_top(backbone, 10)
    models.compile_classifier(model, 1e-5, num_classes=CLASSES)
    assert codes(diagnose.check_mistakes(model, phase="head")) == ["base_not_frozen"]
    assert diagnose.check_mistakes(model, phase="fine_tune") == []


def test_a_saved_classifier_loads_in_safe_mode_and_still_passes_the_checks(tmp_path):
    backbone, model = head_classifier()
    from tlcourse import export

    path = export.save_keras(model, tmp_path / "clf.keras")  # compiled, never trained: see save_keras
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(images(2))), np.asarray(model(images(2))), atol=1e-5)
    assert diagnose.check_mistakes(loaded, sample_images=images(4), learning_rate=1e-3) == []
