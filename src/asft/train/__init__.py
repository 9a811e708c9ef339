"""The training stage: one loop for every registered loss.

:func:`train` (in :mod:`asft.train.loop`) sets a run up, repeats one ``train_step`` and
finishes; :mod:`asft.train.stages` runs a config's ``stages`` one after another (and is the
:func:`train` exported here: without stages it is the loop's); its parts live beside it: checkpoint, reference, optim, sampling, tracking, rundir,
policy, faults and distributed helpers. :mod:`asft.train.publish` pushes a finished run's
model and model card to the Hub.
"""

from asft.train.loop import NonFiniteLossError, StoppedBySignal, TrainResult
from asft.train.stages import train

__all__ = ["NonFiniteLossError", "StoppedBySignal", "TrainResult", "train"]
