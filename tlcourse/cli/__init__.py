"""The ``tlcourse`` command line, the instructor and admin side (lesson 00 lists its sub-commands).

This package is everything only the command imports: the parser and :func:`main` here,
:mod:`tlcourse.cli.pipeline` (``train``), :mod:`tlcourse.cli.predicting` (``predict``), :mod:`tlcourse.cli.runner` (``run``),
:mod:`tlcourse.cli.grade` (``grade``) and :mod:`tlcourse.cli.mirror` (``assets prepare``/``verify``, the mirror
administrator's side). Student-facing modules never import it (tests/test_layout.py); ``check-data`` and
``assets status`` use :mod:`tlcourse.audit` and :mod:`tlcourse.assets`, which lessons use too.

All arguments are declared here; each sub-command hands the parsed arguments to a ``*_command`` function in
the module that does the work, imported only when that sub-command runs so ``tlcourse --help`` stays fast.
Errors a user can fix (:class:`tlcourse.errors.TLCourseError`) are printed as one clear line, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import keyword
import math
import os
import sys
from collections.abc import Sequence

from tlcourse import __version__
from tlcourse.errors import TLCourseError

PROFILE_CHOICES = ["auto", "smoke", "cpu", "gpu"]


RUN_EXTRA_MODULES = frozenset({"papermill", "nbclient", "ipykernel", "nbconvert"})
"""What ``tlcourse run`` needs beyond the student install (pyproject's ``run`` extra; Colab has none of it)."""


def _add_mirror(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mirror",
        metavar="DIR",
        default=None,
        help="offline asset mirror (layout of shared/assets); default: $TLCOURSE_MIRROR",
    )


GRADE_DESCRIPTION = """\
Execute every submission, score its check cells against exercises/ and write grades.csv, gradebook.html and
grades.json.

Grading runs each student's code with YOUR rights. tlcourse grade reads and hashes every template, every
submission and its own graders before the first kernel starts, runs each submission from a fresh temporary
copy (outside the submissions and --out) with a minimal environment and HOME in a scratch folder, kills the
kernel's whole session and anything it left running when it ends, caps memory and output, puts back any
guarded file a notebook changed (and flags it), scores against the templates as first read, flags answer
cells that rebind the graders, and writes the gradebook last, printing its SHA-256.

It does NOT stop a notebook from reading or changing anything else you can reach: your home folder, other
projects, the virtual environment, the network. For a class you do not trust, grade in a container with the
course mounted read-only, e.g.
  podman run --rm --network none -v "$PWD":/course:ro -v "$PWD/submissions":/subs:ro \\
      -v "$PWD/runs":/runs -w /course IMAGE tlcourse grade /subs --out /runs/class-a
or as a separate user that can read the course and write only the output folder:
  sudo -u grader tlcourse grade submissions --out /srv/grading/class-a
"""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every sub-command."""
    parser = argparse.ArgumentParser(
        prog="tlcourse",
        description="Transfer-learning course helpers: run and grade notebooks, audit image folders, train, predict.",
    )
    parser.add_argument("--version", action="version", version=f"tlcourse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="execute notebooks headless with papermill and write a report")
    run.add_argument(
        "paths", nargs="*", metavar="PATH", help="notebooks, folders or globs (default: lessons/)"
    )
    run.add_argument("--profile", choices=PROFILE_CHOICES, default=None, help="PROFILE parameter to inject")
    run.add_argument(
        "--out", metavar="DIR", default="runs/latest", help="where executed notebooks and the report go"
    )
    run.add_argument("--jobs", type=int, default=1, metavar="N", help="kernels to run at once")
    run.add_argument("--timeout", type=float, default=1800, metavar="S", help="per-cell timeout in seconds")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="inject a parameter (VALUE is parsed as YAML/Python literal when it can be)",
    )
    run.add_argument("--force", action="store_true", help="re-run notebooks even when nothing changed")
    run.add_argument(
        "--kernel", default=None, metavar="NAME", help="kernel name (default: the notebook's own)"
    )
    run.set_defaults(module="tlcourse.cli.runner", function="run_command")

    grade = sub.add_parser(
        "grade",
        help="run and score students' exercise notebooks; write a gradebook",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=GRADE_DESCRIPTION,
    )
    grade.add_argument("paths", nargs="+", metavar="SUBMISSION", help="submitted notebooks, folders or globs")
    grade.add_argument(
        "--out",
        metavar="DIR",
        required=True,
        help="where grades.csv, gradebook.html and the executed notebooks go",
    )
    grade.add_argument(
        "--templates", metavar="DIR", default="exercises", help="exercise templates (default: exercises/)"
    )
    grade.add_argument("--profile", choices=PROFILE_CHOICES, default=None, help="PROFILE parameter to inject")
    grade.add_argument("--jobs", type=int, default=1, metavar="N", help="kernels to run at once")
    grade.add_argument("--timeout", type=float, default=1800, metavar="S", help="per-cell timeout in seconds")
    grade.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="inject a parameter into every submission",
    )  # fmt: skip
    grade.add_argument(
        "--memory-limit", type=float, default=None, metavar="GIB",
        help="kill a submission whose processes use more resident memory than this (default 8 GiB)",
    )  # fmt: skip
    grade.add_argument(
        "--max-output", type=float, default=None, metavar="MIB",
        help="kill a submission that prints more output than this (default 32 MiB)",
    )  # fmt: skip
    grade.add_argument(
        "--kernel", default=None, metavar="NAME", help="kernel name (default: the notebook's own)"
    )
    grade.set_defaults(module="tlcourse.cli.grade", function="grade_command")

    check = sub.add_parser("check-data", help="audit an image folder before training on it")
    check.add_argument("directory", metavar="DIR")
    check.add_argument("--json", action="store_true", dest="as_json", help="print one JSON object")
    check.add_argument(
        "--min-per-class",
        type=int,
        default=2,
        metavar="N",
        help="images a class needs to be usable (default 2)",
    )
    check.set_defaults(module="tlcourse.audit", function="check_data_command")

    from tlcourse.config import capstone_summary

    train = sub.add_parser(
        "train",
        help="audit, extract features, fine-tune, evaluate and export a classifier",
        description=(
            "Audit DIR, train a head on cached features of a frozen backbone, fine-tune its top, evaluate, "
            f"and export. Defaults: {capstone_summary('cpu')}; {capstone_summary('gpu')}. "
            "--alpha and --size replace the width and input size."
        ),
    )
    train.add_argument(
        "directory",
        metavar="DIR",
        help="image folder: class/ folders, optionally under train/ and validation/",
    )
    train.add_argument(
        "--out", metavar="OUT", required=True, help="output folder for the model, metrics and card"
    )
    train.add_argument(
        "--backbone", default="mobilenet_v2", help="backbone name from tlcourse.models (default mobilenet_v2)"
    )
    train.add_argument(
        "--alpha", type=float, default=None, help="MobileNetV2 width multiplier (default: the profile's)"
    )
    train.add_argument("--size", type=int, default=None, help="input size in pixels (default: the profile's)")
    train.add_argument("--profile", choices=PROFILE_CHOICES, default="auto")
    train.add_argument(
        "--weights", default="imagenet", help="'imagenet', 'random', or a path to a weights file"
    )
    train.add_argument("--seed", type=int, default=42)
    train.add_argument(
        "--distribute",
        choices=["none", "mirrored", "tpu"],
        default="none",
        help="train on one device (none), every GPU of this machine (mirrored) or a TPU; the batch size is "
        "per replica (tlcourse.distribute)",
    )
    train.add_argument(
        "--formats",
        default="keras,saved_model,tflite",
        metavar="LIST",
        help="comma-separated export formats from keras, saved_model and tflite (default: all three, each "
        "checked by a round trip); keras is always needed: `tlcourse predict` reads model.keras. "
        "--formats keras skips the two slower exports",
    )
    train.add_argument(
        "--force",
        action="store_true",
        help="replace a model already in OUT (the earlier files are kept in OUT/previous/)",
    )
    _add_mirror(train)
    # oneDNN's CPU kernels: ~1.8x faster forward passes; the lessons keep TensorFlow's own (config.quiet_tensorflow)
    train.set_defaults(module="tlcourse.cli.pipeline", function="train_command", onednn=True)

    predict = sub.add_parser(
        "predict",
        help="classify images with a model saved by 'tlcourse train', or with ImageNet's classifier (--imagenet)",
        usage="tlcourse predict MODEL IMAGE... | tlcourse predict --imagenet IMAGE... [--top K] [--json]",
    )
    predict.add_argument(
        "model", nargs="?", metavar="MODEL", help="a .keras file written by 'tlcourse train'"
    )
    predict.add_argument("images", nargs="*", metavar="IMAGE")
    predict.add_argument(
        "--imagenet",
        action="store_true",
        help="no MODEL: ImageNet's pretrained 1000-class classifier (lesson 01) gives each photo's top 5",
    )
    _add_mirror(predict)
    predict.add_argument(
        "--top", type=int, default=None, help="how many classes to show per image (3; 5 with --imagenet)"
    )
    predict.add_argument("--json", action="store_true", dest="as_json")
    predict.set_defaults(module="tlcourse.cli.predicting", function="predict_command")

    assets = sub.add_parser("assets", help="show, build or verify the offline mirror of weights and data")
    assets.add_argument("action", choices=["status", "prepare", "verify"])
    _add_mirror(assets)
    assets.add_argument("--json", action="store_true", dest="as_json")
    assets.add_argument(
        "--profile",
        choices=["smoke", "cpu", "gpu"],
        default=None,
        help="prepare: only the files that profile reads at run time (default: everything the course uses)",
    )
    assets.add_argument(
        "--keep-going",
        action="store_true",
        help="prepare: report a failed download and go on instead of stopping (Binder's postBuild)",
    )
    assets.set_defaults(module="tlcourse.cli.mirror", function="assets_command")
    return parser


def validate_arguments(args: argparse.Namespace) -> None:
    """Refuse values argparse lets through but no sub-command can use, with one line each (exit status 2).

    ``train``'s own ranges are checked by :func:`tlcourse.cli.pipeline.validate_train_args` and ``check-data``'s
    by :func:`tlcourse.audit.check_data_command`; here: ``run``'s timeout, jobs and parameter names.
    """
    if args.command != "run":
        return
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise TLCourseError(f"--timeout {timeout} is not a number of seconds: give a finite number above 0.")
    jobs = getattr(args, "jobs", 1)
    if jobs is not None and jobs < 1:
        raise TLCourseError(f"--jobs {jobs}: give at least 1 kernel to run at once.")
    for name, _value in getattr(args, "parameter", None) or []:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise TLCourseError(
                f"-p {name!r}: a parameter name must be a Python identifier (letters, digits and _, not "
                "starting with a digit), like the names in the notebook's parameters cell."
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tlcourse`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from tlcourse.config import quiet_tensorflow

    quiet_tensorflow(onednn=bool(getattr(args, "onednn", False)))
    try:
        validate_arguments(args)
        function = getattr(importlib.import_module(args.module), args.function)
        return int(function(args) or 0)
    except BrokenPipeError:
        # the reader went away (`tlcourse check-data DIR --json | head`): stop quietly, like other commands do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except TLCourseError as error:
        print(f"tlcourse {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tlcourse {args.command}: interrupted.", file=sys.stderr)
        return 130
    except ModuleNotFoundError as error:
        if error.name not in RUN_EXTRA_MODULES:
            raise
        print(
            f"tlcourse {args.command}: needs {error.name}, which comes with the instructors' extra: "
            "python -m pip install 'tlcourse[run]' (requirements.txt already includes it).",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
