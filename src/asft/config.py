"""Training configuration: nested dataclasses with documented fields, YAML in, resolved YAML out.

Every field carries a docstring (the string literal under it); :func:`field_docs` reads them
for ``asft train --help-config`` and for the comments of the resolved ``config.yaml`` that a
run writes into its output folder. ``Config()`` with no arguments is the default job that
``asft train`` runs: ASFT on the built-in task with the packaged SmolLM2-135M-Instruct.

Loading is strict: an unknown key or a value of the wrong type is a :class:`ConfigError` that
names the file, the line and the field, with a "did you mean" suggestion. Validation runs in
``__post_init__``, so a config built in Python is checked exactly like one read from YAML,
and all of it happens before any model is loaded.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import itertools
import math
import reprlib
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from asft.cli import AsftError

# A YAML file or override value larger than this is refused before parsing: a config is a
# few kilobytes, and PyYAML's time and memory grow without bound on adversarial input.
MAX_CONFIG_BYTES = 1 << 20
# Deeper nesting than this cannot be a config; refusing it keeps PyYAML's recursive
# composer away from Python's recursion limit.
MAX_NESTING = 32


class ConfigError(AsftError, ValueError):
    """A configuration problem, reported to the user without a traceback."""


class FieldError(ValueError):
    """A validation failure of one field; the loader prefixes it with the field's file:line."""

    def __init__(self, field_name: str, message: str):
        field_name = _clip(field_name, 120)
        message = _clip(message, 600)
        super().__init__(f"{field_name}: {message}")
        self.field_name = field_name
        self.message = message


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def suggest(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Section:
    """Base of every config dataclass: coerces nested dicts, checks types, then ``validate``."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(getattr(self, f.name), hints[f.name], f.name))
        try:
            self.validate()
        except FieldError:
            raise
        except ValueError as err:
            raise FieldError(type(self).__name__, str(err)) from None

    def validate(self) -> None:
        """Range and consistency checks; raise :class:`FieldError` naming the field."""


def _require(cond: bool, name: str, message: str) -> None:
    if not cond:
        raise FieldError(name, message)


@dataclass
class ModelConfig(_Section):
    """The policy model."""

    name: str = "smollm2-135m"
    """Hub id, local folder, ``smollm2-135m`` (the packaged SmolLM2-135M-Instruct) or
    ``tiny-llama[-HxL]`` (a random test model)."""

    dtype: Literal["fp32", "bf16"] = "fp32"
    """Dtype of the weights. Keep fp32 for training and get bf16 speed from
    ``training.precision``: AdamW updates of bf16 weights (8-bit mantissa) round to
    nothing at usual learning rates. bf16 weights halve memory for the reference copy."""

    trust_remote_code: bool = False
    """Allow the model folder's own Python code to run. Off unless you trust the source."""

    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 30% more compute."""

    def validate(self) -> None:
        _require(bool(self.name.strip()), "name", "must not be empty")


@dataclass
class LoraConfig(_Section):
    """Low-rank adapters through peft (arXiv 2106.09685); the base weights stay frozen."""

    enabled: bool = False
    """Train LoRA adapters instead of all weights."""

    r: int = 16
    """Rank of each adapter."""

    alpha: float = 32.0
    """Scale numerator: the adapter output is multiplied by alpha / r."""

    dropout: float = 0.0
    """Dropout on the adapter input."""

    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt (e.g. q_proj, v_proj), or ``all-linear``."""

    merge_on_save: bool = True
    """Merge the adapters into the base weights when saving the final model, so that it loads
    with plain ``AutoModelForCausalLM.from_pretrained``."""

    def validate(self) -> None:
        _require(1 <= self.r <= 65536, "r", f"must be in [1, 65536], got {self.r}")
        _require(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")
        _require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        _require(bool(self.target_modules), "target_modules", "must not be empty")


@dataclass
class DataConfig(_Section):
    """Where the preference pairs come from and how they are cut."""

    source: str = "builtin:mixed"
    """A data source: ``builtin:<task>``, a local file (.jsonl, .json, .parquet) or folder."""

    max_length: int = 512
    """Longest prompt + longer response in tokens; see ``overflow`` for longer pairs."""

    max_prompt_length: int = 256
    """Longest prompt in tokens; longer prompts keep their end."""

    overflow: Literal["drop", "truncate"] = "drop"
    """Pairs longer than max_length: ``drop`` them (a cut response has no EOS, so its
    likelihood is not the response's), or ``truncate`` both responses to fit (TRL's way)."""

    probe_size: int = 16
    """Pairs held out from training and scored every ``logging.probe_every`` steps to follow
    the chosen and rejected likelihoods (0 disables the probe)."""

    limit: int | None = None
    """Read at most the first N pairs of the source (the probe included); null: all."""

    layout: Literal["shared", "plain"] = "shared"
    """Batch layout: ``shared`` computes each prompt once per pair (a 4D attention mask; models
    that ignore it fall back to ``plain`` automatically), ``plain`` one sequence per response."""

    def validate(self) -> None:
        _require(bool(self.source.strip()), "source", "must not be empty")
        _require(8 <= self.max_length <= 1 << 20, "max_length", f"must be in [8, 1048576], got {self.max_length}")
        _require(1 <= self.max_prompt_length < self.max_length, "max_prompt_length",
                 f"must be in [1, max_length={self.max_length}), got {self.max_prompt_length}")
        _require(0 <= self.probe_size <= 100_000, "probe_size", f"must be in [0, 100000], got {self.probe_size}")
        _require(self.limit is None or self.limit >= 1, "limit", f"must be >= 1 or null, got {self.limit}")


@dataclass
class LossConfig(_Section):
    """The training objective, by its name in the loss registry (``asft losses`` lists them)."""

    name: str = "asft"
    """Registered loss name: asft, sft, dpo, ipo, hinge, rpo, orpo, simpo, cpo, ..."""

    hparams: dict[str, float] = field(default_factory=dict)
    """Overrides of the loss's hyperparameters (e.g. ``{lam: 1.0, beta: 0.1}``); the written
    config.yaml lists every hyperparameter with the value used."""

    def validate(self) -> None:
        from asft.losses import LOSSES, resolve_hparams

        if self.name not in LOSSES:
            raise FieldError("name", f"unknown loss {self.name!r}{suggest(self.name, LOSSES)}; "
                                     f"valid: {', '.join(sorted(LOSSES))}")
        unknown = [k for k in self.hparams if k not in LOSSES[self.name].defaults]
        if unknown:
            valid = ", ".join(LOSSES[self.name].defaults) or "none"
            raise FieldError(f"hparams.{unknown[0]}",
                             f"loss {self.name!r} has no hyperparameter {unknown[0]!r}"
                             f"{suggest(unknown[0], LOSSES[self.name].defaults)}; valid: {valid}")
        self.hparams = resolve_hparams(self.name, **self.hparams)


@dataclass
class ReferenceConfig(_Section):
    """The reference model, built only for losses that need one (DPO, IPO, hinge, RPO, ...)."""

    strategy: Literal["auto", "copy", "adapter", "cache"] = "auto"
    """``copy``: a frozen copy of the model; ``adapter``: the LoRA base weights with the adapter
    disabled (no extra memory); ``cache``: reference log-probs computed once before training and
    stored in the output folder; ``auto``: adapter with LoRA, cache otherwise."""

    model: str | None = None
    """Reference model name when it differs from the policy's starting point; None: the same."""

    def resolved(self, lora_enabled: bool) -> str:
        """The concrete strategy that ``auto`` stands for."""
        if self.strategy != "auto":
            return self.strategy
        return "adapter" if lora_enabled and self.model is None else "cache"


@dataclass
class OptimConfig(_Section):
    """AdamW and the learning-rate schedule."""

    lr: float = 2e-5
    """Peak learning rate."""

    weight_decay: float = 0.0
    """Decoupled weight decay of AdamW."""

    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW (beta1, beta2)."""

    eps: float = 1e-8
    """AdamW epsilon."""

    schedule: Literal["linear", "cosine", "constant"] = "linear"
    """Decay after warm-up: linear to 0, cosine to 0, or constant."""

    warmup_ratio: float = 0.03
    """Warm-up length as a fraction of the total steps (used when warmup_steps is null)."""

    warmup_steps: int | None = None
    """Warm-up length in optimizer steps; overrides warmup_ratio."""

    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value; 0 disables clipping (the norm is still logged)."""

    def validate(self) -> None:
        _require(0 < self.lr < 1, "lr", f"must be in (0, 1), got {self.lr}")
        _require(0 <= self.weight_decay < 1, "weight_decay", f"must be in [0, 1), got {self.weight_decay}")
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas",
                 f"must be two numbers in [0, 1), got {self.betas}")
        _require(0 < self.eps < 1, "eps", f"must be in (0, 1), got {self.eps}")
        _require(0 <= self.warmup_ratio < 1, "warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        _require(self.warmup_steps is None or self.warmup_steps >= 0, "warmup_steps",
                 f"must be >= 0 or null, got {self.warmup_steps}")
        _require(self.max_grad_norm >= 0, "max_grad_norm", f"must be >= 0, got {self.max_grad_norm}")


@dataclass
class TrainingConfig(_Section):
    """Steps, batch and precision. One optimizer step sees
    ``batch_size x processes x grad_accum`` pairs (the global batch)."""

    max_steps: int | None = 60
    """Optimizer steps to run; null: ``epochs`` full passes over the data."""

    epochs: int = 1
    """Passes over the data when max_steps is null."""

    batch_size: int = 4
    """Pairs per process per micro-batch."""

    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""

    precision: Literal["fp32", "bf16-mixed"] = "bf16-mixed"
    """Compute precision. ``bf16-mixed``: matmuls in bf16 (autocast) over fp32 weights and
    optimizer state, about 1.3x faster than ``fp32`` for SmolLM2-135M on a CPU; ``fp32``:
    plain float32, bit-reproducible (what the exact-resume tests use)."""

    def validate(self) -> None:
        _require(self.max_steps is None or 1 <= self.max_steps <= 10**9, "max_steps",
                 f"must be in [1, 1e9] or null, got {self.max_steps}")
        _require(1 <= self.epochs <= 10**6, "epochs", f"must be in [1, 1e6], got {self.epochs}")
        _require(1 <= self.batch_size <= 1 << 16, "batch_size", f"must be in [1, 65536], got {self.batch_size}")
        _require(1 <= self.grad_accum <= 1 << 16, "grad_accum", f"must be in [1, 65536], got {self.grad_accum}")


@dataclass
class LoggingConfig(_Section):
    """Console, metrics.jsonl, TensorBoard and W&B."""

    every: int = 5
    """Write metrics every N optimizer steps (averaged over those N steps)."""

    probe_every: int = 10
    """Score the held-out probe pairs every N steps (and at step 0 and at the end); 0: never."""

    tensorboard: bool = True
    """Write TensorBoard event files under ``<output_dir>/tensorboard``."""

    wandb_project: str | None = None
    """Log to this Weights & Biases project (needs ``pip install wandb``); null: off."""

    wandb_run_name: str | None = None
    """W&B run name; null: the output folder's name."""

    progress: bool = True
    """Show a progress bar with ETA on the console."""

    def validate(self) -> None:
        _require(self.every >= 1, "every", f"must be >= 1, got {self.every}")
        _require(self.probe_every >= 0, "probe_every", f"must be >= 0, got {self.probe_every}")


@dataclass
class CheckpointConfig(_Section):
    """Resumable checkpoints under ``<output_dir>/checkpoints/step-XXXXXXX``."""

    every: int = 0
    """Save a checkpoint every N optimizer steps; 0: only the final model is saved."""

    keep_last: int = 2
    """How many complete checkpoints to keep (older ones are deleted)."""

    def validate(self) -> None:
        _require(self.every >= 0, "every", f"must be >= 0, got {self.every}")
        _require(self.keep_last >= 1, "keep_last", f"must be >= 1, got {self.keep_last}")


@dataclass
class Config(_Section):
    """A training run. ``Config()`` is the default job of ``asft train``."""

    output_dir: str | None = None
    """Folder for config.yaml, metrics.jsonl, checkpoints/ and the final model/;
    null: ``runs/<loss>-<date>-<time>``."""

    seed: int = 42
    """Seed of the data order, the held-out probe and all random number generators."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy model."""

    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA adapters (off by default)."""

    data: DataConfig = field(default_factory=DataConfig)
    """The preference pairs."""

    loss: LossConfig = field(default_factory=LossConfig)
    """The objective and its hyperparameters."""

    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    """The reference model, for losses that need one."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer and schedule."""

    training: TrainingConfig = field(default_factory=TrainingConfig)
    """Steps, batch and precision."""

    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Metrics and progress."""

    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Resumable checkpoints."""

    def validate(self) -> None:
        _require(0 <= self.seed < 2**63, "seed", f"must be in [0, 2**63), got {self.seed}")
        _require(self.output_dir is None or bool(self.output_dir.strip()), "output_dir",
                 "must not be empty")
        from asft.losses import LOSSES

        if LOSSES[self.loss.name].needs_reference:
            strategy = self.reference.resolved(self.lora.enabled)
            if strategy == "adapter" and not self.lora.enabled:
                raise FieldError("reference.strategy",
                                 "'adapter' needs lora.enabled: true (the reference is the base "
                                 "model with the adapter switched off); use 'copy' or 'cache'")
            if strategy == "adapter" and self.reference.model is not None:
                raise FieldError("reference.model",
                                 "strategy 'adapter' uses the policy's base weights; "
                                 "a separate reference model needs 'copy' or 'cache'")


# ---------------------------------------------------------------------------------------------
# Typed conversion


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of names to {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping (section)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


_REPR = reprlib.Repr()  # keyword arguments need Python 3.12
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 40, 40, 40


def _show(value: Any) -> str:
    """A short repr: bounded even for huge or self-similar values (YAML alias bombs)."""
    return _REPR.repr(value)


def _coerce(value: Any, tp: Any, name: str) -> Any:
    """``value`` checked against (and, for nested sections and float fields, converted to) ``tp``."""
    origin = typing.get_origin(tp)
    bad = FieldError(name, f"expected {_type_name(tp)}, got {type(value).__name__} {_show(value)}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except FieldError:
                continue
        raise bad
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str) and value in choices:
            return value
        raise FieldError(name, f"{_show(value)} is not one of {', '.join(map(repr, choices))}"
                               f"{suggest(value, choices) if isinstance(value, str) else ''}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        # PyYAML reads 1e-5 (no dot) as a string; accept any string that is a plain number.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise FieldError(name, f"must be a finite number, got {value}")
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise bad
        _, item = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise FieldError(name, f"keys must be strings, got {_show(k)}")
            out[k] = _coerce(v, item, f"{name}.{k}")
        return out
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return _build(tp, value, name)
        raise bad
    raise TypeError(f"config field {name} has an unsupported type {tp!r}")


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """An instance of config dataclass ``cls`` from a mapping; errors name the dotted field."""
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if not isinstance(key, str) or key not in names:
            where = f"{prefix}." if prefix else ""
            raise FieldError(f"{where}{key}", f"unknown key{suggest(key, names)}; valid keys "
                                              f"{'of ' + prefix if prefix else 'at the top level'}: "
                                              f"{', '.join(names)}")
    try:
        return cls(**data)
    except FieldError as err:
        if prefix:
            raise FieldError(f"{prefix}.{err.field_name}", err.message) from None
        raise


def from_dict(data: Mapping[str, Any], cls: type | None = None) -> Any:
    """A validated :class:`Config` (or ``cls``) from a plain nested mapping."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    try:
        return _build(cls or Config, data)
    except FieldError as err:
        raise ConfigError(f"{err.field_name}: {err.message}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts, lists and scalars (what YAML holds)."""
    return dataclasses.asdict(cfg)


# ---------------------------------------------------------------------------------------------
# YAML


def _check_depth(node: yaml.Node, source: str) -> None:
    # Each node is visited once: YAML aliases make the tree a DAG whose paths can be
    # exponentially many ("billion laughs"), and each node's depth only needs checking once.
    stack = [(node, 1)]
    seen: set[int] = set()
    while stack:
        n, depth = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if depth > MAX_NESTING:
            raise ConfigError(f"{source}:{n.start_mark.line + 1}: nesting deeper than "
                              f"{MAX_NESTING} levels; a config has at most 3")
        if isinstance(n, yaml.MappingNode):
            stack.extend((c, depth + 1) for pair in n.value for c in pair)
        elif isinstance(n, yaml.SequenceNode):
            stack.extend((c, depth + 1) for c in n.value)


def _key_lines(node: yaml.Node) -> dict[str, int]:
    """Dotted key path -> 1-based line of that key in the YAML source (aliases not followed)."""
    lines: dict[str, int] = {}
    stack: list[tuple[yaml.Node, str]] = [(node, "")]
    seen: set[int] = set()
    while stack:
        n, prefix = stack.pop()
        if id(n) in seen or not isinstance(n, yaml.MappingNode):
            continue
        seen.add(id(n))
        for key, value in n.value:
            if isinstance(key, yaml.ScalarNode):
                path = f"{prefix}{key.value}"
                lines.setdefault(path, key.start_mark.line + 1)
                stack.append((value, path + "."))
    return lines


def _line_of(field_name: str, lines: Mapping[str, int]) -> int | None:
    """The line of ``field_name`` or of its nearest enclosing key present in the file."""
    parts = field_name.replace("[", ".").split(".")
    while parts:
        line = lines.get(".".join(parts))
        if line is not None:
            return line
        parts.pop()
    return None


def parse_yaml(text: str | bytes, source: str = "<config>") -> tuple[dict[str, Any], dict[str, int]]:
    """The mapping in a YAML document and the line of every key; ConfigError on bad input."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: {len(text)} bytes; a config file is at most {MAX_CONFIG_BYTES}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{source}: not UTF-8 text (byte {err.start})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return {}, {}
        _check_depth(node, source)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {_clip(str(err), 300)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nesting too deep") from None
    except (ValueError, TypeError, OverflowError) as err:
        # values PyYAML parses but Python cannot hold: a 5000-digit integer, February 30th
        raise ConfigError(f"{source}: invalid YAML value: {_clip(str(err), 300)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a mapping of sections "
                          f"(model:, data:, loss:, ...), got {type(data).__name__}")
    return data, _key_lines(node)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=1e-5"`` -> ``("optim.lr", 1e-5)``; the value is read as a YAML scalar or list."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise ConfigError(f"override {item!r}: expected KEY=VALUE with a dotted key, "
                          "e.g. --set optim.lr=1e-5")
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"override {key}: value too long")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError):
        value = raw  # not YAML: taken as a plain string, which the field's type check judges
    return key, value


def load_config(path: str | Path | None = None, overrides: Iterable[str | tuple[str, Any]] = ()) -> Config:
    """The validated config of a YAML file (None: the built-in default job) plus overrides.

    ``overrides`` are ``"dotted.key=value"`` strings or ``(dotted_key, value)`` pairs, applied in
    order after the file. Errors name the file, the line and the field.
    """
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            raw = Path(path).read_bytes()
        except OSError as err:
            raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from None
        data, lines = parse_yaml(raw, source)
    override_keys: dict[str, str] = {}
    for item in overrides:
        key, value = parse_override(item) if isinstance(item, str) else item
        _set_path(data, key, value)
        override_keys[key] = f"{key}={value!r}" if not isinstance(item, str) else item
    try:
        return _build(Config, data)
    except FieldError as err:
        for key, text in override_keys.items():
            f = err.field_name
            if f == key or f.startswith(key + ".") or key.startswith(f + "."):
                raise ConfigError(f"override {text}: {err.message}") from None
        line = _line_of(err.field_name, lines)
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: {err.field_name}: {err.message}") from None


# ---------------------------------------------------------------------------------------------
# Field documentation and the resolved YAML


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it in the class body (dedented, one line)."""
    source = textwrap.dedent(inspect.getsource(cls))
    body = ast.parse(source).body[0].body
    docs: dict[str, str] = {}
    for stmt, nxt in itertools.pairwise(body):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def _dump_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def to_yaml(cfg: Config) -> str:
    """The config as YAML with every field's docstring as a comment above it."""
    out = ["# asft training config (resolved; load it with `asft train --config {this file}`)"]

    def emit(obj: Any, indent: str) -> None:
        docs = field_docs(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            for line in textwrap.wrap(docs.get(f.name, "").replace("``", "`"), 96 - len(indent),
                                      break_on_hyphens=False):
                out.append(f"{indent}# {line}")
            if dataclasses.is_dataclass(value):
                out.append(f"{indent}{f.name}:")
                emit(value, indent + "  ")
            else:
                out.append(f"{indent}{f.name}: {_dump_value(value)}")

    emit(cfg, "")
    return "\n".join(out) + "\n"


def describe() -> str:
    """Every field of every section with its type, default and docstring (``--help-config``)."""
    lines: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        hints = _hints(cls)
        docs = field_docs(cls)
        default = cls()
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                lines.append(f"\n{prefix}{f.name}:  {docs.get(f.name, '')}")
                walk(tp, f"{prefix}{f.name}.")
            else:
                lines.append(f"  {prefix}{f.name} = {_dump_value(getattr(default, f.name))}"
                             f"  ({_type_name(tp)})")
                lines.extend("      " + w for w in textwrap.wrap(docs.get(f.name, "").replace("``", "`"), 88,
                                                             break_on_hyphens=False))

    walk(Config, "")
    return "\n".join(lines).strip() + "\n"
