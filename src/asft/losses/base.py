"""The types every loss shares: per-sequence statistics in, per-example loss out.

A loss is a pure function ``fn(stats, **hparams) -> (loss [B], metrics)`` registered once with
:func:`register`. The registry feeds the CLI choices, config validation, docs and the
parametrized tests, so a name is spelled in exactly one place.

Loss functions are called through :func:`asft.losses.compute`, which first runs
:func:`prepare` on the statistics: shapes checked, everything upcast to float32 or wider,
reference log-probs detached, and pairs that cannot be scored (a response with no tokens)
replaced by harmless placeholders. A loss function can therefore assume float32+ tensors of
one shape [B] with token counts >= 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import torch

Metrics = dict[str, torch.Tensor]
LossFn = Callable[..., tuple[torch.Tensor, Metrics]]


@dataclass
class SequenceStats:
    """Per-sequence statistics of a batch of B preference pairs (all tensors of shape [B]).

    Attributes:
        chosen_logps: sum over the chosen response tokens of log p(y_t | x, y_<t) (nats).
        rejected_logps: the same sum for the rejected response.
        chosen_tokens: number of chosen response tokens (>= 1 for a scorable pair).
        rejected_tokens: number of rejected response tokens.
        ref_chosen_logps: the reference model's summed chosen log-prob, or None.
        ref_rejected_logps: the reference model's summed rejected log-prob, or None.
        extra_logps: summed log-prob of a third response per example, or None: TPO's gold
            response, KTO's mismatched completion (another example's response under this
            prompt, for its KL estimate). Which one is the loss's ``LossSpec.extra``.
        extra_tokens: its token count (0 where an example has none: TPO falls back to chosen).
        ref_extra_logps: the reference model's summed log-prob of the third response, or None.
        more_ref_chosen_logps: [M, B] summed chosen log-probs under M further reference models
            (``reference.models``, for MRPO), or None.
        more_ref_rejected_logps: [M, B], the same for the rejected responses.
        mean_over_processes: averages a scalar over the data-parallel processes (the training
            step passes an all-reduce; None, as in a single process, is the identity). For a
            batch-level quantity such as KTO's reference point z0.

    For an unpaired example (KTO) one side has 0 tokens: only losses registered with
    ``unpaired=True`` accept those.
    """

    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor
    ref_chosen_logps: torch.Tensor | None = None
    ref_rejected_logps: torch.Tensor | None = None
    extra_logps: torch.Tensor | None = None
    extra_tokens: torch.Tensor | None = None
    ref_extra_logps: torch.Tensor | None = None
    more_ref_chosen_logps: torch.Tensor | None = None
    more_ref_rejected_logps: torch.Tensor | None = None
    mean_over_processes: Callable[[torch.Tensor], torch.Tensor] | None = None

    @classmethod
    def from_scores(cls, logps: torch.Tensor, tokens: torch.Tensor, ref: torch.Tensor | None,
                    num_pairs: int, mean_over_processes: Callable | None = None) -> SequenceStats:
        """Statistics from a scorer's output: ``logps``/``tokens`` [K*B] and the reference's
        ``ref`` [K*B] (or None), chosen block first, then rejected, then (K = 3) extra. A
        ``ref`` of (1 + M) * K * B values holds M further references after the primary one."""
        b = num_pairs
        k = logps.shape[0] // b
        lp, tk = logps.view(k, b), tokens.view(k, b)
        extra = {}
        rf = None
        if ref is not None:
            refs = ref.view(-1, k, b)
            rf = refs[0]
            if refs.shape[0] > 1:
                extra = {"more_ref_chosen_logps": refs[1:, 0], "more_ref_rejected_logps": refs[1:, 1]}
        if k == 3:
            extra |= {"extra_logps": lp[2], "extra_tokens": tk[2],
                      "ref_extra_logps": None if rf is None else rf[2]}
        return cls(lp[0], lp[1], tk[0], tk[1], None if rf is None else rf[0],
                   None if rf is None else rf[1], **extra, mean_over_processes=mean_over_processes)

    def global_mean(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` (a scalar) averaged over the processes (itself in a single process)."""
        return t if self.mean_over_processes is None else self.mean_over_processes(t)

    def mean_extra(self) -> torch.Tensor:
        """Mean token log-prob of the third response, shape [B] (0 where it has no tokens)."""
        return _mean(require(self.extra_logps, "extra_logps"), require(self.extra_tokens, "extra_tokens"))

    def mean_chosen(self) -> torch.Tensor:
        """s(y_w): mean token log-prob of the chosen response, shape [B]."""
        return _mean(self.chosen_logps, self.chosen_tokens)

    def mean_rejected(self) -> torch.Tensor:
        """s(y_l): mean token log-prob of the rejected response, shape [B]."""
        return _mean(self.rejected_logps, self.rejected_tokens)

    def mean_ref_chosen(self) -> torch.Tensor:
        """The reference model's mean token log-prob of the chosen response, shape [B]."""
        return _mean(require(self.ref_chosen_logps, "ref_chosen_logps"), self.chosen_tokens)

    def mean_ref_rejected(self) -> torch.Tensor:
        """The reference model's mean token log-prob of the rejected response, shape [B]."""
        return _mean(require(self.ref_rejected_logps, "ref_rejected_logps"), self.rejected_tokens)

    def log_ratios(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Delta_w, Delta_l) = summed log-prob minus the reference's, per response; [B] each."""
        ref_w = require(self.ref_chosen_logps, "ref_chosen_logps")
        ref_l = require(self.ref_rejected_logps, "ref_rejected_logps")
        return self.chosen_logps - ref_w, self.rejected_logps - ref_l


