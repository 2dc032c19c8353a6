"""When fine-tuning pays on EuroSAT, in the cpu profile's constraints (issue 27; lesson 05's far domain).

MobileNetV2 alpha 0.35 with the mirror's ImageNet weights, EuroSAT RGB from the mirror through
``tlcourse.data.load_eurosat`` (100 train, 50 validation, 50 TEST pictures a class; the test pictures are fixed
by name and never used for a choice). For each setting and seed, one child process:

1. trains lesson 04's head on frozen features (Adam 1e-3, up to 20 epochs, early stopping on validation);
2. for a fine-tuning setting, puts that head on the base, unfreezes it (all layers or from a block; BatchNorm
   frozen unless the setting is the BatchNorm mistake), compiles at the setting's rate and fits on augmented
   training pictures (``d4``: ``tlcourse.data.flips_and_quarter_turns``; ``default``: the course's default augmentation;
   ``none``), with early stopping on validation that restores the best epoch;
3. writes the head's and the fine-tuned model's predictions on the test pictures, the seconds of each phase and
   the child's peak resident memory (``ru_maxrss``) to ``OUT/<setting>-seed<N>.json``.

``report`` then prints, per setting and seed, test accuracies, fine-tuned minus head with the paired 95%
bootstrap interval (``tlcourse.evaluate.paired_bootstrap``, same test pictures), each mistake minus the correct
setting it breaks (same seed, same pictures), seconds and peak memory. Run with ``nice``; never in CI::

    nice -n 10 python benchmarks/eurosat_fine_tune.py run --settings all_e10,all_e6 --seeds 1,2,3 --out OUT
    python benchmarks/eurosat_fine_tune.py report OUT
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

SETTINGS: dict[str, dict] = {
    # head only, at two input sizes (64 px is EuroSAT's native size)
    "head64": {"size": 64, "fine_tune": False},
    "head96": {"size": 96, "fine_tune": False},
    "head64_v": {"size": 64, "fine_tune": False, "test_from": "validation"},
    "all_e10_v": {"size": 64, "from": 0, "epochs": 10, "lr": 1e-4, "aug": "d4", "test_from": "validation"},
    "all_e6_v": {"size": 64, "from": 0, "epochs": 6, "lr": 1e-4, "aug": "d4", "test_from": "validation"},
    # the starting point: every layer unfrozen (BatchNorm frozen), flips and 90-degree turns
    "all_e10": {"size": 64, "from": 0, "epochs": 10, "lr": 1e-4, "aug": "d4"},
    "all_e6": {"size": 64, "from": 0, "epochs": 6, "lr": 1e-4, "aug": "d4"},
    "all_e4": {"size": 64, "from": 0, "epochs": 4, "lr": 1e-4, "aug": "d4"},
    "all_e8": {"size": 64, "from": 0, "epochs": 8, "lr": 1e-4, "aug": "d4"},
    "all_e10_default_aug": {"size": 64, "from": 0, "epochs": 10, "lr": 1e-4, "aug": "default"},
    "all_e10_noaug": {"size": 64, "from": 0, "epochs": 10, "lr": 1e-4, "aug": "none"},
    "b8_e10": {"size": 64, "from": "block_8", "epochs": 10, "lr": 1e-4, "aug": "d4"},
    # a learning rate that decays to 0 along a cosine over the 10 epochs: the last epochs move the weights less
    "all_e10_cosine": {
        "size": 64,
        "from": 0,
        "epochs": 10,
        "lr": 1e-4,
        "aug": "d4",
        "early": False,
        "cosine": True,
    },
    "adam1e3_e10_cosine": {
        "size": 64,
        "from": 0,
        "epochs": 10,
        "lr": 1e-3,
        "aug": "d4",
        "early": False,
        "cosine": True,
        "breaks": "all_e10_cosine",
    },
    "bn_trainable_e10_cosine": {
        "size": 64,
        "from": 0,
        "epochs": 10,
        "lr": 1e-4,
        "aug": "d4",
        "early": False,
        "cosine": True,
        "bn": True,
        "breaks": "all_e10_cosine",
    },
    # fixed epochs: no early stopping, so no noisy validation epoch can end the run at epoch 3
    "all_e10_fixed": {"size": 64, "from": 0, "epochs": 10, "lr": 1e-4, "aug": "d4", "early": False},
    "all_e10_default_aug_fixed": {
        "size": 64,
        "from": 0,
        "epochs": 10,
        "lr": 1e-4,
        "aug": "default",
        "early": False,
    },
    "adam1e3_e10_default_aug": {
        "size": 64,
        "from": 0,
        "epochs": 10,
        "lr": 1e-3,
        "aug": "default",
        "breaks": "all_e10_default_aug",
    },
    "bn_trainable_e10_default_aug": {
        "size": 64,
        "from": 0,
        "epochs": 10,
        "lr": 1e-4,
        "aug": "default",
        "bn": True,
        "breaks": "all_e10_default_aug",
    },
    "all_e6_default_aug": {"size": 64, "from": 0, "epochs": 6, "lr": 1e-4, "aug": "default"},
    "all_e6_noaug": {"size": 64, "from": 0, "epochs": 6, "lr": 1e-4, "aug": "none"},
    "b13_e6": {"size": 64, "from": "block_13", "epochs": 6, "lr": 1e-4, "aug": "d4"},
    "b8_e6": {"size": 64, "from": "block_8", "epochs": 6, "lr": 1e-4, "aug": "d4"},
    # the classic mistakes, each on a correct setting (``breaks``) and compared with it on the same seed
    "adam1e3_e6": {"size": 64, "from": 0, "epochs": 6, "lr": 1e-3, "aug": "d4", "breaks": "all_e6"},
    "bn_trainable_e6": {
        "size": 64,
        "from": 0,
        "epochs": 6,
        "lr": 1e-4,
        "aug": "d4",
        "bn": True,
        "breaks": "all_e6",
    },
    "adam1e3_e10": {"size": 64, "from": 0, "epochs": 10, "lr": 1e-3, "aug": "d4", "breaks": "all_e10"},
    "bn_trainable_e10": {
        "size": 64,
        "from": 0,
        "epochs": 10,
        "lr": 1e-4,
        "aug": "d4",
        "bn": True,
        "breaks": "all_e10",
    },
}
HEAD_EPOCHS, HEAD_PATIENCE, FINE_TUNE_PATIENCE, BATCH = 20, 5, 3, 32


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(name: str, seed: int, out: Path, mirror: str | None) -> dict:
    """Run one setting with one seed; write and return its record (see the module docstring)."""
    from tlcourse import config

    config.quiet_tensorflow()
    import keras
    import numpy as np

    from tlcourse import data, models

    setting = SETTINGS[name]
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    cpu_start = time.process_time()
    start = time.perf_counter()
    config.seed_everything(seed)
    splits = data.load_eurosat(
        image_size=setting["size"],
        batch_size=BATCH,
        seed=seed,
        mirror=mirror,
        test_from=setting.get("test_from", "train"),
    )
    times["load"] = time.perf_counter() - start
    cpu["load"], cpu_start = time.process_time() - cpu_start, time.process_time()

    start = time.perf_counter()
    size = setting["size"]
    path = models.imagenet_weights("mobilenet_v2", alpha=0.35, image_size=size, mirror=mirror)
    base = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), alpha=0.35, include_top=False, weights=path
    )
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    head = keras.Sequential([keras.layers.Dropout(0.2), keras.layers.Dense(splits.num_classes)], name="head")
    model = keras.Model(inputs, head(pooled))
    extractor = keras.Model(inputs, pooled)

    def features(dataset):
        pairs = [(extractor(x, training=False).numpy(), y.numpy()) for x, y in dataset]
        return np.concatenate([f for f, _ in pairs]), np.concatenate([y for _, y in pairs])

    (ftr, ytr), (fva, yva), (fte, yte) = (features(d) for d in (splits.train, splits.validation, splits.test))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", patience=HEAD_PATIENCE, restore_best_weights=True
    )
    history = head.fit(
        ftr,
        ytr,
        validation_data=(fva, yva),
        epochs=HEAD_EPOCHS,
        batch_size=BATCH,
        verbose=0,
        callbacks=[stop],
    )
    head_epochs = len(history.history["loss"])
    head_pred = head.predict(fte, verbose=0).argmax(axis=1)
    times["head"] = time.perf_counter() - start
    cpu["head"], cpu_start = time.process_time() - cpu_start, time.process_time()
    record = {
        "setting": name,
        "seed": seed,
        **setting,
        "labels": yte.tolist(),
        "head_pred": head_pred.tolist(),
        "head_val_accuracy": float(max(history.history["val_accuracy"])),
        "head_epochs": head_epochs,
        "train_count": splits.train_count,
        "test_count": splits.test_count,
    }
    if setting.get("fine_tune", True):
        start = time.perf_counter()
        base.trainable = True
        at = setting["from"]
        at = models.layer_index(base, at) if isinstance(at, str) else int(at)
        for layer in base.layers[:at]:
            layer.trainable = False
        if not setting.get("bn"):
            for layer in base.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        rate = setting["lr"]
        if setting.get("cosine"):
            steps = setting["epochs"] * -(-splits.train_count // BATCH)
            rate = keras.optimizers.schedules.CosineDecay(setting["lr"], decay_steps=steps)
        model.compile(optimizer=keras.optimizers.Adam(rate), loss=loss, metrics=["accuracy"])
        train = splits.train
        if setting["aug"] == "d4":
            turn = data.flips_and_quarter_turns(seed)
            train = train.map(lambda x, y: (turn(x), y))
        elif setting["aug"] == "default":
            layers = data.default_augmentation(seed)
            train = train.map(lambda x, y: (layers(x, training=True), y))
        stop = keras.callbacks.EarlyStopping(
            monitor="val_accuracy", patience=FINE_TUNE_PATIENCE, restore_best_weights=True
        )
        history = model.fit(
            train,
            validation_data=splits.validation,
            epochs=setting["epochs"],
            verbose=0,
            callbacks=[stop] if setting.get("early", True) else [],
        )
        times["fine_tune"] = time.perf_counter() - start
        cpu["fine_tune"], cpu_start = time.process_time() - cpu_start, time.process_time()
        record["trainable_params"] = int(sum(np.prod(v.shape) for v in model.trainable_weights))
        record["fine_tune_epochs_run"] = len(history.history["loss"])
        record["val_accuracy_by_epoch"] = [round(v, 4) for v in history.history["val_accuracy"]]
        test_images = np.concatenate([x for x, _ in splits.test])
        record["pred"] = model.predict(test_images, verbose=0, batch_size=BATCH).argmax(axis=1).tolist()
    record["seconds"] = {k: round(v, 1) for k, v in times.items()}
    record["cpu_seconds"] = {k: round(v, 1) for k, v in cpu.items()}
    record["load_average"] = round(os.getloadavg()[0], 1)
    record["peak_rss_mib"] = round(_peak_mib(), 0)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}-seed{seed}.json").write_text(json.dumps(record))
    return record


def run(settings: list[str], seeds: list[int], out: Path, mirror: str | None) -> None:
    """One child process per (setting, seed), so each peak memory is that run's own; skips finished runs."""
    for name in settings:
        for seed in seeds:
            if (out / f"{name}-seed{seed}.json").exists():
                continue
            command = [sys.executable, __file__, "one", name, str(seed), "--out", str(out)]
            if mirror:
                command += ["--mirror", mirror]
            started = time.perf_counter()
            subprocess.run(command, check=True)
            print(f"{name} seed {seed}: {time.perf_counter() - started:.0f} s wall", flush=True)


