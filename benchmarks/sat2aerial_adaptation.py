"""A real domain shift and what adapting to it buys: satellite -> aerial land use (issue 27; lesson 07).

MobileNetV2 alpha 0.35 with the mirror's ImageNet weights on ``tlcourse.data.load_sat2aerial`` (satellite: 40
train, 10 validation, 20 test a class; aerial: a pool of 30 a class to adapt with and 40 a class held out, all
chosen by name). One child process per seed measures, every adapted model scored on the SAME 200 held-out
aerial pictures:

- ``source``: a head on frozen features of the satellite training pictures (Adam 1e-3, fixed epochs); its
  accuracy on held-out satellite and on held-out aerial pictures, and the drop (an unpaired bootstrap: the two
  test sets are different pictures);
- ``refit_k``: a new head on the satellite features plus k labelled aerial pictures a class (k = 1, 5, 10, drawn
  from the pool with ``tlcourse.shift.few_shot_indices`` and the seed); ``refit_weighted_k``: the same with
  sample weights that give each domain half the total weight; ``target_only_k``: a head on the aerial ones alone;
- ``adabn``: the source head on features from a base whose BatchNorm statistics were re-estimated on the pool's
  pixels (150 pictures, no labels: AdaBN, Li et al. 2016), and ``adabn_refit_k`` (both);
- ``fine_tune_k``: the source model fine-tuned on satellite + k aerial a class (every layer, BatchNorm frozen,
  flips and 90-degree turns, fixed epochs at 1e-4), and ``adabn_fine_tune_k`` (the same after AdaBN).

Each method's gain over the unadapted source head comes with the paired 95% bootstrap interval of
``tlcourse.evaluate.paired_bootstrap``; the record also keeps each method's seconds (wall and CPU) and the
process's peak memory after it. Run with ``nice``; never in CI::

    nice -n 10 python benchmarks/sat2aerial_adaptation.py run --seeds 1,2,3 --size 64 --out OUT
    python benchmarks/sat2aerial_adaptation.py report OUT
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

HEAD_EPOCHS, BATCH, K_VALUES, FINE_TUNE_K = 30, 32, (1, 5, 10), (5, 10)
PAIRS = (
    [(f"target_only_{k}", f"refit_{k}") for k in K_VALUES]
    + [(f"fine_tune_{k}", f"refit_{k}") for k in FINE_TUNE_K]
    + [(f"adabn_refit_{k}", f"refit_{k}") for k in FINE_TUNE_K]
    + [(f"refit_weighted_{k}", f"refit_{k}") for k in K_VALUES]
    + [("fine_tune_10", "target_only_10"), ("adabn_both_refit_5", "refit_5")]
)
"""Paired comparisons the report prints besides each method's gain over the unadapted source head."""


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(seed: int, size: int, out: Path, mirror: str | None, epochs: int, only_extra: bool = False) -> dict:
    """Every method for one seed; write ``OUT/seed<N>-<size>px.json`` and return it. ``only_extra``: add the
    ``adabn_both`` methods to an existing record instead."""
    from tlcourse import config

    config.quiet_tensorflow()
    import keras
    import numpy as np
    import tensorflow as tf

    from tlcourse import data, models, shift

    record: dict = {"seed": seed, "size": size, "fine_tune_epochs": epochs, "methods": {}}
    clock = {"wall": time.perf_counter(), "cpu": time.process_time()}

    def lap(name: str, pred=None, **extra) -> None:
        wall, cpu = time.perf_counter() - clock["wall"], time.process_time() - clock["cpu"]
        entry = {"seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "peak_rss_mib": round(_peak_mib())}
        if pred is not None:
            entry["pred"] = np.asarray(pred).astype(int).tolist()
        record["methods"][name] = entry | extra
        clock.update(wall=time.perf_counter(), cpu=time.process_time())

    config.seed_everything(seed)
    pair = data.load_sat2aerial(image_size=size, batch_size=BATCH, seed=seed, mirror=mirror)
    arrays = {}
    for name, dataset in (
        ("src_train", pair.source.train),
        ("src_test", pair.source.test),
        ("pool", pair.target.train),
        ("tgt_test", pair.target.validation),
    ):
        xs, ys = zip(*((x.numpy().astype("uint8"), y.numpy()) for x, y in dataset), strict=True)
        arrays[name] = (np.concatenate(xs), np.concatenate(ys))
    order = np.lexsort((np.arange(len(arrays["pool"][1])), arrays["pool"][1]))  # canonical pool order
    arrays["pool"] = (arrays["pool"][0][order], arrays["pool"][1][order])
    record["labels"] = {
        "src_test": arrays["src_test"][1].tolist(),
        "tgt_test": arrays["tgt_test"][1].tolist(),
    }
    lap("load")

    path = models.imagenet_weights("mobilenet_v2", alpha=0.35, image_size=size, mirror=mirror)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def build():
        base = keras.applications.MobileNetV2(
            input_shape=(size, size, 3), alpha=0.35, include_top=False, weights=path
        )
        base.trainable = False
        inputs = keras.Input((size, size, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(
            base(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs))
        )
        return base, inputs, pooled

    base, inputs, pooled = build()
    extractor = keras.Model(inputs, pooled)

    def feats(name, model=None):
        images = arrays[name][0].astype("float32")
        return (model or extractor).predict(images, verbose=0, batch_size=64)

    def head_on(x, y, seed_offset=0, weights=None):
        keras.utils.set_random_seed(seed + seed_offset)
        head = keras.Sequential([keras.layers.Dropout(0.2), keras.layers.Dense(len(pair.class_names))])
        head.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
        head.fit(x, y, sample_weight=weights, epochs=HEAD_EPOCHS, batch_size=BATCH, verbose=0)
        return head

    def predict(head, x):
        return head.predict(x, verbose=0, batch_size=256).argmax(axis=1)

    def adabn(backbone, images) -> None:
        """BatchNorm statistics of ``images`` (one batch: exact), then frozen again (AdaBN)."""
        layers = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
        saved = [(layer.momentum, layer.trainable) for layer in layers]
        for layer in layers:
            layer.trainable, layer.momentum = True, 0.0
        # one traced pass over one batch: the graph frees each layer's output once used (eagerly: +450 MiB)
        tf.function(lambda x: backbone(x, training=True))(images.astype("float32") / 127.5 - 1.0)
        for layer, (momentum, trainable) in zip(layers, saved, strict=True):
            layer.momentum, layer.trainable = momentum, trainable

    def adabn_both() -> None:
        """AdaBN as Li et al. 2016 meant it: the head learns on features normalised with the SOURCE domain's
        statistics, and is applied to features normalised with the TARGET domain's (its pool, no labels)."""
        src_base, src_inputs, src_pooled = build()
        adabn(src_base, arrays["src_train"][0])
        src_extractor = keras.Model(src_inputs, src_pooled)
        src_features = feats("src_train", src_extractor)
        head = head_on(src_features, y["src_train"])
        tgt_base, tgt_inputs, tgt_pooled = build()
        adabn(tgt_base, arrays["pool"][0])
        tgt_extractor = keras.Model(tgt_inputs, tgt_pooled)
        tgt_test = feats("tgt_test", tgt_extractor)
        src_test = predict(head, feats("src_test", src_extractor)).tolist()
        lap("adabn_both", predict(head, tgt_test), src_test=src_test)
        chosen = shots[5]
        pool_features = feats("pool", tgt_extractor)[chosen]
        mixed = head_on(
            np.concatenate([src_features, pool_features]), np.concatenate([y["src_train"], y["pool"][chosen]])
        )
        lap("adabn_both_refit_5", predict(mixed, tgt_test))

    y = {name: arrays[name][1] for name in arrays}
    if only_extra:
        shots = {k: shift.few_shot_indices(y["pool"], k, seed=seed) for k in K_VALUES}
        adabn_both()
        saved = json.loads((out / f"seed{seed}-{size}px.json").read_text())
        saved["methods"].update({k: v for k, v in record["methods"].items() if k.startswith("adabn_both")})
        (out / f"seed{seed}-{size}px.json").write_text(json.dumps(saved))
        return saved
    f = {name: feats(name) for name in ("src_train", "src_test", "pool", "tgt_test")}
    source_head = head_on(f["src_train"], y["src_train"])
    lap("features_and_source_head", src_test=predict(source_head, f["src_test"]).tolist())
    record["methods"]["source"] = {"pred": predict(source_head, f["tgt_test"]).tolist()}

    shots = {k: shift.few_shot_indices(y["pool"], k, seed=seed) for k in K_VALUES}
    for k, chosen in shots.items():
        mixed = head_on(
            np.concatenate([f["src_train"], f["pool"][chosen]]),
            np.concatenate([y["src_train"], y["pool"][chosen]]),
        )
        lap(f"refit_{k}", predict(mixed, f["tgt_test"]))
        alone = head_on(f["pool"][chosen], y["pool"][chosen])
        lap(f"target_only_{k}", predict(alone, f["tgt_test"]))
        n_src, n_tgt = len(y["src_train"]), len(chosen)  # each domain carries half the total weight
        weights = np.concatenate([np.full(n_src, 0.5 / n_src), np.full(n_tgt, 0.5 / n_tgt)]) * (n_src + n_tgt)
        balanced = head_on(
            np.concatenate([f["src_train"], f["pool"][chosen]]),
            np.concatenate([y["src_train"], y["pool"][chosen]]),
            weights=weights,
        )
        lap(f"refit_weighted_{k}", predict(balanced, f["tgt_test"]))

    adabn_both()

    adapted_base, adapted_inputs, adapted_pooled = build()
    adabn(adapted_base, arrays["pool"][0])
    adapted = keras.Model(adapted_inputs, adapted_pooled)
    f_tgt_adapted = feats("tgt_test", adapted)
    lap("adabn", predict(source_head, f_tgt_adapted))
    f_pool_adapted = feats("pool", adapted)
    for k in (5, 10):
        chosen = shots[k]
        mixed = head_on(
            np.concatenate([f["src_train"], f_pool_adapted[chosen]]),
            np.concatenate([y["src_train"], y["pool"][chosen]]),
        )
        lap(f"adabn_refit_{k}", predict(mixed, f_tgt_adapted))

    def fine_tune(k: int, with_adabn: bool) -> np.ndarray:
        ft_base, ft_inputs, ft_pooled = build()
        if with_adabn:
            adabn(ft_base, arrays["pool"][0])
        head = keras.Sequential([keras.layers.Dropout(0.2), keras.layers.Dense(len(pair.class_names))])
        model = keras.Model(ft_inputs, head(ft_pooled))
        for new, old in zip(head.weights, source_head.weights, strict=True):
            new.assign(old)
        ft_base.trainable = True
        for layer in ft_base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss)
        chosen = shots[k]
        x = np.concatenate([arrays["src_train"][0], arrays["pool"][0][chosen]])
        t = np.concatenate([y["src_train"], y["pool"][chosen]])
        keras.utils.set_random_seed(seed)
        ds = tf.data.Dataset.from_tensor_slices((x, t)).shuffle(len(t), seed=seed).batch(BATCH)
        turn = data.flips_and_quarter_turns(seed)
        ds = ds.map(lambda a, b: (turn(tf.cast(a, "float32")), b))
        model.fit(ds, epochs=epochs, verbose=0)
        return model.predict(arrays["tgt_test"][0].astype("float32"), verbose=0, batch_size=64).argmax(axis=1)

    for k in FINE_TUNE_K:
        lap(f"fine_tune_{k}", fine_tune(k, False))
        lap(f"adabn_fine_tune_{k}", fine_tune(k, True))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"seed{seed}-{size}px.json").write_text(json.dumps(record))
    return record


