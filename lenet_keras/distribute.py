"""tf.distribute for training: pick a strategy, size the batch, and fit under it.

``default`` and ``mirrored`` train with ``model.fit``. ``multi_worker`` cannot: Keras 3's ``fit``
fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), so it runs TensorFlow's
documented custom loop (``strategy.run`` over ``experimental_distribute_dataset``, the loss scaled
by ``tf.nn.compute_average_loss``) while driving the very callbacks ``fit`` would get, in fit's
order, so checkpoints, metrics and resume behave the same on both paths.

Every worker runs the same program, because saving and metric reads are collective; only the chief
writes into ``--model_dir``, the others write into a temporary folder that is removed at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from typing import Optional, Sequence

import keras
import tensorflow as tf
from absl import logging

from lenet_keras.errors import UserError, first_line

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
WORKER_TASK_TYPES = ("chief", "worker")


def _multi_worker_strategy() -> tf.distribute.Strategy:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        logging.warning("TF_CONFIG is not set: --strategy multi_worker trains as a single worker")
    else:
        try:
            tf_config = json.loads(raw)
            cluster, task = tf_config["cluster"], tf_config["task"]
            task_type, task_id = task["type"], int(task["index"])
            peers = cluster[task_type]
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(
                f"TF_CONFIG is not a valid cluster description ({type(exc).__name__}: "
                f"{first_line(exc)}): set it to "
                '{"cluster": {"worker": ["host:port", ...]}, '
                '"task": {"type": "worker", "index": N}}'
            ) from None
        if task_type not in WORKER_TASK_TYPES or not 0 <= task_id < len(peers):
            raise UserError(
                f"TF_CONFIG task {task_type}:{task_id} is not a chief or worker of its cluster: "
                "multi_worker runs one process per cluster.worker (and cluster.chief) entry"
            )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
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
    except Exception as exc:  # the resolver raises ValueError, RuntimeError or gRPC errors
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
    """The task that owns the artifacts: ``chief``, else worker 0; a single process always is."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def write_dir(path: str, strategy, carry: Sequence[str] = ()) -> str:
    """``path`` for the chief; for other workers a temporary folder that is removed at exit.

    A worker's folder starts with a copy of the chief's ``carry`` entries (its resume state), so a
    restarted cluster resumes from the same epoch on every worker; a shared file system, as for
    any multi-worker checkpoint, is assumed.
    """
    if is_chief(strategy):
        _barrier(strategy)  # the chief changes nothing until the workers have copied its state
        return path
    resolver = strategy.cluster_resolver
    temp = tempfile.mkdtemp(prefix=f"lenet_keras_{resolver.task_type}{resolver.task_id}_")
    atexit.register(shutil.rmtree, temp, ignore_errors=True)
    worker_path = os.path.join(temp, os.path.basename(os.path.normpath(path)))
    os.makedirs(worker_path)
    copy_state(path, worker_path, carry)
    _barrier(strategy)
    return worker_path


def copy_state(chief_path: str, worker_path: str, carry: Sequence[str]) -> None:
    for name in carry:
        source = os.path.join(chief_path, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(worker_path, name))
        elif os.path.isfile(source):
            shutil.copy2(source, os.path.join(worker_path, name))


def _barrier(strategy) -> None:
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
    _barrier(strategy)


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


def fit(model, strategy, train, validation_data, epochs, callbacks, verbose=2):
    """``model.fit`` where Keras supports the strategy, else the custom loop; returns a History."""
    train, validation_data = _shard_by_data(train), _shard_by_data(validation_data)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return custom_fit(model, strategy, train, validation_data, epochs, callbacks, verbose)
    return model.fit(train, validation_data=validation_data, epochs=epochs, callbacks=callbacks,
                     verbose=verbose)


def _epoch_metrics():
    # The names models.compile_classifier gives its metrics, so both paths log the same keys.
    return [
        keras.metrics.Mean(name="loss"),
        keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy"),
    ]


def _results(metrics) -> dict:
    return {m.name: float(m.result()) for m in metrics}


def custom_fit(model, strategy, train, validation_data, epochs, callbacks, verbose=2):
    """Trains a compiled ``model`` like ``fit`` does, with one step per global batch.

    Works under any strategy; ``fit`` uses it for MultiWorkerMirroredStrategy only.
    """
    # Like fit: callbacks that create variables (BackupAndRestore builds the optimizer) need it.
    with strategy.scope():
        return _custom_fit(model, strategy, train, validation_data, epochs, callbacks, verbose)


def _custom_fit(model, strategy, train, validation_data, epochs, callbacks, verbose):
    per_example_loss = keras.losses.get(model.loss)
    train_metrics, val_metrics = _epoch_metrics(), _epoch_metrics()

    def update(metrics, labels, probabilities, losses):
        metrics[0].update_state(losses)
        for metric in metrics[1:]:
            metric.update_state(labels, probabilities)

    def replica_train_step(images, labels):
        # The true global batch, so a short last batch split unevenly still averages right.
        global_batch = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, tf.shape(labels)[0]
        )
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            losses = per_example_loss(labels, probabilities)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        update(train_metrics, labels, probabilities, losses)
        return loss

    def replica_test_step(images, labels):
        probabilities = model(images, training=False)
        update(val_metrics, labels, probabilities, per_example_loss(labels, probabilities))

    @tf.function(reduce_retracing=True)
    def train_step(batch):
        losses = strategy.run(replica_train_step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    @tf.function(reduce_retracing=True)
    def test_step(batch):
        strategy.run(replica_test_step, args=batch)

    steps = int(train.cardinality())
    callbacks = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, model=model,
        verbose=verbose, epochs=epochs, steps=steps if steps >= 0 else None,
    )
    train_dist = strategy.experimental_distribute_dataset(train)
    val_dist = strategy.experimental_distribute_dataset(validation_data)

    model.stop_training = False
    callbacks.on_train_begin()
    # BackupAndRestore reports the epoch it restored through this attribute, which fit also reads.
    initial_epoch = getattr(model, "_initial_epoch", None) or 0
    epoch_logs = None
    for epoch in range(initial_epoch, epochs):
        for metric in train_metrics + val_metrics:
            metric.reset_state()
        callbacks.on_epoch_begin(epoch)
        for step, batch in enumerate(train_dist):
            callbacks.on_train_batch_begin(step)
            loss = train_step(batch)
            callbacks.on_train_batch_end(step, {"loss": float(loss)})
            if model.stop_training:
                break
        epoch_logs = _results(train_metrics)

        callbacks.on_test_begin()
        for step, batch in enumerate(val_dist):
            callbacks.on_test_batch_begin(step)
            test_step(batch)
            callbacks.on_test_batch_end(step)
        val_logs = _results(val_metrics)
        callbacks.on_test_end(val_logs)
        epoch_logs.update({f"val_{name}": value for name, value in val_logs.items()})

        callbacks.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    callbacks.on_train_end(epoch_logs)
    return model.history
