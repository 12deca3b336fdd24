"""Serving: the signature (``signature``), writing versions for TF Serving (``export``), LiteRT
conversion and its interpreter (``litert``) and checked LiteRT versions (``litert_export``), and
loading a ``.keras`` file, an exported version or a ``.tflite`` file to classify with (``load``),
and the Markdown model card published with every model (``model_card``)."""