def _mean(logps: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return logps / tokens.to(logps.dtype).clamp_min(1)


def require(t: torch.Tensor | None, what: str) -> torch.Tensor:
    """``t`` itself, or a ValueError saying that ``what`` (a SequenceStats field) is missing."""
    if t is None:
        raise ValueError(f"SequenceStats.{what} is None but this loss needs a reference model")
    return t


@dataclass(frozen=True)
class LossSpec:
    """A registered loss.

    Attributes:
        name: registry key, as written in configs and on the command line.
        fn: the pure loss function.
        defaults: every hyperparameter the loss accepts, with its default value.
        needs_reference: True when the loss reads ``ref_*_logps`` (a reference model is loaded).
        paper: arXiv id of the method, for docs and reports.
        summary: one line for ``asft losses`` and the loss tables of the docs.
        positive: hyperparameters that must be > 0 (the others must be >= 0).
        formula: the per-pair loss in the symbols of docs/losses.md (plain text, one line).
        related: further arXiv ids: variants this implementation covers, or other papers
            proposing the same loss.
        extra: the third response the loss reads (``SequenceStats.extra_*``), one of
            :data:`EXTRAS`, or None; the training data gains it as ``extra_ids``.
        unpaired: True when the loss accepts examples with one side empty (KTO's unpaired
            desirable / undesirable examples).
        multi_reference: True when the loss combines further reference models
            (``SequenceStats.more_ref_*``, from ``reference.models``).
    """

    name: str
    fn: LossFn
    defaults: dict[str, float] = field(default_factory=dict)
    needs_reference: bool = False
    paper: str = ""
    summary: str = ""
    positive: tuple[str, ...] = ()
    formula: str = ""
    related: tuple[str, ...] = ()
    extra: str | None = None
    unpaired: bool = False
    multi_reference: bool = False


# What a loss's third response is (LossSpec.extra): the data's gold response (chosen when a
# pair has none), or another example's response under this prompt (a mismatched completion).
EXTRAS = ("gold", "mismatched")

LOSSES: dict[str, LossSpec] = {}


def register(
    name: str,
    *,
    needs_reference: bool = False,
    paper: str = "",
    summary: str = "",
    positive: tuple[str, ...] = (),
    formula: str = "",
    related: tuple[str, ...] = (),
    extra: str | None = None,
    unpaired: bool = False,
    multi_reference: bool = False,
    **defaults: float,
) -> Callable[[LossFn], LossFn]:
    """Decorator that adds ``fn`` to :data:`LOSSES` under ``name`` with its hyperparameter defaults."""

    def wrap(fn: LossFn) -> LossFn:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} registered twice")
        unknown = sorted(set(positive) - set(defaults))
        if unknown:
            raise ValueError(f"loss {name!r}: positive names unknown hyperparameters {unknown}")
        if extra not in (None, *EXTRAS):
            raise ValueError(f"loss {name!r}: extra must be one of {EXTRAS} or None, got {extra!r}")
        LOSSES[name] = LossSpec(
            name, fn, dict(defaults), needs_reference, paper, summary, tuple(positive),
            formula, tuple(related), extra, unpaired, multi_reference,
        )
        return fn

    return wrap


# ---------------------------------------------------------------------------------------------
# Numerics shared by the losses on absolute likelihoods (ASFT, ORPO).

_LN2 = math.log(2.0)
# Above S_MAX the exact log(1 - exp(s)) is continued along its tangent at S_MAX. Why not a
# plain clamp: a clamp has zero gradient above S_MAX, so a rejected response the model is
# already near-certain of (where ASFT most wants to push it down) would get no push at all.
# Why -1e-7: the tangent's slope, -1/expm1(-S_MAX) ~ -1e7, keeps gradients and their squares
# (grad-norm clipping) far from float32 overflow, and 1 - exp(s) is still exact in float32.
S_MAX = -1e-7
_AT_S_MAX = math.log(-math.expm1(S_MAX))  # ~ -16.118
_SLOPE_AT_S_MAX = -1.0 / math.expm1(-S_MAX)  # d/ds log(1 - exp(s)) at S_MAX, ~ -1e7


