"""Experiments: runners that train and evaluate several methods (``asft compare``), and that
sample, score and pair a model's own answers (``asft pairs``, :mod:`asft.experiments.pairs`),
above both the training loop and evaluation in the import order.
"""
