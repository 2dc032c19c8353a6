"""The TensorFlow tutorial's transfer-learning recipe vs tlcourse's default strategy, side by side.

Run (from the repository root; about 10 minutes on 2 quiet CPU cores)::

    python benchmarks/recipe_vs_tlcourse.py [--mirror ../shared/assets] [--json results.json]

On the mirror's ``flower_photos_small`` (5 classes), copied once as train/ validation/ test/ the way
``benchmarks/accuracy_vs_time.py`` does (600 training, the mirror's 200 validation, 200 test photos: a seeded,
stratified quarter of each class's training photos that neither side trains, stops early or chooses on).
Both sides are scored on the test photos, with their 95% intervals:

(a) recipe: the TF tutorial's own MobileNetV2 (alpha 1.0, 160 px, ImageNet weights): ``image_dataset_from_directory``,
    augmentation layers inside the model, the frozen base recomputed every epoch; 10 head epochs with Adam 1e-4;
    then layers from 100 on unfrozen and 10 more epochs with RMSprop at 1e-5 (a tenth of the rate), as in the
    tutorial.
(b) tlcourse (the cpu profile's capstone setting, as ``tlcourse train`` runs it: its width, size and cached
    augmented passes, none since issue 18): head on cached features (``fastpath.fit_head_fast``), then the
    boundary-cached fine-tune (``fastpath.fine_tune_fast``), both with early stopping on the validation photos.
(b') the same with the lessons' settings (the cpu profile's own lighter ``alpha`` and ``image_size`` and its 2
    cached augmented passes), so one run shows what each of the profile's two settings costs against the same
    recipe run.
(c) throughput: tlcourse's feature extraction (decode + resize + forward pass, cold cache) vs the bare
    forward pass of the same backbone on already-decoded tensors, and a plain ``image_dataset_from_directory``
    pipeline for reference.

Each part runs in its own subprocess so its peak RSS (``ru_maxrss``) is its own. The CPU may be shared
with other work, so wall times are noisy; compare the ratios.

CPU kernels: the recipe runs with TensorFlow's defaults, as a student running the tutorial gets them (TensorFlow
picks oneDNN by the CPU: off on the 2-core AVX2 machine of issue 18, where forcing it on makes forward passes
about 1.8x faster); tlcourse runs as ``tlcourse train`` does (``config.quiet_tensorflow(onednn=True)``). A
``TF_ENABLE_ONEDNN_OPTS`` set in the environment applies to every part, e.g. ``TF_ENABLE_ONEDNN_OPTS=1`` gives
the recipe oneDNN too; the report says what each part ran on (TensorFlow's own answer).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = REPO.parent / "shared" / "assets"
RECIPE_ALPHA = 1.0
RECIPE_SIZE = 160
"""The TF tutorial's own MobileNetV2: the default width at its 160 px input."""
BATCH = 32
SEED = 42


def _cpu_profile(*, capstone: bool):
    """The cpu profile as ``tlcourse train`` runs it (``capstone=True``: its capstone width, size and passes)
    or as the lessons read it (tlcourse.config)."""
    sys.path.insert(0, str(REPO))
    from tlcourse.config import get_profile

    return get_profile("cpu").for_capstone() if capstone else get_profile("cpu")


def _capstone() -> tuple[float, int]:
    """The width and size ``tlcourse train`` uses with the cpu profile."""
    profile = _cpu_profile(capstone=True)
    return profile.alpha, profile.image_size


def _lessons() -> tuple[float, int]:
    """The width and size the lessons use with the cpu profile (lighter than the capstone's)."""
    profile = _cpu_profile(capstone=False)
    return profile.alpha, profile.image_size


ALPHA, SIZE = _capstone()
LESSON_ALPHA, LESSON_SIZE = _lessons()


