"""The held-out probe: how the likelihoods of pairs the model never trains on move.

Logged as ``probe/logps/chosen`` and ``probe/logps/rejected`` (mean token log-prob s(y),
nats per token), ``probe/logps/margin`` (mean s(y_w) - s(y_l)) and ``probe/accuracy``
(fraction of pairs with s(y_w) > s(y_l)), at step 0, every ``logging.probe_every`` steps and
at the end. The scoring is :func:`asft.model.scoring.score_pairs`, the one ``asft eval`` uses.
"""

from __future__ import annotations

from asft.model.scoring import pair_means
from asft.train.distributed import score_shards
from asft.train.setup import Run


def probe_due(run: Run, step: int) -> bool:
    every = run.cfg.logging.probe_every
    return bool(run.probe_ex) and every > 0 and (step == 0 or step % every == 0 or step == run.total)


def probe_metrics(run: Run) -> dict[str, float]:
    """The ``probe/*`` metrics of the module docstring, the same on every process."""
    table = score_shards(run.accelerator, run.scorer, run.probe_ex, run.make_batch,
                         run.cfg.training.batch_size)
    means = pair_means(table)
    return {"probe/logps/chosen": means["logps_chosen"],
            "probe/logps/rejected": means["logps_rejected"],
            "probe/logps/margin": means["margin"], "probe/accuracy": means["accuracy"]}
