"""Throughput benchmarks for lenet_keras; run ``python -m benchmarks.run`` (see the README)."""

# First, before anything here imports TensorFlow: the package sets TF's oneDNN switch at import,
# so every measurement runs the kernels training runs.
import lenet_keras  # noqa: F401
