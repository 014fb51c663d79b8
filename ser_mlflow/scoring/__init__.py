"""Scores of record in NumPy (CCC and its intervals), per-recording evaluation, plots.

Imports without TensorFlow, so fusion and reports stay light."""
