"""Generated command lines for ``train``: whatever a user types, the answer is a run that starts,
or one ``error:`` line and exit 2 — never a traceback, never a hang, nothing on disk changed.

In-process and fast: absl parses the generated flags with the command's own parser
(``cli.parse_flags``), then ``train.plan`` makes every check ``train.main`` makes before it reads
data: the tf.distribute strategy and the global batch, the precision, the experiments with their
overrides, the search space (``--hparams`` files with generated JSON) and the transfer targets.
``main`` calls the same function, so a check added there is generated against here too. This is
the test meant to find the next bad input before a user does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import string

import pytest
from absl import flags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lenet_keras import cli, train
from tests.conftest import train_flags

FLAGS = flags.FLAGS

# Text a user (or a shell script gone wrong) might put in a flag value.
junk = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "-1", "0", "1", "nan", "inf", "-inf", "1e999", "18446744073709551616",
                     "0x10", "1.5", "true", "None", "all", "tuned", "../x", "a b", "é", "\x00"]),
    st.integers(min_value=-2**70, max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=8) | st.sampled_from(["relu", "tanh", "max", "average", "64x128", "120x84"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
hparams_payload = st.one_of(
    json_value,
    st.fixed_dictionaries({"values": st.fixed_dictionaries({
        "activation": json_value, "pooling": json_value, "batch_norm": json_value,
        "hidden_units": json_value, "learning_rate": json_value,
    })}),
)


def mostly(valid):
    """Usually a valid value, now and then junk: so most command lines get past absl's parser
    and reach the checks behind it."""
    return st.integers(0, 9).flatmap(lambda roll: junk if roll == 0 else valid)


@st.composite
def command_lines(draw, workspace: str):
    """A list of ``--flag=value`` arguments for train, most of them valid, some not."""
    args = []
    if draw(st.booleans()):
        args.append("--exp=" + draw(mostly(st.sampled_from(["vanilla", "tuned", "transfer", "all"]))))
    for name in ("epochs", "seed"):
        if draw(st.integers(0, 3)) == 0:
            args.append(f"--{name}=" + draw(mostly(st.integers(1, 200).map(str))))
    # The two batch flags are checked together (one or the other), so they are drawn together.
    for name in draw(st.sampled_from([(), (), ("batch_size",), ("global_batch_size",),
                                      ("batch_size", "global_batch_size")])):
        args.append(f"--{name}=" + draw(mostly(st.integers(1, 200).map(str))))
    for name in ("learning_rate", "val_fraction", "test_fraction"):
        if draw(st.integers(0, 3)) == 0:
            args.append(f"--{name}=" + draw(mostly(st.floats(0.01, 0.99).map(repr))))
    if draw(st.integers(0, 4)) == 0:
        args.append("--strategy=" + draw(mostly(st.sampled_from(["default", "mirrored"]))))
    if draw(st.integers(0, 4)) == 0:
        args.append("--precision=" + draw(mostly(st.sampled_from(
            ["float32", "mixed_bfloat16", "mixed_float16", "auto"]))))
    if draw(st.integers(0, 4)) == 0:
        args.append(draw(st.sampled_from(["--deterministic", "--nodeterministic",
                                          "--deterministic=" + draw(junk)])))
    model_dir = draw(st.sampled_from(["models", "models", "new/deeper", "a_file", "a_file/below", ""]))
    args.append("--model_dir=" + (os.path.join(workspace, model_dir) if model_dir else ""))
    if draw(st.booleans()):
        path = os.path.join(workspace, f"hparams-{draw(st.integers(0, 10**9))}.json")
        with open(path, "w") as f:
            json.dump(draw(hparams_payload), f)
        args.append(f"--hparams={path}")
    if draw(st.integers(0, 6)) == 0:
        # Never a real TFDS name: that would go looking for the data set on the network.
        args.append("--target_dataset=nope_" + draw(st.text(string.ascii_lowercase + "/:_", max_size=6)))
    if draw(st.integers(0, 6)) == 0:
        args.append("--target_dir=" + draw(st.sampled_from([workspace + "/empty", workspace + "/none",
                                                             workspace + "/a_file", ""])))
    if draw(st.integers(0, 8)) == 0:
        args.append("--" + draw(st.text(string.ascii_letters + "_=-", min_size=1, max_size=10)))
    return args


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("flags")
    (path / "models").mkdir()
    (path / "models" / "earlier.json").write_text('{"kept": true}')
    (path / "empty").mkdir()
    (path / "a_file").write_text("not a folder")
    return str(path)


def _answer(args) -> tuple:
    """(exit code or None for "would run", what it printed on stderr), in this process."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            with train_flags(*args), cli.one_line_errors():
                train.plan()
            return None, stderr.getvalue()
        except SystemExit as exc:
            return exc.code, stderr.getvalue()


def test_the_answer_reads_back_a_known_mistake(workspace):
    code, err = _answer(["--seed=-1", f"--model_dir={workspace}/models"])
    assert code == 2 and err.startswith("error: ") and "--seed" in err


@pytest.mark.parametrize("args,needle", [
    (["--batch_size=8", "--global_batch_size=16"], "not both"),  # main's check, not absl's
    (["--strategy=mirrored", "--global_batch_size=16", "--batch_size=4"], "not both"),
    (["--strategy=tpu"], "--strategy tpu found no TPU"),
])
def test_checks_behind_the_parser_are_answered_as_main_answers(workspace, args, needle):
    code, err = _answer([*args, f"--model_dir={workspace}/models"])
    assert code == 2 and err.startswith("error: ") and needle in err, (code, err)


def test_generated_command_lines_run_or_fail_in_one_line(workspace):
    before = {name: open(os.path.join(workspace, name)).read()
              for name in ("models/earlier.json", "a_file")}

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(args=command_lines(workspace))
    def check(args):
        code, err = _answer(args)
        assert "Traceback" not in err
        if code is None:
            assert err == "" or not err.startswith("error:"), (args, err)
            return
        assert code == 2, (args, code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)

    check()
    for name, text in before.items():
        assert open(os.path.join(workspace, name)).read() == text
