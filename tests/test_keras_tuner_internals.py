"""The keras-tuner internals lenet_keras.search patches or reads still have the shape it relies on.

search/durable.py and search/tuner.py reach past keras-tuner's public API (a durable search needs
to): setup.cfg pins keras-tuner to the minor version these were written against, and this test
fails, naming the attribute, when an installed release changes one of them — instead of a search
that is silently no longer durable.
"""

from __future__ import annotations

import inspect

import keras_tuner as kt
import pytest
from keras_tuner.src import utils as kt_utils
from keras_tuner.src.backend import io as kt_io
from keras_tuner.src.distribute import utils as kt_distribute
from keras_tuner.src.engine import oracle as kt_oracle
from keras_tuner.src.engine import stateful as kt_stateful
from keras_tuner.src.engine import tuner as kt_tuner


def _parameters(function) -> list:
    return list(inspect.signature(function).parameters)


def _source(function, wrapped: str = "") -> str:
    """The source of ``function``, or of the method named ``wrapped`` that keras-tuner's
    @synchronized keeps in its closure."""
    inner = [cell.cell_contents for cell in function.__closure__ or ()
             if inspect.isfunction(cell.cell_contents) and cell.cell_contents.__name__ == wrapped]
    return inspect.getsource(inner[0] if inner else function)


def test_state_files_are_written_through_utils_save_json():
    """durable.write_state_atomically replaces keras_tuner.src.utils.save_json(path, obj): it
    only takes effect while keras-tuner looks the function up on that module at call time."""
    assert _parameters(kt_utils.save_json)[:2] == ["path", "obj"], "utils.save_json(path, obj)"
    assert "utils.save_json(" in _source(kt_stateful.Stateful.save), "Stateful.save"
    assert hasattr(kt_io, "File"), "keras_tuner.src.backend.io.File"


def test_oracle_keeps_the_retry_queue_start_order_and_trial_dirs():
    """durable.repair_after_kill edits Oracle._retry_queue and reads start_order, trials and
    _get_trial_dir; create_trial must take trials from that queue first."""
    oracle = kt.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=2)
    for name, kind in (("_retry_queue", list), ("start_order", list), ("trials", dict)):
        assert isinstance(getattr(oracle, name, None), kind), f"Oracle.{name}"
    assert _parameters(kt_oracle.Oracle._get_trial_dir) == ["self", "trial_id"], \
        "Oracle._get_trial_dir(trial_id)"
    create = _source(kt_oracle.Oracle.create_trial, "create_trial")
    assert "self._retry_queue" in create, "Oracle.create_trial reads _retry_queue"
    assert "self.start_order" in create, "Oracle.create_trial records start_order"
    assert "retry_queue" in oracle.get_state(), "Oracle.get_state()['retry_queue']"


def test_create_trial_honours_max_trials_set_on_a_hyperband_oracle():
    """tuner.make_tuner caps Hyperband by setting oracle.max_trials, which Hyperband's constructor
    does not take: Oracle.create_trial must read it."""
    oracle = kt.oracles.HyperbandOracle(objective="val_accuracy", max_epochs=3)
    assert hasattr(oracle, "max_trials"), "HyperbandOracle.max_trials"
    assert "self.max_trials" in _source(kt_oracle.Oracle.create_trial, "create_trial"), \
        "Oracle.create_trial reads self.max_trials"
    create = kt_oracle.Oracle.create_trial
    assert "tuner_id" in _source(create, "create_trial").split(":", 1)[0], "Oracle.create_trial(tuner_id)"


def test_run_trial_takes_the_fit_arguments_as_keywords():
    """durable.seed_each_trial wraps Tuner.run_trial(trial, *args, **kwargs) and swaps in ``x``."""
    assert _parameters(kt_tuner.Tuner.run_trial) == ["self", "trial", "args", "kwargs"], \
        "Tuner.run_trial(trial, *args, **kwargs)"
    assert "self.run_trial(" in _source(kt.engine.base_tuner.BaseTuner._run_and_update_trial), \
        "BaseTuner._run_and_update_trial calls self.run_trial"


@pytest.mark.parametrize("name", ["has_chief_oracle", "is_chief_oracle"])
def test_chief_and_worker_are_told_apart_by_keras_tuners_own_test(name):
    function = getattr(kt_distribute, name, None)
    assert callable(function), f"keras_tuner.src.distribute.utils.{name}"
    assert _parameters(function) == [], f"{name}() takes no arguments"


def test_trial_statuses_the_repair_reads():
    status = kt.engine.trial.TrialStatus
    for name in ("COMPLETED", "FAILED", "IDLE", "RUNNING"):
        assert hasattr(status, name), f"TrialStatus.{name}"


def test_a_tensorboard_callback_is_given_its_trial_folder_and_hparams():
    """search.tuner.search passes a TensorBoard callback and relies on keras-tuner moving its log
    dir per trial and adding HParams' KerasCallback (what `tune` logs to TensorBoard)."""
    configure = getattr(kt_tuner.Tuner, "_configure_tensorboard_dir", None)
    assert callable(configure), "Tuner._configure_tensorboard_dir"
    assert _parameters(configure)[:3] == ["self", "callbacks", "trial"], \
        "Tuner._configure_tensorboard_dir(callbacks, trial, execution)"
    source = _source(configure)
    assert '"TensorBoard"' in source and "hparams_api.KerasCallback" in source, \
        "Tuner._configure_tensorboard_dir acts on a callback named TensorBoard with HParams"
    assert "self._configure_tensorboard_dir(" in _source(kt_tuner.Tuner.run_trial), \
        "Tuner.run_trial calls _configure_tensorboard_dir"
