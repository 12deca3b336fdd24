"""Naming the component a failed run stopped at, from ML Metadata, whatever order the runner ran
the components in."""

from __future__ import annotations

import importlib.util
import os

import pytest

HAVE_TFX = importlib.util.find_spec("tfx") is not None
pytestmark = [
    pytest.mark.tfx,
    pytest.mark.skipif(not HAVE_TFX, reason="TFX is not installed: it needs Python 3.10"),
    pytest.mark.filterwarnings("ignore:You are using a non-supported Python version:FutureWarning"),
]

if HAVE_TFX:  # TFX takes only a module-level function as a component
    from tfx import v1 as tfx

    from lenet_keras.errors import UserError

    @tfx.dsl.components.component
    def Fine():  # the name of a component class
        pass

    @tfx.dsl.components.component
    def Refuses():
        raise UserError("no such thing")


def _runs(**states):
    from lenet_keras.tfx_components.executions import NodeExecution

    return {node: NodeExecution(node, state, {}) for node, state in states.items()}


def test_the_failed_node_is_named_though_a_node_listed_before_it_never_ran():
    """Beam may run independent nodes in any order: the one that failed first leaves one listed
    before it without an execution (a list-order reading named that one)."""
    from lenet_keras.tfx_components.executions import stopped_at

    upstream = {"cifar100_examples": [], "stl10_examples": [], "Tuner": ["cifar100_examples"]}
    assert stopped_at(upstream, _runs(stl10_examples="FAILED")) == "stl10_examples"


def test_without_a_failed_execution_the_nodes_that_could_start_are_named():
    from lenet_keras.tfx_components.executions import stopped_at

    upstream = {"examples": [], "other_examples": [], "trainer": ["examples"], "pusher": ["trainer"]}
    assert stopped_at(upstream, _runs(examples="COMPLETE", other_examples="CACHED")) == "trainer"
    assert stopped_at(upstream, _runs(examples="COMPLETE")) == "other_examples or trainer"


@pytest.mark.slow  # two tiny pipelines, one per runner (seconds each)
@pytest.mark.parametrize("runner", ["local", "beam"])
def test_a_component_that_raised_is_the_one_named_under_each_runner(runner, tmp_path):
    from lenet_keras.tfx_components import components, runners

    pipeline = tfx.dsl.Pipeline(
        pipeline_name=components.PIPELINE_NAME, pipeline_root=str(tmp_path / "root"),
        components=[Fine().with_id("fine"), Refuses().with_id("refuses")],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite")),
        beam_pipeline_args=components.BEAM_ARGS,
    )
    with pytest.raises(runners.ComponentFailed, match="^TFX component refuses failed: no such thing"):
        runners.run_pipeline(pipeline, os.path.join(tmp_path, "metadata.sqlite"), runner)

