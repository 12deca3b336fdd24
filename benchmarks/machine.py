"""What the numbers were measured on: CPU, cores, load, versions."""

from __future__ import annotations

import os
import platform
import time


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    import keras
    import numpy as np
    import tensorflow as tf
    import tensorflow_datasets as tfds

    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": keras.__version__, "tensorflow-datasets": tfds.__version__,
                "numpy": np.__version__}
    try:
        import torch

        versions["torch"] = torch.__version__
        versions["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    from lenet_keras.training import precision

    native, why = precision.native_bfloat16()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "bf16_instructions": sorted(precision.cpu_flags() & set(precision.BF16_CPU_FLAGS)),
        "bf16_native": {"native": native, "reason": why},
        "load_average": os.getloadavg(),
        "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "versions": versions,
    }
