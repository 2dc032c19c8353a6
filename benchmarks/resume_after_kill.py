"""Kill ``tlcourse train`` with SIGKILL at four points, run it again, and compare with an uninterrupted run (issue 30).

Run (from the repository root; about 10-15 minutes on 2 busy CPU cores)::

    python benchmarks/resume_after_kill.py [--mirror ../shared/assets] [--per-class 24] [--json results.json]

The data: the first ``--per-class`` photos of each class of the mirror's ``flower_photos_small/train`` copied into
a temporary folder (generated images when there is no mirror). Every run is ``tlcourse train`` in its own
process, the smoke profile with ``--formats keras``, seed 7, ImageNet weights from the mirror (random without),
and more epochs than the smoke profile's one of each (``head_epochs=5``, ``fine_tune_epochs=6``) at a fine-tuning
rate of 1e-3, so that fine-tuning beats the head on validation and its weights are the ones kept (at the smoke
profile's 1e-4 keep_better keeps the head, and a resumed fine-tune could not show in the model at all).

1. Two uninterrupted runs into two folders: the reference, and a check that two runs agree at all.
2. For each kill point, a run into a fresh folder is killed (``SIGKILL``, no clean-up of any kind) when its
   output reaches the point, then the same command is run again into the same folder:

   - **mid head**: after the head's 3rd epoch line (the 4th epoch is running);
   - **head/fine-tune boundary**: at the ``[4/6] fine-tune`` line (the head phase is saved, nothing fine-tuned);
   - **mid fine-tune**: after the 2nd fine-tune epoch line;
   - **mid export**: half a second after the ``[6/6] export`` line (the model is being written and checked).

For each rerun it prints what it said about the earlier state (resumed, reused, undone), ``resumed_from`` and
``epochs_run`` from ``metrics.json``, and compares the saved ``model.keras`` with the reference's on every photo
(read as ``tlcourse predict`` reads them): the largest absolute difference of the logits and how many
predicted classes agree. The issue's bar is predictions equal to the uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OVERRIDES = {"head_epochs": 5, "fine_tune_epochs": 6, "fine_tune_learning_rate": 1e-3}
RUNNER = """
import json, sys
from tlcourse import cli
from tlcourse.cli import pipeline
args = cli.build_parser().parse_args(json.loads(sys.argv[1]))
args.profile_overrides = json.loads(sys.argv[2])
sys.exit(pipeline.train_command(args))
"""
POINTS = {
    "mid head": lambda line: "head epoch 3/" in line,
    "head/fine-tune boundary": lambda line: line.startswith("[4/6] fine-tune"),
    "mid fine-tune": lambda line: "fine-tune epoch 2/" in line,
    "mid export": lambda line: line.startswith("[6/6] export"),
}


def make_folder(root: Path, mirror: Path | None, per_class: int) -> Path:
    """``per_class`` real photos a class from the mirror (or small generated images without one)."""
    source = mirror / "datasets" / "flower_photos_small" / "train" if mirror else None
    if source is not None and source.is_dir():
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            (root / folder.name).mkdir(parents=True)
            for photo in sorted(folder.iterdir())[:per_class]:
                shutil.copy2(photo, root / folder.name / photo.name)
        return root
    from PIL import Image

    rng = np.random.default_rng(0)
    for index, name in enumerate(["apples", "grass", "sky"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(60 + 70 * index, 40, (64, 64, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(root / name / f"{name}_{i}.png")
    return root


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-c", RUNNER, json.dumps(argv), json.dumps(OVERRIDES)]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )


def run_to_end(argv: list[str], env: dict[str, str]) -> tuple[int, list[str], float]:
    began = time.perf_counter()
    process = start(argv, env)
    lines = [line.rstrip() for line in process.stdout]
    return process.wait(), lines, time.perf_counter() - began


def run_and_kill(argv: list[str], env: dict[str, str], point: str) -> tuple[list[str], bool]:
    """Start a run and SIGKILL it when its output reaches ``point``; (lines seen, whether the point was reached)."""
    process = start(argv, env)
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line.rstrip())
        if POINTS[point](line.strip()):
            if point == "mid export":
                time.sleep(0.5)
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return lines, True
    process.wait()
    return lines, False


def logits(model_file: Path, photos: list[Path]) -> np.ndarray:
    from tlcourse import export, imageio

    model = export.load_keras(model_file)
    size = int(model.input_shape[1])
    images = np.stack([imageio.load_image(p, size).astype("float32") for p in photos])
    return np.asarray(model.predict(images, batch_size=32, verbose=0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mirror", default=os.environ.get("TLCOURSE_MIRROR") or str(REPO.parent / "shared" / "assets")
    )
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--json", default=None)
    options = parser.parse_args()
    mirror = Path(options.mirror) if Path(options.mirror).is_dir() else None
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    if mirror is not None:
        env["TLCOURSE_MIRROR"] = str(mirror)
    work = Path(tempfile.mkdtemp(prefix="tlcourse-resume-"))
    photos_dir = make_folder(work / "photos", mirror, options.per_class)
    photos = sorted(p for p in photos_dir.rglob("*") if p.is_file())
    weights = "imagenet" if mirror is not None else "random"
    OVERRIDES["max_images_per_class"] = options.per_class

    def argv(out: Path) -> list[str]:
        return ["train", str(photos_dir), "--out", str(out), "--profile", "smoke", "--formats", "keras",
                "--seed", "7", "--weights", weights]  # fmt: skip

    print(f"{len(photos)} photos in {photos_dir}; weights {weights}; overrides {OVERRIDES}", flush=True)
    results: dict[str, dict] = {}
    code, _, seconds = run_to_end(argv(work / "reference"), env)
    assert code == 0, "the reference run failed"
    reference = logits(work / "reference" / "model.keras", photos)
    notes = json.loads((work / "reference" / "metrics.json").read_text())["notes"]
    kept_head = any("kept the head" in note for note in notes)
    print(
        f"reference: {seconds:.0f} s; fine-tuning {'did not beat' if kept_head else 'beat'} the head",
        flush=True,
    )
    code, _, seconds = run_to_end(argv(work / "repeat"), env)
    repeat = logits(work / "repeat" / "model.keras", photos)
    results["uninterrupted again"] = {
        "max_abs_logit_diff": float(np.max(np.abs(repeat - reference))),
        "same_class": int(np.sum(repeat.argmax(1) == reference.argmax(1))),
        "seconds": seconds,
    }
    print(f"uninterrupted again: {results['uninterrupted again']}", flush=True)
    for point in POINTS:
        out = work / point.replace(" ", "_").replace("/", "-")
        seen, reached = run_and_kill(argv(out), env, point)
        code, lines, seconds = run_to_end(argv(out), env)
        said = [
            line.strip()
            for line in lines
            if any(w in line for w in ("resumed", "reused", "undid", "completed the export", "discarded"))
        ]
        metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else {}
        got = logits(out / "model.keras", photos) if code == 0 else None
        results[point] = {
            "killed_after": seen[-1].strip() if seen else None,
            "kill_point_reached": reached,
            "rerun_status": code,
            "rerun_said": said,
            "resumed_from": metrics.get("resumed_from"),
            "epochs_run": metrics.get("epochs_run"),
            "history_epochs": len((metrics.get("history") or {}).get("epoch", [])),
            "max_abs_logit_diff": None if got is None else float(np.max(np.abs(got - reference))),
            "same_class": None if got is None else int(np.sum(got.argmax(1) == reference.argmax(1))),
            "of": len(photos),
            "rerun_seconds": round(seconds, 1),
        }
        print(f"{point}: {json.dumps(results[point])}", flush=True)
    if options.json:
        Path(options.json).write_text(json.dumps(results, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    exact = all(r.get("max_abs_logit_diff") == 0.0 for r in results.values())
    print("every rerun ends with the reference's exact logits" if exact else "some rerun differs: see above")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
