"""The search space, and the one path from hyperparameters to config fields and models."""

import json

import keras_tuner as kt
import pytest

from lenet_keras import experiments, models
from lenet_keras.errors import UserError
from lenet_keras.search import space as hparams


def space():
    return {p.name: p for p in hparams.define_search_space(kt.HyperParameters()).space}


def legal_values(hp) -> list:
    """Every value a hyperparameter of the space can take (learning rate aside)."""
    if isinstance(hp, kt.engine.hyperparameters.Choice):
        return list(hp.values)
    if isinstance(hp, kt.engine.hyperparameters.Boolean):
        return [False, True]
    if isinstance(hp, kt.engine.hyperparameters.Fixed):
        return [hp.value]
    raise AssertionError(f"{hp.name} is a {type(hp).__name__}: no finite set of values")


def test_space_holds_every_decision_of_the_seed():
    s = space()
    assert set(s) == set(hparams.NAMES)
    assert set(s["activation"].values) == {"tanh", "relu"}
    assert set(s["pooling"].values) == {"average", "max"}
    assert isinstance(s["batch_norm"], kt.engine.hyperparameters.Boolean)
    hidden = {hparams.HIDDEN_UNITS[v] for v in s["hidden_units"].values}
    assert {(120, 84), (64, 128), (128, 64)} <= hidden
    lr = s["learning_rate"]
    assert lr.min_value < 1e-3 < lr.max_value and lr.sampling == "log" and lr.default == 1e-3


def test_the_seeds_two_architectures_are_points_of_the_space():
    for config in (experiments.get_config("vanilla"), experiments.get_config("tuned")):
        values = {
            "activation": config.activation,
            "pooling": config.pooling,
            "batch_norm": config.batch_norm,
            "hidden_units": hparams.hidden_units_name(config.hidden_units),
            "learning_rate": config.learning_rate,
        }
        for name, value in values.items():
            if name != "learning_rate":
                assert value in legal_values(space()[name]), (name, value)
        assert hparams.apply(experiments.get_config("tuned"), values).to_dict() == {
            **experiments.get_config("tuned").to_dict(),
            **{k: getattr(config, k) for k in hparams.NAMES},
            "hidden_units": list(config.hidden_units),
        }


@pytest.mark.parametrize("hidden", list(hparams.HIDDEN_UNITS))
def test_hparams_and_config_build_the_same_model(hidden):
    hp = hparams.define_search_space(kt.HyperParameters())
    hp.values.update(activation="relu", pooling="max", batch_norm=True, hidden_units=hidden,
                     learning_rate=2e-3)
    base = experiments.get_config("vanilla")
    from_hp = hparams.build_hypermodel(hp, 100, base)
    from_config = models.build_from_config(hparams.apply(base, hp), 100)
    assert from_hp.get_config() == from_config.get_config()
    assert [int(layer.units) for layer in from_hp.layers if layer.name.startswith("dense")
            and hasattr(layer, "units")] == list(hparams.HIDDEN_UNITS[hidden])
    assert float(from_hp.optimizer.learning_rate.numpy()) == pytest.approx(2e-3)


def test_trials_train_with_the_experiments_speed_settings():
    hp = hparams.define_search_space(kt.HyperParameters())
    base = experiments.get_config("tuned").replace(steps_per_execution=32, jit_compile=True)
    model = hparams.build_hypermodel(hp, 100, base)
    assert (model.steps_per_execution, model.jit_compile) == (32, True)


def test_tfx_config_dict_and_plain_values_map_alike():
    hp = hparams.define_search_space(kt.HyperParameters())
    assert hparams.config_overrides(hp.get_config()) == hparams.config_overrides(hp.values)
    assert hparams.config_overrides(hp)["hidden_units"] == (120, 84)


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not readable JSON"),
    (json.dumps({"experiment": "tuned", "test_accuracy": 0.1}), "no hyperparameter 'values'"),
    (json.dumps({"values": {"units": 32}}), "lack activation"),
    (json.dumps({"values": {"activation": "gelu", "pooling": "max", "batch_norm": True,
                            "hidden_units": "64x128", "learning_rate": 1e-3}}), "gelu"),
    (json.dumps({"values": {"activation": "relu", "pooling": "max", "batch_norm": True,
                            "hidden_units": "10x10", "learning_rate": -1}}), "10x10"),
])
def test_malformed_or_foreign_files_are_user_errors(tmp_path, content, needle):
    path = tmp_path / "best_hyperparameters.json"
    path.write_text(content)
    with pytest.raises(UserError, match=needle) as info:
        hparams.load(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_apply_file_sets_tuned_and_transfers_source_architecture(tmp_path):
    path = tmp_path / "best.json"
    values = {"activation": "tanh", "pooling": "average", "batch_norm": False,
              "hidden_units": "128x64", "learning_rate": 5e-4}
    path.write_text(json.dumps({"values": values}))
    configs = [experiments.get_config(n) for n in experiments.STUDY_ORDER]
    vanilla, tuned, transfer = hparams.apply_file(configs, str(path))
    assert vanilla == experiments.get_config("vanilla")
    assert (tuned.hidden_units, tuned.learning_rate, tuned.epochs) == ((128, 64), 5e-4, 20)
    assert (transfer.hidden_units, transfer.activation) == ((128, 64), "tanh")
    assert transfer.learning_rate == experiments.get_config("transfer").learning_rate
    with pytest.raises(UserError, match="--exp tuned"):
        hparams.apply_file([experiments.get_config("vanilla")], str(path))
