"""Run lessons 04-05's training path on one device and on two, in one process; print the results as JSON.

Run by tests/test_distribute.py in a subprocess: it splits the CPU into two logical devices before anything
else touches TensorFlow (that cannot be undone in a process, so the rest of the suite keeps one device). Each
run gets freshly made data with the same seed, its own feature cache and run folders, and dropout off, so the
only difference between the runs is the number of replicas.

Usage: python tests/distribute_worker.py WORKDIR
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 32
SEED = 7
FROM_LAYER = "block_15"
INTERRUPTED = "interrupted on purpose after the first epoch"


def split_cpu(count: int) -> list[str]:
    """Split the first CPU into ``count`` logical devices; must run before any other use of TensorFlow."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def unmirrored(model: Any, replicas: int) -> list[str]:
    """Paths of ``model``'s variables that are not one copy per replica (built outside the strategy scope)."""
    import tensorflow as tf

    wrong = []
    for variable in model.variables:
        value = getattr(variable, "value", variable)
        copies = len(value.values) if isinstance(value, tf.distribute.DistributedValues) else 1
        if copies != replicas:
            wrong.append(f"{model.name}/{variable.path}: {copies} copy(ies), {replicas} replica(s)")
    return wrong


def logits(model: Any, images: np.ndarray) -> list[list[float]]:
    return np.asarray(model.predict(images, verbose=0, batch_size=len(images))).tolist()


class Interrupt(Exception):
    """Stands for a crash or a Ctrl-C in the middle of training."""


def run(strategy: Any, workdir: Path, weights: str) -> dict[str, Any]:
    """Lesson 04's head on cached features, lesson 05's fine-tuning (fast, then plain), resume, export."""
    import keras

    from tlcourse import data, export, fastpath, models, train
    from tlcourse.config import get_profile, seed_everything

    replicas = int(strategy.num_replicas_in_sync)
    profile = get_profile(
        "smoke", image_size=SIZE, batch_size=8, head_epochs=3, fine_tune_epochs=2, augmented_passes=0
    )

    def splits() -> Any:  # made afresh for every phase: each run sees the same shuffles
        return data.synthetic_splits(
            num_classes=3, per_class=8, validation_per_class=4, image_size=SIZE, batch_size=8, seed=0
        )

    images = np.concatenate([np.asarray(x) for x, _ in splits().validation])
    out: dict[str, Any] = {"replicas": replicas, "unmirrored": [], "seconds": {}}
    clock = time.perf_counter()
    with strategy.scope():
        seed_everything(SEED)
        backbone = models.build_backbone("mobilenet_v2", alpha=0.35, image_size=SIZE, weights=weights)
        head = fastpath.fit_head_fast(
            backbone, splits(), profile=profile, dropout=0.0, patience=None, seed=SEED,
            cache_dir=workdir / "features",
        )  # fmt: skip
        out["unmirrored"] += unmirrored(head.head, replicas)
        out["head_accuracy"] = head.val_accuracy
        out["head_logits"] = logits(head.model, images)
        out["seconds"]["head"] = time.perf_counter() - clock

        clock = time.perf_counter()
        fast = fastpath.fine_tune_fast(
            head,
            splits(),
            from_layer=FROM_LAYER,
            profile=profile,
            patience=None,
            seed=SEED,
            keep_better=False,
        )
        out["unmirrored"] += unmirrored(fast.trainer, replicas) + unmirrored(fast.model, replicas)
        out["fast_accuracy"] = fast.val_accuracy
        out["fast_logits"] = logits(fast.model, images)
        out["seconds"]["fine_tune_fast"] = time.perf_counter() - clock

        # the plain recipe end to end (train.fine_tune on the model as compiled), interrupted after one of its
        # two epochs; the backup of train.training_callbacks lets the second call go on from there
        class StopAfterFirstEpoch(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                raise Interrupt(INTERRUPTED)

        clock = time.perf_counter()
        model, run_dir = fast.model, workdir / "fine_tune"
        try:
            train.fine_tune(
                model, splits(), epochs=2, profile=profile, augment=False, patience=None, seed=SEED,
                run_dir=run_dir, callbacks=[StopAfterFirstEpoch()],
            )  # fmt: skip
        except Interrupt:
            out["interrupted"] = True
        resumed = train.fine_tune(
            model,
            splits(),
            epochs=2,
            profile=profile,
            augment=False,
            patience=None,
            seed=SEED,
            run_dir=run_dir,
        )
        out["unmirrored"] += unmirrored(model, replicas)
        out["resumed_epochs_run"] = resumed.epochs_run
        out["plain_accuracy"] = resumed.val_accuracy
        out["plain_logits"] = logits(model, images)
        out["seconds"]["fine_tune_resumed"] = time.perf_counter() - clock

    clock = time.perf_counter()
    exported = export.export_formats(
        model, workdir / "export", images, formats=("keras",), class_names=["a", "b", "c"]
    )
    out["export"] = {kind: {"ok": e["ok"], "diff": e["max_abs_diff"], "error": e.get("error")} for kind, e in
                     exported.items()}  # fmt: skip
    out["reloaded_logits"] = logits(export.load_keras(workdir / "export" / "model.keras"), images)
    out["seconds"]["export"] = time.perf_counter() - clock
    out["seconds"]["total"] = sum(out["seconds"].values())
    return out


def main(workdir: str) -> None:
    devices = split_cpu(2)
    import tensorflow as tf

    from tlcourse.config import quiet_tensorflow

    quiet_tensorflow()
    root = Path(workdir)
    weights = "imagenet" if os.environ.get("TLCOURSE_MIRROR") else "random"  # the mirror's real weights
    results = {
        "devices": devices,
        "weights": weights,
        "one": run(tf.distribute.get_strategy(), root / "one", weights),
        "two": run(tf.distribute.MirroredStrategy(devices[:2]), root / "two", weights),
    }
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
