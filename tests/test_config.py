"""Named experiments are the single source of hyperparameters; overrides are validated."""

import json

import pytest

from lenet_keras import experiments
from lenet_keras.config import ExperimentConfig
from lenet_keras.errors import UserError


def test_experiments_match_the_seed():
    vanilla, tuned, transfer = (experiments.get_config(n) for n in ("vanilla", "tuned", "transfer"))
    assert (vanilla.activation, vanilla.pooling, vanilla.batch_norm, vanilla.hidden_units) == (
        "tanh", "average", False, (120, 84))
    assert (tuned.activation, tuned.pooling, tuned.batch_norm, tuned.hidden_units) == (
        "relu", "max", True, (64, 128))
    assert (vanilla.epochs, tuned.epochs, transfer.epochs) == (10, 20, 10)
    for config in (vanilla, tuned, transfer):
        assert (config.learning_rate, config.batch_size) == (1e-3, 64)
        assert (config.train_split, config.val_split, config.test_split) == (
            "train[:90%]", "train[90%:]", "test")
    assert (vanilla.dataset, transfer.dataset) == ("cifar100", "stl10")
    assert (transfer.source_experiment, transfer.freeze) == ("tuned", "all_but_head")
    assert experiments.STUDY_ORDER == ("vanilla", "tuned", "transfer")


def test_flag_values_replace_fields_and_a_flag_not_given_keeps_it():
    config = experiments.get_config("vanilla").replace_given(epochs=2, batch_size=None,
                                                             learning_rate=0.01)
    assert (config.epochs, config.batch_size, config.learning_rate) == (2, 64, 0.01)
    assert experiments.get_config("vanilla").epochs == 10  # frozen: the registry is untouched


def test_replace_can_clear_an_optional_field_and_refuses_clearing_a_required_one():
    transfer = experiments.get_config("transfer")
    assert transfer.replace(source_experiment=None).source_experiment is None
    folder = transfer.replace(image_dir="/data/flowers", dataset="folder:flowers")
    assert folder.replace(image_dir=None, dataset="stl10").image_dir is None
    with pytest.raises(UserError, match="epochs must be a positive integer, got None"):
        transfer.replace(epochs=None)


def test_a_saved_config_reads_back_equal():
    config = experiments.get_config("transfer").replace(image_dir="/data/flowers")
    assert ExperimentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("field,value", [("epochs", 0), ("batch_size", -1), ("learning_rate", 0.0),
                                         ("activation", "sigmoid"), ("pooling", "min")])
def test_bad_overrides_are_user_errors(field, value):
    with pytest.raises(UserError, match=field):
        experiments.get_config("tuned").replace(**{field: value})


def test_unknown_experiment_names_the_choices():
    with pytest.raises(UserError, match="vanilla, tuned, transfer"):
        experiments.get_config("resnet")
