"""Configuration: nested dataclasses with documented fields, YAML in, resolved YAML out.

:mod:`asft.config.sections` holds the sections of a run (model, data, loss, reference, optim,
training, logging, checkpoint, distributed, hub); :mod:`asft.config.schema` the machinery that
reads them strictly (file:line errors with "did you mean") and writes the commented
``config.yaml``.
"""

from asft.config.online import OnlineConfig
from asft.config.schema import (
    MAX_CONFIG_BYTES,
    ConfigError,
    FieldError,
    field_docs,
    parse_override,
    parse_yaml,
    to_dict,
)
from asft.config.sections import (
    CheckpointConfig,
    Config,
    DataConfig,
    DistributedConfig,
    HubConfig,
    LoggingConfig,
    LoraConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    ReferenceConfig,
    StageConfig,
    TrainingConfig,
    describe,
    from_dict,
    load_config,
    stage_loss,
    to_yaml,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "CheckpointConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "DistributedConfig",
    "FieldError",
    "HubConfig",
    "LoggingConfig",
    "LoraConfig",
    "LossConfig",
    "ModelConfig",
    "OnlineConfig",
    "OptimConfig",
    "ReferenceConfig",
    "StageConfig",
    "TrainingConfig",
    "describe",
    "field_docs",
    "from_dict",
    "load_config",
    "parse_override",
    "parse_yaml",
    "stage_loss",
    "to_dict",
    "to_yaml",
]