def run(seeds: list[int], size: int, out: Path, mirror: str | None, epochs: int) -> None:
    """One child process per seed (skips finished ones), so each record's peak memory is its own."""
    for seed in seeds:
        if (out / f"seed{seed}-{size}px.json").exists():
            continue
        command = [sys.executable, __file__, "one", str(seed), "--size", str(size), "--out", str(out)]
        command += ["--epochs", str(epochs)] + (["--mirror", mirror] if mirror else [])
        subprocess.run(command, check=True)


def report(out: Path) -> None:
    """Print every record: accuracies, the drop, each method's paired gain over the source head, costs."""
    import numpy as np

    from tlcourse.evaluate import paired_bootstrap

    for path in sorted(out.glob("seed*.json")):
        r = json.loads(path.read_text())
        y, ys = np.asarray(r["labels"]["tgt_test"]), np.asarray(r["labels"]["src_test"])
        source = np.asarray(r["methods"]["source"]["pred"])
        src_ok = (np.asarray(r["methods"]["features_and_source_head"]["src_test"]) == ys).astype(float)
        tgt_ok = (source == y).astype(float)
        rng = np.random.default_rng(0)
        drops = src_ok[rng.integers(0, len(ys), (2000, len(ys)))].mean(1) - tgt_ok[
            rng.integers(0, len(y), (2000, len(y)))
        ].mean(1)
        low, high = np.percentile(drops, [2.5, 97.5])
        print(
            f"== {path.name}: satellite {src_ok.mean():.3f}, aerial {tgt_ok.mean():.3f}, drop "
            f"{(src_ok.mean() - tgt_ok.mean()) * 100:+.1f} [{low * 100:+.1f}, {high * 100:+.1f}] (unpaired)"
        )
        for name, entry in r["methods"].items():
            line = f"{name:>24}: wall {entry.get('seconds', '-')} s, cpu {entry.get('cpu_seconds', '-')} s, peak {entry.get('peak_rss_mib', '-')} MiB"
            if "pred" in entry and name != "source":
                gain = paired_bootstrap(y, source, entry["pred"], seed=0)
                acc = float((np.asarray(entry["pred"]) == y).mean())
                line += f" | aerial {acc:.3f}, vs source {gain[0] * 100:+.1f} [{gain[1] * 100:+.1f}, {gain[2] * 100:+.1f}]"
            print(line)
        methods = r["methods"]
        for better, worse in PAIRS:
            if better in methods and worse in methods:
                gain = paired_bootstrap(y, methods[worse]["pred"], methods[better]["pred"], seed=0)
                print(
                    f"{better:>24} minus {worse}: {gain[0] * 100:+.1f} [{gain[1] * 100:+.1f}, {gain[2] * 100:+.1f}]"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("one")
    one.add_argument("seed", type=int)
    one.add_argument("--only-extra", action="store_true", help="add adabn_both to an existing record")
    many = sub.add_parser("run")
    many.add_argument("--seeds", default="1,2,3")
    for p in (one, many):
        p.add_argument("--size", type=int, default=64)
        p.add_argument("--epochs", type=int, default=8)
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--mirror", default=os.environ.get("TLCOURSE_MIRROR"))
    show = sub.add_parser("report")
    show.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "one":
        child(args.seed, args.size, args.out, args.mirror, args.epochs, args.only_extra)
    elif args.command == "run":
        run([int(s) for s in args.seeds.split(",")], args.size, args.out, args.mirror, args.epochs)
    else:
        report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
