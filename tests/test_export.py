"""Export to TF Serving's layout: signature, equality with Keras, versions, REST request bodies
(through saved_model_cli, and through our reading of TF Serving's JSON rules)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from lenet_keras import models
from lenet_keras.data.tail import resize_images
from lenet_keras.errors import UserError
from lenet_keras.serving import choices, export
from lenet_keras.serving import load as serving
from tests.conftest import REPO, assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def tuned(trained_dir):
    model, names = export.load_trained(os.path.join(trained_dir, "tuned", "model.keras"))
    return model, names, models.image_size_of(model)


@pytest.fixture(scope="module")
def exported(tuned, tmp_path_factory):
    """(export_base, version-1 folder) of the tuned model."""
    model, names, size = tuned
    base = str(tmp_path_factory.mktemp("serving"))
    return base, export.export_model(model, names, base, "lenet_tuned")


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported[1])  # module-scoped: it owns the signature's variables


@pytest.fixture(scope="module")
def signature(loaded):
    return loaded.signatures["serving_default"]


def images(n, height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_layout_is_what_tf_serving_polls(exported):
    base, path = exported
    assert path == os.path.join(base, "lenet_tuned", "1")
    assert {"saved_model.pb", "variables"} <= set(os.listdir(path))
    assert os.listdir(os.path.join(base, "lenet_tuned")) == ["1"]  # no staging folder left


@pytest.mark.slow
def test_saved_model_cli_lists_the_uint8_signature(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run([cli, "show", "--dir", exported[1], "--all"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    default = out[out.index("signature_def['serving_default']"):]
    default = default[:default.index("Method name is")]
    field = "tensor_info:\n        dtype: {}\n        shape: {}"
    assert "inputs['images'] " + field.format("DT_UINT8", "(-1, -1, -1, 3)") in default, default
    for name, dtype, shape in [("probabilities", "DT_FLOAT", "(-1, 100)"),
                               ("class_ids", "DT_INT64", "(-1)"),
                               ("class_names", "DT_STRING", "(-1)")]:
        assert f"outputs['{name}'] " + field.format(dtype, shape) in default, default


@pytest.mark.parametrize("height,width", [(32, 32), (96, 96), (17, 45), (1, 200)])
def test_served_outputs_match_the_keras_model(tuned, signature, height, width):
    model, names, size = tuned
    x = images(3, height, width, seed=height * width)
    out = signature(images=tf.constant(x))
    expected = model(resize_images(tf.constant(x), size), training=False).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-7)
    ids = out["class_ids"].numpy()
    np.testing.assert_array_equal(ids, expected.argmax(axis=1))
    assert [n.decode() for n in out["class_names"].numpy()] == [names[i] for i in ids]


def serialized_examples(x, encode, label=None):
    """tf.train.Examples as ExampleGen writes them from TFDS: encoded ``image``, maybe ``label``."""
    out = []
    for i, pixels in enumerate(x):
        feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[encode(tf.constant(pixels)).numpy()]))}
        if label is not None:
            feature["label"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[label + i]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return tf.constant(out)


@pytest.mark.parametrize("height,width,label", [(32, 32, 7), (57, 90, None)])
def test_tf_example_signature_agrees_with_serving_default(loaded, signature, height, width, label):
    x = images(3, height, width, seed=height + width)
    served = signature(images=tf.constant(x))
    # PNG is lossless: the same pixels reach both signatures. A label is ignored, as TFMA sends it.
    out = loaded.signatures["tf_example"](examples=serialized_examples(x, tf.io.encode_png, label))
    assert set(out) == set(served)
    np.testing.assert_allclose(out["probabilities"].numpy(), served["probabilities"].numpy(),
                               rtol=1e-5, atol=1e-7)
    for key in ("class_ids", "class_names"):
        np.testing.assert_array_equal(out[key].numpy(), served[key].numpy())


def test_tf_example_signature_decodes_jpeg_of_mixed_sizes(loaded, signature):
    """A batch of differently sized JPEGs: each classified as its decoded pixels alone."""
    x = [images(1, 40, 24, seed=1)[0], images(1, 96, 96, seed=2)[0]]
    examples = serialized_examples(x, tf.io.encode_jpeg)
    out = loaded.signatures["tf_example"](examples=examples)["probabilities"].numpy()
    for i, jpeg in enumerate(examples.numpy()):
        pixels = tf.io.decode_image(tf.io.parse_single_example(
            jpeg, {"image": tf.io.FixedLenFeature([], tf.string)})["image"], channels=3)
        alone = signature(images=pixels[tf.newaxis])["probabilities"].numpy()[0]
        np.testing.assert_allclose(out[i], alone, rtol=1e-5, atol=1e-7)


def test_every_class_name_is_kept_in_the_saved_model(tuned, exported, trained_dir):
    with open(os.path.join(trained_dir, "tuned", "metrics.json")) as f:
        expected = json.load(f)["class_names"]
    classifier = serving.load_saved_model(exported[1])
    assert classifier.class_names == expected == tuned[1]
    assert len(expected) == 100 and expected[0] == "apple"


@pytest.mark.parametrize("bad,needle", [
    (np.zeros((32, 32, 3), np.uint8), "[32,32,3] is not compatible with expected shape [?,?,?,3]"),
    (np.zeros((1, 32, 32, 4), np.uint8), "[1,32,32,4] is not compatible with expected shape"),
    (np.zeros((1, 1, 32, 32, 3), np.uint8), "[1,1,32,32,3] is not compatible with expected"),
    (np.zeros((1, 32, 32, 3), np.float32), "expected to be a uint8 tensor but is a float tensor"),
])
def test_signature_rejects_wrong_inputs_clearly(signature, bad, needle):
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        signature(images=tf.constant(bad))
    assert needle in str(err.value)


def test_shape_check_survives_a_session_run_like_tf_serving(exported):
    """TF Serving runs the signature in a C++ session (with Grappler) and checks no shape itself."""
    from tensorflow.core.protobuf import config_pb2

    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], exported[1])
        sig = meta.signature_def["serving_default"]
        # A callable, unlike sess.run, skips the Python-side feed shape check, as TF Serving does.
        run = sess._make_callable_from_options(config_pb2.CallableOptions(
            feed=[sig.inputs["images"].name], fetch=[sig.outputs["probabilities"].name]))
        assert run(images(2, 40, 24))[0].shape == (2, 100)
        with pytest.raises(tf.errors.InvalidArgumentError, match="not compatible with expected"):
            run(np.zeros((32, 32, 3), np.uint8))


def test_versions_increment_and_are_never_overwritten(tuned, tmp_path):
    model, names, size = tuned
    base = str(tmp_path)
    first = export.export_model(model, names, base, "m")
    pb = os.path.join(first, "saved_model.pb")
    before = (os.stat(pb).st_mtime_ns, open(pb, "rb").read())
    os.makedirs(os.path.join(base, "m", "7"))  # e.g. a version copied in by hand
    assert export.export_model(model, names, base, "m") == os.path.join(base, "m", "8")
    with pytest.raises(UserError, match="already exists and versions are never overwritten"):
        export.export_model(model, names, base, "m", version=1)
    assert (os.stat(pb).st_mtime_ns, open(pb, "rb").read()) == before
    assert sorted(os.listdir(os.path.join(base, "m"))) == ["1", "7", "8"]


def test_an_interrupted_export_leaves_no_version_folder(tuned, tmp_path, monkeypatch):
    model, names, size = tuned
    base = str(tmp_path)
    export.export_model(model, names, base, "m")

    def write_half_then_interrupt(self, filepath, **kwargs):
        with open(os.path.join(filepath, "saved_model.pb"), "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    archive_type = type(keras.export.ExportArchive())
    monkeypatch.setattr(archive_type, "write_out", write_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        export.export_model(model, names, base, "m")
    assert os.listdir(os.path.join(base, "m")) == ["1"]
    assert export.existing_versions(os.path.join(base, "m")) == [1]


def test_an_export_that_finds_its_version_taken_meanwhile_takes_the_next(tuned, tmp_path,
                                                                         monkeypatch):
    """Another export publishes while this one writes: without --version this one takes the next
    free number; with --version it refuses, and neither overwrites the other."""
    model, names, size = tuned
    base = str(tmp_path)
    real_write = export._write_contents
    meanwhile, published = [], []  # the --version of an export to run while this one writes

    def another_export_meanwhile(*args):
        real_write(*args)
        while meanwhile:  # the other export writes through this function too: it runs none
            published.append(export.export_model(model, names, base, "m", meanwhile.pop()))

    monkeypatch.setattr(export, "_write_contents", another_export_meanwhile)
    meanwhile.append(None)
    mine = export.export_model(model, names, base, "m")
    assert (published, mine) == ([os.path.join(base, "m", "1")], os.path.join(base, "m", "2"))
    meanwhile.append(3)
    with pytest.raises(UserError, match=r"m/3 \(.*\): another export wrote it meanwhile; run "
                                        "again without --version"):
        export.export_model(model, names, base, "m", version=3)
    assert published[-1] == os.path.join(base, "m", "3")
    assert sorted(os.listdir(os.path.join(base, "m"))) == ["1", "2", "3"]  # no staging left


@pytest.mark.slow
def test_four_exports_at_once_publish_four_versions(trained_dir, tmp_path):
    """Four real processes into one base: each prints its own version, none is refused."""
    base = str(tmp_path)
    env = dict(os.environ, PYTHONPATH=REPO)
    command = [sys.executable, "-m", "lenet_keras.export", "--export_base", base,
               "--source_model", os.path.join(trained_dir, "vanilla", "model.keras")]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=REPO) for _ in range(4)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err[-2000:] for _, err in outputs]
    printed = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    model_base = os.path.join(base, "lenet_vanilla")
    assert printed == [os.path.join(model_base, str(v)) for v in (1, 2, 3, 4)]
    assert sorted(os.listdir(model_base)) == ["1", "2", "3", "4"]
    names = {tuple(serving.load_saved_model(path).class_names) for path in printed}
    assert len(names) == 1 and len(next(iter(names))) == 100


@pytest.mark.slow
def test_the_documented_rest_body_runs_through_saved_model_cli(exported, signature, tmp_path):
    """docs/serving.md's request body, checked by TensorFlow's own tool rather than by our reading
    of it: its ``instances`` JSON text, as ``saved_model_cli run --input_exprs`` (a Python
    literal, which JSON lists of integers are), feeds the exported signature in a TF1 session as
    TF Serving's does, and answers what the signature answers in this process."""
    pixels = images(1, 24, 30, seed=7)[0]
    body = json.dumps({"instances": [pixels.tolist()]})  # as docs/serving.md builds it
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run(
        [cli, "run", "--dir", exported[1], "--tag_set", "serve", "--signature_def",
         "serving_default", "--input_exprs", f"images={json.dumps(json.loads(body)['instances'])}",
         "--outdir", str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    direct = signature(images=tf.constant(pixels[None]))
    for name in ("probabilities", "class_ids"):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"), direct[name].numpy(),
                                   rtol=1e-6, atol=1e-7)


def tf_serving_request_to_inputs(body: dict, signature) -> dict:
    """Our reading of TF Serving's REST :predict JSON rules (TF Serving cannot run here), so what
    it checks is the bodies against that reading, not against TF Serving itself.

    Row format: {"instances": [x, ...]}, each x the single input's value or {"images": value},
    stacked into a batch. Columnar: {"inputs": value} or {"inputs": {"images": value}}, the
    batch dimension included. Values become the signature input's dtype, integers only for uint8.
    """
    (specs,) = signature.structured_input_signature[1:]
    (name, spec), = specs.items()
    if "instances" in body:
        rows = [row[name] if isinstance(row, dict) else row for row in body["instances"]]
        value = np.stack([np.asarray(row) for row in rows])
    else:
        value = body["inputs"]
        value = np.asarray(value[name] if isinstance(value, dict) else value)
    if spec.dtype.is_integer and not np.issubdtype(value.dtype, np.integer):
        raise ValueError(f"JSON value for {name} is not an integer, as {spec.dtype.name} needs")
    if spec.dtype.is_integer and (value.min() < spec.dtype.min or value.max() > spec.dtype.max):
        raise ValueError(f"JSON value for {name} is out of range for {spec.dtype.name}")
    return {name: tf.constant(value, dtype=spec.dtype)}


def test_rest_bodies_as_we_read_tf_servings_json_rules_feed_the_signature(signature):
    """Both body formats, after a JSON round trip and our decoding of them, give the signature's
    own answer; floats for the uint8 input are refused. A check of our reading, not of TF Serving:
    test_the_documented_rest_body_runs_through_saved_model_cli is the check by TensorFlow's tool."""
    x = images(2, 20, 28, seed=5)
    direct = signature(images=tf.constant(x))["probabilities"].numpy()
    bodies = [
        {"instances": x.tolist()},  # as in the README's curl example
        {"signature_name": "serving_default", "instances": [{"images": i.tolist()} for i in x]},
        {"inputs": x.tolist()},
        {"inputs": {"images": x.tolist()}},
    ]
    for body in bodies:
        inputs = tf_serving_request_to_inputs(json.loads(json.dumps(body)), signature)
        served = signature(**inputs)["probabilities"].numpy()
        np.testing.assert_array_equal(served, direct)
    with pytest.raises(ValueError, match="not an integer"):
        tf_serving_request_to_inputs({"instances": (x / 255.0).tolist()}, signature)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not compatible with expected shape"):
        signature(**tf_serving_request_to_inputs({"inputs": x[0].tolist()}, signature))


@pytest.mark.slow
def test_cli_exports_the_transfer_model_with_stl10_names(study_dir, tmp_path):
    base = str(tmp_path)
    proc = run_cli("lenet_keras.export", "--exp", "transfer", "--model_dir", study_dir,
                   "--export_base", base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = os.path.join(base, "lenet_transfer", "1")
    card = os.path.join(path, "assets.extra", "model_card.md")
    assert proc.stdout.strip().splitlines()[-2:] == [f"model card: {card}", path]
    with open(os.path.join(study_dir, "transfer", "metrics.json")) as f:
        accuracy = json.load(f)["test_accuracy"]
    with open(card) as f:
        assert f"| accuracy | {accuracy:.6g} |" in f.read()
    classifier = serving.load_saved_model(os.path.join(base, "lenet_transfer"))
    assert classifier.class_names[:3] == ["airplane", "bird", "car"]
    assert len(classifier.class_names) == 10


def test_export_trained_refuses_what_it_cannot_export_and_writes_nothing(trained_dir, tmp_path):
    serving_base = str(tmp_path / "serving")
    with pytest.raises(UserError, match="no trained model at .*tuned"):
        export.export_trained("tuned", str(tmp_path / "none"), serving_base)
    with pytest.raises(UserError, match="--model_name must be one folder name"):
        export.export_trained("tuned", trained_dir, serving_base, model_name="../escape")
    assert not os.path.exists(serving_base)


@pytest.mark.parametrize("name,ok", [("lenet_tuned", True), ("my model", True), ("", False),
                                     (".", False), ("..", False), (".hidden", False),
                                     ("a/b", False), ("../x", False)])
def test_one_model_name_rule_for_the_flag_and_the_library(tmp_path, name, ok):
    assert choices.is_model_name(name) is ok
    if ok:
        assert export.new_version_folder(str(tmp_path), name) == str(tmp_path / name / "1")
    else:
        with pytest.raises(UserError, match=re.escape(choices.MODEL_NAME_RULE)):
            export.new_version_folder(str(tmp_path), name)


@pytest.mark.slow
def test_the_export_command_refuses_a_hidden_model_name_by_the_same_rule(tmp_path):
    proc = run_cli("lenet_keras.export", "--exp", "tuned", "--model_name", ".hidden",
                   "--export_base", str(tmp_path))
    assert_one_line_error(proc, choices.MODEL_NAME_RULE)
    assert os.listdir(tmp_path) == []


def test_export_trained_names_any_keras_file_after_its_folder(trained_dir, tmp_path):
    path = export.export_trained(None, "unused", str(tmp_path),
                                 source_model=os.path.join(trained_dir, "vanilla", "model.keras"))
    assert path == os.path.join(str(tmp_path), "lenet_vanilla", "1")


def test_a_version_carries_its_keras_model_to_transfer_from(tuned, exported):
    model, _, _ = tuned
    inside = models.load_classifier(exported[1])  # the folder, as TFX's base_model
    assert inside.to_json() == model.to_json()
    for a, b in zip(inside.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_full_disk_during_export_is_one_line_and_leaves_no_version(trained_dir, tmp_path):
    """A real full disk: --export_base is a 64 KiB tmpfs in a private mount namespace (unshare), so
    TensorFlow's own SaveV2 meets ENOSPC as it would on a full volume."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -rm (a user and mount namespace) is not allowed here")
    base = str(tmp_path / "full")
    os.makedirs(base)
    # The tmpfs lives as long as the namespace: what is left on it is listed before both end.
    script = ('mount -t tmpfs -o size=64k tmpfs "$0" || exit 99; "$@"; rc=$?; '
              'echo LEFT:; find "$0" -mindepth 1; exit $rc')
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, base, sys.executable, "-m", "lenet_keras.export",
         "--source_model", os.path.join(trained_dir, "vanilla", "model.keras"),
         "--export_base", base],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 2, proc.stdout + proc.stderr[-3000:]
    assert_one_line_error(proc, f"writing a new version in {base}/lenet_vanilla failed",
                          "No space left on device", "free some space")
    left = proc.stdout.split("LEFT:\n")[1].split()
    assert left == [f"{base}/lenet_vanilla"], left  # the model folder, empty: no version, no staging
