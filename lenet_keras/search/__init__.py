"""Architecture search: the space (``space``), keras-tuner's tuners (``tuner``), and several trials
at once on one machine (``parallel``)."""
