"""The lesson 04 graders pass the reference answers and fail, with their hint, on typical wrong answers."""

from __future__ import annotations

import keras
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tlcourse import models
from tlcourse.checks import CheckFailed
from tlcourse.checks import lesson04 as grade

# ----------------------------------------------------------------------------- reference answers


def build_extractor(backbone, *, preprocess=True, freeze=True, pooling="avg"):
    if freeze:
        backbone.trainable = False
    inputs = keras.Input(backbone.input_shape[1:])
    x = models.preprocessing_layer("mobilenet_v2")(inputs) if preprocess else inputs
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x) if pooling == "avg" else keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, x)


def build_head(num_features, num_classes, dropout=0.2):
    inputs = keras.Input((num_features,))
    x = keras.layers.Dropout(dropout)(inputs)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


def logreg(x_train, y_train, x_val, y_val):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_train, y_train)
    return model, float((model.predict(x_val) == y_val).mean())


# ------------------------------------------------------------------------------------------- tests


def test_feature_extractor_accepts_reference_and_rejects_missing_preprocessing(capsys):
    grade.check_feature_extractor(build_extractor).assert_passed()
    assert "passed" in capsys.readouterr().out
    result = grade.check_feature_extractor(lambda b: build_extractor(b, preprocess=False))
    assert not result.passed and "preprocessing" in result.message
    with pytest.raises(CheckFailed):
        result.assert_passed()


def test_feature_extractor_rejects_a_trainable_backbone_and_max_pooling():
    result = grade.check_feature_extractor(lambda b: build_extractor(b, freeze=False))
    assert not result.passed and "freeze the backbone" in result.message
    result = grade.check_feature_extractor(lambda b: build_extractor(b, pooling="max"))
    assert not result.passed and "AVERAGE" in result.message


def test_feature_extractor_rejects_an_unpooled_feature_map():
    def unpooled(backbone):
        backbone.trainable = False
        inputs = keras.Input(backbone.input_shape[1:])
        return keras.Model(
            inputs, backbone(models.preprocessing_layer("mobilenet_v2")(inputs), training=False)
        )

    result = grade.check_feature_extractor(unpooled)
    assert not result.passed and "pool" in result.message


def test_head_builder_accepts_reference():
    assert grade.check_head_builder(build_head).passed


def test_head_builder_rejects_softmax_and_missing_dropout():
    def softmax_head(num_features, num_classes, dropout=0.2):
        inputs = keras.Input((num_features,))
        x = keras.layers.Dropout(dropout)(inputs)
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))

    def no_dropout(num_features, num_classes, dropout=0.2):
        inputs = keras.Input((num_features,))
        return keras.Model(inputs, keras.layers.Dense(num_classes)(inputs))

    result = grade.check_head_builder(softmax_head)
    assert not result.passed and "probabilities" in result.message
    result = grade.check_head_builder(no_dropout)
    assert not result.passed and "Dropout" in result.message


def test_head_builder_rejects_a_hidden_layer():
    def two_layers(num_features, num_classes, dropout=0.2):
        inputs = keras.Input((num_features,))
        x = keras.layers.Dense(32, activation="relu")(keras.layers.Dropout(dropout)(inputs))
        return keras.Model(inputs, keras.layers.Dense(num_classes)(x))

    result = grade.check_head_builder(two_layers)
    assert not result.passed and "trainable parameters" in result.message


def test_feature_probe_makes_training_and_validation_accuracy_differ():
    x_train, y_train, x_val, y_val = grade.feature_probe()
    model, accuracy = logreg(x_train, y_train, x_val, y_val)
    assert model.score(x_train, y_train) > accuracy + 0.1


def test_logistic_regression_accepts_reference():
    assert grade.check_logistic_regression(logreg).passed


def test_logistic_regression_names_scoring_on_the_training_rows():
    def on_training(x_train, y_train, x_val, y_val):
        model, _ = logreg(x_train, y_train, x_val, y_val)
        return model, model.score(x_train, y_train)

    result = grade.check_logistic_regression(on_training)
    assert not result.passed and "TRAINING" in result.message


def test_logistic_regression_rejects_fitting_on_validation():
    def on_validation(x_train, y_train, x_val, y_val):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_val, y_val)
        return model, model.score(x_val, y_val)

    result = grade.check_logistic_regression(on_validation)
    assert not result.passed and "x_train" in result.message


def test_claim_is_reexported_for_the_augmentation_exercise():
    assert grade.check_claim([0.80, 0.82], [0.86, 0.88], "better").passed
    assert not grade.check_claim([0.80, 0.85], [0.83, 0.84], "better").passed  # one seed gains, one loses
