"""The benchmarks read what the library writes today: each one's measuring step runs on a tiny folder."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
COLOURS = {"apples": (200, 30, 30), "grass": (30, 180, 40), "sky": (40, 60, 210)}


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("validation", 2), ("test", 2)):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                noise = rng.integers(-40, 40, size=(40, 48, 3))
                pixels = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype("uint8")
                Image.fromarray(pixels).save(folder / f"{name}_{split}_{i}.png")
    return root


def test_accuracy_vs_time_child_scores_the_saved_model_on_every_test_photo(tmp_path):
    bench = _benchmark("accuracy_vs_time")
    folder = _folder(tmp_path / "photos")
    setting = {"name": "tiny", "size": 32, "profile": "smoke", "weights": "random", "formats": "keras"}
    result = bench.child(setting, folder, tmp_path / "no-mirror", tmp_path / "out")
    assert result["labels"] == [0, 0, 1, 1, 2, 2]
    assert len(result["predictions"]) == 6 and set(result["predictions"]) <= {0, 1, 2}
    assert result["settings_used"]["image_size"] == 32 and result["train_count"] == 18
    split = bench._split(result)
    assert set(split) == {"decode", "extract", "head", "fine-tune", "export", "total"}
    assert all(value >= 0 for value in split.values()), split


def test_accuracy_vs_time_folds_predict_every_photo_exactly_once_and_never_train_on_it(tmp_path):
    bench = _benchmark("accuracy_vs_time")
    mirror = tmp_path / "mirror"
    flowers = mirror / "datasets" / "flower_photos_small"
    _folder(flowers)  # its test/ is ignored: train and validation are pooled
    seen: list[str] = []
    for fold in range(3):
        root = tmp_path / f"fold{fold}"
        counts = bench.make_fold_folder(mirror, root, fold, 3)
        names = {split: {p.name for p in (root / split).rglob("*.png")} for split in counts}
        assert {split: len(found) for split, found in names.items()} == counts
        assert not names["test"] & (names["train"] | names["validation"])
        seen += sorted(names["test"])
    assert len(seen) == len(set(seen)) == 3 * (6 + 2)


def test_eurosat_report_pairs_each_mistake_with_the_setting_it_breaks_on_the_same_seed(tmp_path, capsys):
    import json

    bench = _benchmark("eurosat_fine_tune")
    labels = [0, 1, 2, 3] * 5
    right = list(labels)
    wrong_half = [label if i % 2 else (label + 1) % 4 for i, label in enumerate(labels)]
    records = {
        "all_e10-seed1": {"setting": "all_e10", "head_pred": wrong_half, "pred": right},
        "adam1e3_e10-seed1": {
            "setting": "adam1e3_e10",
            "breaks": "all_e10",
            "head_pred": wrong_half,
            "pred": wrong_half,
        },
    }
    for name, record in records.items():
        record |= {
            "seed": 1,
            "labels": labels,
            "fine_tune_epochs_run": 10,
            "seconds": {},
            "peak_rss_mib": 1.0,
        }
        (tmp_path / f"{name}.json").write_text(json.dumps(record))
    rows = {row["setting"]: row for row in bench.report(tmp_path)}
    assert rows["all_e10"]["head"] == 0.5 and rows["all_e10"]["tuned"] == 1.0
    assert rows["all_e10"]["gain"][0] == 0.5 and rows["all_e10"]["gain"][1] > 0
    assert rows["adam1e3_e10"]["vs_correct"][0] == -0.5 and rows["adam1e3_e10"]["vs_correct"][2] < 0
    assert "vs all_e10 -50.0" in capsys.readouterr().out
