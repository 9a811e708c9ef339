"""Method specs: a registered loss plus hyperparameter overrides, written ``name:k=v,k=v``.

A list of methods is one string whose items are separated by commas or semicolons:

    sft,dpo,asft,asft:beta=0.1,sft_weight=0

Commas separate both methods and hyperparameters, and the rule that keeps this
unambiguous is that a hyperparameter always contains ``=`` and a loss name never does: an
item with ``=`` belongs to the method before it (which must have opened its hyperparameters
with ``:``), an item without ``=`` starts a new method. Semicolons may be used between
methods for readability (``"sft; asft:beta=0.1,sft_weight=0"``); several strings (repeated
flags) are concatenated.
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
    """

    name: str
    hparams: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The spec as written back: ``name`` or ``name:k=v,k=v`` (keys in given order)."""
        if not self.hparams:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v:g}" for k, v in self.hparams.items())

    @property
    def slug(self) -> str:
        """A folder-safe form of :attr:`label` (``asft-beta0.1-sft_weight0``)."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label.replace("=", "")).strip("-")


def _value(text: str, item: str) -> float:
    if not _NUMBER.match(text):
        raise ValueError(f"method spec item {item!r}: {text!r} is not a number")
    return float(text)


def parse_methods(specs: str | Iterable[str]) -> list[MethodSpec]:
    """Method specs from one string or several (see the module docstring for the syntax).

    Loss names and hyperparameters are checked against the registry; a ValueError names
    the offending item. Duplicates (same label) are an error.
    """
    from asft.losses import resolve_hparams

    texts = [specs] if isinstance(specs, str) else list(specs)
    items = [item.strip() for text in texts for part in text.split(";") for item in part.split(",")]
    methods: list[tuple[str, dict[str, float]]] = []
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
            methods[-1][1][key.strip()] = _value(value.strip(), item)
            continue
        name, colon, rest = item.partition(":")
        name = name.strip()
        if not name or "=" in name:
            raise ValueError(f"method spec item {item!r}: expected a loss name before ':'")
        hparams: dict[str, float] = {}
        if colon:
            key, eq, value = rest.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"method spec item {item!r}: expected name:key=value")
            hparams[key.strip()] = _value(value.strip(), item)
        methods.append((name, hparams))
        open_hparams = bool(colon)
    if not methods:
        raise ValueError("no methods given")
    out = []
    for name, hparams in methods:
        resolve_hparams(name, **hparams)  # raises with the valid names and ranges
        out.append(MethodSpec(name, hparams))
    labels = [m.label for m in out]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ValueError(f"method(s) listed twice: {', '.join(dupes)}")
    return out