def report(out: Path) -> list[dict]:
    """Read every record in ``out``; print and return one row per record with its accuracies and intervals."""
    import numpy as np

    from tlcourse.evaluate import paired_bootstrap

    records = {
        (r["setting"], r["seed"]): r for r in (json.loads(p.read_text()) for p in sorted(out.glob("*.json")))
    }
    rows = []
    for (name, seed), r in sorted(records.items()):
        y = np.asarray(r["labels"])
        row = {"setting": name, "seed": seed, "head": float((np.asarray(r["head_pred"]) == y).mean())}
        if "pred" in r:
            row["tuned"] = float((np.asarray(r["pred"]) == y).mean())
            row["gain"] = paired_bootstrap(y, r["head_pred"], r["pred"], seed=0)
            broken = records.get((r.get("breaks"), seed))
            if broken is not None:
                row["vs_correct"] = paired_bootstrap(y, broken["pred"], r["pred"], seed=0)
            row["epochs_run"] = r["fine_tune_epochs_run"]
        row["seconds"] = r["seconds"]
        row["peak_rss_mib"] = r["peak_rss_mib"]
        rows.append(row)

        def interval(t):
            return f"{t[0] * 100:+.1f} [{t[1] * 100:+.1f}, {t[2] * 100:+.1f}]"

        parts = [f"{name:>20} seed {seed}", f"head {row['head']:.3f}"]
        if "tuned" in row:
            parts += [
                f"tuned {row['tuned']:.3f}",
                f"gain {interval(row['gain'])}",
                f"epochs {row['epochs_run']}",
            ]
        if "vs_correct" in row:
            parts.append(f"vs {r['breaks']} {interval(row['vs_correct'])}")
        parts += [
            f"wall s {row['seconds']}",
            f"cpu s {r.get('cpu_seconds')}",
            f"load {r.get('load_average')}",
        ]
        parts.append(f"{row['peak_rss_mib']:.0f} MiB")
        print(" | ".join(parts))
    for seed in sorted({seed for _, seed in records}):
        for (a, part_a), (b, part_b) in CROSS:
            first, second = records.get((a, seed)), records.get((b, seed))
            if first and second and first["labels"] == second["labels"]:
                d = paired_bootstrap(first["labels"], first[part_a], second[part_b], seed=0)
                print(f"seed {seed}: {b} minus {a}: {d[0] * 100:+.1f} [{d[1] * 100:+.1f}, {d[2] * 100:+.1f}]")
    return rows


CROSS = [
    (("head64", "head_pred"), ("head96", "head_pred")),
    (("head96", "head_pred"), ("all_e10", "pred")),
    (("all_e6", "pred"), ("all_e10", "pred")),
    (("head96", "head_pred"), ("all_e10_cosine", "pred")),
    (("all_e10_fixed", "pred"), ("all_e10_cosine", "pred")),
]
"""Paired comparisons across settings on the same seed and test pictures (``report`` prints them)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("one")
    one.add_argument("setting", choices=sorted(SETTINGS))
    one.add_argument("seed", type=int)
    many = sub.add_parser("run")
    many.add_argument("--settings", default="head64,head96,all_e10,all_e6,adam1e3_e6,bn_trainable_e6")
    many.add_argument("--seeds", default="1,2,3")
    for p in (one, many):
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--mirror", default=os.environ.get("TLCOURSE_MIRROR"))
    show = sub.add_parser("report")
    show.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "one":
        child(args.setting, args.seed, args.out, args.mirror)
    elif args.command == "run":
        run(args.settings.split(","), [int(s) for s in args.seeds.split(",")], args.out, args.mirror)
    else:
        report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
