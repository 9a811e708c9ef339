"""Training configuration: nested dataclasses with documented fields, YAML in, resolved YAML out.

Every field carries a docstring (the string literal under it), shown by ``asft train
--help-config`` and written as comments into the resolved ``config.yaml`` of each run.
``Config()`` with no arguments is the default job that ``asft train`` runs: ASFT on the
built-in task with the packaged SmolLM2-135M-Instruct.

Loading is strict: an unknown key or a value of the wrong type is a :class:`ConfigError` that
names the file, the line and the field, with a "did you mean" suggestion. Validation runs in
``__post_init__``, so a config built in Python is checked exactly like one read from YAML,
and all of it happens before any model is loaded. The machinery is in :mod:`asft.config.schema`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asft.config import schema
from asft.config.data import DataConfig
from asft.config.online import OnlineConfig
from asft.config.schema import (
    ConfigError,
    FieldError,
    Section,
    build,
    line_of,
    parse_override,
    parse_yaml,
    require,
    set_path,
)

# the public names are re-exported, with __all__, by asft/config/__init__.py


@dataclass
class ModelConfig(Section):
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

    attn_implementation: Literal["auto", "sdpa", "eager", "flex_attention",
                                 "flash_attention_2"] = "auto"
    """The attention kernel, passed to transformers. ``auto``: for training on a CUDA GPU
    ``flex_attention`` where the architecture has it (back to ``sdpa``, said in one line, if
    it fails there), else ``sdpa``; for ``asft eval`` and ``asft mt-bench`` (which generate)
    ``sdpa``. Every kernel but FA2 runs asft's shared-prompt packed layout: sdpa and eager
    with a dense 4D mask, flex with a BlockMask that skips the blocks of pairs that never see
    each other. ``flash_attention_2`` takes no mask: it trains on the plain layout packed
    padding-free (said at start-up). flex and FA2 need a CUDA GPU to train (FlexAttention has
    no backward on CPU; FA2 is CUDA only). The GPU paths are untested: no GPU on the machine
    asft is built on; flex's forward is tested on the CPU."""

    def validate(self) -> None:
        require(bool(self.name.strip()), "name", "must not be empty")


@dataclass
class LoraConfig(Section):
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
        require(1 <= self.r <= 65536, "r", f"must be in [1, 65536], got {self.r}")
        require(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")
        require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(bool(self.target_modules), "target_modules", "must not be empty")


@dataclass
class LossConfig(Section):
    """The training objective, by its name in the loss registry (``asft losses`` lists them)."""

    name: str = "asft"
    """Registered loss name (``asft losses`` shows each one's hyperparameters)."""

    hparams: dict[str, float] = field(default_factory=dict)
    """Overrides of the loss's hyperparameters (e.g. ``{lam: 1.0, beta: 0.1}``); the written
    config.yaml lists every hyperparameter with the value used."""

    @classmethod
    def field_choices(cls) -> dict[str, list[str]]:
        from asft.losses import LOSSES

        return {"name": list(LOSSES)}

    def validate(self) -> None:
        from asft.losses import LossArgumentError, resolve_hparams

        # The registry is the one judge of names and values; here its error only gains the
        # field it is about, so that the loader can point at that line of the file.
        try:
            self.hparams = resolve_hparams(self.name, **self.hparams)
        except LossArgumentError as err:
            where = "name" if err.hparam is None else f"hparams.{err.hparam}"
            raise FieldError(where, str(err)) from None


@dataclass
class ReferenceConfig(Section):
    """The reference model, built only for losses that need one (``asft losses`` says which)."""

    strategy: Literal["auto", "copy", "adapter", "cache"] = "auto"
    """``copy``: a frozen copy of the model; ``adapter``: the LoRA base weights with the adapter
    disabled (no extra memory); ``cache``: reference log-probs computed once before training and
    stored in the output folder; ``auto``: adapter with LoRA, cache otherwise."""

    model: str | None = None
    """Reference model name when it differs from the policy's starting point; None: the same."""

    models: list[str] = field(default_factory=list)
    """Further reference models, for losses that combine several (``mrpo``, arXiv 2405.16388):
    their log-probs are precomputed before training, one model in memory at a time, and stored
    in the output folder; the reference above stays the primary one."""

    def resolved(self, lora_enabled: bool) -> str:
        """The concrete strategy that ``auto`` stands for."""
        if self.strategy != "auto":
            return self.strategy
        return "adapter" if lora_enabled and self.model is None else "cache"


@dataclass
class OptimConfig(Section):
    """AdamW and the learning-rate schedule."""

    lr: float = 5e-5
    """Peak learning rate (the default suits full fine-tuning of a ~100M model for a few
    dozen steps; the ASFT paper's 7-8B runs used about 6e-6)."""

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
        require(0 < self.lr < 1, "lr", f"must be in (0, 1), got {self.lr}")
        require(0 <= self.weight_decay < 1, "weight_decay", f"must be in [0, 1), got {self.weight_decay}")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas",
                 f"must be two numbers in [0, 1), got {self.betas}")
        require(0 < self.eps < 1, "eps", f"must be in (0, 1), got {self.eps}")
        require(0 <= self.warmup_ratio < 1, "warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        require(self.warmup_steps is None or self.warmup_steps >= 0, "warmup_steps",
                 f"must be >= 0 or null, got {self.warmup_steps}")
        require(self.max_grad_norm >= 0, "max_grad_norm", f"must be >= 0, got {self.max_grad_norm}")


