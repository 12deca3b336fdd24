"""What ML Metadata recorded about the pipeline's runs: each node's execution state, and where the
Pushers pushed.

TFX's ``LocalDagRunner`` records every component it runs (or finds in its cache) as an execution
in ML Metadata, tied to a ``pipeline_run`` context (one per run) and a ``node`` context named
``<pipeline>.<node id>``. The command reads those to name the component a failed run stopped at
and to say where each model was pushed; the tests read them to check what ran.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

# The states of an execution that produced (or reused) its outputs.
SUCCEEDED = ("COMPLETE", "CACHED")
PUSHED_MODEL = "pushed_model"  # the Pusher's output key
BLESSING = "blessing"  # the Evaluator's output key


@dataclasses.dataclass(frozen=True)
class NodeExecution:
    """A node's execution in one run: its ML Metadata state, its input and output artifacts by key."""

    node_id: str
    state: str
    outputs: Dict[str, List[metadata_store_pb2.Artifact]]
    inputs: Dict[str, List[metadata_store_pb2.Artifact]] = dataclasses.field(default_factory=dict)


def connect(metadata_path: str) -> mlmd.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return mlmd.MetadataStore(config)


def run_ids(store: mlmd.MetadataStore) -> List[int]:
    """The ids of every ``pipeline_run`` context, oldest first."""
    return sorted(context.id for context in store.get_contexts_by_type("pipeline_run"))


def _node_id(store, execution_id: int, pipeline_name: str) -> Optional[str]:
    prefix = f"{pipeline_name}."
    for context in store.get_contexts_by_execution(execution_id):
        if context.type == "node" and context.name.startswith(prefix):
            return context.name[len(prefix):]
    return None


def _artifacts(store, execution_id: int, kind) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    events = [event for event in store.get_events_by_execution_ids([execution_id])
              if event.type == kind]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    outputs: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for event in events:
        outputs.setdefault(event.path.steps[0].key, []).append(artifacts[event.artifact_id])
    return outputs


def node_executions(store: mlmd.MetadataStore, run_id: int,
                    pipeline_name: str) -> Dict[str, NodeExecution]:
    """Node id -> its (latest) execution in the run ``run_id``, for ``pipeline_name``'s nodes."""
    state_name = metadata_store_pb2.Execution.State.Name
    found: Dict[str, NodeExecution] = {}
    for execution in sorted(store.get_executions_by_context(run_id), key=lambda e: e.id):
        node_id = _node_id(store, execution.id, pipeline_name)
        if node_id is not None:
            found[node_id] = NodeExecution(
                node_id, state_name(execution.last_known_state),
                _artifacts(store, execution.id, metadata_store_pb2.Event.OUTPUT),
                _artifacts(store, execution.id, metadata_store_pb2.Event.INPUT))
    return found


def stopped_at(upstream: Mapping[str, Sequence[str]], executions: Dict[str, NodeExecution]) -> str:
    """The node a failed run stopped at, whatever order the runner ran them in (``LocalDagRunner``
    one at a time, ``BeamDagRunner`` as Beam steps, independent nodes in either order). TFX's
    launcher records an executor that raised as a FAILED execution, so that node; with none (a
    node that failed before its execution was recorded, e.g. resolving its inputs), the nodes that
    could have started, every node of ``upstream[node]`` finished, but did not finish."""
    failed = sorted(node for node, execution in executions.items() if execution.state == "FAILED")
    if failed:
        return " and ".join(failed)

    def finished(node: str) -> bool:
        return node in executions and executions[node].state in SUCCEEDED

    ready = [node for node, before in upstream.items()
             if not finished(node) and all(finished(u) for u in before)]
    return " or ".join(ready) or "(none recorded as failed in ML Metadata)"


def pushed_to(execution: NodeExecution) -> Optional[str]:
    """The version folder a Pusher's execution wrote (or, cached, found written), if it pushed."""
    for artifact in execution.outputs.get(PUSHED_MODEL, []):
        properties = artifact.custom_properties
        if "pushed" in properties and properties["pushed"].int_value == 1:
            return properties["pushed_destination"].string_value
    return None


def blessed(execution: NodeExecution) -> bool:
    """Whether an Evaluator's execution blessed its model (its ``blessing`` says ``blessed``: 1)."""
    for artifact in execution.outputs.get(BLESSING, []):
        properties = artifact.custom_properties
        if "blessed" in properties and properties["blessed"].int_value == 1:
            return True
    return False
