"""Past one device: pick a ``tf.distribute`` strategy and scale the global batch size (lessons 00 and 05).

Lesson 05 shows the plain TensorFlow version: ``strategy = tf.distribute.MirroredStrategy()`` (every GPU of
one machine) or ``tf.distribute.TPUStrategy(resolver)`` (a Colab TPU), then build and compile the model
inside ``with strategy.scope():`` and feed ``fit`` batches of ``per-replica batch x replicas`` images. Every
model the course's helpers build is built inside ``tf.distribute.get_strategy().scope()``, so the helpers run
unchanged inside that scope. :func:`choose` does the choosing in one call; ``tlcourse train --distribute``
uses it. tests/test_distribute.py runs lessons 04-05's path on two CPU devices and compares it with one.

The learning rate is left as it is: the course trains with Adam at low rates, for which the linear scaling
rule (multiply the rate by the number of replicas, for large-batch SGD) is not needed; the line
:meth:`Distribution.describe` prints says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tlcourse.config import quiet_tensorflow
from tlcourse.errors import TLCourseError

CHOICES = ("none", "mirrored", "tpu")
"""What ``--distribute`` accepts: one device, every GPU of this machine (or its CPU), a TPU."""


@dataclass(frozen=True)
class Distribution:
    """A chosen strategy with its replica count and the batch sizes it implies (lesson 05)."""

    kind: str
    strategy: Any
    replicas: int
    per_replica_batch_size: int
    devices: tuple[str, ...]

    @property
    def global_batch_size(self) -> int:
        """The batch ``fit`` is fed: each replica gets ``per_replica_batch_size`` of it."""
        return self.per_replica_batch_size * self.replicas

    def scope(self) -> Any:
        """``strategy.scope()``: build and compile models inside it."""
        return self.strategy.scope()

    def describe(self) -> str:
        """One line saying what was chosen, e.g. for ``tlcourse train`` and lesson 00."""
        where = ", ".join(self.devices) if self.devices else "the default device"
        return (
            f"distribute {self.kind}: {type(self.strategy).__name__} over {self.replicas} replica(s) ({where}); "
            f"global batch {self.global_batch_size} = {self.per_replica_batch_size} per replica x "
            f"{self.replicas}; learning rate unchanged"
        )


def global_batch_size(per_replica: int, replicas: int) -> int:
    """``per_replica x replicas``: the batch size to give ``fit`` so each replica sees ``per_replica``."""
    if int(per_replica) < 1 or int(replicas) < 1:
        raise TLCourseError(f"Batch size {per_replica} and replicas {replicas} must both be at least 1.")
    return int(per_replica) * int(replicas)


def _tpu_strategy(tf: Any) -> Any:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TLCourseError(
            f"--distribute tpu: no TPU found ({reason[:160]}). On Colab choose Runtime > Change runtime type > "
            "TPU, or use --distribute mirrored (GPUs) or none."
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def choose(kind: str = "none", *, batch_size: int = 32) -> Distribution:
    """The strategy for ``kind`` (``none``, ``mirrored`` or ``tpu``) and the batch sizes it implies (lesson 05).

    ``none`` is the default strategy (one device); ``mirrored`` is ``tf.distribute.MirroredStrategy()`` over
    every GPU TensorFlow sees (the CPU when there is none); ``tpu`` connects to a TPU with
    ``TPUClusterResolver`` and raises :class:`TLCourseError` with one line when there is none.
    ``batch_size`` is per replica; :attr:`Distribution.global_batch_size` is what ``fit`` should be fed.
    """
    key = (kind or "none").strip().lower()
    if key not in CHOICES:
        raise TLCourseError(f"--distribute {kind!r} is not a choice: use one of {', '.join(CHOICES)}.")
    quiet_tensorflow()
    import tensorflow as tf

    if key == "tpu":
        strategy = _tpu_strategy(tf)
    elif key == "mirrored":
        gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
        strategy = tf.distribute.MirroredStrategy(gpus or None)
    else:
        strategy = tf.distribute.get_strategy()
    devices = tuple(getattr(strategy.extended, "worker_devices", ()) or ()) if key != "none" else ()
    replicas = int(strategy.num_replicas_in_sync)
    global_batch_size(batch_size, replicas)  # refuses a batch size below 1
    return Distribution(key, strategy, replicas, int(batch_size), devices)


def current_scope() -> Any:
    """The active strategy's scope (the default strategy's outside any): every helper builds its models inside
    it, so the same code runs under ``with strategy.scope():`` unchanged (lesson 05)."""
    quiet_tensorflow()
    import tensorflow as tf

    return tf.distribute.get_strategy().scope()


def require_built_in_scope(model: Any, what: str = "This step") -> None:
    """Refuse, in one line, a model whose weights were made outside the active strategy's scope (lesson 05).

    Under a ``tf.distribute`` strategy every weight must be created inside ``with strategy.scope():``; one made
    outside fails deep inside TensorFlow when the optimizer builds its slots (``colocate_vars_with must only
    be passed a variable created in this tf.distribute.Strategy.scope()``). Nothing to check without one.
    """
    quiet_tensorflow()
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return
    outside = [
        v.path if hasattr(v, "path") else v.name
        for v in model.trainable_variables
        if not isinstance(getattr(v, "value", v), tf.distribute.DistributedValues)
    ]
    if outside:
        raise TLCourseError(
            f"{what}: {len(outside)} weight(s) of {model.name!r} (e.g. {outside[0]}) were made outside the "
            f"{type(tf.distribute.get_strategy()).__name__} scope: build the model inside `with strategy.scope():`."
        )
