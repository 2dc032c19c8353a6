"""Datasets as tf.data pipelines (tlcourse.data): sources, splits, caps, fingerprints, errors and fallbacks."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from badimages import BLUE, GREEN, RED, make_bad_folder, write_bytes, write_jpeg, write_truncated

from tlcourse import data
from tlcourse.config import get_profile
from tlcourse.errors import AssetMissingError, DataError

SIZE = 24
COLOURS = {"apple": RED, "leaf": GREEN, "sky": BLUE}


def _flat_folder(root: Path, counts: dict[str, int]) -> Path:
    """root/<class>/<n>.jpg with distinct small pictures."""
    for c, (label, count) in enumerate(counts.items()):
        for i in range(count):
            write_jpeg(
                root / label / f"{label}_{i:03d}.jpg", (32, 28), COLOURS.get(label, RED), seed=100 * c + i
            )
    return root


def _split_folder(root: Path, flat: Path, validation: dict[str, list[str]]) -> Path:
    """The same files as ``flat`` laid out as train/ + validation/ (names in ``validation`` go to validation/)."""
    for path in sorted(flat.rglob("*.jpg")):
        label = path.parent.name
        split = "validation" if path.name in validation.get(label, []) else "train"
        target = root / split / label / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return root


def _arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    return _flat_folder(tmp_path / "flat", {"apple": 10, "leaf": 20, "sky": 30})


# ----------------------------------------------------------------------------------------- folders


def test_class_names_and_order_are_the_same_with_and_without_split_folders(tmp_path: Path, flat: Path):
    split = _split_folder(tmp_path / "split", flat, {"apple": ["apple_000.jpg", "apple_001.jpg"]})
    without = data.load_dataset(flat, image_size=SIZE, batch_size=8)
    with_splits = data.load_dataset(str(split), image_size=SIZE, batch_size=8)
    assert without.class_names == with_splits.class_names == ["apple", "leaf", "sky"]
    # the given validation folder is used as is: only the two apples
    assert with_splits.validation_class_counts == {"apple": 2, "leaf": 0, "sky": 0}
    assert with_splits.train_count == 58


def test_stratified_split_keeps_every_class_on_both_sides_in_proportion(flat: Path):
    splits = data.load_dataset(flat, image_size=SIZE, batch_size=8, validation_fraction=0.2, seed=3)
    assert splits.validation_class_counts == {"apple": 2, "leaf": 4, "sky": 6}
    assert splits.train_class_counts == {"apple": 8, "leaf": 16, "sky": 24}
    _, labels = _arrays(splits.validation)
    assert Counter(labels.tolist()) == {0: 2, 1: 4, 2: 6}


def test_stratified_split_never_empties_a_side_for_tiny_classes():
    labels = [0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3]
    train, validation = data.stratified_split(labels, 0.1, seed=0)
    assert sorted(train + validation) == list(range(len(labels)))
    for label in (0, 1, 2):
        assert any(labels[i] == label for i in train) and any(labels[i] == label for i in validation)
    assert [labels[i] for i in validation].count(3) == 0  # a single example stays in training


def test_split_is_seeded_same_seed_same_split_other_seed_other_split(flat: Path):
    first = data.load_dataset(flat, image_size=SIZE, seed=1).validation_files
    again = data.load_dataset(flat, image_size=SIZE, seed=1).validation_files
    other = data.load_dataset(flat, image_size=SIZE, seed=2).validation_files
    assert first == again
    assert set(first) != set(other)


def test_max_per_class_caps_training_and_validation_per_class(flat: Path):
    splits = data.load_dataset(flat, image_size=SIZE, batch_size=4, max_per_class=5)
    assert splits.train_class_counts == {"apple": 5, "leaf": 5, "sky": 5}
    assert splits.validation_class_counts == {"apple": 2, "leaf": 2, "sky": 2}  # max(2, 5 // 4)
    images, labels = _arrays(splits.train)
    assert len(images) == splits.train_count == 15
    assert Counter(labels.tolist()) == {0: 5, 1: 5, 2: 5}


def test_batches_are_float32_0_to_255_square_with_int32_labels(flat: Path):
    splits = data.load_dataset(flat, image_size=SIZE, batch_size=7)
    x, y = next(iter(splits.train))
    assert x.dtype.name == "float32" and y.dtype.name == "int32"
    assert tuple(x.shape) == (7, SIZE, SIZE, 3) and tuple(y.shape) == (7,)
    values = x.numpy()
    assert values.min() >= 0.0 and values.max() <= 255.0
    assert values.max() > 1.5  # not rescaled to 0..1
    assert splits.image_size == SIZE and splits.batch_size == 7


def test_train_reshuffles_every_epoch_and_validation_keeps_its_order(flat: Path):
    splits = data.load_dataset(flat, image_size=SIZE, batch_size=64, seed=5)
    epoch1, epoch2 = _arrays(splits.train), _arrays(splits.train)
    assert sorted(epoch1[1].tolist()) == sorted(epoch2[1].tolist())
    assert not np.array_equal(epoch1[0], epoch2[0])
    val1, val2 = _arrays(splits.validation), _arrays(splits.validation)
    assert np.array_equal(val1[0], val2[0])
    assert val1[1].tolist() == sorted(val1[1].tolist())  # class by class
    fixed = data.load_dataset(flat, image_size=SIZE, batch_size=64, seed=5, shuffle_train=False)
    assert np.array_equal(_arrays(fixed.train)[0], _arrays(fixed.train)[0])


def test_streaming_pipeline_gives_the_same_images_as_the_in_memory_cache(flat: Path):
    cached = data.load_dataset(flat, image_size=SIZE, shuffle_train=False, cache_decoded=True)
    streamed = data.load_dataset(flat, image_size=SIZE, shuffle_train=False, cache_decoded=False)
    assert cached.cached and not streamed.cached
    for a, b in ((cached.train, streamed.train), (cached.validation, streamed.validation)):
        (xa, ya), (xb, yb) = _arrays(a), _arrays(b)
        assert np.array_equal(ya, yb)
        assert np.array_equal(xa, xb)
    assert cached.fingerprint == streamed.fingerprint


def test_augment_changes_training_images_only(flat: Path):
    plain = data.load_dataset(flat, image_size=SIZE, shuffle_train=False)
    augmented = data.load_dataset(flat, image_size=SIZE, shuffle_train=False, augment=True)
    x_plain, y_plain = _arrays(plain.train)
    x_aug, y_aug = _arrays(augmented.train)
    assert np.array_equal(y_plain, y_aug)
    assert not np.allclose(x_plain, x_aug)
    assert x_aug.min() >= 0.0 and x_aug.max() <= 255.0
    assert np.array_equal(_arrays(plain.validation)[0], _arrays(augmented.validation)[0])


def test_bad_files_are_skipped_and_reported(tmp_path: Path):
    expected = make_bad_folder(tmp_path / "student", huge=False)
    splits = data.load_dataset(tmp_path / "student", image_size=SIZE, batch_size=8)
    usable = {rel for rel, outcome in expected.items() if outcome == "usable"}
    broken = {rel for rel, outcome in expected.items() if outcome.startswith("problem")}
    assert splits.class_names == ["cats", "dogs"]
    assert splits.train_count + splits.validation_count == len(usable)
    reported = {problem.path for problem in splits.audit.problems}
    assert broken <= reported
    assert any("skipped" in note for note in splits.notes)
    images, _ = _arrays(splits.train)  # every batch decodes: nothing broken reached the pipeline
    assert len(images) == splits.train_count


def test_folder_with_a_few_broken_files_trains_on_the_rest(tmp_path: Path):
    root = _flat_folder(tmp_path / "f", {"apple": 4, "leaf": 4})
    write_bytes(root / "apple" / "notes.jpg", b"<html><body>saved page</body></html>")
    write_truncated(root / "leaf" / "cut.jpg")
    splits = data.load_dataset(root, image_size=SIZE)
    assert splits.train_count + splits.validation_count == 8
    assert {p.path for p in splits.audit.problems} == {"apple/notes.jpg", "leaf/cut.jpg"}


def test_unusable_folder_raises_data_error_with_the_audit_reason(tmp_path: Path):
    root = _flat_folder(tmp_path / "one", {"apple": 5})
    with pytest.raises(DataError, match="only one class") as info:
        data.load_dataset(root, image_size=SIZE)
    assert "check-data" in str(info.value)


def test_missing_folder_and_unknown_name_raise_data_error(tmp_path: Path):
    with pytest.raises(DataError, match="No folder"):
        data.load_dataset(tmp_path / "nowhere", image_size=SIZE)
    with pytest.raises(DataError, match="Unknown dataset 'flowerz'"):
        data.load_dataset("flowerz", image_size=SIZE)


# ----------------------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_and_changes_when_the_data_changes(flat: Path):
    def fingerprint(image_size: int = SIZE) -> str:
        return data.load_dataset(flat, image_size=image_size).fingerprint

    base = fingerprint()
    assert fingerprint() == base
    assert fingerprint(image_size=SIZE + 8) != base
    os.utime(flat / "sky" / "sky_000.jpg", ns=(1, 1))  # touched, same bytes: same data
    assert fingerprint() == base

    write_jpeg(flat / "sky" / "sky_000.jpg", (32, 28), GREEN, seed=999)  # modified
    modified = fingerprint()
    assert modified != base
    write_jpeg(flat / "sky" / "new.jpg", (32, 28), BLUE, seed=1234)  # added
    added = fingerprint()
    assert added not in (base, modified)
    (flat / "leaf" / "leaf_003.jpg").unlink()  # removed
    assert fingerprint() not in (base, modified, added)


# ----------------------------------------------------------------------------------------- synthetic


def test_synthetic_data_is_deterministic_by_seed_and_learnable():
    a = data.synthetic_splits(num_classes=4, per_class=12, image_size=32, seed=7, shuffle_train=False)
    b = data.synthetic_splits(num_classes=4, per_class=12, image_size=32, seed=7, shuffle_train=False)
    c = data.synthetic_splits(num_classes=4, per_class=12, image_size=32, seed=8, shuffle_train=False)
    xa, ya = _arrays(a.train)
    assert np.array_equal(xa, _arrays(b.train)[0]) and a.fingerprint == b.fingerprint
    assert not np.array_equal(xa, _arrays(c.train)[0]) and a.fingerprint != c.fingerprint
    assert len(set(a.class_names)) == 4 and a.class_names == sorted(a.class_names)
    assert (a.train_count, a.validation_count) == (48, 12)
    # a tiny linear model on crude colour statistics already separates the classes
    from sklearn.linear_model import LogisticRegression

    def features(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2)), x.max(axis=(1, 2))], axis=1)

    xv, yv = _arrays(a.validation)
    model = LogisticRegression(max_iter=2000).fit(features(xa) / 255.0, ya)
    assert model.score(features(xv) / 255.0, yv) >= 0.9


def test_load_dataset_synthetic_source_uses_image_size_and_cap():
    splits = data.load_dataset("synthetic", image_size=16, batch_size=4, max_per_class=8, seed=1)
    x, _ = next(iter(splits.train))
    assert tuple(x.shape[1:]) == (16, 16, 3)
    assert splits.train_count == 3 * 8 and splits.validation_count == 3 * 2
    assert not splits.synthetic_fallback


# ----------------------------------------------------------------------------------------- tfds


def test_offline_tfds_without_prepared_data_gives_a_clear_error(tmp_path: Path, no_network):
    empty = tmp_path / "tfds"
    empty.mkdir()
    with pytest.raises(AssetMissingError) as info:
        data.load_dataset("tf_flowers", image_size=SIZE, data_dir=empty)
    message = str(info.value)
    assert "not prepared" in message and str(empty) in message and "offline" in message
    assert "online" in message and "mirror" in message
    with pytest.raises(AssetMissingError, match="download=False"):
        data.load_dataset("cats_vs_dogs", image_size=SIZE, data_dir=empty, download=False)


def test_tfds_source_is_relabelled_alphabetically_and_split_stratified(tmp_path: Path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=60, policy=tfds.testing.MockPolicy.USE_CODE):
        splits = data.load_dataset(
            "tf_flowers", image_size=SIZE, batch_size=8, data_dir=tmp_path, download=True, seed=0
        )
        builder = tfds.builder("tf_flowers", data_dir=str(tmp_path))
        raw_names = builder.info.features["label"].names
        raw = [int(ex["label"]) for ex in builder.as_dataset(split="train")]
    assert splits.class_names == list(data.FLOWER_CLASSES) != raw_names
    assert splits.train_count + splits.validation_count == 60
    raw_counts = Counter(raw_names[label] for label in raw)
    for name, count in raw_counts.items():
        if count >= 2:
            assert splits.validation_class_counts[name] >= 1 and splits.train_class_counts[name] >= 1
    # each validation example keeps its class name, whatever number tfds gives it
    _, labels = _arrays(splits.validation)
    indices = [int(item.split("[")[1].rstrip("]")) for item in splits.validation_files]
    assert [splits.class_names[k] for k in labels] == [raw_names[raw[i]] for i in indices]


# ----------------------------------------------------------------------------------------- profiles / fallback


@pytest.fixture
def nothing_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network) -> Path:
    """No mirror, an empty tfds folder, no network."""
    monkeypatch.delenv("TLCOURSE_MIRROR", raising=False)
    empty = tmp_path / "empty-tfds"
    empty.mkdir()
    monkeypatch.setenv("TFDS_DATA_DIR", str(empty))
    return empty


def test_smoke_profile_falls_back_to_synthetic_loudly(nothing_available: Path, capsys):
    profile = get_profile("smoke", image_size=SIZE)
    splits = data.load_for_profile(profile, "flowers")
    out = capsys.readouterr().out
    assert "WARNING" in out and "SYNTHETIC" in out and "flowers" in out and str(nothing_available) in out
    assert splits.synthetic_fallback and splits.source.startswith("synthetic")
    assert splits.num_classes == len(data.FLOWER_CLASSES)
    assert splits.train_class_counts == dict.fromkeys(splits.class_names, profile.max_images_per_class)
    x, _ = next(iter(splits.train))
    assert tuple(x.shape[1:]) == (SIZE, SIZE, 3)


def test_cpu_profile_without_data_raises_instead_of_faking(nothing_available: Path, capsys):
    with pytest.raises(AssetMissingError, match="TLCOURSE_MIRROR") as info:
        data.load_for_profile(get_profile("cpu"), "flowers")
    assert str(nothing_available) in str(info.value)
    assert "SYNTHETIC" not in capsys.readouterr().out


def test_profile_values_are_used_and_overrides_win(flat: Path):
    profile = get_profile("smoke", image_size=SIZE, batch_size=4, max_images_per_class=3)
    splits = data.load_for_profile(profile, str(flat))
    assert splits.train_class_counts == {"apple": 3, "leaf": 3, "sky": 3}
    assert next(iter(splits.train))[0].shape[0] == 4
    bigger = data.load_for_profile(profile, str(flat), max_per_class=None, batch_size=2)
    assert bigger.train_count == 48 and next(iter(bigger.train))[0].shape[0] == 2


# ----------------------------------------------------------------------------------------- mirror


@pytest.mark.mirror
def test_flowers_from_the_mirror_have_five_classes_and_no_duplicate_across_splits(mirror: Path):
    splits = data.load_dataset("flowers", image_size=32, batch_size=50, mirror=mirror)
    assert splits.source == "mirror:flower_photos_small"
    assert splits.class_names == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    # 800 + 200 photos, less one of each of the audit's 14 duplicate pairs (tests/test_real_data.py)
    assert (splits.train_count, splits.validation_count) == (793, 193)
    assert splits.validation_class_counts == {
        "daisy": 39,
        "dandelion": 39,
        "roses": 38,
        "sunflowers": 39,
        "tulips": 38,
    }
    x, y = next(iter(splits.validation))
    assert tuple(x.shape) == (50, 32, 32, 3) and x.dtype.name == "float32" and y.dtype.name == "int32"


def test_misspelt_option_is_refused_not_silently_ignored(flat: Path):
    with pytest.raises(TypeError, match="max_per_clas"):
        data.load_dataset(flat, image_size=SIZE, max_per_clas=3)


def test_test_fraction_holds_out_a_stratified_seeded_test_split_disjoint_from_training(flat: Path):
    splits = data.load_image_folder(flat, image_size=16, test_fraction=0.25, seed=3)
    again = data.load_image_folder(flat, image_size=16, test_fraction=0.25, seed=3)
    plain = data.load_image_folder(flat, image_size=16, seed=3)
    assert splits.test is not None and plain.test is None
    assert splits.test_files == again.test_files  # deterministic
    assert set(splits.test_class_counts) == set(splits.class_names)
    assert all(count >= 1 for count in splits.test_class_counts.values())
    assert not set(splits.test_files) & set(splits.validation_files)
    total = splits.train_count + splits.validation_count + splits.test_count
    assert total == plain.train_count + plain.validation_count  # every image in exactly one split
    assert sum(len(y) for _, y in splits.test) == splits.test_count
    assert splits.fingerprint != plain.fingerprint


def test_photo_folder_writes_a_generated_image_folder_loudly_in_the_smoke_profile(nothing_available, capsys):
    keras = pytest.importorskip("keras")
    folder = data.photo_folder(get_profile("smoke", image_size=SIZE), seed=3)
    assert "SYNTHETIC" in capsys.readouterr().out
    train, validation = keras.utils.image_dataset_from_directory(
        folder / "train", validation_split=0.25, subset="both", seed=1, image_size=(SIZE, SIZE), verbose=False
    )
    assert train.class_names == data.synthetic_class_names(5)
    assert len(train.file_paths) + len(validation.file_paths) == 5 * 8
    assert sorted(p.name for p in (folder / "validation").iterdir()) == train.class_names


def test_photo_folder_refuses_to_fake_photos_outside_the_smoke_profile(nothing_available):
    with pytest.raises(AssetMissingError, match="TLCOURSE_MIRROR"):
        data.photo_folder(get_profile("cpu"))


def test_write_synthetic_folder_is_deterministic_for_a_seed(tmp_path):
    one = data.write_synthetic_folder(
        tmp_path / "a", num_classes=2, per_split={"train": 2}, image_size=8, seed=5
    )
    two = data.write_synthetic_folder(
        tmp_path / "b", num_classes=2, per_split={"train": 2}, image_size=8, seed=5
    )
    files = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert len(files) == 4 and files == sorted(p.relative_to(two) for p in two.rglob("*.png"))
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)


@pytest.mark.mirror
def test_photo_folder_is_the_mirrors_flowers_when_there_is_one(mirror: Path):
    folder = data.photo_folder(get_profile("cpu"), mirror=mirror)
    assert sorted(p.name for p in (folder / "train").iterdir() if p.is_dir()) == list(data.FLOWER_CLASSES)


def test_capped_copy_keeps_the_first_files_of_each_class_and_leaves_the_original(tmp_path):
    flat = _flat_folder(tmp_path / "flat", {"apple": 6, "leaf": 6})
    folder = _split_folder(tmp_path / "split", flat, {"apple": ["apple_004.jpg", "apple_005.jpg"]})
    copy = data.capped_copy(folder, 4)
    assert sorted(p.name for p in (copy / "train" / "apple").iterdir()) == [
        f"apple_00{i}.jpg" for i in range(4)
    ]
    assert len(list((copy / "train" / "leaf").iterdir())) == 4
    assert [p.name for p in (copy / "validation" / "apple").iterdir()] == ["apple_004.jpg"]
    assert len(list((folder / "train" / "leaf").iterdir())) == 6  # the original is untouched
