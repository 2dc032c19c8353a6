"""The course's own datasets: duplicates dropped before splitting, EuroSAT's fixed test split, and the
satellite -> aerial domain pair (tlcourse.data.dedupe, tlcourse.data.real), on tiny generated folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlcourse import data
from tlcourse.data import real
from tlcourse.errors import AssetMissingError


def _photo(path: Path, seed: int, size: int = 48) -> Path:
    """A picture of random coloured blocks: two seeds give pictures far apart for the perceptual hash."""
    blocks = np.random.default_rng(seed).integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blocks).resize((size, size), Image.Resampling.NEAREST).save(path)
    return path


def _copy(source: Path, target: Path, size: int | None = None) -> Path:
    """An exact copy, or with ``size`` a resized one (a near-duplicate)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if size is None:
        target.write_bytes(source.read_bytes())
    else:
        Image.open(source).resize((size, size), Image.Resampling.BILINEAR).save(target)
    return target


def _tree(root: Path, layout: dict[str, dict[str, int]], seed: int = 0) -> Path:
    """root/<split>/<class>/<class>_<i>.png (split "" for no split folder), every picture distinct."""
    for split, classes in layout.items():
        for c, (label, count) in enumerate(classes.items()):
            for i in range(count):
                offset = {"validation": 500, "test": 700}.get(split, 0)
                _photo(root / split / label / f"{label}_{i}.png", seed + 1000 * c + 17 * i + offset)
    return root


# ------------------------------------------------------------------------------------------ dedupe


@pytest.fixture
def duplicated(tmp_path: Path) -> Path:
    root = _tree(tmp_path / "dup", {"train": {"a": 4, "b": 4}, "validation": {"a": 2, "b": 2}})
    _copy(root / "train/a/a_0.png", root / "validation/a/copy_of_a0.png")  # exact, across splits
    _copy(root / "train/b/b_1.png", root / "train/b/zz_b1_small.png", size=40)  # near, inside train
    _copy(root / "train/b/b_1.png", root / "validation/b/b1_big.png", size=56)  # near, across: a group of 3
    return root


def test_duplicates_are_found_grouped_and_the_train_copy_is_kept(duplicated: Path):
    from tlcourse import audit

    report = audit.audit_folder(duplicated)
    found = data.find_duplicates(report)
    assert found.exact == (("train/a/a_0.png", "validation/a/copy_of_a0.png"),)
    assert found.pairs == 1 + len(found.near) and len(found.near) >= 2  # the b_1 group has 3 pictures
    assert found.dropped == {
        "train/b/zz_b1_small.png": "train/b/b_1.png",
        "validation/a/copy_of_a0.png": "train/a/a_0.png",
        "validation/b/b1_big.png": "train/b/b_1.png",
    }
    assert not found.applied and "they were kept" in found.summary()


def test_dropping_duplicates_recounts_the_report_and_is_deterministic(duplicated: Path):
    from tlcourse import audit

    report = audit.audit_folder(duplicated)
    cleaned, dropped = data.drop_duplicates(report)
    again, dropped_again = data.drop_duplicates(audit.audit_folder(duplicated))
    assert [r.relpath for r in cleaned.records] == [
        r.relpath for r in again.records
    ] and dropped == dropped_again
    assert len(cleaned.records) == len(report.records) - 3 and cleaned.classes == {"a": 6, "b": 6}
    assert cleaned.split_counts == {"train": {"a": 4, "b": 4}, "validation": {"a": 2, "b": 2}}
    assert cleaned.duplicates == [] and cleaned.near_duplicates == []
    summary = dropped.summary()
    assert f"found {dropped.pairs} duplicate pairs" in summary and "across train/validation" in summary
    assert "one picture of each pair was dropped before splitting (3 pictures in all)" in summary
    assert dropped.to_dict()["dropped_count"] == 3


def test_a_folder_loaded_with_dedupe_trains_on_no_duplicate_and_says_so(duplicated: Path):
    plain = data.load_dataset(str(duplicated), image_size=16)
    clean = data.load_dataset(str(duplicated), image_size=16, dedupe=True)
    assert (plain.train_count, plain.validation_count) == (9, 6) and plain.duplicates is None
    assert (clean.train_count, clean.validation_count) == (8, 4)
    assert clean.duplicates.applied and any("dropped before splitting" in note for note in clean.notes)
    assert clean.fingerprint != plain.fingerprint


