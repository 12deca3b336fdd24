"""tf.distribute for training: pick a strategy, size the batch, and fit under it.

``default`` and ``mirrored`` train with ``model.fit``. ``multi_worker`` cannot: Keras 3's ``fit``
fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), so it runs TensorFlow's
documented custom loop (lenet_keras.training.custom_loop) with the very callbacks ``fit`` would get.

Every worker runs the same program, because saving and metric reads are collective; only the chief
writes into ``--model_dir``, the others write into a temporary folder that is removed at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Optional, Sequence

import tensorflow as tf
from absl import logging

from lenet_keras.errors import UserError, first_line
from lenet_keras.training import custom_loop

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
WORKER_TASK_TYPES = ("chief", "worker")


_TF_CONFIG_FORM = '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}'


def _tf_config_cluster() -> Optional[tf.distribute.cluster_resolver.ClusterResolver]:
    """TF_CONFIG's cluster as tf.distribute reads it, checked before any cluster starts; None
    when TF_CONFIG is not set."""
    if not os.environ.get("TF_CONFIG"):
        return None
    try:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        cluster = resolver.cluster_spec().as_dict()
        task_type, task_id = resolver.task_type, resolver.task_id
    except (ValueError, TypeError, AttributeError) as exc:  # bad JSON, index, or cluster entries
        raise UserError(f"TF_CONFIG is not a valid cluster description ({type(exc).__name__}: "
                        f"{first_line(exc)}): set it to {_TF_CONFIG_FORM}") from None
    if not cluster or task_type is None or task_id is None:
        raise UserError("TF_CONFIG is not a valid cluster description (it needs cluster, task.type "
                        f"and task.index): set it to {_TF_CONFIG_FORM}")
    if task_type not in WORKER_TASK_TYPES or not 0 <= task_id < len(cluster.get(task_type, ())):
        raise UserError(
            f"TF_CONFIG task {task_type}:{task_id} is not a chief or worker of its cluster: "
            "multi_worker runs one process per cluster.worker (and cluster.chief) entry"
        )
    return resolver


def _multi_worker_strategy() -> tf.distribute.Strategy:
    resolver = _tf_config_cluster()
    if resolver is None:
        logging.warning("TF_CONFIG is not set: --strategy multi_worker trains as a single worker")
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        raise UserError(
            f"cannot start multi-worker training from TF_CONFIG: {first_line(exc)}"
        ) from None


def _tpu_strategy() -> tf.distribute.Strategy:
    try:
        # With no argument the resolver reads TPU_NAME, or finds the TPU attached to a TPU VM.
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:  # what the resolver raises
        raise UserError(
            f"--strategy tpu found no TPU ({first_line(exc, 120)}): run on a Cloud TPU VM or set "
            "TPU_NAME to the TPU's name or grpc:// address"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


def resolve_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy ``--strategy name`` means; call it before any other TensorFlow work."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()  # every local GPU, or the CPU when there is none
    if name == "multi_worker":
        return _multi_worker_strategy()
    if name == "tpu":
        return _tpu_strategy()
    raise UserError(f"unknown --strategy {name!r}: choose one of {', '.join(STRATEGIES)}")


def batch_config(config, strategy, global_batch_size: Optional[int], per_replica_override=None):
    """``config`` with batch_size made global: per-replica batch x replicas, or the given total."""
    replicas = strategy.num_replicas_in_sync
    if global_batch_size is None:
        return config.replace(batch_size=config.batch_size * replicas)
    if per_replica_override is not None:
        raise UserError("give --batch_size (per replica) or --global_batch_size, not both")
    if global_batch_size <= 0 or global_batch_size % replicas:
        raise UserError(
            f"--global_batch_size must be a positive multiple of the {replicas} replicas in sync, "
            f"got {global_batch_size}"
        )
    return config.replace(batch_size=global_batch_size)


def is_chief(strategy) -> bool:
    """Whether this task writes the artifacts, as tf.distribute decides it (the ``chief`` task,
    else worker 0; a single process always does)."""
    return bool(strategy.extended.should_checkpoint)


def write_dir(path: str, strategy, carry: Sequence[str] = ()) -> str:
    """``path`` for the chief; for other workers a temporary folder that is removed at exit.

    A worker's folder starts with a copy of the chief's ``carry`` entries (its resume state), so a
    restarted cluster resumes from the same epoch on every worker; a shared file system, as for
    any multi-worker checkpoint, is assumed.
    """
    if is_chief(strategy):
        barrier(strategy)  # the chief changes nothing until the workers have copied its state
        return path
    temp = tempfile.mkdtemp(prefix="lenet_keras_worker_")
    atexit.register(shutil.rmtree, temp, ignore_errors=True)
    worker_path = os.path.join(temp, os.path.basename(os.path.normpath(path)))
    os.makedirs(worker_path)
    copy_state(path, worker_path, carry)
    barrier(strategy)
    return worker_path


def copy_state(chief_path: str, worker_path: str, carry: Sequence[str]) -> None:
    for name in carry:
        source = os.path.join(chief_path, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(worker_path, name))
        elif os.path.isfile(source):
            shutil.copy2(source, os.path.join(worker_path, name))


def barrier(strategy) -> None:
    """Returns on each worker once every worker has called it; no-op for a single worker."""
    if _workers(strategy) > 1:
        ones = strategy.experimental_distribute_values_from_function(lambda _: tf.constant(1))
        strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)


def finish(path: str, strategy) -> None:
    """Ends one run on every worker: removes a worker's copies, then waits until all got here.

    The barrier means the chief's artifacts are in place before any worker starts the next
    experiment (transfer reads tuned's model.keras).
    """
    if not is_chief(strategy):
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    barrier(strategy)


def _workers(strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return max(1, sum(len(cluster.get(t, ())) for t in WORKER_TASK_TYPES))


def strategy_name(strategy) -> str:
    """The --strategy value that gives ``strategy``."""
    for cls, name in ((tf.distribute.MultiWorkerMirroredStrategy, "multi_worker"),
                      (tf.distribute.MirroredStrategy, "mirrored"),
                      (tf.distribute.TPUStrategy, "tpu")):
        if isinstance(strategy, cls):
            return name
    return "default"


def describe(strategy) -> dict:
    """What metrics.json records about how the run was distributed."""
    return {
        "strategy": strategy_name(strategy),
        "replicas_in_sync": int(strategy.num_replicas_in_sync),
        "workers": _workers(strategy),
    }


def _shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    # TFDS splits have fewer files than a cluster may have workers: shard elements, not files.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def uses_custom_loop(strategy) -> bool:
    """Whether ``fit`` below trains with the custom loop (one iterator per epoch) under ``strategy``."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def fit(model, strategy, train, validation_data, epochs, callbacks, verbose=2, shuffle=False):
    """``model.fit`` where Keras supports the strategy, else the custom loop; returns a History.

    ``shuffle`` is fit's; the custom loop takes the batches in the order ``train`` yields them.
    """
    if uses_custom_loop(strategy):
        train, validation_data = _shard_by_data(train), _shard_by_data(validation_data)
        return custom_loop.custom_fit(model, strategy, train, validation_data, epochs, callbacks, verbose)
    return model.fit(train, validation_data=validation_data, epochs=epochs, callbacks=callbacks,
                     verbose=verbose, shuffle=shuffle)
