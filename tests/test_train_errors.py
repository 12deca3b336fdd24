"""Every failure a user can cause: one `error:` line on stderr, exit != 0, no traceback, nothing lost."""

import os
import shutil
import time

import keras
import pytest

from lenet_keras import models
from tests.conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow  # every test here starts the train CLI

# Any download goes through a proxy that refuses at once on loopback: offline, without touching the net.
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": ""}


def train(*args, **kw):
    return run_cli("lenet_keras.train", *args, **kw)


@pytest.mark.parametrize("args,needles", [
    (["--exp", "resnet"], ["--exp=resnet", "vanilla|tuned|transfer|all"]),
    (["--exp", "vanilla", "--epochs", "0"], ["--epochs=0", "range [1,"]),
    (["--exp", "vanilla", "--batch_size", "-4"], ["--batch_size=-4", "range [1,"]),
    (["--exp", "vanilla", "--learning_rate", "0"], ["--learning_rate must be a positive number"]),
])
def test_bad_flags(tmp_path, args, needles):
    assert_one_line_error(train(*args, "--model_dir", str(tmp_path)), *needles)


def test_transfer_without_a_tuned_model_says_what_to_run(tmp_path, data_dir):
    proc = train("--exp", "transfer", "--data_dir", data_dir, "--model_dir", str(tmp_path))
    assert_one_line_error(proc, "--exp tuned", "--source_model", str(tmp_path / "tuned" / "model.keras"))


def test_source_model_that_is_not_a_keras_model(tmp_path, data_dir):
    bogus = tmp_path / "bogus.keras"
    bogus.write_bytes(b"\x00not a zip")
    proc = train("--exp", "transfer", "--data_dir", data_dir, "--model_dir", str(tmp_path),
                 "--source_model", str(bogus))
    assert_one_line_error(proc, str(bogus), "not a loadable Keras model")


def test_source_model_with_the_wrong_input_shape(tmp_path, data_dir):
    wrong = tmp_path / "wide.keras"
    models.build_lenet5(100, input_shape=(64, 64, 3)).save(wrong)
    proc = train("--exp", "transfer", "--data_dir", data_dir, "--model_dir", str(tmp_path),
                 "--source_model", str(wrong))
    assert_one_line_error(proc, "(None, 64, 64, 3)", "(None, 32, 32, 3)")


def test_no_network_fails_fast_naming_dataset_url_and_offline_route(tmp_path):
    empty = tmp_path / "tfds"
    start = time.monotonic()
    proc = train("--exp", "vanilla", "--data_dir", str(empty), "--model_dir", str(tmp_path / "m"),
                 env=OFFLINE, timeout=120)
    assert time.monotonic() - start < 60
    assert_one_line_error(proc, "cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
                          str(empty / "downloads" / "manual"), "--data_dir")


def test_truncated_prepared_data_is_a_clear_error_and_keeps_the_earlier_model(tmp_path, data_dir,
                                                                               study_dir):
    corrupt = tmp_path / "tfds"
    shutil.copytree(os.path.join(data_dir, "cifar100"), corrupt / "cifar100")
    version_dir = next((corrupt / "cifar100").iterdir())
    for record in version_dir.glob("*train.tfrecord*"):
        record.write_bytes(record.read_bytes()[: record.stat().st_size // 2])
    model_dir = tmp_path / "models"
    shutil.copytree(os.path.join(study_dir, "vanilla"), model_dir / "vanilla",
                    ignore=shutil.ignore_patterns("logs"))
    before = (model_dir / "vanilla" / "model.keras").read_bytes()
    proc = train("--exp", "vanilla", "--epochs", "1", "--data_dir", str(corrupt),
                 "--model_dir", str(model_dir))
    assert_one_line_error(proc, "corrupt or truncated", str(corrupt / "cifar100"))
    assert (model_dir / "vanilla" / "model.keras").read_bytes() == before
    keras.models.load_model(model_dir / "vanilla" / "model.keras")


def test_unreadable_dataset_info_is_a_clear_error(tmp_path, data_dir):
    corrupt = tmp_path / "tfds"
    shutil.copytree(os.path.join(data_dir, "cifar100"), corrupt / "cifar100")
    version_dir = next((corrupt / "cifar100").iterdir())
    (version_dir / "dataset_info.json").write_text("{not json")
    proc = train("--exp", "vanilla", "--data_dir", str(corrupt), "--model_dir", str(tmp_path / "m"))
    assert_one_line_error(proc, "cifar100", "move", "aside")


def test_a_data_loss_reason_has_no_tensorflow_op_text():
    import tensorflow as tf

    from lenet_keras.training.run import _data_loss_reason

    exc = tf.errors.DataLossError(None, None, (
        "{{function_node __wrapped__IteratorGetNext_output_types_2_device_/job:localhost/replica:0/"
        "task:0/device:CPU:0}} truncated record at 38 [Op:IteratorGetNext] name: "))
    assert _data_loss_reason(exc) == "truncated record at 38"


def _mislabelled(tmp_path, data_dir, name, split, label):
    """A copy of the prepared ``name`` whose ``split`` holds ``label`` on some examples."""
    from lenet_keras.data import synthetic

    copy = tmp_path / "tfds"
    shutil.copytree(os.path.join(data_dir, name), copy / name)
    version_dir = next((copy / name).iterdir())
    assert synthetic.mislabel(str(version_dir), split, label) > 0
    return copy, version_dir


def test_out_of_range_test_label_is_one_error_line_and_the_fixed_data_resumes(tmp_path, data_dir,
                                                                               study_dir):
    """The test split is read last: the run has trained when it meets the label, and the rerun on
    the fixed data resumes after that epoch instead of training again."""
    bad, version_dir = _mislabelled(tmp_path, data_dir, "cifar100", "test", 100)
    model_dir = tmp_path / "models"
    shutil.copytree(os.path.join(study_dir, "vanilla"), model_dir / "vanilla",
                    ignore=shutil.ignore_patterns("logs"))
    before = (model_dir / "vanilla" / "model.keras").read_bytes()
    args = ("--exp", "vanilla", "--epochs", "1", "--data_dir", str(bad), "--model_dir", str(model_dir))
    proc = train(*args)
    assert_one_line_error(proc, "cifar100 data set's test split holds label 100",
                          "its 100 classes [0, 100)", str(version_dir), "resumes")
    assert (model_dir / "vanilla" / "model.keras").read_bytes() == before

    shutil.rmtree(bad / "cifar100")
    shutil.copytree(os.path.join(data_dir, "cifar100"), bad / "cifar100")
    proc = train(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming vanilla after its last epoch" in proc.stderr
    keras.models.load_model(model_dir / "vanilla" / "model.keras")