def _quiet(*, as_tlcourse_train: bool) -> None:
    """Quiet logs; tlcourse's kernels as ``tlcourse train`` chooses them, the recipe's as TensorFlow does."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if as_tlcourse_train:
        from tlcourse.config import quiet_tensorflow

        quiet_tensorflow(onednn=True)


def _onednn() -> bool | None:
    from tlcourse.config import onednn_enabled

    return onednn_enabled()


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _flowers(mirror: Path) -> Path:
    return mirror / "datasets" / "flower_photos_small"


def _weights(mirror: Path, alpha: float) -> Path:
    """The no-top ImageNet weights of width ``alpha`` (any input size: same shapes) from the mirror."""
    from tlcourse import assets

    return Path(assets.mobilenet_v2_weights(alpha, 224, mirror=mirror, download=False).path)


def _test_accuracy(model, dataset) -> tuple[float, int]:
    import numpy as np

    labels = np.concatenate([np.asarray(y) for _, y in dataset])
    logits = model.predict(dataset.map(lambda x, y: x), verbose=0)
    return float(np.mean(np.asarray(logits).argmax(1) == labels)), int(len(labels))


# ------------------------------------------------------------------------------------------------- (a)


def child_recipe(mirror: Path, root: Path) -> dict:
    """The tutorial's recipe, adapted only for 5 classes (softmax logits instead of one sigmoid unit)."""
    _quiet(as_tlcourse_train=False)
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    size, alpha = RECIPE_SIZE, RECIPE_ALPHA
    t_start = time.perf_counter()
    train_ds = keras.utils.image_dataset_from_directory(
        root / "train", shuffle=True, batch_size=BATCH, image_size=(size, size), seed=SEED, verbose=False
    )
    val_ds = keras.utils.image_dataset_from_directory(
        root / "validation", shuffle=False, batch_size=BATCH, image_size=(size, size), verbose=False
    )
    test_ds = keras.utils.image_dataset_from_directory(
        root / "test", shuffle=False, batch_size=BATCH, image_size=(size, size), verbose=False
    )
    train_ds = train_ds.prefetch(tf.data.AUTOTUNE)
    val_ds = val_ds.prefetch(tf.data.AUTOTUNE)
    augmentation = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2)])
    base = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None
    )
    base.load_weights(str(_weights(mirror, alpha)))  # the 224 px weights: same shapes at 160 px
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = augmentation(inputs)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(5)(x))
    base_lr = 1e-4
    model.compile(
        optimizer=keras.optimizers.Adam(base_lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    setup = time.perf_counter() - t_start
    t0 = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=10, verbose=0)
    head_seconds = time.perf_counter() - t0
    head_acc = float(model.evaluate(val_ds, verbose=0)[1])

    base.trainable = True
    for layer in base.layers[:100]:
        layer.trainable = False
    model.compile(
        optimizer=keras.optimizers.RMSprop(base_lr / 10),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    t1 = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=20, initial_epoch=len(history.epoch), verbose=0)
    fine_seconds = time.perf_counter() - t1
    fine_acc = float(model.evaluate(val_ds, verbose=0)[1])
    total = time.perf_counter() - t_start
    test_acc, test_n = _test_accuracy(model, test_ds)
    return {
        "alpha": alpha,
        "image_size": size,
        "test_accuracy": test_acc,
        "test_count": test_n,
        "setup_seconds": setup,
        "head_seconds": head_seconds,
        "head_val_accuracy": head_acc,
        "fine_tune_seconds": fine_seconds,
        "fine_tune_val_accuracy": fine_acc,
        "total_seconds": total,
        "head_epochs": 10,
        "fine_tune_epochs": 10,
        "onednn": _onednn(),
        "peak_rss_mib": _peak_rss_mib(),
    }


# ------------------------------------------------------------------------------------------------- (b)


def child_tlcourse(mirror: Path, root: Path) -> dict:
    """tlcourse's default: the cpu profile's capstone setting (as ``tlcourse train`` runs it), cached features,
    boundary-cached fine-tune."""
    return _tlcourse(mirror, root, capstone=True)


def child_tlcourse_lessons(mirror: Path, root: Path) -> dict:
    """The same with the lessons' own cpu settings (lighter width and size, 2 cached augmented passes)."""
    return _tlcourse(mirror, root, capstone=False)


def _tlcourse(mirror: Path, root: Path, *, capstone: bool) -> dict:
    _quiet(as_tlcourse_train=True)
    from tlcourse import data, fastpath, models
    from tlcourse.config import seed_everything

    seed_everything(SEED)
    profile = _cpu_profile(capstone=capstone)
    alpha, size = profile.alpha, profile.image_size
    if os.environ.get("BENCH_AUGMENTED_PASSES"):  # a variant: e.g. BENCH_AUGMENTED_PASSES=0
        profile = profile.replace(augmented_passes=int(os.environ["BENCH_AUGMENTED_PASSES"]))
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:  # cold feature cache
        splits = data.load_for_profile(profile, source=str(root), image_size=size, seed=SEED, mirror=mirror)
        load_seconds = time.perf_counter() - t_start
        t0 = time.perf_counter()
        base = models.build_backbone("mobilenet_v2", alpha=alpha, image_size=size, mirror=mirror)
        head = fastpath.fit_head_fast(
            base,
            splits,
            profile=profile,
            seed=SEED,
            cache_dir=cache,
            boundary=models.spec_of(base).default_unfreeze_from,  # where fine_tune_fast unfreezes by default
        )
        head_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        tuned = fastpath.fine_tune_fast(head, splits, profile=profile, seed=SEED)
        fine_seconds = time.perf_counter() - t1
        # check on the assembled end-to-end model, as it would be exported
        import numpy as np

        labels = np.concatenate([np.asarray(y) for _, y in splits.validation])
        logits = tuned.model.predict(splits.validation.map(lambda x, y: x), verbose=0)
        assembled_acc = float(np.mean(logits.argmax(1) == labels))
        total = time.perf_counter() - t_start
        test_acc, test_n = _test_accuracy(tuned.model, splits.test)
    return {
        "alpha": alpha,
        "image_size": size,
        "test_accuracy": test_acc,
        "test_count": test_n,
        "load_seconds": load_seconds,
        "head_seconds": head_seconds,
        "head_extract_seconds": head.timings.get("extract_seconds"),
        "head_val_accuracy": head.val_accuracy,
        "head_epochs_run": head.epochs_run,
        "fine_tune_seconds": fine_seconds,
        "fine_tune_timings": tuned.timings,
        "fine_tune_val_accuracy": tuned.val_accuracy,
        "assembled_model_val_accuracy": assembled_acc,
        "fine_tune_epochs_run": tuned.epochs_run,
        "fine_tune_boundary": tuned.boundary,
        "notes": head.notes + tuned.notes,
        "total_seconds": total,
        "onednn": _onednn(),
        "profile": {
            k: getattr(profile, k)
            for k in (
                "head_epochs",
                "fine_tune_epochs",
                "learning_rate",
                "fine_tune_learning_rate",
                "augmented_passes",
            )
        },
        "peak_rss_mib": _peak_rss_mib(),
    }


# ------------------------------------------------------------------------------------------------- (c)


def child_throughput(mirror: Path, root: Path) -> dict:
    """Images per second: bare forward pass on decoded tensors vs tlcourse extraction vs a plain pipeline."""
    _quiet(as_tlcourse_train=True)
    import keras
    import numpy as np
    import tensorflow as tf

    from tlcourse import data, fastcache, features, models
    from tlcourse.config import get_profile

    profile = get_profile("cpu", alpha=ALPHA, image_size=SIZE)
    backbone = models.build_backbone(
        "mobilenet_v2", alpha=ALPHA, image_size=SIZE, weights="imagenet", mirror=mirror, verbose=False
    )
    models.freeze(backbone)
    extractor = features.feature_extractor(backbone)

    t_load = time.perf_counter()
    splits = data.load_for_profile(profile, source=str(root), image_size=SIZE, seed=SEED, mirror=mirror)
    load_seconds = time.perf_counter() - t_load
    # what fit_head runs: the traced forward pass over the training pipeline (plain pass)
    forward = fastcache.forward_function(extractor)
    fastcache.predict_arrays(extractor, splits.train.take(1), forward=forward)  # trace once
    t0 = time.perf_counter()
    arrays, labels = fastcache.predict_arrays(extractor, splits.train, forward=forward)
    extract_seconds = time.perf_counter() - t0
    count = len(labels)
    result = {}
    features.extract_features(extractor, splits.train.take(1), progress=False)
    t3 = time.perf_counter()
    fs = features.extract_features(extractor, splits.train, progress=False)
    result["features_extract_images_per_s"] = len(fs.labels) / (time.perf_counter() - t3)

    # the same images, already decoded, as one array: the bare forward pass
    decoded = np.concatenate([np.asarray(x) for x, _ in splits.train])

    @tf.function
    def bare(x):
        return extractor(x, training=False)

    bare(tf.constant(decoded[:BATCH]))  # trace once
    t1 = time.perf_counter()
    for i in range(0, len(decoded), BATCH):
        bare(tf.constant(decoded[i : i + BATCH])).numpy()
    bare_seconds = time.perf_counter() - t1

    plain = keras.utils.image_dataset_from_directory(
        root / "train", batch_size=BATCH, image_size=(SIZE, SIZE), shuffle=False, verbose=False
    ).prefetch(tf.data.AUTOTUNE)
    t2 = time.perf_counter()
    seen = 0
    for x, _ in plain:
        bare(x).numpy()
        seen += int(x.shape[0])
    plain_seconds = time.perf_counter() - t2
    bare_rate = len(decoded) / bare_seconds
    result.update(
        {
            "images": count,
            "data_load_seconds": load_seconds,
            "data_decoded_in_memory": bool(getattr(splits, "cached", False)),
            "data_decode_seconds": float(getattr(splits, "decode_seconds", 0.0)),
            "tlcourse_extract_images_per_s": count / extract_seconds,
            "tlcourse_extract_incl_decode_images_per_s": count / (extract_seconds + load_seconds),
            "bare_forward_images_per_s": bare_rate,
            "plain_pipeline_images_per_s": seen / plain_seconds,
            "tlcourse_vs_bare": (count / extract_seconds) / bare_rate,
            "tlcourse_incl_decode_vs_bare": (count / (extract_seconds + load_seconds)) / bare_rate,
            "plain_vs_bare": (seen / plain_seconds) / bare_rate,
            "peak_rss_mib": _peak_rss_mib(),
        }
    )
    return result


CHILDREN = {
    "recipe": child_recipe,
    "tlcourse": child_tlcourse,
    "tlcourse_lessons": child_tlcourse_lessons,
    "throughput": child_throughput,
}


# ---------------------------------------------------------------------------------------------- parent


def _run_child(name: str, mirror: Path, root: Path) -> dict:
    print(f"--- running {name} ...", flush=True)
    start = time.perf_counter()
    env = dict(os.environ)  # this checkout's tlcourse, whatever copy is installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, "--mirror", str(mirror), "--folder", str(root)],
        capture_output=True,
        text=True,
        cwd=str(REPO),
        env=env,
    )
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["process_wall_seconds"] = wall
    result["children_maxrss_mib_so_far"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    print(f"    done in {wall:.0f}s, peak RSS {result['peak_rss_mib']:.0f} MiB", flush=True)
    return result


def _sides(results: dict) -> list[tuple[str, dict]]:
    """The tlcourse settings measured in this run, capstone first."""
    names = {"tlcourse": "tlcourse train", "tlcourse_lessons": "lessons' setting"}
    return [(label, results[key]) for key, label in names.items() if key in results]


def _table(results: dict) -> list[str]:
    from tlcourse.evaluate import accuracy_interval

    r, sides = results["recipe"], _sides(results)

    def with_interval(side: dict) -> str:
        low, high = accuracy_interval(side["test_accuracy"], side["test_count"])
        return f"{side['test_accuracy']:.3f} [{low:.3f}, {high:.3f}]"

    def points(key: str) -> list[str]:
        return [f"{(t[key] - r[key]) * 100:+.1f} pts" for _, t in sides]

    def seconds(side: dict, key: str) -> float:
        if key == "head+fine":
            return side["head_seconds"] + side["fine_tune_seconds"]
        return side[key]

    def timed(label: str, key: str) -> list[str]:
        cells = [f"{seconds(r, key):.1f}"] + [f"{seconds(t, key):.1f}" for _, t in sides]
        return [label, *cells, *(f"{seconds(t, key) / seconds(r, key):.3f}x" for _, t in sides)]

    header = ["", f"recipe (alpha {r['alpha']:g}, {r['image_size']} px)"]
    header += [f"{label} (alpha {t['alpha']:g}, {t['image_size']} px)" for label, t in sides]
    header += [f"ratio: {label}" for label, _ in sides]
    count = sides[0][1]["test_count"]
    rows = [
        header,
        [f"TEST accuracy ({count} photos) [95%]", with_interval(r)]
        + [with_interval(t) for _, t in sides]
        + points("test_accuracy"),
        ["head val accuracy", f"{r['head_val_accuracy']:.3f}"]
        + [f"{t['head_val_accuracy']:.3f}" for _, t in sides]
        + points("head_val_accuracy"),
        timed("head wall time (s)", "head_seconds"),
        ["fine-tuned val accuracy", f"{r['fine_tune_val_accuracy']:.3f}"]
        + [f"{t['fine_tune_val_accuracy']:.3f}" for _, t in sides]
        + points("fine_tune_val_accuracy"),
        timed("fine-tune wall time (s)", "fine_tune_seconds"),
        timed("head + fine-tune (s)", "head+fine"),
        timed("whole process wall (s)", "process_wall_seconds"),
        ["peak RSS (MiB)", f"{r['peak_rss_mib']:.0f}"]
        + [f"{t['peak_rss_mib']:.0f}" for _, t in sides]
        + [f"{t['peak_rss_mib'] / r['peak_rss_mib']:.2f}x" for _, t in sides],
        ["oneDNN CPU kernels", str(r.get("onednn"))]
        + [str(t.get("onednn")) for _, t in sides]
        + [""] * len(sides),
    ]
    width = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in width))
    return lines


