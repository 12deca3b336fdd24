"""A prepared TFDS data set as ImportExampleGen's input, split as the training CLI splits it.

A prepared TFDS data set is TFRecord files of ``tf.train.Example`` (``image``: PNG bytes, ``label``:
int64), which ImportExampleGen ingests as they are. What it cannot do is cut them the way the
training CLI does: several input splits together with an output ``split_config`` are refused at
run time, and hash buckets would not give TFDS's ``train[:90%]`` / ``train[90%:]``. So each data
set gets a folder ``train/ eval/ test/`` here, filled by copying the records of each TFDS split
instruction by index (shard by shard), without decoding: the pipeline trains, validates and tests on
exactly the examples ``python -m lenet_keras.train`` uses, and ImportExampleGen reads one input
split per sub-folder.

The folder's name is a digest of what it is made from (the shard files' names, sizes and mtimes,
the split instructions, this module's source). It is written under a hidden name and renamed, and
never rewritten: a rerun finds it and leaves its files' mtimes alone, so ImportExampleGen's
fingerprint (file sizes and mtimes) and with it TFX's cache hold, while new data or a new export
format get a new folder and a fresh ingestion.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, List, Mapping, Sequence

import tensorflow as tf

from lenet_keras.data import tfds_source
from lenet_keras.errors import UserError, first_line
from lenet_keras.training import atomic

# ExampleGen's split names (the Trainers' eval_args use them) -> the ExperimentConfig field whose
# TFDS split instruction fills it.
SPLIT_FIELDS = {"train": "train_split", "eval": "val_split", "test": "test_split"}
SOURCE_FILE = "SOURCE.json"  # what the folder was made from, for people; ExampleGen reads <split>/*
_READ_BATCH = 1024  # records fetched per eager step: one step per record is slow for 45,000 of them


def split_instructions(config) -> Dict[str, str]:
    """ExampleGen split name -> the TFDS split instruction ``config`` trains/validates/tests on."""
    return {split: getattr(config, field) for split, field in SPLIT_FIELDS.items()}


def check_prepared(names: Sequence[str], data_dir: str) -> None:
    """One UserError naming every data set of ``names`` not prepared in ``data_dir``, and how."""
    missing = [name for name in names if not tfds_source.builder_of(name, data_dir).is_prepared()]
    if missing:
        raise UserError(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not prepared in "
            f"{data_dir}: `python -m lenet_keras.train --data_dir {data_dir}` downloads the real "
            f"data, or `python -m lenet_keras.data.synthetic --data_dir {data_dir}` writes small "
            "stand-ins"
        )


def prepared_builder(name: str, data_dir: str):
    """The TFDS builder of ``name`` prepared as TFRecords in ``data_dir``; UserError otherwise."""
    check_prepared([name], data_dir)
    builder = tfds_source.builder_of(name, data_dir)
    file_format = builder.info.file_format
    # An empty format in dataset_info.json means TFDS's default, TFRecord.
    if file_format is not None and file_format.value != "tfrecord":
        raise UserError(f"{name} in {data_dir} is stored as {file_format.value}, but ImportExampleGen "
                        "reads TFRecord files: prepare it again with TFDS's default file format")
    return builder


def _file_instructions(builder, instructions: Mapping[str, str]) -> Dict[str, list]:
    try:
        return {split: builder.info.splits[instruction].file_instructions
                for split, instruction in instructions.items()}
    except (ValueError, KeyError, AssertionError) as exc:
        raise UserError(f"bad split for {builder.name}: {first_line(exc)}") from None


def _digest(builder, file_instructions: Mapping[str, list]) -> str:
    """Names the export by everything that decides its bytes, so changed data gets a new folder."""
    with open(__file__, "rb") as f:
        parts = [builder.name, str(builder.version), hashlib.sha256(f.read()).hexdigest()]
    for split, instructions in sorted(file_instructions.items()):
        for fi in instructions:
            stat = os.stat(fi.filename)
            parts.append(f"{split}:{os.path.basename(fi.filename)}:{fi.skip}:{fi.take}:"
                         f"{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _copy_records(instructions: List, path: str, compression: str = "") -> int:
    """Writes the records ``instructions`` select (TFDS's FileInstructions) into the file ``path``."""
    count = 0
    with tf.io.TFRecordWriter(path, options=compression or None) as writer:
        for fi in instructions:
            records = tf.data.TFRecordDataset(fi.filename).skip(fi.skip).take(fi.take)
            for batch in records.batch(_READ_BATCH):
                for record in batch.numpy():
                    writer.write(record)
                    count += 1
    return count


def _write(staging: str, builder, instructions: Mapping[str, str],
           file_instructions: Mapping[str, list]) -> Dict[str, int]:
    counts = {}
    for split, selected in file_instructions.items():
        os.makedirs(os.path.join(staging, split))
        counts[split] = _copy_records(selected, os.path.join(staging, split, f"{split}.tfrecord"))
    with open(os.path.join(staging, SOURCE_FILE), "w") as f:
        json.dump({"dataset": builder.name, "version": str(builder.version),
                   "tfds_dir": str(builder.data_dir), "splits": dict(instructions),
                   "examples": counts}, f, indent=2)
    return counts


def export(name: str, data_dir: str, examples_root: str, instructions: Mapping[str, str]) -> str:
    """``<examples_root>/<name>-<digest>/`` holding ``<split>/<split>.tfrecord`` for each of
    ``instructions`` (ExampleGen split -> TFDS split instruction); returns that folder.

    An existing export of the same source is returned untouched; a new one appears whole or not
    at all. A split that selects no example is a UserError (ExampleGen would write an empty one).
    """
    data_dir = os.path.abspath(tfds_source.default_data_dir(data_dir))
    builder = prepared_builder(name, data_dir)
    file_instructions = _file_instructions(builder, instructions)
    empty = [f"{split} ({instructions[split]})" for split, selected in file_instructions.items()
             if sum(fi.take for fi in selected) == 0]
    if empty:
        raise UserError(f"{name} in {data_dir} has no examples in {', '.join(empty)}: prepare "
                        "more examples")
    folder = os.path.join(os.path.abspath(examples_root), f"{name}-{_digest(builder, file_instructions)}")
    if os.path.isdir(folder):
        return folder
    try:
        with atomic.new_folder(folder, prefix=f".{name}-") as staging:
            _write(staging, builder, instructions, file_instructions)
    except OSError as exc:
        # Another run exported the same source meanwhile: its folder is as good as ours.
        if not os.path.isdir(folder):
            raise UserError(f"exporting {name} into {examples_root} failed ({exc.strerror}): free "
                            "some space or choose another --pipeline_root") from None
    return folder


def write_splits(name: str, data_dir: str, instructions: Mapping[str, str], uri: str) -> Dict[str, int]:
    """ExampleGen's own output layout, ``<uri>/Split-<split>/data_tfrecord-00000-of-00001.gz``,
    filled with the records of each of ``instructions`` (ExampleGen split -> TFDS split
    instruction); returns each split's example count.

    The in-pipeline cut of remote runs (``tfds_example_gen``): ``data_dir`` and ``uri`` may be any
    filesystem TensorFlow reads (``gs://``), so nothing here asks the local one.
    """
    builder = prepared_builder(name, data_dir)
    counts = {}
    for split, selected in _file_instructions(builder, instructions).items():
        folder = f"{uri.rstrip('/')}/Split-{split}"
        tf.io.gfile.makedirs(folder)
        counts[split] = _copy_records(selected, f"{folder}/data_tfrecord-00000-of-00001.gz", "GZIP")
        if counts[split] == 0:
            raise UserError(f"{name} in {data_dir} has no examples in {split} "
                            f"({instructions[split]}): prepare more examples")
    return counts
