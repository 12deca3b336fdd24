"""``python -m lenet_keras.pipeline`` against real TFX 1.16 (CI's Python 3.10 leg).

One module-scoped sequence of runs on one pipeline root, each read back through ML Metadata, the
Evaluators' outputs and the serving folder:

1. local, default thresholds: every component runs; both models blessed and pushed;
2. the same command with ``--runner beam --min_accuracy 0.999``: only the Evaluators and the
   Pushers run again (the rest from TFX's cache), both models refused, nothing pushed;
3. default thresholds again with a serving base that cannot be written: one failed Pusher, one
   line, nothing lost;
4. default thresholds on the data with labels outside STL-10's classes: its validation stops
   the STL-10 branch, the CIFAR-100 branch comes from TFX's cache, one line names the anomaly;
5. ``--epochs 1 --min_accuracy 0`` on the clean data: the Tuner, the Trainers, the Evaluators and
   the Pushers run again; both models fall far below run 1's and the drop gate refuses both,
   nothing pushed.

The data is synthetic and small but learnable (CIFAR-100 2000 / 100, STL-10 500 / 100 examples),
so the default floor is met in a few epochs. Where TFX is not installed (the Python 3.11+ main
environment) only the one-line refusal is tested.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import platform
import subprocess
import sys
import types

import numpy as np
import pytest

from lenet_keras.tfx_components import evaluation
from tests.conftest import REPO, assert_one_line_error, run_cli

HAVE_TFX = importlib.util.find_spec("tfx") is not None
requires_tfx = pytest.mark.skipif(
    not HAVE_TFX, reason="TFX is not installed: it needs Python 3.10 (CI's second leg: "
    "pip install '.[tfx,test]' there, then pytest tests/test_tfx_*.py)")
pytestmark = [
    pytest.mark.tfx, pytest.mark.slow,
    # google-cloud-* (TFX's dependencies) warn that Python 3.10, the only Python TFX installs on, is old.
    pytest.mark.filterwarnings("ignore:You are using a non-supported Python version:FutureWarning"),
]

VALIDATED = tuple(f"{dataset}_{step}" for dataset in ("cifar100", "stl10")
                  for step in ("statistics", "schema", "validator", "gate"))
TRAINED = ("cifar100_examples", "stl10_examples", *VALIDATED, "Tuner", "tuned_trainer",
           "transfer_trainer")
EVALUATED = ("tuned_evaluator", "transfer_evaluator", "tuned_pusher", "transfer_pusher")
NODES = TRAINED + EVALUATED
MODELS = {"lenet_tuned": "tuned", "lenet_transfer": "transfer"}
SIZES = {"cifar100": (2000, 100), "stl10": (500, 100)}  # (train, test)
EPOCHS = "4"


def _run_pipeline(data_dir: str, paths, *extra: str, serving_base: str | None = None,
                  epochs: str = EPOCHS):
    return run_cli(
        "lenet_keras.pipeline", "--data_dir", data_dir, "--pipeline_root", paths.root,
        "--serving_base", serving_base or paths.serving, "--epochs", epochs, "--max_trials", "1",
        "--tuner", "random", *extra, timeout=900,
    )


def _nodes(paths, run: int) -> dict:
    """Node id -> NodeExecution of the pipeline's ``run``-th run (0 first), from ML Metadata in
    its documented default place."""
    from lenet_keras.tfx_components import executions

    store = executions.connect(os.path.join(paths.root, "metadata.sqlite"))
    return executions.node_executions(store, executions.run_ids(store)[run], "lenet_keras")


def _versions(paths) -> dict:
    folders = {model: os.path.join(paths.serving, model) for model in MODELS}
    return {model: sorted(os.listdir(f)) if os.path.isdir(f) else [] for model, f in folders.items()}


def _artifact(execution, key: str):
    (artifact,) = execution.outputs[key]
    return artifact


def _metrics(execution, exp: str) -> dict:
    with open(os.path.join(_artifact(execution, "model_run").uri, exp, "metrics.json")) as f:
        return json.load(f)


def _summary(proc, model: str) -> str:
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith(f"{model}: ")]
    return line


@pytest.fixture(scope="module")
def learnable_data_dir(tmp_path_factory) -> str:
    from lenet_keras.data import synthetic

    path = str(tmp_path_factory.mktemp("tfds_learnable"))
    for name, (train, test) in SIZES.items():
        synthetic.prepare(name, path, train=train, test=test)
    return path


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    base = tmp_path_factory.mktemp("tfx")
    return types.SimpleNamespace(root=str(base / "root"), serving=str(base / "serving"),
                                 base=str(base))


@pytest.fixture(scope="module")
def first_run(learnable_data_dir, paths):
    proc = _run_pipeline(learnable_data_dir, paths)
    assert proc.returncode == 0, proc.stderr[-5000:]
    proc.versions = _versions(paths)
    return proc


@pytest.fixture(scope="module")
def refusing_run(first_run, learnable_data_dir, paths):
    """Only a threshold changed, and the runner: Beam's, with its arguments passed through."""
    proc = _run_pipeline(learnable_data_dir, paths, "--runner", "beam", "--min_accuracy", "0.999",
                         "--beam_pipeline_args", "--direct_running_mode=in_memory "
                         "--direct_num_workers=1")
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc


@requires_tfx
def test_first_run_blesses_and_pushes_both_models(first_run, paths):
    nodes = _nodes(paths, 0)
    assert {node: nodes[node].state for node in NODES} == dict.fromkeys(NODES, "COMPLETE")
    for model, exp in MODELS.items():
        (version,) = first_run.versions[model]  # TF Serving's layout: <base>/<model>/<version>/
        folder = os.path.join(paths.serving, model, version)
        assert version.isdigit() and os.path.isfile(os.path.join(folder, "saved_model.pb"))
        line = _summary(first_run, model)
        assert line.startswith(f"{model}: blessed (accuracy ")
        assert "floor 0.2; no baseline yet" in line and line.endswith(f"pushed to {folder}")
        assert ("top-5" in line) == (exp == "tuned")  # top-5 for CIFAR-100 only


@requires_tfx
@pytest.mark.parametrize("exp", sorted(MODELS.values()))
def test_evaluator_scores_the_test_split_as_the_trainer_did(first_run, paths, exp):
    """TFMA through the tf_example signature computes the Keras model's own test accuracy."""
    from lenet_keras import experiments
    from lenet_keras.tfx_components import evaluation

    nodes = _nodes(paths, 0)
    metrics = _metrics(nodes[f"{exp}_trainer"], exp)
    verdict = evaluation.read_verdict(_artifact(nodes[f"{exp}_evaluator"], "evaluation").uri, True)
    assert metrics["test_examples"] == SIZES[experiments.get_config(exp).dataset][1]
    assert verdict.accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert verdict.accuracy >= 0.2 and verdict.change is None
    if exp == "tuned":
        assert verdict.top5_accuracy == pytest.approx(metrics["test_top5_accuracy"], abs=1e-6)