@dataclass
class TrainingConfig(Section):
    """Steps, batch and precision. One optimizer step sees
    ``batch_size x processes x grad_accum`` pairs (the global batch)."""

    max_steps: int | None = 60
    """Optimizer steps to run; null: ``epochs`` full passes over the data. The default job's
    60 steps of 4 pairs take a few minutes on a laptop CPU."""

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

    order: Literal["random", "sequential"] = "random"
    """Which pairs each step sees. ``random``: a fresh permutation each epoch, drawn from
    ``seed``; ``sequential``: the data's own order, every epoch (step i reads pairs
    i x global batch onwards, as TRL's ``train_sampling_strategy="sequential"`` does; use it to
    feed two trainers the same pairs in the same order). Both resume exactly."""

    compile: bool = False
    """``torch.compile`` the scorer (decoder and LM head) with dynamic shapes; the response
    tokens of each batch are padded to a few bucket counts, so a run compiles a handful of
    graphs rather than one per batch. Pays on GPUs (fused elementwise kernels) once the
    first steps have compiled; on a CPU compiling takes minutes. Under ``fsdp`` each decoder
    layer is compiled on its own (FSDP2's gathers stay between the layers' graphs, which the
    layers share) and the head runs eagerly. ``summary.json``'s ``compiled_graphs`` says how
    many graphs a run made. Tested on CPUs with ``aot_eager``; inductor on a GPU is
    untested."""

    compile_backend: str = "inductor"
    """The ``torch.compile`` backend: ``inductor`` (generated kernels), or ``aot_eager``
    (traces forward and backward into graphs but runs them op by op: for checking a run
    compiles, quickly)."""

    def validate(self) -> None:
        require(bool(self.compile_backend.strip()), "compile_backend", "must not be empty")
        require(self.max_steps is None or 1 <= self.max_steps <= 10**9, "max_steps",
                 f"must be in [1, 1e9] or null, got {self.max_steps}")
        require(1 <= self.epochs <= 10**6, "epochs", f"must be in [1, 1e6], got {self.epochs}")
        require(1 <= self.batch_size <= 1 << 16, "batch_size", f"must be in [1, 65536], got {self.batch_size}")
        require(1 <= self.grad_accum <= 1 << 16, "grad_accum", f"must be in [1, 65536], got {self.grad_accum}")


@dataclass
class LoggingConfig(Section):
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
        require(self.every >= 1, "every", f"must be >= 1, got {self.every}")
        require(self.probe_every >= 0, "probe_every", f"must be >= 0, got {self.probe_every}")


@dataclass
class CheckpointConfig(Section):
    """Resumable checkpoints under ``<output_dir>/checkpoints/step-XXXXXXX``."""

    every: int = 0
    """Save a checkpoint every N optimizer steps; 0: only the final model is saved."""

    keep_last: int = 2
    """How many complete checkpoints to keep (older ones are deleted)."""

    def validate(self) -> None:
        require(self.every >= 0, "every", f"must be >= 0, got {self.every}")
        require(self.keep_last >= 1, "keep_last", f"must be >= 1, got {self.keep_last}")