def upcast(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 when it is a half type or an integer, else unchanged (float32/float64)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def log1mexp(s: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(s)) for s <= 0, stable everywhere (Maechler 2012), computed in >= float32.

    Exact (log(-expm1(s)) for s > -ln 2, log1p(-exp(s)) otherwise) for s <= S_MAX = -1e-7;
    above S_MAX, including s = 0 and small positive rounding errors, continued along the
    tangent at S_MAX: s = 0 gives about -17.1 with gradient about -1e7, both finite, and the
    function stays monotone with a continuous derivative. Shape is preserved.
    """
    s = upcast(s)
    over = s > S_MAX
    s_in = torch.where(over, torch.full_like(s, S_MAX), s)
    # torch.where evaluates both branches, so feed each an argument inside its own safe range
    # to keep NaN out of the unused branch's gradient.
    near = s_in > -_LN2
    s_near = torch.where(near, s_in, torch.full_like(s, -_LN2))
    s_far = torch.where(near, torch.full_like(s, -_LN2), s_in)
    exact = torch.where(near, torch.log(-torch.expm1(s_near)), torch.log1p(-torch.exp(s_far)))
    tangent = _AT_S_MAX + _SLOPE_AT_S_MAX * (s - S_MAX)
    return torch.where(over, tangent, exact)


def log_odds(s: torch.Tensor) -> torch.Tensor:
    """Log-odds r = s - log(1 - exp(s)) of P = exp(s), for mean log-probs s <= 0; shape kept.

    sigma(r) = P, so -log sigma(r) = -log P and -log sigma(-r) = -log(1 - P).
    """
    s = upcast(s)
    return s - log1mexp(s)


def reward_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> Metrics:
    """The ``rewards/*`` metrics of a loss with implicit rewards, all detached [B] tensors.

    Keys: ``rewards/chosen``, ``rewards/rejected``, ``rewards/margin`` (chosen - rejected) and
    ``rewards/accuracy`` (1.0 where the chosen reward is strictly higher, else 0.0).
    """
    chosen, rejected = chosen.detach(), rejected.detach()
    margin = chosen - rejected
    return {
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margin": margin,
        "rewards/accuracy": (margin > 0).to(margin.dtype),
    }


# ---------------------------------------------------------------------------------------------
# What compute() does before it calls a loss function.

_REF_FIELDS = ("ref_chosen_logps", "ref_rejected_logps", "ref_extra_logps",
               "more_ref_chosen_logps", "more_ref_rejected_logps")
_MANY = ("more_ref_chosen_logps", "more_ref_rejected_logps")  # [M, B]: one row per reference
# Placeholder statistics of an unscorable pair: any finite values keep the loss finite; the
# loss and metrics of that pair are then replaced by 0 and the pair is flagged.
_PLACEHOLDER_LOGP = -1.0


def require_reference(name: str, stats: SequenceStats) -> None:
    """Raise a ValueError when loss ``name`` needs reference log-probs and ``stats`` lacks them."""
    needed = _REF_FIELDS[:3] if stats.extra_logps is not None else _REF_FIELDS[:2]
    missing = [f for f in needed if getattr(stats, f) is None]
    if missing:
        free = ", ".join(sorted(n for n, s in LOSSES.items() if not s.needs_reference))
        raise ValueError(
            f"loss {name!r} needs a reference model but SequenceStats.{' and '.join(missing)} "
            f"is None: pass the frozen reference model's summed log-probs, or pick a "
            f"reference-free loss ({free})"
        )


def prepare(stats: SequenceStats, unpaired: bool = False) -> tuple[SequenceStats, torch.Tensor]:
    """Check, upcast and sanitise ``stats``; return them and the ``scorable`` mask [B] (bool).

    - every tensor must have the same shape [B] (a ValueError names the odd one out);
    - log-probs become float32 or wider (the widest dtype present), token counts the same;
    - reference log-probs are detached (the reference model is frozen);
    - a pair is scorable when both responses have >= 1 token (``unpaired``: when either has);
      the statistics of the other pairs are replaced by finite placeholders, with no gradient
      reaching the originals.

    No value is read back to the host, so this never synchronises a GPU stream.
    """
    present = {
        f.name: getattr(stats, f.name) for f in fields(stats)
        if getattr(stats, f.name) is not None and f.name != "mean_over_processes"
    }
    for name, t in present.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"SequenceStats.{name} must be a torch.Tensor, got {type(t).__name__}")
    shape = stats.chosen_logps.shape
    if len(shape) != 1:
        raise ValueError(f"SequenceStats.chosen_logps must have shape [B], got {list(shape)}")
    for name, t in present.items():
        if name in _MANY and t.dim() == 2 and t.shape[1:] == shape:
            continue
        if t.shape != shape:
            raise ValueError(
                f"SequenceStats.{name} has shape {list(t.shape)}, expected [B] = {list(shape)} "
                f"like chosen_logps"
            )
    dtype = torch.float32
    for name, t in present.items():
        if t.is_floating_point() and not name.endswith("_tokens"):
            dtype = torch.promote_types(dtype, t.dtype)
    has_w, has_l = stats.chosen_tokens >= 1, stats.rejected_tokens >= 1
    scorable = (has_w | has_l) if unpaired else (has_w & has_l)
    out = {}
    for name, t in present.items():
        t = t.to(dtype)
        if name in _REF_FIELDS:
            t = t.detach()
        fill = 1.0 if name.endswith("_tokens") else _PLACEHOLDER_LOGP
        out[name] = torch.where(scorable, t, torch.full_like(t, fill))
    return replace(stats, **out), scorable
