"""Each data set's cut checked against a schema kept here, before anything trains on it.

    <dataset>_examples -> <dataset>_statistics (StatisticsGen) --> <dataset>_validator
                          <dataset>_schema (ImportSchemaGen) --^   (ExampleValidator)
                          (also StatisticsGen's schema)            -> <dataset>_gate (DataGate)

The schemas are ``schemas/<dataset>/schema.pbtxt`` beside this module (installed with the
package). ExampleValidator records a ``blessed`` custom property on its ExampleAnomalies artifact,
one 0/1 per split (a JSON dict); ``DataGate`` folds it into one int ``blessed`` on a DataBlessing
artifact, the shape ``tfx.dsl.Cond`` takes on every runner (Kubeflow V2 compiles a predicate to a
CEL expression that can index a list, not look a split up by name). The Tuner and the Trainers of
a data set run inside ``Cond(gate_predicate(gate))``.

Local runs import a copy of the schema named by its digest (TFX's cache key of ImportSchemaGen is
the file's path, not its content, so an edited schema must get a new path); remote runs read the
schema from the package installed in the image (``PackagedSchemaGen``), as they cut the data there.

No ``from __future__ import annotations``: TFX reads the components' annotations as types.
"""

import hashlib
import os
import shutil
from typing import Dict, List, Optional

from tfx import v1 as tfx
from tfx.types import artifact_utils

SCHEMAS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")
SCHEMA_FILE = "schema.pbtxt"
ANOMALIES_FILE = "SchemaDiff.pb"  # what ExampleValidator writes in each Split-<name>/
BLESSED = "blessed"  # ExampleValidator's custom property, and DataGate's

ExampleAnomalies = tfx.types.standard_artifacts.ExampleAnomalies
Schema = tfx.types.standard_artifacts.Schema


class DataBlessing(tfx.dsl.Artifact):
    """Whether every split of a data set's cut passed validation: int custom property ``blessed``."""

    TYPE_NAME = "lenet_keras.DataBlessing"  # <namespace>.<Title>: what Kubeflow V2 accepts


def schema_path(dataset: str) -> str:
    """The kept schema of ``dataset`` in this package."""
    return os.path.join(SCHEMAS_DIR, dataset, SCHEMA_FILE)


def schema_digest(dataset: str) -> str:
    with open(schema_path(dataset), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def copy_schema(dataset: str, pipeline_root: str) -> str:
    """``<pipeline_root>/schemas/<dataset>-<digest>/schema.pbtxt``: the path ImportSchemaGen reads."""
    folder = os.path.join(os.path.abspath(pipeline_root), "schemas",
                          f"{dataset}-{schema_digest(dataset)}")
    path = os.path.join(folder, SCHEMA_FILE)
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        shutil.copyfile(schema_path(dataset), f"{path}.tmp")
        os.replace(f"{path}.tmp", path)  # a kill mid-copy never leaves half a schema at the path
    return path


@tfx.dsl.components.component
def PackagedSchemaGen(  # noqa: N802 (TFX names the component class after the function)
    schema: tfx.dsl.components.OutputArtifact[Schema],
    dataset: tfx.dsl.components.Parameter[str],
    digest: tfx.dsl.components.Parameter[str],
) -> None:
    """ImportSchemaGen's output from the schema installed with this package. ``digest`` is read by
    nothing: it is in TFX's cache key, so an edited schema is imported again."""
    del digest
    tfx.dsl.io.fileio.copy(schema_path(dataset), os.path.join(schema.uri, SCHEMA_FILE))


def split_verdicts(anomalies) -> Dict[str, int]:
    """Split name -> 1 (no anomalies) or 0, from an ExampleAnomalies artifact (TFX or ML Metadata)."""
    if isinstance(anomalies, tfx.dsl.Artifact):
        value = anomalies.get_json_value_custom_property(BLESSED) or {}
        return {split: int(v) for split, v in value.items()}
    field = anomalies.custom_properties[BLESSED]
    return {split: int(v.number_value) for split, v in field.struct_value.fields.items()}


@tfx.dsl.components.component
def DataGate(  # noqa: N802
    anomalies: tfx.dsl.components.InputArtifact[ExampleAnomalies],
    blessing: tfx.dsl.components.OutputArtifact[DataBlessing],
) -> None:
    """``blessing``'s ``blessed`` is 1 when ExampleValidator found no anomaly in any split."""
    verdicts = split_verdicts(anomalies)
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    every_split_blessed = bool(splits) and all(verdicts.get(split) == 1 for split in splits)
    blessing.set_int_custom_property(BLESSED, int(every_split_blessed))


def data_validation(dataset: str, examples_gen, pipeline_root: str, remote: bool) -> List:
    """StatisticsGen, the schema's import, ExampleValidator and DataGate for ``examples_gen``."""
    if remote:
        schema = PackagedSchemaGen(dataset=dataset, digest=schema_digest(dataset))
    else:
        schema = tfx.components.ImportSchemaGen(schema_file=copy_schema(dataset, pipeline_root))
    schema = schema.with_id(f"{dataset}_schema")
    # With the schema the label is categorical: its statistics count the examples of each class
    # (the model cards show them); its int_domain still catches a label out of range.
    statistics = tfx.components.StatisticsGen(
        examples=examples_gen.outputs["examples"], schema=schema.outputs["schema"],
    ).with_id(f"{dataset}_statistics")
    validator = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"],
    ).with_id(f"{dataset}_validator")
    gate = DataGate(anomalies=validator.outputs["anomalies"]).with_id(f"{dataset}_gate")
    return [statistics, schema, validator, gate]