def _targets(results: dict) -> list[tuple[str, bool]]:
    """The issue's targets, for tlcourse train's setting; the 0.10x target for the lessons' setting too."""
    r, t, p = results["recipe"], results["tlcourse"], results.get("throughput")
    head_ratio = t["head_seconds"] / r["head_seconds"]
    both = (t["head_seconds"] + t["fine_tune_seconds"]) / (r["head_seconds"] + r["fine_tune_seconds"])
    targets = []
    for label, side in _sides(results):
        ratio = side["process_wall_seconds"] / r["process_wall_seconds"]
        targets.append(
            (
                f"{label}: TEST accuracy >= recipe's and whole process <= 0.10x recipe's (measured "
                f"{(side['test_accuracy'] - r['test_accuracy']) * 100:+.1f} pts in {ratio:.3f}x)",
                side["test_accuracy"] >= r["test_accuracy"] and ratio <= 0.10,
            )
        )
    targets += [
        (
            "head accuracy within 1 pt of recipe (or better)",
            t["head_val_accuracy"] >= r["head_val_accuracy"] - 0.01,
        ),
        ("head time <= 1/5 of recipe's", head_ratio <= 0.2),
        ("fine-tuned accuracy >= recipe's", t["fine_tune_val_accuracy"] >= r["fine_tune_val_accuracy"]),
        ("head + fine-tune time <= 1/2 of recipe's", both <= 0.5),
        ("  (aim) <= 1/5 of recipe's", both <= 0.2),
        ("extraction throughput >= 0.9x bare forward", p is not None and p["tlcourse_vs_bare"] >= 0.9),
        ("tlcourse peak RSS < 2 GiB", t["peak_rss_mib"] < 2048),
    ]
    return targets


