"""``python -m lenet_keras.pipeline --runner kubeflow_v2``: the PipelineJob compiled offline by real
TFX 1.16, parsed with kfp-pipeline-spec's proto and checked structurally; and the command's checks
of the runner flags, which need no TFX (they run before it is imported)."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from tests.conftest import REPO, assert_one_line_error, run_cli

requires_tfx = pytest.mark.skipif(importlib.util.find_spec("tfx") is None,
                                  reason="TFX is not installed: it needs Python 3.10")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:You are using a non-supported Python version:FutureWarning"),
]

IMAGE = "europe-docker.pkg.dev/my-project/lenet/lenet-keras:1"
REMOTE = {"--data_dir": "gs://bucket/tfds", "--pipeline_root": "gs://bucket/tfx",
          "--serving_base": "gs://bucket/serving"}
VALIDATION = {f"{dataset}_{step}" for dataset in ("cifar100", "stl10")
              for step in ("statistics", "schema", "validator", "gate")}
COMPONENTS = {"cifar100_examples", "stl10_examples", "Tuner", "tuned_trainer", "transfer_trainer",
              "tuned_evaluator", "transfer_evaluator", "tuned_pusher", "transfer_pusher", *VALIDATION}
# (consumer, input key) -> producer: the DAG's edges examples -> tuner -> trainer -> evaluator -> pusher.
EDGES = {
    **{(f"{dataset}_statistics", "examples"): f"{dataset}_examples" for dataset in ("cifar100", "stl10")},
    **{(f"{dataset}_statistics", "schema"): f"{dataset}_schema" for dataset in ("cifar100", "stl10")},
    **{(f"{dataset}_validator", "statistics"): f"{dataset}_statistics" for dataset in ("cifar100", "stl10")},
    **{(f"{dataset}_validator", "schema"): f"{dataset}_schema" for dataset in ("cifar100", "stl10")},
    **{(f"{dataset}_gate", "anomalies"): f"{dataset}_validator" for dataset in ("cifar100", "stl10")},
    ("Tuner", "examples"): "cifar100_examples",
    ("tuned_trainer", "examples"): "cifar100_examples",
    ("tuned_trainer", "hyperparameters"): "Tuner",
    ("transfer_trainer", "examples"): "stl10_examples",
    ("transfer_trainer", "base_model"): "tuned_trainer",
    ("tuned_evaluator", "model"): "tuned_trainer",
    ("tuned_evaluator", "examples"): "cifar100_examples",
    ("tuned_evaluator", "baseline_model"): "tuned_baseline-model-resolver",
    ("transfer_evaluator", "model"): "transfer_trainer",
    ("transfer_evaluator", "examples"): "stl10_examples",
    ("transfer_evaluator", "baseline_model"): "transfer_baseline-model-resolver",
    ("tuned_pusher", "model"): "tuned_trainer",
    ("tuned_pusher", "model_blessing"): "tuned_evaluator",
    ("transfer_pusher", "model"): "transfer_trainer",
    ("transfer_pusher", "model_blessing"): "transfer_evaluator",
}


def _compile(*extra: str):
    return run_cli("lenet_keras.pipeline", "--runner", "kubeflow_v2", *extra,
                   *[part for item in REMOTE.items() for part in item])


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp")
    proc = _compile("--epochs", "1", "--max_trials", "1", "--precision", "auto", "--output",
                    str(out / "job.json"), "--image", IMAGE)
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc, out


@pytest.fixture(scope="module")
def job(compiled):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    _, out = compiled
    with open(out / "job.json") as f:
        text = f.read()
    spec = json_format.Parse(text, pipeline_spec_pb2.PipelineJob())  # unknown fields would fail
    pipeline_spec = json_format.Parse(json.dumps(json.loads(text)["pipelineSpec"]),
                                      pipeline_spec_pb2.PipelineSpec())
    return spec, pipeline_spec, text


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@requires_tfx
@pytest.mark.tfx
def test_compiling_writes_the_job_file_only(compiled):
    proc, out = compiled
    assert os.listdir(out) == ["job.json"]
    assert f"Kubeflow Pipelines v2 job: {out / 'job.json'}" in proc.stdout


@requires_tfx
@pytest.mark.tfx
def test_compiling_says_the_drop_gate_is_unverified_on_vertex(compiled):
    """The baselines' queries were only ever read in the file: the command says so itself."""
    proc, _ = compiled
    (line,) = [line for line in proc.stderr.splitlines() if "unverified on Vertex AI" in line]
    assert line.startswith("warning: the drop gate (--max_accuracy_drop")
    assert "docs/tfx.md" in line and "error:" not in proc.stderr


