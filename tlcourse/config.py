"""Profiles, seeding and a quiet TensorFlow (introduced in lesson 00).

Every notebook has one ``parameters`` cell with a ``PROFILE`` value. :func:`get_profile` turns that value into
a :class:`Profile` holding the defaults for one budget:

- ``smoke``: CI and quick checks. Tiny subsets, one epoch, small images; real code paths, seconds per notebook.
- ``cpu``: Binder or a laptop (2 cores, at most 2 GB RAM): cached features, short fine-tuning.
- ``gpu``: Colab with a GPU: full data and the tutorial-scale schedule.
- ``auto``: ``$TLCOURSE_PROFILE`` if set, else ``gpu`` when TensorFlow sees a GPU, else ``cpu``.

This module does not import TensorFlow at import time, so :func:`quiet_tensorflow` can run first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

PROFILE_ENV = "TLCOURSE_PROFILE"


@dataclass(frozen=True)
class Profile:
    """The defaults for one compute budget. Notebooks read these; they never hard-code them."""

    name: str
    image_size: int
    batch_size: int
    alpha: float
    max_images_per_class: int | None
    """Cap on training images per class (validation is capped at a quarter of it); None means all."""
    head_epochs: int
    fine_tune_epochs: int
    learning_rate: float
    fine_tune_learning_rate: float
    augmented_passes: int
    """How many augmented copies of the training set the feature cache holds (0 = none)."""
    allow_synthetic: bool
    """Whether generated data and random weights may stand in when nothing is cached and we are offline."""
    capstone_alpha: float | None = None
    """Width ``tlcourse train`` uses instead of ``alpha`` (None: ``alpha``); the lessons never read it."""
    capstone_image_size: int | None = None
    """Input size ``tlcourse train`` uses instead of ``image_size`` (None: ``image_size``); lessons never read it."""
    capstone_augmented_passes: int | None = None
    """Augmented passes ``tlcourse train`` caches instead of ``augmented_passes`` (None: ``augmented_passes``)."""

    def for_capstone(self) -> Profile:
        """This profile with the capstone's width, input size and augmented passes as ``alpha``, ``image_size``
        and ``augmented_passes``: what ``tlcourse train`` runs (lesson 08). The lessons keep the profile's own,
        lighter ``alpha`` and ``image_size``, which fit Binder's 300 s and 2 GiB per lesson, and its passes."""
        passes = self.capstone_augmented_passes
        return self.replace(
            alpha=self.alpha if self.capstone_alpha is None else self.capstone_alpha,
            image_size=self.image_size if self.capstone_image_size is None else self.capstone_image_size,
            augmented_passes=self.augmented_passes if passes is None else passes,
        )

    def replace(self, **changes: object) -> Profile:
        """Return a copy with some fields changed, e.g. ``profile.replace(image_size=128)``."""
        return dataclasses.replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        image_size=96,
        batch_size=16,
        alpha=0.35,
        max_images_per_class=8,
        head_epochs=1,
        fine_tune_epochs=1,
        learning_rate=1e-3,
        fine_tune_learning_rate=1e-4,
        augmented_passes=0,
        allow_synthetic=True,
    ),
    "cpu": Profile(
        name="cpu",
        image_size=160,
        batch_size=32,
        alpha=0.35,
        max_images_per_class=None,
        head_epochs=20,
        fine_tune_epochs=5,
        learning_rate=1e-3,
        fine_tune_learning_rate=1e-5,
        augmented_passes=2,
        allow_synthetic=False,
        capstone_alpha=0.5,  # tlcourse train only: the most accurate of benchmarks/accuracy_vs_time.py's grid
        capstone_image_size=224,  # (issue 18); alpha 1.0 at 224 px was no better on the test split and 2.4x slower
        capstone_augmented_passes=0,  # 5-fold: 0.875 against 0.874 with 2 passes, and ~24 s faster (issue 18)
    ),
    "gpu": Profile(
        name="gpu",
        image_size=224,
        batch_size=32,
        alpha=1.0,
        max_images_per_class=None,
        head_epochs=20,
        fine_tune_epochs=10,
        learning_rate=1e-3,
        fine_tune_learning_rate=1e-5,
        augmented_passes=4,
        allow_synthetic=False,
    ),
}


CAPSTONE_SECONDS_PER_1000_IMAGES: dict[str, float] = {"cpu": 84.0}
"""Measured wall time of ``tlcourse train`` with a profile's capstone setting on a folder of 1,000 photos (audit,
decoding, features, fine-tuning, evaluation, export in all three formats), on oneDNN's CPU kernels: the median
of the five folds of ``python benchmarks/accuracy_vs_time.py --acceptance --folds 5`` (82 to 90 s per fold, 2
CPU cores at load average 1.0 to 1.4; issue 18). Export takes 29 to 32 s of it (``--formats`` chooses fewer).
``tlcourse train --help`` and the model card quote it."""