@dataclass
class DistributedConfig(Section):
    """How a multi-process run (``torchrun``, ``accelerate launch``) spreads the model."""

    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    """``ddp``: every process holds the whole model and optimizer state. ``fsdp``: FSDP2
    (torch's ``fully_shard``, applied by asft): each decoder layer, then the whole model,
    sharded over the processes; fp32 master weights and AdamW state are sharded, and
    ``training.precision: bf16-mixed`` computes in bf16 through FSDP2's mixed-precision
    policy; each process writes its own shards of the weights and optimizer state into a
    checkpoint (torch DCP, safetensors) and reads them back on resume, exactly; a ``copy``
    reference model is sharded too. LoRA is not supported under ``fsdp`` yet. ``auto``: ``fsdp`` on GPUs when the fp32 training state (16 bytes a
    parameter) would fill more than 80% of one GPU, else ``ddp``. One process never shards."""

    cpu_offload: bool = False
    """``fsdp`` only: keep the sharded parameters, gradients and optimizer state in CPU memory
    (slower; for models whose shards do not fit the GPUs)."""


# Fields whose refused value an error does not repeat: a token pasted in place of the name
# of its environment variable would otherwise reach the console and the logs.
_UNECHOED = ("hub.token_env",)
# A Hub repository id, as huggingface_hub's validate_repo_id accepts it: an optional namespace
# and a name of word characters, '-' and '.', at most 96 characters each.
_REPO_ID = re.compile(r"^(?:[\w.-]{1,96}/)?[\w.-]{1,96}$")
# What a Hub token looks like: a config names the variable that holds it, never the token.
_TOKEN = re.compile(r"^(hf_|api_org_)[A-Za-z0-9]{20,}$")


@dataclass
class HubConfig(Section):
    """Publishing the final model to the Hugging Face Hub (``asft train --push-to-hub REPO``).

    The ``asft train`` command pushes on the main process once the final model is written; a
    failed push leaves the model on disk and ``asft push RUN_DIR`` tries again."""

    repo_id: str | None = None
    """Hub repository that receives the final model and a generated model card, as
    ``user/name`` or ``org/name`` (created when missing); null: no push. The Hub token is
    looked for before training starts, so a missing one fails in seconds, not after the run."""

    private: bool = True
    """Create the repository private (the default: nothing is published by accident; make it
    public on the Hub, or set false). A repository that exists keeps its visibility."""

    token_env: str = "HF_TOKEN"
    """Name of the environment variable that holds the Hub token (write access); when it is
    unset, the token saved by ``hf auth login`` is used. The token itself never goes in a
    config, a log or the model card."""

    endpoint: str | None = None
    """Hub URL, e.g. a self-hosted Hub; null: huggingface_hub's default (``$HF_ENDPOINT``, else
    https://huggingface.co)."""

    commit_message: str = "Upload model trained with asft"
    """Message of the commit that uploads the model folder."""

    license: str | None = None
    """Licence id for the model card's metadata (e.g. ``apache-2.0``, ``llama3.1``); null: the
    base model's when asft knows it (the packaged SmolLM2's apache-2.0), else none."""

    def validate(self) -> None:
        if self.repo_id is not None:
            require(bool(_REPO_ID.match(self.repo_id)) and ".." not in self.repo_id
                    and "--" not in self.repo_id and not self.repo_id.endswith(".git"), "repo_id",
                    f"{self.repo_id!r} is not a Hub repository id; expected user/name or org/name "
                    "(letters, digits, '-', '_' and '.')")
        # said without the value: it may be the token that belongs in the variable
        require(not _TOKEN.match(self.token_env), "token_env",
                "looks like a Hub token; put the token in an environment variable and name "
                "that variable here (default HF_TOKEN)")
        require(self.token_env.isidentifier(), "token_env",
                f"must be the name of an environment variable, got {self.token_env!r}")
        require(self.endpoint is None or self.endpoint.startswith(("http://", "https://")),
                "endpoint", f"must be an http:// or https:// URL, got {self.endpoint!r}")
        require(bool(self.commit_message.strip()), "commit_message", "must not be empty")
        require(self.license is None or bool(self.license.strip()), "license",
                "must not be empty (null: none)")


