"""Resume keyed to its run and written crash-safely (tlcourse.resume, tlcourse.train's run_dir)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tlcourse import data, fastpath, models, resume, train
from tlcourse.config import get_profile, seed_everything

SIZE = 32
TOTAL = 5


class Crash(Exception):
    """The injected failure (stands for a kill: ``fit`` never reaches ``on_train_end``)."""


def _crash_at(epoch: int):
    import keras

    class CrashAt(keras.callbacks.Callback):
        def on_epoch_begin(self, number, logs=None):
            if number == epoch:
                raise Crash(f"simulated crash at epoch {epoch}")

    return CrashAt()


def _epochs_seen(seen: list[int]):
    import keras

    return keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch))


def _tiny_model():
    import keras

    seed_everything(7)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
    )
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


def _fit(run_dir, key, extra=()):
    x, y = _xy()
    model = _tiny_model()
    seen: list[int] = []
    callbacks = [*train.training_callbacks(run_dir, patience=None, monitor="loss", resume_key=key)]
    model.fit(
        x, y, batch_size=16, epochs=TOTAL, verbose=0, callbacks=[*callbacks, *extra, _epochs_seen(seen)]
    )
    return seen


def _crashed_run(run_dir, key, epoch):
    with pytest.raises(Crash):
        _fit(run_dir, key, [_crash_at(epoch)])


def _discard_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "discarded" in line]


# ----------------------------------------------------------------------------------------------- the key


def test_resume_key_changes_with_the_data_the_class_names_and_each_setting():
    three = data.synthetic_splits(num_classes=3, per_class=4, image_size=SIZE, seed=0)
    other = data.synthetic_splits(num_classes=3, per_class=4, image_size=SIZE, seed=1)
    two = data.synthetic_splits(num_classes=2, per_class=4, image_size=SIZE, seed=0)
    base = resume.resume_key(three, backbone="mobilenet_v2", alpha=0.35, learning_rate=1e-3, seed=42)
    assert base == resume.resume_key(three, backbone="mobilenet_v2", alpha=0.35, learning_rate=1e-3, seed=42)
    assert base != resume.resume_key(other, backbone="mobilenet_v2", alpha=0.35, learning_rate=1e-3, seed=42)
    assert base != resume.resume_key(two, backbone="mobilenet_v2", alpha=0.35, learning_rate=1e-3, seed=42)
    for change in ({"alpha": 0.5}, {"learning_rate": 1e-4}, {"seed": 1}, {"backbone": "efficientnet_b0"}):
        settings = {"backbone": "mobilenet_v2", "alpha": 0.35, "learning_rate": 1e-3, "seed": 42, **change}
        assert resume.resume_key(three, **settings) != base, change


# ------------------------------------------------------------------------------------ the backup itself


def test_a_same_key_rerun_resumes_and_says_from_which_epoch(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _crashed_run(run_dir, "key-a", epoch=3)
    capsys.readouterr()
    seen = _fit(run_dir, "key-a")
    out = capsys.readouterr().out
    assert seen == [3, 4]
    assert "resumed from epoch 3" in out and not _discard_lines(out)
    assert not (run_dir / "backup").exists()  # a finished fit removes its backup


def test_an_exception_while_the_backup_is_written_keeps_the_previous_epochs_backup(
    tmp_path, monkeypatch, capsys
):
    """A kill mid-write (here an exception after half a file) never leaves a half-written backup in use."""
    import keras

    run_dir = tmp_path / "run"
    real_save = keras.Model.save_weights
    saves = {"count": 0}

    def save_then_die(self, filepath, *args, **kwargs):
        saves["count"] += resume.WEIGHTS_FILE in str(
            filepath
        )  # the backup's saves, not the best checkpoint's
        if saves["count"] == 3 and resume.WEIGHTS_FILE in str(
            filepath
        ):  # the backup after epoch 3: half a file, then the process "dies"
            with open(filepath, "wb") as handle:
                handle.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 88)
            raise Crash("killed while writing the backup")
        return real_save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", save_then_die)
    with pytest.raises(Crash):
        _fit(run_dir, "key-a")
    monkeypatch.setattr(keras.Model, "save_weights", real_save)
    left = sorted(p.name for p in (run_dir / "backup").iterdir())
    assert left == sorted([resume.METADATA_FILE, resume.OPTIMIZER_FILE, resume.WEIGHTS_FILE])  # no temp file
    capsys.readouterr()
    seen = _fit(run_dir, "key-a")
    out = capsys.readouterr().out
    assert seen == [2, 3, 4] and "resumed from epoch 2" in out and not _discard_lines(out)


@pytest.mark.parametrize("damage", ["empty", "truncated", "no record", "unreadable record"])
def test_a_damaged_backup_is_discarded_with_one_line_and_training_starts_fresh(tmp_path, capsys, damage):
    run_dir = tmp_path / "run"
    _crashed_run(run_dir, "key-a", epoch=3)
    weights = run_dir / "backup" / resume.WEIGHTS_FILE
    record = run_dir / "backup" / resume.METADATA_FILE
    if damage == "empty":
        weights.write_bytes(b"")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:96])
    elif damage == "no record":
        record.unlink()
    else:
        record.write_bytes(b"\x00\xff{")
    capsys.readouterr()
    seen = _fit(run_dir, "key-a")  # never an h5py OSError
    out = capsys.readouterr().out
    assert seen == list(range(TOTAL))
    lines = _discard_lines(out)
    assert len(lines) == 1 and "training starts fresh" in lines[0] and "resumed" not in out


def test_a_backup_of_another_run_is_discarded_not_restored(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _crashed_run(run_dir, "key-a", epoch=3)
    capsys.readouterr()
    seen = _fit(run_dir, "key-b")
    out = capsys.readouterr().out
    assert seen == list(range(TOTAL))
    lines = _discard_lines(out)
    assert len(lines) == 1 and "another run" in lines[0] and "resumed" not in out


# ------------------------------------------------------------------------- the fast path's phases


@pytest.fixture(scope="module")
def profile():
    return get_profile(
        "smoke", image_size=SIZE, batch_size=8, head_epochs=3, fine_tune_epochs=3, augmented_passes=0
    )


def _head(splits, profile, run_dir, cache_dir, callbacks=()):
    """The fast path's head phase on a freshly built base: the same seed, the same weights, the same key."""
    base = models.build_backbone("mobilenet_v2", alpha=0.35, image_size=SIZE, weights="random", seed=0)
    return fastpath.fit_head_fast(
        base,
        splits,
        profile=profile,
        run_dir=run_dir,
        cache_dir=cache_dir,
        patience=None,
        callbacks=callbacks,
    )


