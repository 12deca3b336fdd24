"""LeNet-5 on CIFAR-100, a tuned variant, and transfer to STL-10, in Keras 3 on TensorFlow."""

import os

# TensorFlow's C++ start-up chatter would bury the one-line errors this package promises.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX; on
# others (this project's 2-core AVX2 machines) it falls back to Eigen, whose small-channel
# convolutions made a LeNet-5 training step 2x slower (benchmarks/ATTEMPTS.md). Same maths, other
# kernels; read when TensorFlow is first imported, so it must be set before that. A user's own
# TF_ENABLE_ONEDNN_OPTS=0 wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
