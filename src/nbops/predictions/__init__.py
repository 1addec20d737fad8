"""Predictions of served models: their log (:mod:`.log`), the data monitoring reads."""