@requires_tfx
@pytest.mark.parametrize("model", sorted(MODELS))
def test_pushed_model_serves_both_signatures_alike(first_run, paths, model):
    import tensorflow as tf

    from lenet_keras.data import synthetic

    names = synthetic.CIFAR100_FINE if model == "lenet_tuned" else synthetic.STL10_CLASSES
    (version,) = first_run.versions[model]
    loaded = tf.saved_model.load(os.path.join(paths.serving, model, version))
    rng = np.random.default_rng(0)
    for height, width in ((32, 32), (57, 90)):
        images = rng.integers(0, 256, (2, height, width, 3)).astype(np.uint8)
        out = loaded.signatures["serving_default"](images=tf.constant(images))
        assert out["probabilities"].shape == (2, len(names))
        served = [name.decode() for name in out["class_names"].numpy()]
        assert served == [names[i] for i in out["class_ids"].numpy()]
        examples = [tf.train.Example(features=tf.train.Features(feature={
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[tf.io.encode_png(image).numpy()]))})).SerializeToString()
            for image in images]
        by_example = loaded.signatures["tf_example"](examples=tf.constant(examples))
        np.testing.assert_allclose(by_example["probabilities"].numpy(),
                                   out["probabilities"].numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(by_example["class_names"].numpy(), out["class_names"].numpy())


@requires_tfx
@pytest.mark.parametrize("model", sorted(MODELS))
def test_each_pushed_model_carries_a_card_with_the_evaluators_numbers(first_run, paths, model):
    from lenet_keras.tfx_components import evaluation

    exp = MODELS[model]
    nodes = _nodes(paths, 0)
    (version,) = first_run.versions[model]
    path = os.path.join(paths.serving, model, version, "assets.extra", "model_card.md")
    assert f"{model} model card: {path}" in first_run.stdout.splitlines()
    with open(path) as f:
        card = f.read()
    verdict = evaluation.read_verdict(_artifact(nodes[f"{exp}_evaluator"], "evaluation").uri, True)
    assert f"| accuracy | {verdict.accuracy:.6g} | floor 0.2; no baseline yet |" in card
    assert f"Blessed by `{exp}_evaluator`" in card and f"pushed by `{exp}_pusher`" in card
    metrics = _metrics(nodes[f"{exp}_trainer"], exp)
    assert f"| parameters | {metrics['params']} |" in card
    assert f"| train | {metrics['train_examples']} |" in card
    # The statistics' label counts cover the training split the trainer read.
    (train_line,) = [line for line in card.splitlines() if line.startswith("- train: ")]
    counts = [int(item.split(": ")[1]) for item in train_line[len("- train: "):].split(", ")]
    assert sum(counts) == metrics["train_examples"]
    if exp == "tuned":
        assert f"| top-5 accuracy | {verdict.top5_accuracy:.6g} |" in card
        with open(os.path.join(_artifact(nodes["Tuner"], "best_hyperparameters").uri,
                               "best_hyperparameters.txt")) as f:
            best = json.load(f)["values"]
        for name in best:
            assert f"| {name} |" in card, name
        assert f"| learning_rate | {best['learning_rate']:.6g} |" in card
    assert "LeNet-5 at 32x32 pixels" in card and "no such accuracy is claimed here" in card


@requires_tfx
def test_transfer_model_trains_only_its_head(first_run, paths):
    from lenet_keras import models

    (version,) = first_run.versions["lenet_transfer"]
    model = models.load_classifier(
        os.path.join(paths.serving, "lenet_transfer", version, "assets.extra", "model.keras"))
    assert [layer.name for layer in model.layers if layer.trainable_weights] == [model.layers[-1].name]
    assert int(model.outputs[0].shape[-1]) == 10


@requires_tfx
def test_tuned_trainer_trains_the_best_hyperparameters_on_the_cli_splits(first_run, paths):
    from lenet_keras.search import space

    nodes = _nodes(paths, 0)
    with open(os.path.join(_artifact(nodes["Tuner"], "best_hyperparameters").uri,
                           "best_hyperparameters.txt")) as f:
        best = space.config_overrides(json.load(f))
    metrics = _metrics(nodes["tuned_trainer"], "tuned")
    train = SIZES["cifar100"][0]
    assert (metrics["train_examples"], metrics["val_examples"]) == (train * 9 // 10, train // 10)
    config = metrics["config"]
    trained = {name: tuple(config[name]) if name == "hidden_units" else config[name] for name in best}
    assert trained.pop("learning_rate") == pytest.approx(best.pop("learning_rate"))
    assert trained == best


@requires_tfx
def test_a_threshold_rerun_reevaluates_only_and_refuses_both(first_run, refusing_run, paths):
    nodes = _nodes(paths, 1)
    assert {node: nodes[node].state for node in NODES} == {
        **dict.fromkeys(TRAINED, "CACHED"), **dict.fromkeys(EVALUATED, "COMPLETE")}
    assert _versions(paths) == first_run.versions  # nothing pushed
    for model, exp in MODELS.items():
        line = _summary(refusing_run, model)
        assert line.startswith(f"{model}: NOT blessed (accuracy ")
        assert ("< floor 0.999; +0.0000 vs its last blessed model (allowed "
                f"-{evaluation.DEFAULT_MAX_ACCURACY_DROP:g})") in line
        assert line.endswith("not pushed (its serving folder is unchanged)")
        assert not nodes[f"{exp}_pusher"].outputs["pushed_model"][0].custom_properties[
            "pushed"].int_value


@requires_tfx
def test_each_baseline_is_the_last_blessed_model_of_its_own_trainer(refusing_run, paths):
    """Run 1 blessed the tuned model, then the transfer model (the newer): a baseline not filtered
    by producer would give the tuned Evaluator the transfer model."""
    first, second = _nodes(paths, 0), _nodes(paths, 1)
    models = {exp: _artifact(first[f"{exp}_trainer"], "model").id for exp in MODELS.values()}
    assert models["transfer"] > models["tuned"]
    for exp in MODELS.values():
        blessings = [_artifact(run[f"{exp}_evaluator"], "blessing").custom_properties
                     for run in (first, second)]
        assert "baseline_model_id" not in blessings[0]  # nothing blessed before run 1
        assert blessings[1]["baseline_model_id"].int_value == models[exp]


@requires_tfx
def test_a_failed_component_is_one_line_and_keeps_the_pushed_models(
        refusing_run, learnable_data_dir, paths):
    blocker = os.path.join(paths.base, "not_a_folder")
    with open(blocker, "w") as f:
        f.write("a file where the serving base would go\n")
    before = _versions(paths)
    proc = _run_pipeline(learnable_data_dir, paths, serving_base=os.path.join(blocker, "serving"))
    last = assert_one_line_error(proc, "TFX component tuned_pusher failed:", "not_a_folder")
    assert proc.returncode == 2 and len(last) < 500, last
    nodes = _nodes(paths, 2)
    assert nodes["tuned_trainer"].state == "CACHED" and nodes["tuned_pusher"].state == "FAILED"
    assert _versions(paths) == before


@pytest.fixture(scope="module")
def mislabelled_run(refusing_run, learnable_data_dir, paths, tmp_path_factory):
    """The issue's data: STL-10's train split holds label 12 (10 classes). The data dir is
    changed in place and put back, so CIFAR-100's branch is TFX's cache (its data_dir is in the
    modules' custom_config); copies keep their times, and so the cut's digest, as they were."""
    import shutil

    from lenet_keras.data import synthetic

    (stl10,) = glob.glob(os.path.join(learnable_data_dir, "stl10", "*"))
    kept = str(tmp_path_factory.mktemp("stl10_kept") / "stl10")
    shutil.copytree(stl10, kept)
    try:
        assert synthetic.mislabel(stl10, "train", 12) > 0
        proc = _run_pipeline(learnable_data_dir, paths)
    finally:
        shutil.rmtree(stl10)
        shutil.copytree(kept, stl10)
    return proc


@requires_tfx
def test_a_label_outside_the_classes_stops_that_data_sets_branch_only(first_run, mislabelled_run,
                                                                       paths):
    last = assert_one_line_error(
        mislabelled_run, "error: stl10: data validation found anomalies, so its models were "
        "neither trained nor pushed: ", "train split, feature 'label': Out-of-range values "
        "(Unexpectedly large value: 12)", "fix the data and run the same command again")
    assert mislabelled_run.returncode == 2
    nodes = _nodes(paths, -1)
    (anomalies,) = nodes["stl10_validator"].outputs["anomalies"]
    assert f"Anomalies: {anomalies.uri}:" in last
    assert os.path.isfile(os.path.join(anomalies.uri, "Split-train", "SchemaDiff.pb"))
    assert nodes["stl10_gate"].outputs["blessing"][0].custom_properties["blessed"].int_value == 0
    assert nodes["cifar100_gate"].outputs["blessing"][0].custom_properties["blessed"].int_value == 1
    # Nothing of STL-10's branch ran; CIFAR-100's is as the last run left it.
    assert not {"transfer_trainer", "transfer_evaluator", "transfer_pusher"} & set(nodes)
    assert nodes["tuned_trainer"].state == "CACHED"
    assert _summary(mislabelled_run, "lenet_tuned").startswith("lenet_tuned: blessed")
    assert "lenet_transfer" not in mislabelled_run.stdout
    # The tuned model may be pushed again (run 3's push failed, its blessing is TFX's cache).
    assert _versions(paths)["lenet_transfer"] == first_run.versions["lenet_transfer"]


@requires_tfx
def test_a_model_far_below_its_last_blessed_one_is_refused_by_the_drop_gate(
        first_run, learnable_data_dir, paths):
    """The drop gate alone: ``--epochs 1`` retrains both models (the ExampleGens from the cache)
    far below run 1's blessed model of the same trainer (tens of points, against the default's
    3 allowed), with ``--min_accuracy 0`` so that the floor cannot be what refuses them: a 1-epoch
    model on this data is near chance, and a floor between that and 0 would test the floor's
    margin on this machine, not the drop gate. Neither is blessed, nothing is pushed."""
    from lenet_keras.tfx_components import evaluation

    before = _versions(paths)
    proc = _run_pipeline(learnable_data_dir, paths, "--min_accuracy", "0", epochs="1")
    assert proc.returncode == 0, proc.stderr[-5000:]
    nodes, first = _nodes(paths, -1), _nodes(paths, 0)
    retrained = TRAINED[2 + len(VALIDATED):] + EVALUATED
    assert {node: nodes[node].state for node in NODES} == {
        **dict.fromkeys(TRAINED[:2] + VALIDATED, "CACHED"), **dict.fromkeys(retrained, "COMPLETE")}
    assert _versions(paths) == before  # nothing pushed
    for model, exp in MODELS.items():
        evaluator = nodes[f"{exp}_evaluator"]
        verdict = evaluation.read_verdict(_artifact(evaluator, "evaluation").uri, False)
        assert verdict.change < -evaluation.DEFAULT_MAX_ACCURACY_DROP, (model, verdict)
        blessing = _artifact(evaluator, "blessing").custom_properties
        assert blessing["blessed"].int_value == 0
        assert blessing["baseline_model_id"].int_value == _artifact(
            first[f"{exp}_trainer"], "model").id
        line = _summary(proc, model)
        assert line.startswith(f"{model}: NOT blessed (accuracy {verdict.accuracy:.4f} >= floor 0; "
                               f"{verdict.change:+.4f} vs its last blessed model (allowed "
                               f"-{evaluation.DEFAULT_MAX_ACCURACY_DROP:g})")
        assert line.endswith("not pushed (its serving folder is unchanged)")
        assert not nodes[f"{exp}_pusher"].outputs["pushed_model"][0].custom_properties[
            "pushed"].int_value


@requires_tfx
def test_data_not_prepared_is_one_line(paths, tmp_path):
    proc = run_cli("lenet_keras.pipeline", "--data_dir", str(tmp_path), "--pipeline_root",
                   paths.root, "--serving_base", paths.serving)
    assert_one_line_error(proc, "cifar100 and stl10 are not prepared in", str(tmp_path),
                          "python -m lenet_keras.data.synthetic --data_dir")


@pytest.mark.skipif(HAVE_TFX, reason="TFX is installed here; the line is for environments without it")
def test_without_tfx_the_pipeline_says_which_python_and_what_to_install(tmp_path):
    proc = run_cli("lenet_keras.pipeline", "--data_dir", str(tmp_path), "--pipeline_root",
                   str(tmp_path / "root"), "--serving_base", str(tmp_path / "serving"))
    assert_one_line_error(proc, f"Python {platform.python_version()}", "pip install '.[tfx]'")


@requires_tfx
def test_a_tfx_that_does_not_import_is_one_line(tmp_path):
    broken = tmp_path / "tfx"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('libsomething.so: cannot open')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "lenet_keras.pipeline", "--data_dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}"),
    )
    assert_one_line_error(proc, "TFX does not import", "libsomething.so", "pip install '.[tfx]'")
