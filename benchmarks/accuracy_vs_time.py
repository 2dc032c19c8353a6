"""Accuracy against wall time for ``tlcourse train``'s settings, on the mirror's flowers with a held-out TEST split.

Run (from the repository root; about 15-25 minutes on 2 busy CPU cores)::

    python benchmarks/accuracy_vs_time.py [--mirror ../shared/assets] [--json results.json]
    python benchmarks/accuracy_vs_time.py --acceptance    # today's defaults vs the new ones, paired (issue 18)
    python benchmarks/accuracy_vs_time.py --acceptance --folds 5   # the same on all 1,000 photos (~17 min)

The data: the mirror's ``flower_photos_small`` (5 classes, 160 training and 40 validation photos a class) is
copied once into a temporary folder with ``train/``, ``validation/`` and ``test/``: a seeded, stratified quarter
of each class's training photos (40 a class, 200 in all) becomes ``test/``, which ``tlcourse train`` holds out
(:func:`tlcourse.data.load_image_folder` keeps a ``test/`` folder as ``splits.test`` and never trains, stops
early or chooses on it). So every setting trains on 600 photos, stops early on 200, and is scored on 200.

Each setting runs in its own subprocess through the library's own ``tlcourse train`` path
(:func:`tlcourse.cli.pipeline.train_command`: audit, decode once, cached features + augmented passes, boundary-
cached fine-tune, evaluation, export with round trips, on the oneDNN kernels ``train_command`` chooses), so the
measured thing is what users run, and its peak RSS (``ru_maxrss``) is its own. The saved ``model.keras`` is then reloaded and scored on the test photos
(read as ``tlcourse predict`` reads them). Per setting it prints the test accuracy with its 95% interval
(:func:`tlcourse.evaluate.accuracy_interval`), the wall time split into decode (loading, which decodes every
photo once) / extract (frozen backbone over the cached passes) / head / fine-tune / export, and the peak RSS;
then the Pareto table (no other setting is both more accurate and faster).

The grid (kept small enough for a shared 2-core machine; a full cross product would take hours):

1. width x input size at the cpu profile's training settings: alpha 0.35, 0.5, 1.0 at 160 px and at 224 px,
   the native size of all three weight files (224 is also the only size Keras' own weight files are named for);
2. at the most accurate (alpha, size) of step 1: 2 cached augmented passes (the capstone setting caches none
   since issue 18's 5-fold run found them worth nothing) and a fine-tune rate ten times higher (1e-4 rather
   than 1e-5). Deeper fine-tunes and more passes cost more time per image,
   and the issue's own measurement found fine-tuning worth under a point, so they are left out of the run.

Every row also shows its paired difference to the first row (today's defaults, alpha 0.35 at 160 px) on the
same test photos, with the paired 95% bootstrap interval (:func:`tlcourse.evaluate.paired_bootstrap`).

``--acceptance`` runs only two settings and prints the paired comparison the issue asks for: ``tlcourse train``
with the cpu profile's defaults (no ``--alpha``/``--size``: the capstone setting) against today's defaults
before issue 18 (alpha 0.35, 160 px, the same training settings): the test accuracy of each, the paired 95%
bootstrap interval of the difference (:func:`tlcourse.evaluate.paired_bootstrap`), and the wall time of each.

``--folds K`` makes that comparison K-fold cross-validated. A 200-photo test split cannot separate two settings
a few points apart (one photo is half a point, and the paired interval of a 3.5-point gain runs from about -1
to +8), so the 1,000 photos (train and validation pooled) are cut into K stratified folds; for each fold, both
settings train on the other photos (a stratified quarter of them for validation, the rest for training: with
K = 5 that is 600 / 200 / 200, the same sizes as the single split) and predict the fold. Every photo is then
predicted exactly once, by models that never trained, stopped early or chose on it, and the paired bootstrap
runs over all 1,000 pairs. The wall time checked against the budget is the median over the folds.

The CPU may be shared with other work: wall times are then inflated (the load average is printed before and
after); compare settings measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = REPO.parent / "shared" / "assets"
SEED = 42
TEST_FRACTION = 0.25
TRAIN_BUDGET_S = 180.0
TODAY = {
    "name": "today's defaults (alpha 0.35, 160 px)",
    "alpha": 0.35,
    "size": 160,
    "overrides": {"augmented_passes": 2},
}
"""``tlcourse train``'s cpu defaults before issue 18 (the lessons' width and size, 2 cached augmented passes)."""


def _flowers(mirror: Path) -> Path:
    return mirror / "datasets" / "flower_photos_small"


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def _copy(files: list[tuple[str, Path]], chosen: list[int], root: Path, split: str) -> int:
    for i in chosen:
        cls, path = files[i]
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, root / split / cls / path.name)
    return len(chosen)


def make_fold_folder(mirror: Path, root: Path, fold: int, folds: int, seed: int = SEED) -> dict:
    """Fold ``fold`` of ``folds``: that stratified fold of all the flowers (train and validation pooled) is
    test/, a stratified quarter of the rest is validation/, the remainder train/. Returns counts per split."""
    from sklearn.model_selection import StratifiedKFold

    from tlcourse.data import stratified_split

    source = _flowers(mirror)
    classes = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
    files = [
        (c, f)
        for split in ("train", "validation")
        for c in classes
        for f in sorted((source / split / c).iterdir())
        if f.is_file()
    ]
    labels = [classes.index(c) for c, _ in files]
    rest, test = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(files, labels))[fold]
    keep, val = stratified_split([labels[i] for i in rest], 0.25, seed=seed + fold)
    return {
        "train": _copy(files, [int(rest[i]) for i in keep], root, "train"),
        "validation": _copy(files, [int(rest[i]) for i in val], root, "validation"),
        "test": _copy(files, [int(i) for i in test], root, "test"),
    }


def make_folder(mirror: Path, root: Path, seed: int = SEED, test_fraction: float = TEST_FRACTION) -> dict:
    """Copy the flowers into ``root`` as train/ validation/ test/: a stratified share of each class's training
    photos becomes test/. Returns the counts per split."""
    from tlcourse.data import stratified_split

    source = _flowers(mirror)
    classes = sorted(p.name for p in (source / "train").iterdir() if p.is_dir())
    files = [(c, f) for c in classes for f in sorted((source / "train" / c).iterdir()) if f.is_file()]
    keep, test = stratified_split([classes.index(c) for c, _ in files], test_fraction, seed=seed + 7)
    counts = {"train": 0, "validation": 0, "test": 0}
    for split, chosen in (("train", keep), ("test", test)):
        for i in chosen:
            cls, path = files[i]
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, root / split / cls / path.name)
            counts[split] += 1
    for cls in classes:
        shutil.copytree(source / "validation" / cls, root / "validation" / cls)
        counts["validation"] += sum(1 for f in (root / "validation" / cls).iterdir() if f.is_file())
    return counts


# ------------------------------------------------------------------------------------------------ child


def child(setting: dict, folder: Path, mirror: Path, out: Path) -> dict:
    """One ``tlcourse train`` run with ``setting``, then its model.keras scored on folder/test."""
    from types import SimpleNamespace

    import numpy as np

    from tlcourse import export, imageio, predict
    from tlcourse.cli import pipeline

    args = SimpleNamespace(
        directory=str(folder),
        out=str(out),
        backbone=None,
        alpha=setting.get("alpha"),
        size=setting.get("size"),
        profile=setting.get("profile", "cpu"),  # tests run the child in smoke with random weights
        weights=setting.get("weights", "imagenet"),
        seed=SEED,
        force=True,
        mirror=str(mirror),
        fine_tune_from=setting.get("fine_tune_from"),
        profile_overrides=setting.get("overrides") or {},
        formats=setting.get("formats"),  # None: all three, as `tlcourse train` exports them
    )
    started = time.perf_counter()
    status = pipeline.train_command(args)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"tlcourse train exited with {status}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    metrics = json.loads((out / export.METRICS_FILE).read_text())
    model = export.load_keras(out / pipeline.MODEL_FILE)
    names = metrics["class_names"]
    height, width = predict.model_image_size(model)
    labels, images = [], []
    for index, name in enumerate(names):
        for path in sorted((folder / "test" / name).iterdir()):
            images.append(imageio.load_image(path, (height, width)).astype("float32"))
            labels.append(index)
    predictions = np.asarray(model.predict(np.stack(images), verbose=0, batch_size=32)).argmax(1)
    timings = metrics["timings_seconds"]
    phases = metrics.get("phase_timings") or {}
    return {
        "setting": setting,
        "settings_used": metrics["settings"],
        "wall_seconds": wall,
        "peak_rss_mib": peak,
        "timings": timings,
        "extract_seconds": (phases.get("head") or {}).get("extract_seconds"),
        "val_accuracy": metrics["fine_tune_val_accuracy"],
        "head_val_accuracy": metrics["head_val_accuracy"],
        "head_test_accuracy": metrics.get(f"head_{metrics['evaluated_on']}_accuracy"),  # before fine-tuning
        "epochs_run": metrics["epochs_run"],
        "train_count": metrics["data"]["train_count"],
        "labels": labels,
        "predictions": predictions.tolist(),
    }


# ----------------------------------------------------------------------------------------------- parent


def run_setting(setting: dict, folder: Path, mirror: Path) -> dict:
    """Run one setting in a fresh Python process (its own peak RSS); return its figures."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="acc-vs-time-out-") as out:
        command = [sys.executable, __file__, "--child", json.dumps(setting), "--folder", str(folder)]
        command += ["--mirror", str(mirror), "--out", str(Path(out) / "model")]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=str(REPO), env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr + proc.stdout).splitlines()[-20:])
        raise SystemExit(f"setting {setting['name']} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1][len("RESULT ") :])
    import numpy as np

    from tlcourse.evaluate import accuracy_interval

    right = np.asarray(result["labels"]) == np.asarray(result["predictions"])
    result["test_accuracy"] = float(right.mean())
    result["test_interval"] = accuracy_interval(result["test_accuracy"], len(right))
    result["test_count"] = int(len(right))
    return result


def _split(result: dict) -> dict[str, float]:
    t = result["timings"]
    extract = float(result.get("extract_seconds") or 0.0)
    return {
        "decode": float(t.get("load", 0.0)),
        "extract": extract,
        "head": float(t.get("head", 0.0)) - extract,
        "fine-tune": float(t.get("fine_tune", 0.0)),
        "export": float(t.get("export", 0.0)),
        "total": float(t.get("total", result["wall_seconds"])),
    }


def row(result: dict, baseline: dict | None = None) -> str:
    from tlcourse.evaluate import paired_bootstrap

    s = _split(result)
    low, high = result["test_interval"]
    paired = ""
    if baseline is not None and baseline["labels"] == result["labels"]:
        diff, d_low, d_high = paired_bootstrap(
            result["labels"], baseline["predictions"], result["predictions"]
        )
        paired = f"  {diff * 100:+5.1f} [{d_low * 100:+5.1f}, {d_high * 100:+5.1f}]"
    return (
        f"{result['setting']['name']:<44} {result['test_accuracy']:.3f} [{low:.3f}, {high:.3f}]  "
        f"{s['decode']:6.1f} {s['extract']:7.1f} {s['head']:5.1f} {s['fine-tune']:9.1f} {s['export']:6.1f} "
        f"{s['total']:6.1f}  {result['peak_rss_mib']:7.0f}{paired}"
    )


HEADER = (
    f"{'setting':<44} {'test acc [95% interval]':<23}  {'decode':>6} {'extract':>7} {'head':>5} "
    f"{'fine-tune':>9} {'export':>6} {'total':>6}  {'RSS MiB':>7}  vs first row, pts [paired 95%]"
)


def pareto(results: list[dict]) -> list[dict]:
    """The settings no other setting beats on both test accuracy and total time."""
    front = []
    for r in results:
        t, a = _split(r)["total"], r["test_accuracy"]
        if not any(
            (_split(o)["total"] <= t and o["test_accuracy"] >= a)
            and (_split(o)["total"] < t or o["test_accuracy"] > a)
            for o in results
        ):
            front.append(r)
    return sorted(front, key=lambda r: _split(r)["total"])


def grid() -> list[dict]:
    return [
        {"name": f"alpha {alpha}, {size} px", "alpha": alpha, "size": size}
        for size in (160, 224)
        for alpha in (0.35, 0.5, 1.0)
    ]


def variants(best: dict) -> list[dict]:
    base = {"alpha": best["alpha"], "size": best["size"]}
    label = f"alpha {best['alpha']}, {best['size']} px"
    return [
        {**base, "name": f"{label}, 2 augmented passes", "overrides": {"augmented_passes": 2}},
        {**base, "name": f"{label}, fine-tune rate 1e-4", "overrides": {"fine_tune_learning_rate": 1e-4}},
    ]


def sweep(folder: Path, mirror: Path, save: Path | None = None) -> list[dict]:
    print(HEADER, flush=True)
    results: list[dict] = []

    def run(setting: dict) -> None:
        results.append(run_setting(setting, folder, mirror))
        print(row(results[-1], results[0]) + f"  ({_load()})", flush=True)
        if save:  # after every setting, so an interrupted run keeps what it measured
            save.write_text(json.dumps(results, indent=2))

    for setting in grid():
        run(setting)
    best = max(results, key=lambda r: (r["test_accuracy"], -_split(r)["total"]))["setting"]
    print(f"# variants at the most accurate width/size: {best['name']}", flush=True)
    for setting in variants(best):
        run(setting)
    print()
    print("Pareto table (no other setting is both more accurate and faster):")
    print(HEADER)
    for r in pareto(results):
        print(row(r, results[0]))
    return results


NEW = {"name": "new defaults (cpu profile, capstone setting)"}


def _pooled(runs: list[dict]) -> dict:
    """One setting's fold results as one result: predictions concatenated, the median fold's wall time."""
    import numpy as np

    from tlcourse.evaluate import accuracy_interval

    totals = [_split(r)["total"] for r in runs]
    median = runs[int(np.argsort(totals)[len(totals) // 2])]
    labels = [y for r in runs for y in r["labels"]]
    predictions = [p for r in runs for p in r["predictions"]]
    right = np.asarray(labels) == np.asarray(predictions)
    accuracy = float(right.mean())
    heads = [r.get("head_test_accuracy") for r in runs]
    counts = [len(r["labels"]) for r in runs]
    return {
        **median,
        # the head's accuracy over all folds, not the median fold's (None when a child did not record it)
        "head_test_accuracy": (
            sum(h * n for h, n in zip(heads, counts, strict=True)) / sum(counts)
            if None not in heads
            else None
        ),
        "labels": labels,
        "predictions": predictions,
        "test_accuracy": accuracy,
        "test_interval": accuracy_interval(accuracy, len(right)),
        "test_count": len(right),
        "fold_accuracies": [r["test_accuracy"] for r in runs],
        "fold_totals": totals,
    }


def acceptance_folds(mirror: Path, folds: int) -> tuple[list[dict], bool]:
    """The acceptance comparison, K-fold cross-validated over all the flowers (see the module docstring)."""

    old_runs, new_runs = [], []
    print(HEADER, flush=True)
    for fold in range(folds):
        with tempfile.TemporaryDirectory(prefix=f"acc-vs-time-fold{fold}-") as tmp:
            folder = Path(tmp) / "flowers"
            counts = make_fold_folder(mirror, folder, fold, folds)
            print(f"# fold {fold + 1}/{folds}: {counts}", flush=True)
            old_runs.append(run_setting(TODAY, folder, mirror))
            new_runs.append(run_setting(NEW, folder, mirror))
        print(row(old_runs[-1]) + f"  ({_load()})", flush=True)
        print(row(new_runs[-1], old_runs[-1]) + f"  ({_load()})", flush=True)
    old, now = _pooled(old_runs), _pooled(new_runs)
    for name, r in (("today", old), ("new", now)):
        accs = ", ".join(f"{a:.3f}" for a in r["fold_accuracies"])
        times = ", ".join(f"{t:.0f}" for t in r["fold_totals"])
        print(f"{name}: fold test accuracies {accs}; fold wall times {times} s")
        if r["head_test_accuracy"] is not None:
            print(f"{name}: test accuracy of the head before fine-tuning {r['head_test_accuracy']:.3f}")
    return _verdict(old, now, f"{folds}-fold cross-validated, every photo predicted once")


def acceptance(folder: Path, mirror: Path) -> tuple[list[dict], bool]:
    results = [run_setting(TODAY, folder, mirror), run_setting(NEW, folder, mirror)]
    print(HEADER)
    for r in results:
        print(row(r))
    return _verdict(*results, "one held-out test split")


def _verdict(old: dict, now: dict, design: str) -> tuple[list[dict], bool]:
    from tlcourse.evaluate import paired_bootstrap

    results = [old, now]
    assert old["labels"] == now["labels"], "both runs must be scored on the same test photos"
    diff, low, high = paired_bootstrap(old["labels"], old["predictions"], now["predictions"])
    used = now["settings_used"]
    print()
    print(
        f"new defaults: alpha {used['alpha']}, {used['image_size']} px, {used['augmented_passes']} augmented "
        f"passes, fine-tune from {used['fine_tune_from']} at {used['fine_tune_learning_rate']:g}"
    )
    print(
        f"test accuracy on {now['test_count']} photos ({design}): today {old['test_accuracy']:.3f}, new "
        f"{now['test_accuracy']:.3f}; difference {diff * 100:+.1f} points, paired 95% interval "
        f"[{low * 100:+.1f}, {high * 100:+.1f}]"
    )
    total = _split(now)["total"]
    print(
        f"tlcourse train wall time: today {_split(old)['total']:.1f} s, new {total:.1f} s "
        f"({now['train_count']} training photos)"
    )
    checks = [
        ("at least 3 points better", diff >= 0.03),
        ("paired 95% interval of the difference above 0", low > 0),
        (f"new defaults within {TRAIN_BUDGET_S:.0f} s", total <= TRAIN_BUDGET_S),
    ]
    for name, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {name}")
    return results, all(ok for _, ok in checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mirror", type=Path, default=Path(os.environ.get("TLCOURSE_MIRROR", DEFAULT_MIRROR))
    )
    parser.add_argument("--acceptance", action="store_true", help="only today's defaults vs the new ones")
    parser.add_argument(
        "--folds", type=int, default=1, help="with --acceptance: K-fold cross-validate over all the photos"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import contextlib

        with contextlib.redirect_stdout(sys.stderr):  # the run's own lines; stdout carries the result
            result = child(json.loads(args.child), args.folder, args.mirror, args.out)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    if not _flowers(args.mirror).is_dir():
        print(f"No flower_photos_small under {args.mirror}: pass --mirror.", file=sys.stderr)
        return 2
    started = time.perf_counter()
    print(f"start: {_load()}", flush=True)
    if args.acceptance and args.folds > 1:
        results, ok = acceptance_folds(args.mirror, args.folds)
        print(f"end: {_load()}; whole run {time.perf_counter() - started:.0f} s", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0 if ok else 1
    with tempfile.TemporaryDirectory(prefix="acc-vs-time-data-") as tmp:
        folder = Path(tmp) / "flowers"
        counts = make_folder(args.mirror, folder)
        print(f"data: {counts} (test: {TEST_FRACTION:.0%} of each class's training photos, seed {SEED})")
        if args.acceptance:
            results, ok = acceptance(folder, args.mirror)
        else:
            results, ok = sweep(folder, args.mirror, args.json), True
    print(f"end: {_load()}; whole run {time.perf_counter() - started:.0f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
