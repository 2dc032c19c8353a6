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
from tlcourse.cli.signals import exit_status
from tlcourse.errors import TLCourseError

PROFILE_CHOICES = ["auto", "smoke", "cpu", "gpu"]


RUN_EXTRA_MODULES = frozenset({"papermill", "nbclient", "ipykernel", "nbconvert"})
"""What ``tlcourse run`` needs beyond the student install (pyproject's ``run`` extra; Colab has none of it)."""


EXIT_STATUSES = """\
exit status:
  0    done: everything asked for worked
  1    something the output lists did not work: {one}
  2    nothing was done: a mistake in the command, or a problem its one-line message explains with a fix
  130  stopped by Ctrl-C{report}
  143  stopped by SIGTERM (a scheduler, `timeout`){report}"""


def _epilog(examples: Sequence[str], one: str, *, report: bool = False) -> str:
    """The examples and exit statuses shown under a sub-command's ``--help``."""
    lines = ["examples:", *(f"  {example}" for example in examples), "", ""]
    ending = ", after writing the report of what finished" if report else ""
    return "\n".join(lines) + EXIT_STATUSES.format(one=one, report=ending)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Text with line breaks (examples, exit statuses) keeps its lines, a paragraph is wrapped; each option's
    help ends with its default, unless the help already states it or there is none to state (a flag, a value
    that is unset)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text
        return f"{text} (default: %(default)s)"


def _add_mirror(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mirror",
        metavar="DIR",
        default=None,
        help="offline asset mirror (laid out like shared/assets); default: $TLCOURSE_MIRROR, else the per-user "
        "mirror that `tlcourse assets prepare` fills",
    )


def _sub(sub: argparse._SubParsersAction, name: str, help_text: str, **kw: object) -> argparse.ArgumentParser:
    """A sub-command's parser with the shared formatter; its ``description`` defaults to its help line."""
    kw.setdefault("description", help_text[0].upper() + help_text[1:] + ".")
    return sub.add_parser(name, help=help_text, formatter_class=HelpFormatter, **kw)


