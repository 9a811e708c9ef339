"""Experiments: runners that train and evaluate several methods (``asft compare``), above both
the training loop and evaluation in the import order.
"""
