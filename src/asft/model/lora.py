"""LoRA adapters through peft (Hu et al., arXiv 2106.09685), and merging them for saving."""

from __future__ import annotations

from typing import Any

from asft.config import LoraConfig


def apply_lora(model: Any, cfg: LoraConfig) -> Any:
    """``model`` wrapped as a peft model with trainable adapters; base weights frozen.

    Raises ValueError naming ``lora.target_modules`` when none of them exists in the model.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets: str | list[str] = (
        "all-linear" if cfg.target_modules == ["all-linear"] else list(cfg.target_modules)
    )
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=targets, bias="none", task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, peft_cfg)
    except ValueError as err:
        names = sorted({n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n})
        raise ValueError(f"lora.target_modules {cfg.target_modules}: {err}; module names in this "
                         f"model: {', '.join(names[:30])}") from None


def is_peft(model: Any) -> bool:
    """True for a peft-wrapped model."""
    return hasattr(model, "merge_and_unload") and hasattr(model, "disable_adapter")


def merged(model: Any) -> Any:
    """The plain transformers model with the adapters merged into its weights (in place)."""
    return model.merge_and_unload()


def trainable_summary(model: Any) -> str:
    """``"1.2M of 135M parameters trainable (0.9%)"``."""
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{_human(train)} of {_human(total)} parameters trainable ({100 * train / max(total, 1):.1f}%)"


def _human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