def test_the_mirror_flowers_are_deduplicated_unless_asked_not_to(tmp_path: Path, monkeypatch):
    mirror = tmp_path / "mirror"
    root = _tree(
        mirror / "datasets" / "flower_photos_small",
        {"train": {"daisy": 3, "roses": 3}, "validation": {"daisy": 1, "roses": 1}},
    )
    _copy(root / "train/daisy/daisy_0.png", root / "validation/daisy/again.png")
    clean = data.load_dataset("flowers", image_size=16, mirror=mirror)
    kept = data.load_dataset("flowers", image_size=16, mirror=mirror, dedupe=False)
    assert (clean.train_count, clean.validation_count) == (6, 2) and clean.duplicates.pairs == 1
    assert (kept.train_count, kept.validation_count) == (6, 3) and not kept.duplicates.applied


# ------------------------------------------------------------------------------------------ EuroSAT


def _eurosat_mirror(root: Path, train: int = 6, validation: int = 2) -> Path:
    classes = {name: train for name in real.EUROSAT_CLASSES[:3]}
    _tree(
        root / "datasets" / real.EUROSAT, {"train": classes, "validation": dict.fromkeys(classes, validation)}
    )
    return root


def _files(splits, part: str) -> set[str]:
    return set(getattr(splits, f"{part}_files"))


def test_eurosat_test_split_is_fixed_by_name_whatever_the_seed_and_never_seen_by_choices(tmp_path: Path):
    mirror = _eurosat_mirror(tmp_path / "mirror")
    first = data.load_eurosat(image_size=16, test_per_class=2, seed=1, mirror=mirror)
    second = data.load_dataset("eurosat", image_size=16, test_per_class=2, seed=99, mirror=mirror)
    assert first.test_files == second.test_files and len(first.test_files) == 6
    assert first.test_class_counts == dict.fromkeys(real.EUROSAT_CLASSES[:3], 2)
    assert all(name.startswith("train/") for name in first.test_files)
    assert all(name.startswith("validation/") for name in first.validation_files)
    assert (first.train_count, first.validation_count, first.test_count) == (12, 6, 6)
    train_images = {x.tobytes() for x in np.concatenate([b.numpy() for b, _ in first.train])}
    test_images = {x.tobytes() for x in np.concatenate([b.numpy() for b, _ in first.test])}
    assert not train_images & test_images
    ranked = sorted(
        (f"train/AnnualCrop/AnnualCrop_{i}.png" for i in range(6)),
        key=lambda p: real.rank_by_name(p, "eurosat-test"),
    )
    assert {p for p in first.test_files if "/AnnualCrop/" in p} == set(ranked[:2])


def test_eurosat_can_use_the_validation_folder_as_its_test_split(tmp_path: Path):
    mirror = _eurosat_mirror(tmp_path / "mirror")
    splits = data.load_eurosat(image_size=16, test_from="validation", validation_per_class=1, mirror=mirror)
    assert all(name.startswith("validation/") for name in splits.test_files) and splits.test_count == 6
    assert all(name.startswith("train/") for name in splits.validation_files) and splits.validation_count == 3
    assert splits.train_count == 15
    with pytest.raises(ValueError, match="test_from"):
        data.load_eurosat(image_size=16, test_from="test", mirror=mirror)


