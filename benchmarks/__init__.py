"""Throughput benchmarks for lenet_keras; run ``python -m benchmarks.run`` (see benchmarks/README.md)."""
