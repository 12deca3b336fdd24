"""LeNet-5 on CIFAR-100, a tuned variant, and transfer to STL-10, in Keras 3 on TensorFlow."""

import os

# TensorFlow's C++ start-up chatter would bury the one-line errors this package promises.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