def test_eurosat_without_the_mirror_stands_in_loudly_in_smoke_and_refuses_otherwise(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("TLCOURSE_MIRROR", raising=False)
    with pytest.raises(AssetMissingError, match="eurosat_rgb_small"):
        data.load_eurosat(image_size=16)
    splits = data.load_eurosat(image_size=16, max_per_class=4, allow_synthetic=True)
    assert "GENERATED SYNTHETIC IMAGES" in capsys.readouterr().out and splits.synthetic_fallback
    assert splits.class_names == sorted(real.EUROSAT_CLASSES) and splits.num_classes == 10
    assert (splits.train_count, splits.validation_count, splits.test_count) == (40, 20, 20)
    x, y = next(iter(splits.test))
    assert tuple(x.shape[1:]) == (16, 16, 3) and x.dtype.name == "float32" and y.dtype.name == "int32"


def test_synthetic_class_names_reach_sixteen_and_keep_the_first_eight():
    eight, ten = data.synthetic_class_names(8), data.synthetic_class_names(10)
    assert set(eight) < set(ten) and len(set(data.synthetic_class_names(16))) == 16


# ------------------------------------------------------------------------------------------ satellite -> aerial


def test_sat2aerial_roles_are_disjoint_fixed_and_sized_as_asked(tmp_path: Path):
    mirror = tmp_path / "mirror"
    root = mirror / "datasets" / real.SAT2AERIAL
    classes = dict.fromkeys(real.LANDUSE_CLASSES[:2], 7)
    _tree(root / "satellite", {"": classes}, seed=1)
    _tree(root / "aerial", {"": classes}, seed=50_000)
    sizes = dict(source_test_per_class=2, source_validation_per_class=1, target_test_per_class=4)
    pair = data.load_sat2aerial(image_size=16, mirror=mirror, seed=3, **sizes)
    again = data.load_sat2aerial(image_size=16, mirror=mirror, seed=8, **sizes)
    source, target = pair.source, pair.target
    assert (source.train_count, source.validation_count, source.test_count) == (8, 2, 4)
    assert (target.train_count, target.validation_count, target.test_count) == (6, 8, 0)
    assert pair.class_names == list(real.LANDUSE_CLASSES[:2]) == target.class_names
    assert (
        source.test_files == again.source.test_files
        and target.validation_files == again.target.validation_files
    )
    pool = {x.tobytes() for x in np.concatenate([b.numpy() for b, _ in target.train])}
    held_out = {x.tobytes() for x in np.concatenate([b.numpy() for b, _ in target.validation])}
    assert len(pool) == 6 and len(held_out) == 8 and not pool & held_out
    assert "adaptation pool 6" in pair.summary() and not pair.synthetic_fallback


def test_sat2aerial_without_the_mirror_gives_a_generated_pair_in_smoke(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TLCOURSE_MIRROR", raising=False)
    with pytest.raises(AssetMissingError, match="landuse_sat2aerial"):
        data.load_sat2aerial(image_size=16)
    pair = data.load_sat2aerial(image_size=16, allow_synthetic=True)
    assert "GENERATED SYNTHETIC IMAGES" in capsys.readouterr().out and pair.synthetic_fallback
    assert (
        pair.source.test_count == 10 and pair.target.validation_count == 20 and pair.target.train_count == 30
    )
    src = np.concatenate([x.numpy() for x, _ in pair.source.validation]).mean()
    tgt = np.concatenate([x.numpy() for x, _ in pair.target.validation]).mean()
    assert tgt < src  # the generated target is tinted darker: a second domain


@pytest.mark.mirror
def test_the_mirror_datasets_after_the_audit(mirror: Path):
    """The figures the model card and lesson 04 quote: what the audit finds in the course's datasets."""
    flowers = data.load_dataset("flowers", image_size=32, mirror=mirror)
    assert (flowers.train_count, flowers.validation_count) == (793, 193)
    found = flowers.duplicates
    assert (found.pairs, len(found.exact), len(found.near), len(found.across), len(found.dropped)) == (
        14,
        2,
        12,
        7,
        14,
    )


def test_the_model_card_states_what_the_audit_found_and_whether_it_was_dropped():
    from tlcourse import modelcard

    pairs = (("train/a/1.jpg", "validation/a/2.jpg"), ("train/b/3.jpg", "train/b/4.jpg"))
    found = data.DuplicateReport(
        near=pairs,
        across=pairs[:1],
        dropped={"validation/a/2.jpg": "train/a/1.jpg"},
        applied=False,
        splits=("train", "validation"),
    )
    kept = modelcard.model_card("m", ["a", "b"], metrics={"data": {"duplicates": found.to_dict()}})
    assert (
        "- **Duplicates:** The audit found 2 duplicate pairs (0 identical files, 2 near-duplicates), 1 of them across train/validation; they were kept."
        in kept
    )
    assert "1 duplicate pair(s) straddle the splits and were kept" in kept
    dropped = found.to_dict() | {
        "applied": True,
        "summary": found.summary().replace("they were kept", "dropped"),
    }
    card = modelcard.model_card("m", ["a", "b"], metrics={"data": {"duplicates": dropped}})
    assert "- **Duplicates:**" in card and "straddle" not in card


def test_flips_and_quarter_turns_give_each_picture_one_of_its_eight_orientations():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (64, 5, 5, 3)).astype("float32")
    out = np.asarray(data.flips_and_quarter_turns(seed=3)(tf.constant(images)))
    assert out.shape == images.shape
    seen = set()
    for image, turned in zip(images, out, strict=True):
        orientations = [np.rot90(flip, k) for flip in (image, image[:, ::-1]) for k in range(4)]
        matches = [i for i, candidate in enumerate(orientations) if np.array_equal(candidate, turned)]
        assert matches, "every output is a flip and/or quarter turn of its own input"
        seen.add(matches[0])
    assert len(seen) == 8, "all eight orientations occur in a batch of 64"