def capstone_summary(name: str = "cpu") -> str:
    """One sentence naming the settings ``tlcourse train`` uses with profile ``name`` and, when measured, its
    time per 1,000 photos (lesson 08; ``tlcourse train --help`` and the model card show it)."""
    profile = PROFILES[name].for_capstone()
    passes = profile.augmented_passes
    cached = f"{passes} cached augmented pass(es)" if passes else "cached features (no augmented passes)"
    text = (
        f"profile {name}: MobileNetV2 alpha {profile.alpha:g} at {profile.image_size} px, {profile.head_epochs} "
        f"head epochs on {cached}, {profile.fine_tune_epochs} fine-tune epochs at "
        f"{profile.fine_tune_learning_rate:g} (both with early stopping)"
    )
    seconds = CAPSTONE_SECONDS_PER_1000_IMAGES.get(name)
    if seconds:
        text += f"; about {seconds:.0f} s per 1,000 photos, measured on 2 shared CPU cores"
    return text


def in_colab() -> bool:
    """True inside a Google Colab kernel (lesson 00)."""
    return "google.colab" in sys.modules


def in_binder() -> bool:
    """True on mybinder.org / repo2docker images, which set ``BINDER_SERVICE_HOST`` or ``BINDER_LAUNCH_HOST``."""
    return any(key in os.environ for key in ("BINDER_SERVICE_HOST", "BINDER_LAUNCH_HOST", "BINDER_REPO_URL"))


def platform_name() -> str:
    """``"colab"``, ``"binder"`` or ``"local"`` (lesson 00)."""
    if in_colab():
        return "colab"
    if in_binder():
        return "binder"
    return "local"


BINDER_MEMORY_MIB = 2048
"""What mybinder.org gives a session (its kernel is restarted above it)."""


def other_kernels_mib(min_mib: float = 200.0) -> list[tuple[int, float]]:
    """``(pid, MiB)`` of the other Jupyter kernels of this user holding at least ``min_mib`` of memory (lesson 00).

    Reads the process table with psutil; this kernel and its parents are left out.
    """
    import psutil

    me = psutil.Process()
    mine = {me.pid, *(parent.pid for parent in me.parents())}
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "uids", "memory_info"]):
        info = process.info
        try:
            same_user = info["uids"] is None or info["uids"].real == me.uids().real
        except (psutil.Error, AttributeError):
            same_user = True
        cmdline = " ".join(info["cmdline"] or [])
        if info["pid"] in mine or not same_user or "ipykernel" not in cmdline or info["memory_info"] is None:
            continue
        mib = info["memory_info"].rss / 2**20
        if mib >= min_mib:
            found.append((info["pid"], round(mib, 1)))
    return found


def binder_memory_warning() -> str | None:
    """One line to print when other kernels hold memory that this lesson may need on Binder (lesson 00).

    A lesson's kernel can peak near 1.75 GiB of Binder's 2 GiB, so a kernel left running by the previous lesson
    gets the next one killed. None when nothing else holds much.
    """
    others = other_kernels_mib()
    if not others:
        return None
    held = sum(mib for _, mib in others)
    return (
        f"WARNING: {len(others)} other notebook kernel(s) still hold {held:.0f} MiB of Binder's "
        f"{BINDER_MEMORY_MIB} MiB; shut them down first (Kernel > Shut Down Kernel in their tabs, or the "
        "Running Terminals and Kernels panel), or this lesson's kernel may be restarted for lack of memory."
    )


def gpu_available() -> bool:
    """True when TensorFlow can see at least one GPU. Imports TensorFlow (lesson 00)."""
    quiet_tensorflow()
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def get_profile(name: str = "auto", **overrides: object) -> Profile:
    """Return the :class:`Profile` called ``name`` (lesson 00).

    ``auto`` uses ``$TLCOURSE_PROFILE`` when it is set, else ``gpu`` if TensorFlow sees a GPU, else ``cpu``.
    Keyword arguments override single fields, e.g. ``get_profile("cpu", image_size=128)``. On Binder it also
    prints :func:`binder_memory_warning` when other kernels hold memory this lesson may need.
    """
    key = (name or "auto").strip().lower()
    if key == "auto":
        key = os.environ.get(PROFILE_ENV, "").strip().lower() or ("gpu" if gpu_available() else "cpu")
    if key not in PROFILES:
        raise ValueError(f"Unknown profile {name!r}: choose one of auto, {', '.join(PROFILES)}.")
    profile = PROFILES[key]
    if in_binder():
        warning = binder_memory_warning()
        if warning:
            print(warning)
    return profile.replace(**overrides) if overrides else profile