@pytest.mark.parametrize("other", ["another class count", "same class count, other images"])
def test_a_head_backup_from_another_dataset_is_discarded(tmp_path, profile, capsys, other):
    first = data.synthetic_splits(num_classes=3, per_class=6, image_size=SIZE, seed=0)
    if other == "another class count":
        second = data.synthetic_splits(num_classes=2, per_class=6, image_size=SIZE, seed=0)
    else:
        second = data.synthetic_splits(num_classes=3, per_class=6, image_size=SIZE, seed=1)
    run_dir = tmp_path / "run" / "head"
    with pytest.raises(Crash):
        _head(first, profile, run_dir, tmp_path / "features", [_crash_at(2)])
    assert (run_dir / "backup" / resume.WEIGHTS_FILE).exists()
    capsys.readouterr()
    seen: list[int] = []
    result = _head(
        second, profile, run_dir, tmp_path / "features", [_epochs_seen(seen)]
    )  # no shape ValueError
    out = capsys.readouterr().out
    assert seen == [0, 1, 2] and result.epochs_run == 3
    lines = _discard_lines(out)
    assert len(lines) == 1 and "another run" in lines[0] and "resumed" not in out


def test_a_rerun_resumes_the_head_phase_then_reuses_it_once_finished(tmp_path, profile, capsys):
    splits = data.synthetic_splits(num_classes=3, per_class=6, image_size=SIZE, seed=0)
    run_dir = tmp_path / "run" / "head"
    with pytest.raises(Crash):
        _head(splits, profile, run_dir, tmp_path / "features", [_crash_at(2)])
    capsys.readouterr()
    seen: list[int] = []
    finished = _head(splits, profile, run_dir, tmp_path / "features", [_epochs_seen(seen)])
    assert seen == [2] and "resumed from epoch 2" in capsys.readouterr().out
    record = json.loads((run_dir / resume.PHASE_RECORD).read_text())
    assert record["key"] == finished.resume_key

    again: list[int] = []
    reused = _head(splits, profile, run_dir, tmp_path / "features", [_epochs_seen(again)])
    assert again == []  # the head is not trained again
    assert any("head phase reused" in note for note in reused.notes)
    assert reused.val_accuracy == pytest.approx(finished.val_accuracy)
    for got, want in zip(reused.head.get_weights(), finished.head.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    images = next(iter(splits.validation))[0]
    np.testing.assert_allclose(
        np.asarray(reused.model(images, training=False)),
        np.asarray(finished.model(images, training=False)),
        atol=1e-5,
    )


def test_a_damaged_saved_head_phase_is_discarded_and_trained_again(tmp_path, profile, capsys):
    splits = data.synthetic_splits(num_classes=3, per_class=6, image_size=SIZE, seed=0)
    run_dir = tmp_path / "run" / "head"
    _head(splits, profile, run_dir, tmp_path / "features")
    (run_dir / resume.PHASE_WEIGHTS).write_bytes(b"")
    capsys.readouterr()
    seen: list[int] = []
    result = _head(splits, profile, run_dir, tmp_path / "features", [_epochs_seen(seen)])
    lines = _discard_lines(capsys.readouterr().out)
    assert seen == [0, 1, 2] and not any("reused" in note for note in result.notes)
    assert len(lines) == 1 and "damaged" in lines[0]
