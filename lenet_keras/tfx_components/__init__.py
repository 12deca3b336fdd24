"""TFX: the Trainer's and Tuner's entry points (``entry_points``) behind ``experiments/*.py``, the
pipeline's wiring (``components``), its data validation (``validation``, with the schemas in
``schemas/``), Evaluators (``evaluation``), model cards (``model_cards``) and runners (``runners``)."""
