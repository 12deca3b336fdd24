"""``python -m lenet_keras.pipeline`` against real TFX 1.16 (CI's Python 3.10 leg, `-m tfx`).

One pipeline run on the small synthetic data (--epochs 1, --max_trials 2, --tuner random), read
back through ML Metadata and the pushed SavedModels; then the same command again (all cached), and
once more with a serving base that cannot be written (one failed component, one line). Where TFX
is not installed (the Python 3.11+ main environment) only the one-line refusal is tested.
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

from tests.conftest import REPO, TEST_EXAMPLES, TRAIN_EXAMPLES, assert_one_line_error, run_cli

HAVE_TFX = importlib.util.find_spec("tfx") is not None
requires_tfx = pytest.mark.skipif(
    not HAVE_TFX, reason="TFX is not installed: it needs Python 3.10 (CI's second leg: "
    "pip install '.[tfx,test]' there, then pytest -m tfx tests)")
pytestmark = [
    pytest.mark.tfx, pytest.mark.slow,
    # google-cloud-* (TFX's dependencies) warn that Python 3.10, the only Python TFX installs on, is old.
    pytest.mark.filterwarnings("ignore:You are using a non-supported Python version:FutureWarning"),
]

NODES = ("cifar100_examples", "stl10_examples", "Tuner", "tuned_trainer", "transfer_trainer",
         "tuned_pusher", "transfer_pusher")
MODELS = {"lenet_tuned": "tuned_pusher", "lenet_transfer": "transfer_pusher"}
# The training CLI's splits of the fixture's data: train[:90%], train[90%:], test.
SPLIT_SIZES = {"train": TRAIN_EXAMPLES * 9 // 10, "val": TRAIN_EXAMPLES // 10, "test": TEST_EXAMPLES}


def _run_pipeline(data_dir: str, paths, serving_base: str | None = None):
    return run_cli(
        "lenet_keras.pipeline", "--data_dir", data_dir, "--pipeline_root", paths.root,
        "--serving_base", serving_base or paths.serving, "--epochs", "1", "--max_trials", "2",
        "--tuner", "random", timeout=900,
    )


def _nodes(paths, run: int) -> dict:
    """Node id -> NodeExecution of the pipeline's ``run``-th run (0 first), from ML Metadata in
    its documented default place."""
    from lenet_keras.tfx_components import executions

    store = executions.connect(os.path.join(paths.root, "metadata.sqlite"))
    return executions.node_executions(store, executions.run_ids(store)[run], "lenet_keras")


def _versions(paths) -> dict:
    return {model: sorted(os.listdir(os.path.join(paths.serving, model))) for model in MODELS}


def _uri(execution, key: str) -> str:
    (artifact,) = execution.outputs[key]
    return artifact.uri


def _pushed(execution) -> str:
    from lenet_keras.tfx_components import executions

    return executions.pushed_to(execution)


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    base = tmp_path_factory.mktemp("tfx")
    return types.SimpleNamespace(root=str(base / "root"), serving=str(base / "serving"),
                                 base=str(base))


@pytest.fixture(scope="module")
def first_run(data_dir, paths):
    proc = _run_pipeline(data_dir, paths)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="module")
def second_run(first_run, data_dir, paths):
    """The same command again, nothing changed; ``versions_before`` is what the first pushed."""
    versions_before = _versions(paths)
    proc = _run_pipeline(data_dir, paths)
    assert proc.returncode == 0, proc.stderr[-5000:]
    proc.versions_before = versions_before
    return proc


@requires_tfx
def test_every_component_completes_and_both_models_are_pushed(first_run, paths):
    nodes = _nodes(paths, 0)
    assert {node: nodes[node].state for node in NODES} == dict.fromkeys(NODES, "COMPLETE")
    versions = _versions(paths)
    for model, pusher in MODELS.items():
        (version,) = versions[model]  # TF Serving's layout: <base>/<model>/<integer version>/
        folder = os.path.join(paths.serving, model, version)
        assert version.isdigit() and os.path.isfile(os.path.join(folder, "saved_model.pb"))
        assert f"{model}: pushed to {folder}" in first_run.stdout
        assert os.path.samefile(folder, _pushed(nodes[pusher]))


@requires_tfx
@pytest.mark.parametrize("model", sorted(MODELS))
def test_pushed_model_serves_the_contract(first_run, paths, model):
    import tensorflow as tf

    from lenet_keras.data import synthetic

    names = synthetic.CIFAR100_FINE if model == "lenet_tuned" else synthetic.STL10_CLASSES
    (version,) = _versions(paths)[model]
    serve = tf.saved_model.load(os.path.join(paths.serving, model, version)).signatures[
        "serving_default"]
    rng = np.random.default_rng(0)
    for height, width in ((32, 32), (57, 90)):
        images = tf.constant(rng.integers(0, 256, (2, height, width, 3)), tf.uint8)
        out = serve(images=images)
        assert out["probabilities"].dtype == tf.float32
        assert out["probabilities"].shape == (2, len(names))
        np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-4)
        served = [name.decode() for name in out["class_names"].numpy()]
        assert served == [names[i] for i in out["class_ids"].numpy()]


@requires_tfx
def test_transfer_model_trains_only_its_head(first_run, paths):
    from lenet_keras import models

    (version,) = _versions(paths)["lenet_transfer"]
    model = models.load_classifier(
        os.path.join(paths.serving, "lenet_transfer", version, "assets.extra", "model.keras"))
    assert [layer.name for layer in model.layers if layer.trainable_weights] == [model.layers[-1].name]
    assert int(model.outputs[0].shape[-1]) == 10


@requires_tfx
def test_trainers_read_the_cli_splits_and_the_tuned_one_the_best_hyperparameters(first_run, paths):
    from lenet_keras.search import space

    nodes = _nodes(paths, 0)
    with open(os.path.join(_uri(nodes["Tuner"], "best_hyperparameters"),
                           "best_hyperparameters.txt")) as f:
        best = space.config_overrides(json.load(f))
    for exp in ("tuned", "transfer"):
        with open(os.path.join(_uri(nodes[f"{exp}_trainer"], "model_run"), exp, "metrics.json")) as f:
            metrics = json.load(f)
        sizes = {split: metrics[f"{split}_examples"] for split in SPLIT_SIZES}
        assert sizes == SPLIT_SIZES, exp
        if exp == "tuned":
            config = metrics["config"]
            trained = {name: tuple(config[name]) if name == "hidden_units" else config[name]
                       for name in best}
            assert trained.pop("learning_rate") == pytest.approx(best.pop("learning_rate"))
            assert trained == best


@requires_tfx
def test_the_search_outlives_the_tuners_working_dir(first_run, paths):
    """TFX deletes the Tuner's working_dir; keras-tuner's project must stay, so a failed or killed
    Tuner resumes its finished trials."""
    (project,) = glob.glob(os.path.join(paths.root, "tuning", "*", "lenet5"))
    assert os.path.isfile(os.path.join(project, "oracle.json"))
    assert len(glob.glob(os.path.join(project, "trial_*"))) == 2  # --max_trials 2


@requires_tfx
def test_rerun_with_nothing_changed_is_served_from_the_cache(second_run, paths):
    nodes = _nodes(paths, 1)
    assert {node: nodes[node].state for node in NODES} == dict.fromkeys(NODES, "CACHED")
    assert _versions(paths) == second_run.versions_before  # no new version pushed
    assert second_run.stdout.count("(unchanged, from TFX's cache)") == 2


@requires_tfx
def test_a_failed_component_is_one_line_and_keeps_the_pushed_models(second_run, data_dir, paths):
    blocker = os.path.join(paths.base, "not_a_folder")
    with open(blocker, "w") as f:
        f.write("a file where the serving base would go\n")
    proc = _run_pipeline(data_dir, paths, serving_base=os.path.join(blocker, "serving"))
    last = assert_one_line_error(proc, "TFX component tuned_pusher failed:", "not_a_folder")
    assert len(last) < 500, last
    nodes = _nodes(paths, 2)
    assert nodes["tuned_trainer"].state == "CACHED" and nodes["tuned_pusher"].state == "FAILED"
    assert _versions(paths) == second_run.versions_before


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
