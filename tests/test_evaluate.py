"""tlcourse.evaluate: metrics against hand-computed values, bootstrap, calibration, top losses, Grad-CAM."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest

from tlcourse import evaluate
from tlcourse.backbones import base_of
from tlcourse.errors import TLCourseError

# 3 classes, 10 examples. Confusion matrix by hand (rows = true, columns = predicted):
#   true 0: [2, 1, 1]   true 1: [1, 2, 0]   true 2: [0, 1, 2]
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 1])
NAMES = ["ant", "bee", "cat"]


def one_hot_scores(pred: np.ndarray, k: int, confidence: float = 0.7) -> np.ndarray:
    """Probability rows whose argmax is ``pred``."""
    probs = np.full((len(pred), k), (1 - confidence) / (k - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


# ------------------------------------------------------------------------------------------- metrics


def test_metrics_match_a_hand_computed_three_class_example():
    result = evaluate.classification_metrics(Y_TRUE, one_hot_scores(Y_PRED, 3), NAMES)
    assert result["confusion_matrix"] == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    assert result["accuracy"] == pytest.approx(6 / 10)
    precision = {"ant": 2 / 3, "bee": 2 / 4, "cat": 2 / 3}
    recall = {"ant": 2 / 4, "bee": 2 / 3, "cat": 2 / 3}
    f1 = {"ant": 4 / 7, "bee": 4 / 7, "cat": 2 / 3}
    support = {"ant": 4, "bee": 3, "cat": 3}
    for name in NAMES:
        row = result["per_class"][name]
        assert row["precision"] == pytest.approx(precision[name])
        assert row["recall"] == pytest.approx(recall[name])
        assert row["f1"] == pytest.approx(f1[name])
        assert row["support"] == support[name]
    assert result["macro"]["f1"] == pytest.approx((4 / 7 + 4 / 7 + 2 / 3) / 3)
    assert result["macro"]["precision"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert result["weighted"]["recall"] == pytest.approx((4 * 0.5 + 3 * 2 / 3 + 3 * 2 / 3) / 10)
    assert result["n"] == 10 and result["absent_classes"] == []


def test_metrics_accept_logits_and_class_indices_alike():
    logits = np.log(one_hot_scores(Y_PRED, 3)) + 5.0  # shifted log-probabilities: logits, not probabilities
    from_logits = evaluate.classification_metrics(Y_TRUE, logits, NAMES)
    from_indices = evaluate.classification_metrics(Y_TRUE, Y_PRED, NAMES)
    assert (
        from_logits["confusion_matrix"]
        == from_indices["confusion_matrix"]
        == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    )


def test_a_class_missing_from_the_validation_set_gives_zeros_not_warnings():
    names = [*NAMES, "dog"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate.classification_metrics(Y_TRUE, Y_PRED, names)
    assert result["per_class"]["dog"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result["absent_classes"] == ["dog"]
    assert np.array(result["confusion_matrix"]).shape == (4, 4)
    # the absent class does not drag the macro average down: it equals the 3-class one
    assert result["macro"]["f1"] == pytest.approx((4 / 7 + 4 / 7 + 2 / 3) / 3)
    json.dumps(result)


def test_metrics_reject_a_label_outside_the_class_names():
    with pytest.raises(TLCourseError, match="class_names"):
        evaluate.classification_metrics([0, 5], [0, 1], ["a", "b"])


def test_to_probabilities_softmaxes_logits_and_keeps_probabilities():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]])
    probs = evaluate.to_probabilities(logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_array_equal(probs.argmax(1), logits.argmax(1))
    np.testing.assert_allclose(evaluate.to_probabilities(probs), probs)
    binary = evaluate.to_probabilities(np.array([[0.0], [2.0]]), from_logits=True)
    np.testing.assert_allclose(binary[:, 1], [0.5, 1 / (1 + np.exp(-2.0))])


# ----------------------------------------------------------------------------------------- bootstrap


def _labelled(n: int, accuracy: float, k: int = 3, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = y.copy()
    wrong = rng.permutation(n)[: int(round(n * (1 - accuracy)))]
    pred[wrong] = (y[wrong] + 1) % k
    return y, pred


def test_bootstrap_interval_contains_the_point_and_narrows_with_more_data():
    small = evaluate.bootstrap_interval(*_labelled(40, 0.8))
    large = evaluate.bootstrap_interval(*_labelled(1000, 0.8))
    for point, low, high in (small, large):
        assert low <= point <= high
        assert point == pytest.approx(0.8)
    assert (large[2] - large[1]) < 0.5 * (small[2] - small[1])


def test_bootstrap_interval_is_deterministic_with_a_seed():
    y, pred = _labelled(60, 0.7)
    assert evaluate.bootstrap_interval(y, pred, seed=3) == evaluate.bootstrap_interval(y, pred, seed=3)
    # other seeds draw other resamples (accuracy moves in steps of 1/60, so compare a few seeds)
    assert len({evaluate.bootstrap_interval(y, pred, n=50, seed=s) for s in range(6)}) > 1


def test_vectorised_bootstrap_matches_a_plain_loop_over_sklearn():
    from sklearn.metrics import accuracy_score, f1_score

    y, pred = _labelled(200, 0.75)
    fast_acc = evaluate.bootstrap_interval(y, pred, "accuracy", n=300, seed=7)
    slow_acc = evaluate.bootstrap_interval(y, pred, lambda a, b: accuracy_score(a, b), n=300, seed=7)
    assert fast_acc == pytest.approx(slow_acc)
    fast_f1 = evaluate.bootstrap_interval(y, pred, "macro_f1", n=300, seed=7)
    slow_f1 = evaluate.bootstrap_interval(
        y, pred, lambda a, b: f1_score(a, b, average="macro"), n=300, seed=7
    )
    assert fast_f1 == pytest.approx(slow_f1)
    assert fast_f1[0] == pytest.approx(f1_score(y, pred, average="macro"))


def test_bootstrap_of_2000_resamples_on_200_examples_is_fast():
    y, pred = _labelled(200, 0.8)
    start = time.perf_counter()
    evaluate.bootstrap_interval(y, pred, n=2000)
    evaluate.bootstrap_interval(y, pred, "macro_f1", n=2000)
    assert time.perf_counter() - start < 1.0


def test_bootstrap_takes_score_rows_as_predictions():
    scores = one_hot_scores(Y_PRED, 3)
    assert evaluate.bootstrap_interval(Y_TRUE, scores) == evaluate.bootstrap_interval(Y_TRUE, Y_PRED)


# --------------------------------------------------------------------------------------- calibration


def test_ece_is_zero_for_perfectly_calibrated_predictions():
    # 10 examples at confidence 0.8 with 8 right, 10 at 0.6 with 6 right: accuracy equals confidence per bin
    probs = np.array([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 10)
    y = np.array([0] * 8 + [1] * 2 + [0] * 6 + [1] * 4)
    result = evaluate.calibration(y, probs, bins=10)
    assert result["ece"] == pytest.approx(0.0, abs=1e-12)
    assert result["mce"] == pytest.approx(0.0, abs=1e-12)
    assert sum(row["count"] for row in result["bins"]) == 20
    filled = [row for row in result["bins"] if row["count"]]
    assert [row["confidence"] for row in filled] == pytest.approx([0.6, 0.8])
    assert [row["accuracy"] for row in filled] == pytest.approx([0.6, 0.8])


def test_ece_is_large_for_overconfident_wrong_predictions():
    probs = np.array([[0.99, 0.01]] * 20)
    y = np.ones(20, dtype=int)
    result = evaluate.calibration(y, probs)
    assert result["ece"] == pytest.approx(0.99)
    assert result["mce"] == pytest.approx(0.99)
    assert result["brier"] > 1.9


# ---------------------------------------------------------------------------------------- top losses


def test_top_losses_are_ordered_by_loss_worst_first():
    p_true = np.array([0.9, 0.1, 0.5, 0.01, 0.7])
    probs = np.stack([p_true, 1 - p_true], axis=1)
    y = np.zeros(5, dtype=int)
    assert evaluate.top_losses(y, probs, k=5) == [3, 1, 2, 4, 0]
    assert evaluate.top_losses(y, probs, k=2) == [3, 1]
    np.testing.assert_allclose(evaluate.per_example_loss(y, probs), -np.log(p_true))


# ----------------------------------------------------------------------------------- models for tests


def colour_model(trainable: bool = True):
    """Nested classifier: class 0 = "red evidence", class 1 = "green evidence", read by a tiny conv backbone."""
    import keras

    inp = keras.Input((32, 32, 3))
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="colour_conv")
    pool = keras.layers.AveragePooling2D(4, name="coarse")
    backbone = keras.Model(inp, pool(conv(inp)), name="tiny_backbone")
    kernel = np.zeros((1, 1, 3, 2), dtype="float32")
    kernel[0, 0, 0, 0], kernel[0, 0, 1, 0] = 1.0, -1.0  # red minus green
    kernel[0, 0, 1, 1], kernel[0, 0, 0, 1] = 1.0, -1.0  # green minus red
    conv.set_weights([kernel, np.zeros(2, dtype="float32")])

    raw = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0)(raw)
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2)
    model = keras.Model(raw, dense(keras.layers.Dropout(0.2)(x)))
    dense.set_weights([np.eye(2, dtype="float32"), np.zeros(2, dtype="float32")])
    model.trainable = trainable
    return model


def red_left_green_right() -> np.ndarray:
    image = np.zeros((32, 32, 3), dtype="float32")
    image[8:24, 2:12, 0] = 255.0  # red on the left
    image[8:24, 20:30, 1] = 255.0  # green on the right
    return image


@pytest.fixture(scope="module")
def mobilenet_classifier():
    import keras

    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(
        alpha=0.35, input_shape=(64, 64, 3), include_top=False, weights=None
    )
    raw = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(raw)
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(raw, keras.layers.Dense(3)(x)), backbone


# ----------------------------------------------------------------------------------------- Grad-CAM


@pytest.mark.parametrize("trainable", [True, False])
def test_grad_cam_highlights_the_region_that_drives_each_class(trainable):
    model = colour_model(trainable)
    image = red_left_green_right()
    red = evaluate.grad_cam(model, image, class_index=0)
    green = evaluate.grad_cam(model, image, class_index=1)
    for heat in (red, green):
        assert heat.shape == (32, 32) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    assert red[:, :16].sum() > 0.9 * red.sum()
    assert green[:, 16:].sum() > 0.9 * green.sum()


def test_grad_cam_defaults_to_the_predicted_class():
    model = colour_model()
    image = red_left_green_right()
    image[:, 16:, 1] = 0.0  # only red left: the model predicts class 0
    assert int(np.argmax(model.predict(image[None], verbose=0))) == 0
    np.testing.assert_allclose(
        evaluate.grad_cam(model, image), evaluate.grad_cam(model, image, class_index=0)
    )


def test_grad_cam_on_a_nested_mobilenet_matches_the_closed_form(mobilenet_classifier):
    import tensorflow as tf

    model, backbone = mobilenet_classifier
    assert base_of(model) is backbone
    assert evaluate.last_conv_layer(model).name == "out_relu"
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (64, 64, 3)).astype("float32")
    heat = evaluate.grad_cam(model, image, class_index=2)
    assert heat.shape == (64, 64) and 0.0 <= heat.min() and heat.max() <= 1.0
    # Backbone output -> average pooling -> dense: the gradient is W[:, c] / (h * w) at every position,
    # so Grad-CAM is relu(A @ W[:, c]) up to scale.
    features = backbone(image[None] / 127.5 - 1.0, training=False).numpy()
    kernel = model.layers[-1].get_weights()[0]
    expected = np.maximum(features[0] @ kernel[:, 2], 0.0)[None, :, :, None]
    expected = tf.image.resize(expected, (64, 64), method="bilinear").numpy()[0, :, :, 0]
    if expected.max() > 0:
        expected = expected / expected.max()
    np.testing.assert_allclose(heat, expected, atol=1e-4)


def test_grad_cam_on_a_flat_model_and_with_a_named_layer():
    import keras

    inner = colour_model()
    # flatten the nesting: same layers, one graph
    raw = keras.Input((32, 32, 3))
    x = inner.layers[1](raw)
    backbone = inner.layers[2]
    x = backbone.get_layer("coarse")(backbone.get_layer("colour_conv")(x))
    flat = keras.Model(raw, inner.layers[-1](inner.layers[-2](inner.layers[-3](x))))
    assert base_of(flat) is None
    image = red_left_green_right()
    np.testing.assert_allclose(
        evaluate.grad_cam(flat, image, 1), evaluate.grad_cam(inner, image, 1), atol=1e-6
    )
    named = evaluate.grad_cam(
        inner, image, 0, layer="colour_conv"
    )  # full resolution layer inside the backbone
    assert named.shape == (32, 32) and named[:, :16].sum() > 0.9 * named.sum()
    with pytest.raises(TLCourseError, match="No layer called"):
        evaluate.grad_cam(inner, image, 0, layer="no_such_layer")


# ------------------------------------------------------------------------------ dataset and summary


def _colour_dataset(n: int = 24, batch: int = 5, shuffle: bool = True):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n).astype("int32")
    images = np.zeros((n, 32, 32, 3), dtype="float32")
    for i, label in enumerate(labels):
        images[i, 4:28, 4:28, label] = 200.0
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(n, seed=1, reshuffle_each_iteration=True)
    return ds.batch(batch), images, labels


def test_predict_dataset_keeps_labels_and_predictions_aligned_on_a_reshuffling_dataset():
    model = colour_model()
    ds, _, labels = _colour_dataset()
    y_true, probs = evaluate.predict_dataset(model, ds)
    assert sorted(y_true.tolist()) == sorted(labels.tolist())
    assert probs.shape == (24, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(probs.argmax(1) == y_true)  # the colour model is always right: pairs must line up


def test_predict_dataset_rejects_a_dataset_without_labels():
    ds, _, _ = _colour_dataset()
    with pytest.raises(TLCourseError, match="labels"):
        evaluate.predict_dataset(colour_model(), ds.map(lambda x, y: x))


def test_evaluation_summary_is_json_ready_and_consistent():
    model = colour_model()
    ds, _, labels = _colour_dataset(shuffle=False)
    summary = evaluate.evaluation_summary(model, ds, ["red", "green"], n_boot=200, k=4)
    text = json.dumps(summary)  # plain Python numbers only
    assert "numpy" not in text
    assert summary["n"] == len(labels) and summary["accuracy"] == 1.0
    low, high = summary["accuracy_interval"]
    assert low <= summary["accuracy"] <= high
    assert summary["macro_f1_interval"][0] <= summary["macro_f1"] <= summary["macro_f1_interval"][1]
    assert len(summary["top_losses"]) == 4
    losses = [row["loss"] for row in summary["top_losses"]]
    assert losses == sorted(losses, reverse=True)
    assert summary["calibration"]["n"] == len(labels)
    assert summary["per_class"]["red"]["support"] == int((labels == 0).sum())
    # precomputed predictions give the same answer without a model
    again = evaluate.evaluation_summary(
        None, None, ["red", "green"], y_true=labels, probs=model.predict(ds, verbose=0), n_boot=200, k=4
    )
    assert again["confusion_matrix"] == summary["confusion_matrix"]


def test_accuracy_interval_narrows_with_more_images_and_contains_the_accuracy():
    small, large = evaluate.accuracy_interval(0.8, 20), evaluate.accuracy_interval(0.8, 2000)
    assert small[0] <= 0.8 <= small[1] and large[0] <= 0.8 <= large[1]
    assert (large[1] - large[0]) < (small[1] - small[0]) / 3


def test_paired_bootstrap_separates_a_real_gain_and_not_a_tie():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    a = np.where(rng.random(400) < 0.8, y, (y + 1) % 3)
    better = np.where(a == y, y, np.where(rng.random(400) < 0.6, y, a))  # fixes 60% of a's errors
    gain, low, high = evaluate.paired_bootstrap(y, a, better, seed=0)
    assert gain == pytest.approx(np.mean(better == y) - np.mean(a == y))
    assert 0 < low <= gain <= high
    shuffled = a.copy()
    swap = rng.permutation(400)[:20]
    shuffled[swap] = (shuffled[swap] + 1) % 3  # a few changed answers: gain near 0
    _, low, high = evaluate.paired_bootstrap(y, a, a, seed=0)
    assert low == high == 0.0
    _, low, high = evaluate.paired_bootstrap(y, a, shuffled, seed=0)
    assert low < 0.02 and high > -0.12
