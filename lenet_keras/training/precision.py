"""Which Keras dtype policy a run trains under: ``--precision`` resolved to a concrete policy.

``float32`` (the default) computes everything in float32: the study's numbers, unchanged.
``mixed_bfloat16`` / ``mixed_float16`` keep the variables in float32 and compute every
layer but the classifier head in 16 bits (lenet_keras.models); ``mixed_float16`` trains with loss
scaling. ``auto`` becomes ``mixed_bfloat16`` where the device computes bfloat16 natively and
``float32`` elsewhere, and logs which and why: results under ``auto`` depend on the machine.

Only concrete policies reach an ExperimentConfig; ``resolve`` is called by the commands (train,
tune) and TFX's entry points before a config is built. Nothing here imports TensorFlow unless a
GPU has to be looked for, and tests pass the CPU flags and GPU compute capabilities they want.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Optional, Sequence, Tuple

from absl import logging

from lenet_keras.config import PRECISIONS
from lenet_keras.errors import UserError

CHOICES = (*PRECISIONS, "auto")
# /proc/cpuinfo flags of the instructions oneDNN computes bfloat16 matmuls and convolutions with.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# NVIDIA Ampere (8.0) and later have bfloat16 tensor cores.
BF16_GPU_CAPABILITY = (8, 0)


@dataclasses.dataclass(frozen=True)
class Choice:
    """The policy a run uses, what was asked for, and why the one became the other."""

    policy: str
    requested: str
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def cpu_flags() -> set:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def gpu_compute_capabilities() -> list:
    """(major, minor) of every GPU TensorFlow sees; imports TensorFlow."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        capabilities.append(tuple(capability) if capability else (0, 0))
    return capabilities


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN kernels: lenet_keras turns them on unless the user's
    TF_ENABLE_ONEDNN_OPTS says otherwise (TensorFlow reads the variable as a boolean)."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false")


def native_bfloat16(
    cpu: Optional[Iterable[str]] = None,
    gpus: Optional[Sequence[Tuple[int, int]]] = None,
    onednn: Optional[bool] = None,
) -> Tuple[bool, str]:
    """(whether the device that trains computes bfloat16 natively, why), for this machine or for
    the given CPU flags, GPU compute capabilities and oneDNN setting.

    With a GPU, TensorFlow trains on it, so the GPUs decide (all of them, as a mirrored run uses
    all); otherwise the CPU's flags, and only when oneDNN's kernels run: TensorFlow's Eigen
    kernels emulate bfloat16 on any CPU, slower than float32 (benchmarks/MEASUREMENTS.md).
    """
    gpus = gpu_compute_capabilities() if gpus is None else [tuple(g) for g in gpus]
    if gpus:
        slowest = min(gpus)
        if slowest >= BF16_GPU_CAPABILITY:
            return True, (f"the GPU (compute capability {slowest[0]}.{slowest[1]}) computes "
                          "bfloat16 natively")
        return False, (f"a GPU of compute capability {slowest[0]}.{slowest[1]} (below 8.0) has no "
                       "native bfloat16")
    found = sorted(set(BF16_CPU_FLAGS) & set(cpu_flags() if cpu is None else cpu))
    if not found:
        return False, "the CPU has neither amx_bf16 nor avx512_bf16, so bfloat16 would be emulated"
    if not (onednn_enabled() if onednn is None else onednn):
        return False, (f"the CPU has {' and '.join(found)}, but TF_ENABLE_ONEDNN_OPTS=0 turns off the "
                       "oneDNN kernels that use it, so bfloat16 would be emulated")
    return True, f"the CPU has {' and '.join(found)} and TensorFlow runs oneDNN kernels"


def resolve(
    requested: str,
    cpu: Optional[Iterable[str]] = None,
    gpus: Optional[Sequence[Tuple[int, int]]] = None,
    onednn: Optional[bool] = None,
) -> Choice:
    """The concrete policy ``--precision requested`` means here; logs auto's choice and reason.

    ``cpu``, ``gpus`` and ``onednn`` stand in for this machine's (see ``native_bfloat16``).
    """
    if requested not in CHOICES:
        raise UserError(f"--precision must be one of {', '.join(CHOICES)}, got {requested!r}")
    if requested == "float32":
        return Choice("float32", requested, "requested")
    gpus = gpu_compute_capabilities() if gpus is None else [tuple(g) for g in gpus]
    native, why = native_bfloat16(cpu, gpus, onednn)
    if requested == "auto":
        policy = "mixed_bfloat16" if native else "float32"
        logging.info("precision auto: %s, because %s", policy, why)
        return Choice(policy, requested, why)
    if requested == "mixed_bfloat16" and not native:
        logging.warning("--precision mixed_bfloat16: %s; expect training slower than float32", why)
    if requested == "mixed_float16" and not gpus:
        # oneDNN has float16 kernels only for AVX512-FP16 / AMX-FP16 CPUs; TensorFlow falls back
        # to Eigen's, several times slower than float32 (benchmarks/MEASUREMENTS.md).
        logging.warning("--precision mixed_float16 on a CPU: float16 is emulated there, expect "
                        "training several times slower than float32; it is meant for GPUs")
    return Choice(requested, requested, "requested")
