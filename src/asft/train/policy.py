"""The policy model: built as configured, its trainable weights moved in and out of
checkpoints, and saved at the end in Hugging Face format."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from asft import atomic
from asft.config import Config, ConfigError
from asft.train import checkpoint as ckpt
from asft.train import faults
from asft.train.rundir import MODEL_DIR
from asft.train.sharding import full_state_dict


def enable_checkpointing(model: Any) -> None:
    """Gradient (activation) checkpointing on every decoder layer, non-reentrant, as asft
    trains: that variant works with frozen inputs (LoRA) without forcing requires_grad on
    the embeddings. transformers >= 5.20 renamed the method; older ones keep the old name."""
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False


def build_model(cfg: Config, log: Callable[[str], None], device_type: str = "cpu") -> Any:
    """The policy: loaded (with the attention kernel ``model.attn_implementation`` means on
    ``device_type``: :func:`asft.model.load.training_attention`), gradient checkpointing and
    LoRA applied as configured."""
    from asft.model.load import load_model, training_attention
    from asft.model.lora import apply_lora, trainable_summary

    kernel = training_attention(cfg.model.name, cfg.model.attn_implementation, device_type,
                                cfg.model.trust_remote_code)
    if kernel != cfg.model.attn_implementation:
        log(f"model: attention {kernel} (model.attn_implementation auto, on {device_type})")
    model = load_model(cfg.model.name, dtype=cfg.model.dtype,
                       trust_remote_code=cfg.model.trust_remote_code, attn_implementation=kernel)
    if cfg.model.gradient_checkpointing:
        enable_checkpointing(model)
    if cfg.lora.enabled:
        try:
            model = apply_lora(model, cfg.lora)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    log(f"model: {cfg.model.name} ({cfg.model.dtype}), {trainable_summary(model)}")
    return model


def trainable_names(module: torch.nn.Module) -> list[str]:
    return [n for n, p in module.named_parameters() if p.requires_grad]


def check_trainable(module: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Raise unless ``state`` names exactly the trainable parameters of ``module``."""
    expected = set(trainable_names(module))
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ckpt.CheckpointError(f"{where}: the saved weights do not fit this model "
                                   f"(missing {missing[:3]}, unexpected {extra[:3]})")


def load_trainable(module: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    params = dict(module.named_parameters())
    check_trainable(module, state, where)
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def save_final_model(accelerator: Any, scorer: Any, tokenizer: Any, cfg: Config, out: Path) -> Path:
    """The trained model in Hugging Face format (safetensors, config, tokenizer) at out/model.

    LoRA adapters are merged into the weights when ``lora.merge_on_save`` (the default), so
    ``AutoModelForCausalLM.from_pretrained`` loads the result; otherwise the adapter alone is
    saved (load it with peft). Written aside and renamed into place.
    """
    from asft.model.lora import is_peft, merged

    state = full_state_dict(accelerator, scorer)  # a collective under fsdp
    dest = out / MODEL_DIR
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(scorer).model
        with atomic.folder(dest, tmp=out / f".tmp-{MODEL_DIR}") as tmp:
            try:
                if is_peft(model) and cfg.lora.merge_on_save:
                    model = merged(model)
                    model.save_pretrained(tmp)
                elif is_peft(model):
                    model.save_pretrained(tmp)
                else:
                    state = {k.removeprefix("model."): v for k, v in state.items()}
                    model.save_pretrained(tmp, state_dict=without_tied_copies(model, state))
            except SafetensorError as err:  # a full disk, reported by safetensors' Rust writer
                raise ckpt.as_os_error(err, tmp) from None
            if cfg.model.gradient_checkpointing:
                cfg_file = tmp / "config.json"
                data = json.loads(cfg_file.read_text())
                data["use_cache"] = True
                cfg_file.write_text(json.dumps(data, indent=2) + "\n")
            tokenizer.save_pretrained(tmp)
            faults.hit("final.before_rename")
    accelerator.wait_for_everyone()
    return dest


def without_tied_copies(model: Any, state: dict) -> dict:
    """``state`` without the second name of a tied weight (an LM head tied to the embeddings):
    a state dict gathered from FSDP2 holds it twice as separate tensors, which
    ``save_pretrained`` would write twice; the model's own state dict keeps the first name."""
    names: dict[int, str] = {}
    drop = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in names:
            drop.add(name)
        else:
            names[id(param)] = name
    return {k: v for k, v in state.items() if k not in drop}