_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class StageConfig(Section):
    """One stage of a staged run (``stages:``): trained from the model the previous stage
    ended with (the first from ``model.name``), with the run's settings except what the stage
    overrides. The two-stage beta-ASFT of arXiv 2502.01237: ``sft`` on the chosen responses,
    then ``asft`` with ``sft_weight: 0`` and ``beta < 1``."""

    name: str = "stage"
    """Names the stage's folder (``stages/01-<name>``) and its ``stage`` field in metrics.jsonl."""

    loss: str | None = None
    """Registered loss of this stage; null: the run's ``loss.name``."""

    hparams: dict[str, float] | None = None
    """This stage's loss hyperparameters; null: the run's ``loss.hparams`` when the stage
    keeps the run's loss, else the loss's defaults."""

    lr: float | None = None
    """Peak learning rate of this stage; null: the run's ``optim.lr``."""

    max_steps: int | None = None
    """Optimizer steps of this stage; null: ``epochs`` when set, else the run's
    ``training.max_steps``/``training.epochs``."""

    epochs: int | None = None
    """Passes over the data in this stage (used when max_steps is null)."""

    def validate(self) -> None:
        require(bool(_STAGE_NAME.match(self.name)), "name",
                f"must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or "
                f"digit (it names a folder), got {self.name!r}")
        require(self.lr is None or self.lr > 0, "lr", f"must be > 0 or null, got {self.lr}")
        require(self.max_steps is None or 1 <= self.max_steps <= 10**9, "max_steps",
                f"must be in [1, 1e9] or null, got {self.max_steps}")
        require(self.epochs is None or 1 <= self.epochs <= 10**6, "epochs",
                f"must be in [1, 1e6] or null, got {self.epochs}")


@dataclass
class Config(Section):
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

    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """Sharding over the processes of a multi-process run."""

    hub: HubConfig = field(default_factory=HubConfig)
    """Publishing the final model to the Hugging Face Hub (off by default)."""

    stages: list[StageConfig] = field(default_factory=list)
    """Stages trained one after another in one output folder, each from the previous one's
    model (see StageConfig); empty: one stage, this config itself."""

    online: OnlineConfig = field(default_factory=OnlineConfig)
    """On-policy rounds: sample, score and pair answers with the policy, then train on them
    (off by default; see OnlineConfig)."""

    def validate(self) -> None:
        require(0 <= self.seed < 2**63, "seed", f"must be in [0, 2**63), got {self.seed}")
        require(self.output_dir is None or bool(self.output_dir.strip()), "output_dir",
                 "must not be empty")
        require(not (self.online.rounds and self.stages), "online.rounds",
                "online rounds and stages do not combine: a round is already a stage of its own")
        names = [s.name for s in self.stages]
        for i, stage in enumerate(self.stages):
            require(names.index(stage.name) == i, f"stages[{i}].name",
                    f"{stage.name!r} names two stages; each needs its own name (it names a folder)")
            try:
                stage_loss(self, stage)
            except FieldError as err:
                where = "loss" if err.field_name == "name" else err.field_name
                raise FieldError(f"stages[{i}].{where}", err.message) from None
        from asft.losses import LOSSES

        self._check_references(LOSSES[self.loss.name])
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


    def _check_references(self, spec: Any) -> None:
        """At most one further reference for a loss that combines references (other losses
        ignore reference.models with a notice, so that one `asft compare` config serves every
        method; with none, MRPO has a single reference and is DPO, also with a notice)."""
        models = self.reference.models
        if spec.multi_reference and len(models) > 1:
            raise FieldError("reference.models",
                             f"loss {spec.name!r} is defined (by its authors' code) for two "
                             f"references: the primary one and one of reference.models, got {len(models)}")


def stage_loss(cfg: Config, stage: StageConfig) -> LossConfig:
    """The loss section of ``stage``: its loss and hyperparameters, resolved and checked."""
    name = stage.loss or cfg.loss.name
    if stage.hparams is not None:
        hparams = stage.hparams
    else:
        hparams = dict(cfg.loss.hparams) if name == cfg.loss.name else {}
    return LossConfig(name=name, hparams=dict(hparams))


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
        set_path(data, key, value)
        override_keys[key] = f"{key}={value!r}" if not isinstance(item, str) else item
    try:
        return build(Config, data)
    except FieldError as err:
        for key, text in override_keys.items():
            f = err.field_name
            if f == key or f.startswith(key + ".") or key.startswith(f + "."):
                if f in _UNECHOED:
                    text = f"{key}=..."
                raise ConfigError(f"override {text}: {err.message}") from None
        line = line_of(err.field_name, lines)
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: {err.field_name}: {err.message}") from None


def from_dict(data: Mapping[str, Any]) -> Config:
    """A validated :class:`Config` from a plain nested mapping."""
    return schema.from_dict(Config, data)


def to_yaml(cfg: Config) -> str:
    """The config as YAML with every field's docstring as a comment above it."""
    return schema.to_yaml(cfg, "# asft training config (resolved; load it with "
                               "`asft train --config {this file}`)")


def describe() -> str:
    """Every field of every section with its type, default and docstring (``--help-config``)."""
    return schema.describe(Config)
