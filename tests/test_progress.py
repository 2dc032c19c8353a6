"""tlcourse.progress: one short line per epoch for the lessons' fits (issue 31: minutes of `verbose=0` silence,
or 40 lines of `verbose=2` log)."""

from __future__ import annotations

import re

import numpy as np

from tlcourse import progress


def test_an_epoch_line_rounds_the_figures_and_says_how_long_the_epoch_took():
    logs = {"accuracy": 0.8123456, "loss": 0.4012345, "val_accuracy": 0.75, "val_loss": float("nan")}
    line = progress.format_epoch("head", 2, 5, logs, 3.14159)
    assert line == "head epoch 2/5: accuracy 0.812, loss 0.401, val_accuracy 0.75, val_loss nan (3.1 s)"
    assert progress.format_epoch("", 1, None, {"loss": 1.0}, 0.0) == "epoch 1: loss 1 (0.0 s)"


def test_fit_with_the_callback_writes_exactly_one_line_per_epoch(capsys):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y = np.random.default_rng(0).normal(size=(32, 4)).astype("float32"), np.arange(32) % 2
    lines: list[str] = []
    model.fit(
        x, y, validation_split=0.25, epochs=3, batch_size=8, verbose=0,
        callbacks=[progress.epoch_lines("head", write=lines.append)],
    )  # fmt: skip
    assert len(lines) == 3
    pattern = (
        r"head epoch {}/3: accuracy [\d.]+, loss [\d.]+, val_accuracy [\d.]+, val_loss [\d.]+ \(\d+\.\d s\)"
    )
    for number, line in enumerate(lines, 1):
        assert re.fullmatch(pattern.format(number), line), line
    model.fit(x, y, epochs=1, verbose=0, callbacks=[progress.epoch_lines()])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith("epoch 1/1: accuracy")
