"""Training one experiment (``run``) and what keeps it safe: resume state (``resume``), one run per
folder (``runlock``), all-or-nothing files (``atomic``), the artifacts' names (``artifacts``),
tf.distribute (``distribute``, ``custom_loop``).

Importing this package imports nothing heavy, so the report can use ``artifacts`` and ``atomic``
without TensorFlow.
"""
