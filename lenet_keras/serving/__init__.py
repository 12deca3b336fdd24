"""Serving: the signature (``signature``), writing versions for TF Serving (``export``), and
loading either a ``.keras`` file or an exported version to classify with (``load``)."""