def gate_predicate(gate):
    """The ``tfx.dsl.Cond`` predicate: ``gate``'s data set passed validation."""
    return gate.outputs["blessing"].future()[0].custom_property(BLESSED) == 1


def read_anomalies(anomalies_uri: str, split: str) -> Optional[object]:
    """The Anomalies proto ExampleValidator wrote for ``split``, or None if it wrote none."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    path = os.path.join(anomalies_uri, f"Split-{split}", ANOMALIES_FILE)
    if not tfx.dsl.io.fileio.exists(path):
        return None
    with tfx.dsl.io.fileio.open(path, "rb") as f:
        return anomalies_pb2.Anomalies.FromString(f.read())


def describe_anomalies(dataset: str, anomalies_uri: str, verdicts: Dict[str, int]) -> str:
    """One line: the data set, each refused split's features and TFDV's short descriptions, and
    where the anomalies artifact is."""
    found = []
    for split in sorted(s for s, v in verdicts.items() if v != 1):
        anomalies = read_anomalies(anomalies_uri, split)
        if anomalies is None:
            found.append(f"{split} split refused")
            continue
        for feature, info in sorted(anomalies.anomaly_info.items()):
            found.append(f"{split} split, feature '{feature}': {info.short_description} "
                         f"({info.description.rstrip('.')})")
        if anomalies.HasField("dataset_anomaly_info"):
            found.append(f"{split} split: {anomalies.dataset_anomaly_info.short_description}")
    return (f"{dataset}: data validation found anomalies, so its models were neither trained nor "
            f"pushed: {'; '.join(found)}. Anomalies: {anomalies_uri}")


def refused_data(nodes: Dict, datasets) -> List[str]:
    """``describe_anomalies`` of every data set in ``datasets`` whose gate, in the run's ``nodes``
    (lenet_keras.tfx_components.executions.NodeExecution by node id), did not bless its cut."""
    refused = []
    for dataset in datasets:
        gate = nodes.get(f"{dataset}_gate")
        if gate is None:  # the run stopped before it
            continue
        (blessing,) = gate.outputs["blessing"]
        if blessing.custom_properties[BLESSED].int_value == 1:
            continue
        (anomalies,) = nodes[f"{dataset}_validator"].outputs["anomalies"]
        refused.append(describe_anomalies(dataset, anomalies.uri, split_verdicts(anomalies)))
    return refused
