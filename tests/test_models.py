"""tlcourse.models: backbone registry, preprocessing, classifiers, freezing and unfreezing.

Everything runs on tiny MobileNetV2 (alpha 0.35, 32 px, random weights) models and a few random images.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tinymodels import SIZE, head_classifier, images, tiny_backbone  # noqa: E402

from tlcourse import diagnose, models  # noqa: E402
from tlcourse.errors import TLCourseError  # noqa: E402


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
    assert capsys.readouterr().out == "Note: the 224px file stands in for 32px.\n"


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
        models.build_backbone("mobilenet_v2", alpha=0.35, image_size=SIZE, weights="imagenet")
    models.imagenet_weights("mobilenet_v2", alpha=0.35, image_size=SIZE)
    printed = capsys.readouterr().out
    assert printed.count(f"for {SIZE}px") == 1
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
    report = diagnose.trainable_report(model)
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


def test_one_layer_resolver_serves_unfreezing_fine_tuning_and_the_explorer():
    from tlcourse import fastcache

    backbone = models.build_backbone(
        "mobilenet_v2", alpha=0.35, image_size=96, weights="random", verbose=False
    )
    names = [layer.name for layer in backbone.layers]
    count = len(names)
    for where in ("block_13", "block_1", "block_16_project", 100, "100", -5):
        index = models.layer_index(backbone, where)
        assert fastcache.boundary_index(backbone, where) == index
        assert diagnose.unfreeze_summary(backbone, where)["boundary_layer"] == names[index]
    assert names[models.layer_index(backbone, "block_1")].startswith("block_1_")  # not block_10 or block_11
    assert models.layer_index(backbone, count) == count  # unfreeze nothing
    with pytest.raises(TLCourseError):
        fastcache.boundary_index(backbone, count)  # ...which is no boundary to fine-tune from
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


def test_every_public_path_builds_the_same_classifier_with_the_same_predictions(tmp_path):
    """One graph builder (models.assemble): build_classifier, join_head, the fast path's classifier and the
    from-scratch baseline give the same layers; with the same weights the same predictions, and none of them
    trips the mistake checker (base called with training=False, preprocessing once)."""
    from trainkit import last_dense, lively, random_base

    from tlcourse import data, fastpath, features, strategies
    from tlcourse.backend import leaf_layers
    from tlcourse.config import get_profile

    splits = data.synthetic_splits(num_classes=3, per_class=4, image_size=SIZE, seed=0)
    profile = get_profile("smoke", image_size=SIZE, batch_size=8, head_epochs=1, fine_tune_epochs=1)
    base = lively(random_base())
    built = {"build_classifier": models.build_classifier(base, 3)}
    head = models.build_head((base.output_shape[-1],), 3)
    built["join_head"] = features.join_head(base, head)
    built["fit_head_fast"] = fastpath.fit_head_fast(base, splits, profile=profile, cache_dir=tmp_path).model
    scratch = strategies.from_scratch(base, splits, profile=profile.replace(head_epochs=0)).model
    dense = last_dense(built["build_classifier"]).get_weights()
    for model in (built["join_head"], built["fit_head_fast"]):
        last_dense(model).set_weights(dense)

    def layers(model):
        return [type(layer).__name__ for layer in leaf_layers(model) if type(layer).__name__ != "InputLayer"]

    expected = layers(built["build_classifier"])
    assert expected[:2] == ["Rescaling", "Conv2D"] and expected[-3:] == [
        "GlobalAveragePooling2D",
        "Dropout",
        "Dense",
    ]
    assert {name: layers(model) for name, model in {**built, "from_scratch": scratch}.items()} == {
        name: expected for name in [*built, "from_scratch"]
    }
    images = np.random.default_rng(0).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    reference = np.asarray(built["build_classifier"](images, training=False))
    for name, model in built.items():
        np.testing.assert_allclose(
            np.asarray(model(images, training=False)), reference, atol=1e-5, err_msg=name
        )
        assert diagnose.check_mistakes(model, sample_images=images, phase="head") == [], name