def _report(results: dict) -> str:
    t, p = results["tlcourse"], results.get("throughput")
    lines = _table(results)
    lines.append("")
    lines.append(
        f"epochs: recipe {results['recipe']['head_epochs']}+{results['recipe']['fine_tune_epochs']}, tlcourse "
        f"{t['head_epochs_run']}+{t['fine_tune_epochs_run']} (early stopping; profile {t['profile']}); fine-tune "
        f"boundary {t['fine_tune_boundary']}; tlcourse assembled model val accuracy "
        f"{t['assembled_model_val_accuracy']:.3f}"
    )
    lines.append(f"tlcourse notes: {'; '.join(t['notes'])}")
    lines.append(
        "throughput: not measured (--only)"
        if p is None
        else f"throughput on {p['images']} images (img/s): bare forward on decoded tensors "
        f"{p['bare_forward_images_per_s']:.1f}; tlcourse extraction {p['tlcourse_extract_images_per_s']:.1f} "
        f"({p['tlcourse_vs_bare']:.2f}x bare; images decoded once at load: {p['data_decoded_in_memory']}, "
        f"load {p['data_load_seconds']:.1f}s; counting the load {p['tlcourse_extract_incl_decode_images_per_s']:.1f}"
        f" = {p['tlcourse_incl_decode_vs_bare']:.2f}x); plain image_dataset_from_directory "
        f"{p['plain_pipeline_images_per_s']:.1f} ({p['plain_vs_bare']:.2f}x bare)"
        + (
            f"; features.extract_features {p['features_extract_images_per_s']:.1f}"
            if "features_extract_images_per_s" in p
            else ""
        )
    )
    lines.append("targets:")
    lines.extend(f"  [{'met' if ok else 'MISSED'}] {name}" for name, ok in _targets(results))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mirror", type=Path, default=Path(os.environ.get("TLCOURSE_MIRROR", DEFAULT_MIRROR))
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(CHILDREN),
        default=["tlcourse", "tlcourse_lessons", "throughput", "recipe"],
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(CHILDREN[args.child](args.mirror, args.folder)), flush=True)
        return 0
    if not _flowers(args.mirror).is_dir():
        print(f"No flower_photos_small under {args.mirror}: pass --mirror.", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from accuracy_vs_time import make_folder

    print(
        f"recipe: MobileNetV2 alpha {RECIPE_ALPHA:g}, {RECIPE_SIZE}px; tlcourse train: alpha {ALPHA:g}, {SIZE}px; "
        f"lessons: alpha {LESSON_ALPHA:g}, {LESSON_SIZE}px; "
        f"flowers from {_flowers(args.mirror)}; {os.cpu_count()} CPUs, load average {os.getloadavg()}"
    )
    with tempfile.TemporaryDirectory(prefix="recipe-vs-tlcourse-") as tmp:
        root = Path(tmp) / "flowers"
        print(f"data: {make_folder(args.mirror, root)}", flush=True)
        results = {name: _run_child(name, args.mirror, root) for name in args.only}
    print(f"load average at the end {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if {"recipe", "tlcourse"} <= set(results):
        print()
        print(_report(results))
    else:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
