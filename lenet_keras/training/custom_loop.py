"""TensorFlow's documented custom training loop, driving the callbacks ``model.fit`` would get.

For strategies Keras 3's ``fit`` cannot run under (``MultiWorkerMirroredStrategy``,
keras-team/keras#20585): ``strategy.run`` over ``experimental_distribute_dataset``, the loss scaled
by ``tf.nn.compute_average_loss``, and the same ``keras.callbacks`` in fit's order with fit's
``logs``, so best-val checkpoints, TensorBoard, metrics.json and BackupAndRestore behave the same.
Under mixed_float16 the loss is multiplied by the LossScaleOptimizer's scale before the gradients
are taken, as ``fit`` does; the optimizer divides it out again (and skips non-finite steps).
"""

from __future__ import annotations

import keras
import tensorflow as tf


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
            # A no-op for plain Adam; a LossScaleOptimizer multiplies by its scale, without which
            # float16 gradients underflow.
            scaled_loss = model.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, model.trainable_variables)
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
