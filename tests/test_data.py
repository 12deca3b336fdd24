"""tf.data pipelines built by the real TFDS reader on prepared (synthetic) data."""

import hashlib

import numpy as np
import pytest
import tensorflow as tf

from lenet_keras import data, experiments
from lenet_keras.data import tfds_source
from lenet_keras.errors import UserError
from tests.conftest import TEST_EXAMPLES, TRAIN_EXAMPLES


def digests(ds):
    return [hashlib.sha1(image.tobytes()).hexdigest() for x, _ in ds for image in x.numpy()]


def labels(ds):
    return np.concatenate([y.numpy() for _, y in ds])


@pytest.mark.parametrize("exp", ["vanilla", "transfer"])
def test_splits_are_uint8_32x32_with_int_labels_and_the_right_sizes(data_dir, exp):
    config = experiments.get_config(exp)
    splits = data.load_splits(config, data_dir)
    n_val = TRAIN_EXAMPLES // 10
    assert (splits.train_examples, splits.val_examples, splits.test_examples) == (
        TRAIN_EXAMPLES - n_val, n_val, TEST_EXAMPLES)
    assert splits.num_classes == (100 if exp == "vanilla" else 10)
    assert len(splits.class_names) == splits.num_classes
    assert splits.class_names[0] == ("apple" if exp == "vanilla" else "airplane")
    x, y = next(iter(splits.train))
    assert x.dtype == tf.uint8 and tuple(x.shape) == (config.batch_size, 32, 32, 3)
    assert y.dtype.is_integer
    assert sum(len(x) for x, _ in splits.val) == n_val
    assert next(iter(splits.val))[0].shape[0] == n_val  # eval batches are larger than training's


def test_pipelines_run_without_autotuning(data_dir):
    # fit drops an iterator every epoch; with autotuning on, that waited for its model thread
    # for seconds (benchmarks/ATTEMPTS.md, row 21).
    splits = data.load_splits(experiments.get_config("vanilla"), data_dir)
    assert [ds.options().autotune.enabled for ds in (splits.train, splits.val, splits.test)] == [
        False, False, False]


def test_validation_and_test_never_overlap_train(data_dir):
    splits = data.load_splits(experiments.get_config("vanilla"), data_dir)
    train, val, test = (set(digests(ds)) for ds in (splits.train, splits.val, splits.test))
    assert len(train) == splits.train_examples  # the synthetic images are all distinct
    assert not train & val and not train & test and not val & test


def test_training_order_is_fixed_by_the_seed(data_dir):
    config = experiments.get_config("vanilla")
    first = labels(data.load_splits(config, data_dir).train)
    again = labels(data.load_splits(config, data_dir).train)
    other = labels(data.load_splits(config.replace(seed=7), data_dir).train)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert sorted(first) == sorted(other)  # same examples, different order


def test_stl10_is_resized_with_antialiasing_once_before_the_cache(data_dir):
    splits = data.load_splits(experiments.get_config("transfer"), data_dir)
    graph = tf.compat.v1.GraphDef.FromString(splits.train._as_serialized_graph().numpy())
    nodes = {node.name: node for node in graph.node}
    functions = {f.signature.name: f for f in graph.library.function}

    def ops(fn_name):
        found = set()
        for node in functions[fn_name].node_def:
            found.add(node.op)
            for attr in node.attr.values():
                if attr.func.name in functions:
                    found |= ops(attr.func.name)
        return found

    # TFDS may cache small data itself; ours is the cache fed by the map that resizes.
    caches = [node for node in graph.node if node.op.startswith("CacheDataset")]
    upstream = [nodes[cache.input[0].split(":")[0]] for cache in caches]
    resizing = [node for node in upstream
                if "Map" in node.op and "ScaleAndTranslate" in ops(node.attr["f"].func.name)]
    assert resizing, [node.op for node in upstream]  # tf.image.resize(antialias=True) feeds a cache
    shuffle = next(node for node in graph.node if node.op.startswith("ShuffleDataset"))
    assert nodes[shuffle.input[0].split(":")[0]].op.startswith("CacheDataset")


def test_resize_matches_a_direct_antialiased_resize(data_dir):
    import tensorflow_datasets as tfds

    raw = next(iter(tfds.load("stl10", split="test", data_dir=data_dir, shuffle_files=False)))
    splits = data.load_splits(experiments.get_config("transfer"), data_dir)
    ours = next(iter(splits.test))[0][0].numpy()
    expected = tf.image.resize(raw["image"], (32, 32), antialias=True)
    np.testing.assert_array_equal(ours, np.clip(np.round(expected.numpy()), 0, 255).astype(np.uint8))


def test_unknown_dataset_and_bad_split_are_user_errors(data_dir):
    config = experiments.get_config("vanilla")
    with pytest.raises(UserError, match="unknown TFDS dataset"):
        data.load_splits(config.replace(dataset="no_such_dataset_xyz"), data_dir)
    with pytest.raises(UserError, match="split"):
        data.load_splits(config.replace(val_split="validation"), data_dir)


def test_coarse_labels_are_read_once_per_process(data_dir, monkeypatch):
    tfds_source.forget_decoded()
    reads = []
    read = tfds_source._read_coarse_labels
    monkeypatch.setattr(tfds_source, "_read_coarse_labels",
                        lambda *args: reads.append(1) or read(*args))
    config = experiments.get_config("vanilla")
    test_coarse, names, fine_to_coarse = data.coarse_labels(config, data_dir)
    test_coarse[:] = -7  # a caller's changes must not reach the next caller
    again = data.coarse_labels(experiments.get_config("tuned"), data_dir)
    assert len(reads) == 1
    fine = labels(data.load_splits(config, data_dir).test)
    np.testing.assert_array_equal(again[0], fine // 5)  # the synthetic superclass of each test image
    assert again[1] == names and len(names) == 20
    np.testing.assert_array_equal(again[2], fine_to_coarse)
    tfds_source.forget_decoded()
    data.coarse_labels(config, data_dir)
    assert len(reads) == 2


def test_a_tf_example_label_outside_the_classes_names_data_set_split_and_label(tmp_path):
    """The TFX source (ExampleGen's records) has the TFDS source's check; a bug stays a bug."""
    from lenet_keras.data import labels, synthetic, tf_examples

    def write(path, values):
        with tf.io.TFRecordWriter(str(path)) as writer:
            for value in values:
                image = tf.io.encode_png(np.zeros((32, 32, 3), np.uint8)).numpy()
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[value])),
                })).SerializeToString())

    write(tmp_path / "train.tfrecord", [0, 3, 12, 9])
    write(tmp_path / "val.tfrecord", [1, 2])
    config = experiments.get_config("transfer").replace(batch_size=2)
    splits = tf_examples.load_splits(config, [str(tmp_path / "train.tfrecord")],
                                     [str(tmp_path / "val.tfrecord")], None, synthetic.STL10_CLASSES)
    assert len(list(splits.val)) == 1  # in range: passes
    with pytest.raises(tf.errors.InvalidArgumentError) as failed:
        list(splits.train)
    error = labels.out_of_range(failed.value, "rerun")
    assert error is not None
    assert f"stl10 data set's train split holds label 12, outside its 10 classes [0, 10): fix or " \
           f"prepare again the data in {tmp_path}" in str(error)
    assert labels.out_of_range(tf.errors.InvalidArgumentError(None, None, "other"), "x") is None
