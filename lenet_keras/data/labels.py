"""Labels outside a data set's classes: found on the first pass over a split, reported as data.

A label of 12 in a 10-class data set would otherwise reach the loss and end in a traceback
("Received a label value of 12 ..."). ``range_check`` goes into the map that feeds a source's
``cache()``, so it runs on the first pass over a split only and costs nothing in later epochs;
``out_of_range`` turns the failed check back into a UserError that names the data set, the split
and the label, for the code that ran the data (training, evaluation) to raise instead.
"""

from __future__ import annotations

import re
from typing import List, NamedTuple, Optional

import tensorflow as tf

from lenet_keras.errors import UserError

_MARKER = "lenet_keras label check #"
_FAILED = re.compile(re.escape(_MARKER) + r"(\d+)\]\s*\[(-?\d+)\]")


class _Check(NamedTuple):
    dataset: str
    split: str
    num_classes: int
    where: str  # the files that hold the split, for the message


# Every check this process made, by number: the assertion carries the number, not the names, so
# no data set or split name (they hold brackets and colons) has to survive TensorFlow's message.
_CHECKS: List[_Check] = []


def range_check(num_classes: int, name: str, split: str, where: str):
    """A function (image, label) -> (image, label) that fails on a label outside [0, num_classes).

    Call it inside the map that feeds a source's ``cache()``: it then runs on the first pass
    only, and the cached pairs are known good. ``name`` and ``split`` are what the error calls the
    data; ``where`` is where the user can fix it.
    """
    _CHECKS.append(_Check(name, split, int(num_classes), where))
    marker = f"{_MARKER}{len(_CHECKS) - 1}"

    def check(image, label):
        inside = tf.logical_and(label >= 0, label < num_classes)
        with tf.control_dependencies([tf.debugging.Assert(inside, [marker, label])]):
            return image, tf.identity(label)

    return check


def out_of_range(exc: BaseException, then: str) -> Optional[UserError]:
    """The UserError for ``exc`` if it is a failed ``range_check``, else None (a bug: re-raise it).

    ``then``: what happens next, e.g. that a rerun resumes and nothing on disk was lost.
    """
    found = _FAILED.search(str(exc)) if isinstance(exc, tf.errors.InvalidArgumentError) else None
    if found is None or int(found.group(1)) >= len(_CHECKS):
        return None
    check = _CHECKS[int(found.group(1))]
    return UserError(
        f"the {check.dataset} data set's {check.split} split holds label {found.group(2)}, outside "
        f"its {check.num_classes} classes [0, {check.num_classes}): fix or prepare again the data "
        f"in {check.where}, then {then}"
    )
