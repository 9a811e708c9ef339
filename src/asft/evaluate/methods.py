"""Method specs: a registered loss plus hyperparameter overrides, written ``name:k=v,k=v``.

A list of methods is one string whose items are separated by commas or semicolons:

    sft,dpo,asft,asft:beta=0.1,sft_weight=0

Commas separate both methods and hyperparameters, and the rule that keeps this
unambiguous is that a hyperparameter always contains ``=`` and a loss name never does: an
item with ``=`` belongs to the method before it (which must have opened its hyperparameters
with ``:``), an item without ``=`` starts a new method. Semicolons may be used between
methods for readability (``"sft; asft:beta=0.1,sft_weight=0"``); several strings (repeated
flags) are concatenated.

Where learning rates may be given (``parse_methods(..., lr=True)``, as ``asft compare`` does),
the key ``lr`` takes one learning rate or a grid of them separated by ``|``:
``dpo:beta=0.1,lr=5e-7|5e-6`` is DPO at beta 0.1, tuned over two learning rates. ``lr`` is
not a loss hyperparameter: it is kept apart, in :attr:`MethodSpec.lrs`.

Where stages may be given (``parse_methods(..., stages=True)``, as ``asft compare`` does), a
name may be a chain of losses trained one after another, ``>`` between them, the
hyperparameters (and ``lr``) after the last: ``sft>asft:beta=0.2,sft_weight=0`` is the
two-stage beta-ASFT of arXiv 2502.01237 (SFT, then ASFT's alignment term from the SFT model).
The earlier stages keep their losses' defaults; the steps are split evenly between stages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class MethodSpec:
    """One method to run: a registered loss name and overrides of its defaults.

    Attributes:
        name: a key of :data:`asft.losses.LOSSES`.
        hparams: overrides, validated against the loss's defaults and ranges.
        lrs: this method's own learning rates (a grid to choose from, or one); empty: the
            comparison's.
        before: losses trained first, in order, each from the previous stage's model (a
            staged method, ``sft>asft``); ``name`` is the last stage.
    """

    name: str
    hparams: dict[str, float] = field(default_factory=dict)
    lrs: tuple[float, ...] = ()
    before: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The spec as written back: ``name`` or ``name:k=v,k=v`` (keys in given order, then
        ``lr=a|b`` when the method has its own learning rates)."""
        items = [f"{k}={v:g}" for k, v in self.hparams.items()]
        if self.lrs:
            items.append("lr=" + "|".join(number_text(v) for v in self.lrs))
        name = ">".join((*self.before, self.name))
        return name + ":" + ",".join(items) if items else name

    @property
    def slug(self) -> str:
        """A folder-safe form of :attr:`label` (``asft-beta0.1-sft_weight0``)."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label.replace("=", "").replace(">", "-then-")).strip("-")

    def stages(self, max_steps: int) -> list[dict]:
        """The ``stages:`` of a staged method's config for a budget of ``max_steps`` split
        evenly (the last stage takes the remainder); [] for a one-stage method."""
        if not self.before:
            return []
        names = [*self.before, self.name]
        each, extra = divmod(max_steps, len(names))
        if each < 1:
            raise ValueError(f"{self.label}: {max_steps} steps cannot be split over {len(names)} stages")
        return [{"name": n if names.count(n) == 1 else f"{n}{i + 1}", "loss": n, "max_steps": each + (extra if i == len(names) - 1 else 0),
                 **({"hparams": dict(self.hparams)} if i == len(names) - 1 else {})}
                for i, n in enumerate(names)]


def number_text(value: float) -> str:
    """``5e-06``: the short ``g`` form when it reads back as the same number, else the
    shortest form that does (so a folder or label named after it is exact)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _value(text: str, item: str) -> float:
    if not _NUMBER.match(text):
        raise ValueError(f"method spec item {item!r}: {text!r} is not a number")
    return float(text)


def parse_lrs(text: str, sep: str = "|") -> tuple[float, ...]:
    """Learning rates separated by ``sep`` (``5e-7|5e-6``), each in (0, 1), none twice; a
    ValueError says which is wrong."""
    lrs = []
    for part in (p.strip() for p in text.split(sep)):
        if not _NUMBER.match(part):
            raise ValueError(f"{part!r} is not a number")
        lr = float(part)
        if not 0 < lr < 1:
            raise ValueError(f"a learning rate must be in (0, 1), got {part}")
        if lr in lrs:
            raise ValueError(f"learning rate {part} is listed twice")
        lrs.append(lr)
    return tuple(lrs)


def _item_value(key: str, text: str, item: str, lr: bool) -> float | tuple[float, ...]:
    if not (lr and key == "lr"):
        return _value(text, item)
    try:
        return parse_lrs(text)
    except ValueError as err:
        raise ValueError(f"method spec item {item!r}: {err}") from None


def parse_methods(specs: str | Iterable[str], *, lr: bool = False,
                  stages: bool = False) -> list[MethodSpec]:
    """Method specs from one string or several (see the module docstring for the syntax).

    Loss names and hyperparameters are checked against the registry; a ValueError names
    the offending item. Duplicates (same label) are an error. With ``lr``, the key ``lr``
    gives the method's own learning rates; without, it is refused like any unknown key. With
    ``stages``, ``a>b`` names a staged method; without, ``>`` is refused.
    """
    from asft.losses import resolve_hparams

    texts = [specs] if isinstance(specs, str) else list(specs)
    items = [item.strip() for text in texts for part in text.split(";") for item in part.split(",")]
    methods: list[tuple[str, dict]] = []
    open_hparams = False
    for item in items:
        if not item:
            continue
        if "=" in item and ":" not in item:
            if not methods or not open_hparams:
                prev = methods[-1][0] if methods else None
                hint = f"; write {prev}:{item}" if prev else ""
                raise ValueError(f"method spec item {item!r} has no method before it{hint}")
            key, _, value = item.partition("=")
            methods[-1][1][key.strip()] = _item_value(key.strip(), value.strip(), item, lr)
            continue
        name, colon, rest = item.partition(":")
        name = name.strip()
        if not name or "=" in name:
            raise ValueError(f"method spec item {item!r}: expected a loss name before ':'")
        hparams: dict = {}
        if colon:
            key, eq, value = rest.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"method spec item {item!r}: expected name:key=value")
            hparams[key.strip()] = _item_value(key.strip(), value.strip(), item, lr)
        methods.append((name, hparams))
        open_hparams = bool(colon)
    if not methods:
        raise ValueError("no methods given")
    out = []
    for name, hparams in methods:
        lrs = hparams.pop("lr", ()) if lr else ()
        *before, name = (n.strip() for n in name.split(">"))
        if before and not stages:
            raise ValueError(f"method {'>'.join((*before, name))!r}: staged methods (a>b) are "
                             "not accepted here")
        for first in before:
            resolve_hparams(first)  # an unknown loss name, with the valid ones
        resolve_hparams(name, **hparams)  # raises with the valid names and ranges
        out.append(MethodSpec(name, hparams, tuple(lrs), tuple(before)))
    labels = [m.label for m in out]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ValueError(f"method(s) listed twice: {', '.join(dupes)}")
    return out
