"""The training stage: one loop for every registered loss.

:func:`train` (in :mod:`asft.train.loop`) sets a run up, repeats one ``train_step`` and
finishes; its parts live beside it: checkpoint, reference, optim, sampling, tracking, rundir,
policy, faults and distributed helpers. :mod:`asft.train.publish` pushes a finished run's
model and model card to the Hub.
"""

from asft.train.loop import NonFiniteLossError, StoppedBySignal, TrainResult, train

__all__ = ["NonFiniteLossError", "StoppedBySignal", "TrainResult", "train"]
