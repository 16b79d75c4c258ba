"""Evaluation of codecs: quality metrics, BD-rate, classical anchor codecs."""