@requires_tfx
@pytest.mark.tfx
def test_precision_auto_is_left_to_the_machines_that_train(job):
    """``--precision auto`` reaches the Tuner and the Trainers as ``auto``: their run_fn and
    tuner_fn resolve it on the job's machines, not on the one that compiled it."""
    _, pipeline_spec, _ = job
    tasks = pipeline_spec.root.dag.tasks
    for name in ("Tuner", "tuned_trainer", "transfer_trainer"):
        custom = tasks[name].inputs.parameters["custom_config"]
        assert json.loads(custom.runtime_value.constant_value.string_value)["precision"] == "auto"


@requires_tfx
@pytest.mark.tfx
def test_every_component_and_edge_is_in_the_dag(job):
    spec, pipeline_spec, _ = job
    tasks = pipeline_spec.root.dag.tasks
    assert COMPONENTS <= set(tasks)
    assert set(tasks) - COMPONENTS == {f"{exp}_baseline-model{kind}-resolver"
                                       for exp in ("tuned", "transfer") for kind in ("", "-blessing")}
    for (consumer, key), producer in EDGES.items():
        source = tasks[consumer].inputs.artifacts[key].task_output_artifact
        assert source.producer_task == producer, (consumer, key)
    assert spec.runtime_config.gcs_output_directory == REMOTE["--pipeline_root"]


@requires_tfx
@pytest.mark.tfx
def test_training_runs_only_where_validation_blessed_the_data(job):
    """Tuner, Trainers, Evaluators and Pushers wait for their data sets' gates (transfer for both:
    it starts from the tuned model); everything before them runs unconditionally."""
    _, pipeline_spec, _ = job
    tasks = pipeline_spec.root.dag.tasks
    gate = "(inputs.artifacts['_{}_gate.blessing'].artifacts[0].metadata['blessed'] == 1.0)"
    tuned, transfer = gate.format("cifar100"), gate.format("stl10")
    conditions = {name: task.trigger_policy.condition for name, task in tasks.items()}
    for name in ("Tuner", "tuned_trainer", "tuned_evaluator", "tuned_pusher"):
        assert conditions[name] == tuned, name
    for name in ("transfer_trainer", "transfer_evaluator", "transfer_pusher"):
        assert conditions[name] == f"{tuned} && {transfer}", name
    assert not any(conditions[name] for name in VALIDATION | {"cifar100_examples", "stl10_examples"})
    # The schemas come from the package in the image, named by their content for TFX's cache.
    schema = tasks["stl10_schema"].inputs.parameters
    assert schema["dataset"].runtime_value.constant_value.string_value == "stl10"
    assert len(schema["digest"].runtime_value.constant_value.string_value) == 12


@requires_tfx
@pytest.mark.tfx
def test_every_container_runs_the_image_and_the_modules_by_name(job):
    _, pipeline_spec, _ = job
    executors = pipeline_spec.deployment_spec["executors"]
    containers = {label: executor["container"] for label, executor in executors.items()
                  if "container" in executor}
    assert {label[:-len("_executor")] for label in containers} == COMPONENTS
    assert {container["image"] for container in containers.values()} == {IMAGE}
    examples_gen = containers["cifar100_examples_executor"]["args"]
    assert "lenet_keras.tfx_components.tfds_example_gen.TfdsExampleGen_Executor" in examples_gen
    params = {name: pipeline_spec.root.dag.tasks[name].inputs.parameters for name in COMPONENTS}
    constant = {name: {key: value.runtime_value.constant_value.string_value for key, value in p.items()}
                for name, p in params.items()}
    assert constant["Tuner"]["tuner_fn"] == "lenet_keras.experiments.tuned.tuner_fn"
    assert constant["tuned_trainer"]["run_fn"] == "lenet_keras.experiments.tuned.run_fn"
    assert constant["transfer_trainer"]["run_fn"] == "lenet_keras.experiments.transfer.run_fn"
    # The cut inside the pipeline reproduces the training CLI's splits, from the remote data.
    assert json.loads(constant["stl10_examples"]["splits"]) == {
        "train": "train[:90%]", "eval": "train[90%:]", "test": "test"}
    assert constant["stl10_examples"]["data_dir"] == REMOTE["--data_dir"]
    assert json.loads(constant["tuned_evaluator"]["example_splits"]) == ["test"]
    assert json.loads(constant["tuned_pusher"]["push_destination"])["filesystem"][
        "base_directory"] == "gs://bucket/serving/lenet_tuned"


