"""TFX: the Trainer's and Tuner's entry points (``entry_points``) behind ``experiments/*.py``."""