def _add_run_options(parser: argparse.ArgumentParser, what: str) -> None:
    """The options ``run`` and ``grade`` share: profile, jobs, timeout, parameters, force, kernel."""
    parser.add_argument(
        "--profile", choices=PROFILE_CHOICES, default=None,
        help=f"PROFILE to inject into every {what} (default: each notebook's own, usually auto)",
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="kernels to run at once")
    parser.add_argument(
        "--timeout", type=float, default=1800, metavar="S", help="per-cell time limit, seconds"
    )
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help=f"set a parameter of every {what}'s parameters cell; VALUE is read as a Python or YAML literal "
        "when it is one (3, 0.5, true, [1, 2]), else as text; repeat -p for more",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help=f"run every {what} again, even one unchanged")
    parser.add_argument(
        "--kernel", default=None, metavar="NAME", help="Jupyter kernel to use (default: the notebook's own)"
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
        description="Transfer-learning course helpers: run and grade notebooks, audit image folders, train, "
        "predict, and prepare the offline mirror. `tlcourse COMMAND --help` explains each command.",
        formatter_class=HelpFormatter,
        epilog=_epilog(
            [
                "tlcourse assets prepare --profile cpu   # before you travel: weights and photos for offline",
                "tlcourse run lessons --profile cpu      # the whole course, headless, report in runs/latest/",
                "tlcourse train my_photos --out model     # a classifier for your own folder of photos",
            ],
            "a notebook or submission failed, a photo could not be classified, a folder or mirror has problems",
            report=True,
        ),
    )
    parser.add_argument("--version", action="version", version=f"tlcourse {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", help="one of these, each with its own --help:"
    )

    run = _sub(
        sub, "run", "execute notebooks headless with papermill and write a report",
        description="Execute notebooks headless, each in its own kernel with its folder as working directory, "
        "and write the executed notebooks, their HTML and report.md/.html/.json to --out. A notebook that "
        "fails does not stop the others; one that succeeded before with the same inputs is skipped.",
        epilog=_epilog(
            [
                "tlcourse run lessons --profile cpu",
                "tlcourse run lessons/07_domain_shift.ipynb -p K 10 --out runs/k10",
                "tlcourse run 'solutions/*.ipynb' --profile smoke --jobs 2 --force",
            ],
            "a notebook failed, timed out or lost its kernel",
            report=True,
        ),
    )  # fmt: skip
    run.add_argument(
        "paths", nargs="*", metavar="PATH", help="notebooks, folders or globs (default: lessons/)"
    )
    run.add_argument(
        "--out", metavar="DIR", default="runs/latest", help="where the executed notebooks and the report go"
    )
    _add_run_options(run, "notebook")
    run.set_defaults(module="tlcourse.cli.runner", function="run_command")

    grade = _sub(
        sub, "grade", "run and score students' exercise notebooks; write a gradebook",
        description=GRADE_DESCRIPTION,
        epilog=_epilog(
            ["tlcourse grade submissions/ --out grades", "tlcourse grade 'inbox/*_05_*.ipynb' --out g --jobs 2"],
            "a submission could not be graded (its row says why)",
        ),
    )  # fmt: skip
    grade.add_argument("paths", nargs="+", metavar="SUBMISSION", help="submitted notebooks, folders or globs")
    grade.add_argument(
        "--out", metavar="DIR", required=True,
        help="where grades.csv, gradebook.html and the executed notebooks go",
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
        "--templates", metavar="DIR", default="exercises", help="the exercise notebooks handed out"
    )
    _add_run_options(grade, "submission")
    grade.set_defaults(module="tlcourse.cli.grade", function="grade_command")

    check = _sub(
        sub, "check-data", "audit an image folder before training on it",
        epilog=_epilog(
            ["tlcourse check-data my_photos", "tlcourse check-data my_photos --json > audit.json"],
            "the folder cannot be trained on as it is (the last line says why)",
        ),
    )  # fmt: skip
    check.add_argument(
        "directory",
        metavar="DIR",
        help="image folder: one sub-folder per class, optionally under train/ etc.",
    )
    check.add_argument("--json", action="store_true", dest="as_json", help="print one JSON object")
    check.add_argument(
        "--min-per-class", type=int, default=2, metavar="N", help="images a class needs to be usable"
    )
    check.set_defaults(module="tlcourse.cli.checkdata", function="check_data_command")

    from tlcourse.config import capstone_summary

    train = _sub(
        sub, "train", "audit, extract features, fine-tune, evaluate and export a classifier",
        description=(
            "Audit DIR, train a head on cached features of a frozen backbone, fine-tune its top, evaluate, "
            f"and export. Defaults: {capstone_summary('cpu')}; {capstone_summary('gpu')}. "
            "--alpha and --size replace the width and input size. Runs on oneDNN's CPU kernels."
        ),
        epilog=_epilog(
            [
                "tlcourse train my_photos --out model",
                "tlcourse train my_photos --out model --formats keras --profile cpu",
                "tlcourse predict model/model.keras new_photo.jpg",
            ],
            "the model could not be saved (metrics.json and model_card.md still record the run)",
        ),
    )  # fmt: skip
    train.add_argument(
        "directory",
        metavar="DIR",
        help="image folder: class/ folders, optionally under train/ and validation/",
    )
    train.add_argument(
        "--out", metavar="OUT", required=True, help="output folder for the model, metrics and card"
    )
    train.add_argument("--backbone", default="mobilenet_v2", help="backbone name from tlcourse.models")
    train.add_argument(
        "--alpha", type=float, default=None, help="MobileNetV2 width multiplier (default: the profile's)"
    )
    train.add_argument("--size", type=int, default=None, help="input size in pixels (default: the profile's)")
    train.add_argument(
        "--profile", choices=PROFILE_CHOICES, default="auto",
        help="compute budget: smoke (seconds), cpu, gpu, or auto ($TLCOURSE_PROFILE, else gpu when one is seen)",
    )  # fmt: skip
    train.add_argument(
        "--weights", default="imagenet", help="'imagenet', 'random', or a path to a weights file"
    )
    train.add_argument(
        "--seed", type=int, default=42, help="seed for the splits, shuffling and initial weights"
    )
    train.add_argument(
        "--distribute", choices=["none", "mirrored", "tpu"], default="none",
        help="train on one device (none), every GPU of this machine (mirrored) or a TPU; the batch size is "
        "per replica (tlcourse.distribute)",
    )  # fmt: skip
    train.add_argument(
        "--formats", default="keras,saved_model,tflite", metavar="LIST",
        help="comma-separated export formats from keras, saved_model and tflite, each checked by a round trip; "
        "keras is always needed (`tlcourse predict` reads model.keras); --formats keras skips the two slower "
        "exports",
    )  # fmt: skip
    train.add_argument(
        "--force", action="store_true",
        help="replace a model already in OUT (the earlier files are kept in OUT/previous/)",
    )  # fmt: skip
    _add_mirror(train)
    # oneDNN's CPU kernels: ~1.8x faster forward passes; the lessons keep TensorFlow's own (config.quiet_tensorflow)
    train.set_defaults(module="tlcourse.cli.pipeline", function="train_command", onednn=True)

    predict = _sub(
        sub, "predict",
        "classify images with a model saved by 'tlcourse train', or with ImageNet's classifier (--imagenet)",
        usage="tlcourse predict MODEL IMAGE... | tlcourse predict --imagenet IMAGE... [--top K] [--json]",
        epilog=_epilog(
            ["tlcourse predict model/model.keras a.jpg b.heic", "tlcourse predict --imagenet owl.jpg --top 3"],
            "an image could not be read or classified (the others are still shown)",
        ),
    )  # fmt: skip
    predict.add_argument(
        "model", nargs="?", metavar="MODEL", help="a .keras file written by 'tlcourse train'"
    )
    predict.add_argument(
        "images", nargs="*", metavar="IMAGE", help="photos to classify (JPEG, PNG, HEIC, ...)"
    )
    predict.add_argument(
        "--imagenet", action="store_true",
        help="no MODEL: ImageNet's pretrained 1000-class classifier (lesson 01) gives each photo's top 5",
    )  # fmt: skip
    _add_mirror(predict)
    predict.add_argument(
        "--top",
        type=int,
        default=None,
        help="how many classes to show per image (default: 3; 5 with --imagenet)",
    )
    predict.add_argument("--json", action="store_true", dest="as_json", help="print one JSON object")
    predict.set_defaults(module="tlcourse.cli.predicting", function="predict_command")

    assets = _sub(
        sub, "assets", "show, build or verify the offline mirror of weights and data",
        description="status: where each weight file and dataset comes from now. prepare: download what the "
        "course (or one --profile) needs into a mirror, by default the per-user one that every lesson and "
        "command then finds offline with no setting. verify: check a mirror against its checksums.",
        epilog=_epilog(
            [
                "tlcourse assets prepare --profile cpu   # online, before you travel",
                "tlcourse assets status",
                "tlcourse assets prepare --mirror /srv/course-mirror   # a classroom mirror",
                "tlcourse assets verify --mirror /srv/course-mirror",
            ],
            "verify or prepare found a missing or damaged file",
        ),
    )  # fmt: skip
    assets.add_argument(
        "action", choices=["status", "prepare", "verify"], help="what to do: status, prepare or verify"
    )
    _add_mirror(assets)
    assets.add_argument("--json", action="store_true", dest="as_json", help="print one JSON object")
    assets.add_argument(
        "--profile", choices=["smoke", "cpu", "gpu"], default=None,
        help="prepare: only the files that profile reads at run time (default: everything the course uses)",
    )  # fmt: skip
    assets.add_argument(
        "--keep-going", action="store_true",
        help="prepare: report a failed download and go on instead of stopping (Binder's postBuild)",
    )  # fmt: skip
    assets.set_defaults(module="tlcourse.cli.mirror", function="assets_command")

    site = _sub(
        sub, "site", "render a run's executed lessons as a static site (needs the site extra)",
        description="Render the notebooks a `tlcourse run` executed (never executing them again) into a static "
        "site: a landing page, a page per lesson with its outputs, reading list, self-check questions and "
        "diagrams, the exercises, each lesson's figures, and search. Nothing on its pages loads from outside.",
        epilog=_epilog(
            [
                "tlcourse site runs/latest --out runs/latest/site   # after tlcourse run lessons",
                "tlcourse site runs/site --out runs/site/html   # a cpu run, for publishing",
            ],
            "(never: a build that fails stops with status 2 and Sphinx's warnings)",
        ),
    )  # fmt: skip
    site.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of `tlcourse run lessons`")
    site.add_argument("--out", metavar="SITE_DIR", required=True, help="where the site's HTML goes")
    site.add_argument(
        "--repo", metavar="DIR", default=None, help="the course checkout (default: this folder)"
    )
    site.set_defaults(module="tlcourse.cli.site", function="site_command")
    return parser


def validate_arguments(args: argparse.Namespace) -> None:
    """Refuse values argparse lets through but no sub-command can use, with one line each (exit status 2).

    ``train``'s own ranges are checked by :func:`tlcourse.cli.pipeline.validate_train_args` and ``check-data``'s
    by :func:`tlcourse.cli.checkdata.check_data_command`; here: ``run``'s timeout, jobs and parameter names.
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
    from tlcourse.config import import_tensorflow, quiet_tensorflow

    onednn = bool(getattr(args, "onednn", False))
    quiet_tensorflow(onednn=onednn)
    try:
        validate_arguments(args)
        if onednn:  # with oneDNN on, TensorFlow prints a start-up banner twice unless loaded this way
            import_tensorflow()
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
    except KeyboardInterrupt as interrupt:
        status = exit_status(interrupt)
        print(
            f"tlcourse {args.command}: {'terminated' if status != 130 else 'interrupted'}.", file=sys.stderr
        )
        return status
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