@requires_tfx
@pytest.mark.tfx
def test_each_baseline_reads_only_its_own_evaluators_blessings(job):
    _, pipeline_spec, _ = job
    executors = pipeline_spec.deployment_spec["executors"]
    for exp in ("tuned", "transfer"):
        resolver = executors[f"{exp}_baseline-model-blessing-resolver_executor"]["resolver"]
        (query,) = resolver["outputArtifactQueries"].values()
        assert f'uri="*/{exp}_evaluator_*"' in query["filter"]
        assert "metadata.blessed.number_value=1" in query["filter"]


@requires_tfx
@pytest.mark.tfx
def test_the_job_holds_no_path_of_the_compiling_machine(job, compiled):
    _, out = compiled
    strings = list(_strings(json.loads(job[2])))
    local = [s for s in strings if s.startswith("/") or "file://" in s
             or any(path in s for path in (REPO, str(out), os.path.expanduser("~")))]
    assert local == []


@pytest.mark.parametrize("flags,needles", [
    ({"--pipeline_root": "/tmp/tfx"}, ["runs on other machines", "--pipeline_root /tmp/tfx",
                                       "give gs:// URIs"]),
    ({"--output": None}, ["--runner kubeflow_v2 needs --output"]),
    ({"--metadata_path": "/tmp/m.sqlite"}, ["--metadata_path is for local and beam runs"]),
])
def test_kubeflow_v2_flags_are_checked_before_anything_runs(tmp_path, flags, needles):
    args = {**REMOTE, "--output": str(tmp_path / "job.json"), "--image": IMAGE, **flags}
    command = [part for key, value in args.items() if value is not None for part in (key, value)]
    proc = run_cli("lenet_keras.pipeline", "--runner", "kubeflow_v2", *command)
    assert_one_line_error(proc, *needles)
    assert not os.path.exists(tmp_path / "job.json")


@pytest.mark.parametrize("args,needles", [
    (["--output", "job.json"], ["--output and --image are for --runner kubeflow_v2"]),
    (["--runner", "beam", "--pipeline_root", "gs://bucket/tfx"],
     ["--runner beam cuts the data", "--pipeline_root gs://bucket/tfx must be local"]),
    (["--beam_pipeline_args", "--runner='FlinkRunner"], ["is not one command-line string"]),
    (["--min_accuracy", "1.5"], ["--min_accuracy=1.5", "from 0 to 1"]),
    (["--max_accuracy_drop", "-0.1"], ["--max_accuracy_drop=-0.1", "from 0 to 1"]),
])
def test_local_run_flags_are_checked_before_anything_runs(tmp_path, args, needles):
    proc = run_cli("lenet_keras.pipeline", "--data_dir", str(tmp_path), *args)
    assert_one_line_error(proc, *needles)


@requires_tfx
@pytest.mark.tfx
def test_a_job_file_that_cannot_be_written_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    proc = _compile("--output", str(blocker / "job.json"), "--image", IMAGE)
    assert_one_line_error(proc, f"cannot write the job to {blocker / 'job.json'}",
                          "choose another --output")


@requires_tfx
@pytest.mark.tfx
def test_the_in_pipeline_cut_writes_what_the_local_cut_does(data_dir, tmp_path):
    """The remote job's first step, run for real (LocalDagRunner, one component): ExampleGen's
    layout, holding the very records the local ImportExampleGen folder holds, split for split."""
    import tensorflow as tf
    from tfx import v1 as tfx

    from lenet_keras import experiments
    from lenet_keras.tfx_components import examples, executions
    from lenet_keras.tfx_components.tfds_example_gen import TfdsExampleGen

    instructions = examples.split_instructions(experiments.get_config("transfer"))
    cut = TfdsExampleGen(dataset="stl10", data_dir=data_dir, splits=json.dumps(instructions),
                         code_version="test").with_id("stl10_examples")
    metadata = str(tmp_path / "metadata.sqlite")
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="cut", pipeline_root=str(tmp_path / "root"), components=[cut],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata)))
    store = executions.connect(metadata)
    node = executions.node_executions(store, executions.run_ids(store)[-1], "cut")["stl10_examples"]
    (artifact,) = node.outputs["examples"]
    assert json.loads(artifact.properties["split_names"].string_value) == list(instructions)
    local = examples.export("stl10", data_dir, str(tmp_path / "local"), instructions)
    for split in instructions:
        (written,) = tf.io.gfile.glob(os.path.join(artifact.uri, f"Split-{split}", "*.gz"))
        remote_records = list(tf.data.TFRecordDataset(written, "GZIP").as_numpy_iterator())
        local_records = list(tf.data.TFRecordDataset(
            os.path.join(local, split, f"{split}.tfrecord")).as_numpy_iterator())
        assert remote_records == local_records and remote_records, split
