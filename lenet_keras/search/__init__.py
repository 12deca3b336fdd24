"""Architecture search: the space (``space``), keras-tuner's tuners (``tuner``), what a kill must
not break (``durable``), several trials at once on one machine (``parallel``), and the files a
search leaves in its folder (``layout``)."""
