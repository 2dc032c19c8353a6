"""tlcourse.backbones: one record per architecture (data, not code) and the identity a built model carries."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tlcourse import backbones, models  # noqa: E402

SIZE = 32


def test_every_record_holds_its_constructor_preprocessing_unfreeze_point_weight_files_and_figures():
    for name, spec in backbones.BACKBONES.items():
        assert spec.name == name and callable(spec.keras_constructor()), name
        assert spec.preprocessing in ("tf", "caffe", "none") and callable(spec.preprocess_input()), name
        assert spec.default_unfreeze_from and spec.top1 and spec.citation, name
        assert spec.weights and all(f.url or f.converted for f in spec.weights), name
        for alpha in spec.alphas or (None,):  # every published width has its feature-extractor weights
            assert spec.weight_files(alpha), (name, alpha)
        if spec.alphas:
            assert spec.default_alpha in spec.alphas and spec.width_probe is not None, name


def test_a_keras_applications_base_has_the_identity_of_the_same_base_from_build_backbone():
    built = models.build_backbone("mobilenet_v2", alpha=0.35, image_size=SIZE, weights="random", seed=0)
    student = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False, weights=None
    )
    student.set_weights(built.get_weights())
    who = backbones.identity(student)
    assert (who.architecture, who.width, who.input_size) == ("mobilenet_v2", 0.35, SIZE)
    assert who == backbones.identity(built)


def test_identity_reads_the_width_and_changes_with_any_weight_and_comes_back_with_it():
    base = models.build_backbone("mobilenet_v2", alpha=0.5, image_size=SIZE, weights="random", seed=0)
    before = backbones.identity(base)
    assert before.width == 0.5
    kernel = base.get_layer("block_5_project").kernel
    original = kernel.numpy()
    kernel.assign(original + np.float32(1e-7))  # one array, a change far below anything a plot would show
    moved = backbones.identity(base)
    assert moved.weights != before.weights and moved.key != before.key
    assert (moved.architecture, moved.width, moved.input_size, moved.layers) == (
        before.architecture,
        before.width,
        before.input_size,
        before.layers,
    )
    kernel.assign(original)
    assert backbones.identity(base) == before


def test_a_classifier_is_known_by_its_base_and_its_own_layers_and_weights():
    base = models.build_backbone("resnet50", image_size=SIZE, weights="random", seed=0)
    classifier = models.build_classifier(base, 3)
    who = backbones.identity(classifier)
    assert (who.architecture, who.width, who.input_size) == ("resnet50", None, SIZE)
    assert who.weights != backbones.identity(base).weights  # the head's weights count too
    assert backbones.base_of(classifier) is base
    assert backbones.identity(models.build_classifier(base, 3, pooling="max")).layers != who.layers
