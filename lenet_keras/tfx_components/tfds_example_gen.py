"""The cut of a prepared TFDS data set into train / eval / test, as a TFX component.

A local run cuts the records before the pipeline starts (``examples.export``) and hands the folder
to ImportExampleGen. A remote run (Kubeflow Pipelines / Vertex AI) compiles the pipeline on one
machine and runs it on others, so the cut must be a step of the pipeline: ``TfdsExampleGen`` reads
the TFDS data set in ``data_dir`` (a ``gs://`` URI there) and writes what ImportExampleGen would,
gzipped TFRecords in ``Split-<split>/`` of an ``Examples`` artifact, by the same split instructions
(TFDS's ``train[:90%]`` / ``train[90%:]`` / ``test`` for the experiments here).

No ``from __future__ import annotations``: TFX reads this function's annotations as types.
"""

import json

from tfx import v1 as tfx
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from lenet_keras.tfx_components import examples as example_files

Examples = tfx.types.standard_artifacts.Examples


@tfx.dsl.components.component
def TfdsExampleGen(  # noqa: N802 (TFX names the component class after the function)
    examples: tfx.dsl.components.OutputArtifact[Examples],
    dataset: tfx.dsl.components.Parameter[str],
    data_dir: tfx.dsl.components.Parameter[str],
    splits: tfx.dsl.components.Parameter[str],
    code_version: tfx.dsl.components.Parameter[str],
) -> None:
    """``splits``: JSON of ExampleGen split name -> TFDS split instruction. ``code_version`` is
    read by nothing: it is in TFX's cache key so changed code cuts again."""
    del code_version
    instructions = json.loads(splits)
    example_files.write_splits(dataset, data_dir, instructions, examples.uri)
    examples.split_names = artifact_utils.encode_split_names(list(instructions))
    examples_utils.set_file_format(examples, "tfrecords_gzip")
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