def quiet_tensorflow(level: int = 2, *, onednn: bool = False) -> None:
    """Silence TensorFlow's C++ start-up messages and choose its CPU kernels (lesson 00).

    Must run before TensorFlow is first imported: it sets ``TF_CPP_MIN_LOG_LEVEL`` and
    ``TF_ENABLE_ONEDNN_OPTS``. The first call decides; values the user already set are always kept. Once
    TensorFlow is loaded it also lowers the Python-side log level.

    ``onednn=False`` (the lessons): TensorFlow's own CPU kernels, the ones every cpu-profile figure in the
    lessons' prose was measured with. ``onednn=True`` (``tlcourse train``): Intel's oneDNN kernels, which on
    2 AVX2 cores run MobileNetV2's forward pass about 1.8x faster (alpha 0.5 at 224 px: 81 against 148 images
    a second). Both are reproducible run to run on one machine; they add in a different order, so their
    figures differ in the last digits (benchmarks/recipe_vs_tlcourse.py, issue 18).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", str(level))
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1" if onednn else "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")


TENSORFLOW_BANNER = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on.",
)
"""The start-up lines TensorFlow's C++ side writes when oneDNN is on: once for each of its two native libraries,
before ``TF_CPP_MIN_LOG_LEVEL`` applies (absl logs them before its logging is set up), so that variable cannot
hide them."""


@contextlib.contextmanager
def _stderr_without(unwanted: tuple[str, ...]) -> Iterator[None]:
    """Capture what is written to file descriptor 2 (C++ code included) while inside, then pass on every line
    that contains none of ``unwanted``."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a notebook's or a test's stderr is not a file
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not any(part in line for part in unwanted)
            ]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def import_tensorflow() -> ModuleType:
    """Import TensorFlow without its C++ start-up banner (``tlcourse train``, which runs on oneDNN's kernels).

    Call :func:`quiet_tensorflow` first. Every other line TensorFlow writes while loading (a warning, an error)
    still reaches the terminal; once TensorFlow is loaded this just returns it.
    """
    if "tensorflow" not in sys.modules:
        with _stderr_without(TENSORFLOW_BANNER):
            import tensorflow  # noqa: F401 - loaded here, under the filter
    return sys.modules["tensorflow"]


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs on oneDNN's CPU kernels in this process (see :func:`quiet_tensorflow`).

    Once TensorFlow is loaded, its own answer (``IsMklEnabled``, private but long-standing). Before, or if that
    function is gone, ``TF_ENABLE_ONEDNN_OPTS`` read as TensorFlow reads it; unset gives None, because TensorFlow
    then decides by the CPU (off on the 2-core AVX2 machines this course's figures come from).
    """
    if "tensorflow" in sys.modules:
        try:
            from tensorflow.python.util import _pywrap_util_port

            return bool(_pywrap_util_port.IsMklEnabled())
        except (ImportError, AttributeError):
            pass
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if value is None:
        return None
    return value.strip().lower() not in {"0", "false", "off", "no"}


def environment_report(profile: str = "auto") -> dict[str, object]:
    """Describe where the course is running: versions, platform, GPU, chosen profile (lesson 00).

    Imports TensorFlow and Keras. Returns plain values so a notebook can print them or assert on them.
    """
    import platform

    quiet_tensorflow()
    import keras
    import tensorflow as tf

    from tlcourse import __version__

    gpus = [device.name for device in tf.config.list_physical_devices("GPU")]
    chosen = get_profile(profile)
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tlcourse": __version__,
        "platform": platform_name(),
        "system": f"{platform.system()} {platform.machine()}",
        "cpu_count": os.cpu_count() or 1,
        "gpus": gpus,
        "profile": chosen.name,
        "profile_source": "argument"
        if (profile or "auto").lower() != "auto"
        else ("$" + PROFILE_ENV if os.environ.get(PROFILE_ENV) else "detected"),
    }


def seed_everything(seed: int = 42, deterministic: bool = False) -> None:
    """Seed Python, NumPy and TensorFlow in one call (lesson 00).

    With ``deterministic=True`` TensorFlow ops are also made deterministic, so two runs on the same CPU give
    bit-identical weights (slower, and it cannot be undone in the same process).
    """
    quiet_tensorflow()
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
