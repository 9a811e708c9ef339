"""The shipped ``accelerate launch`` configs (``recipes/accelerate/``) load with accelerate's own
loader, make ``accelerate launch`` start a plain multi-GPU run, and ask for no engine that asft
refuses at start-up (accelerate's FSDP plugin, DeepSpeed): asft shards with FSDP2 itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.utils import DistributedType

from asft.train.setup import engine_refusal

LAUNCH = Path(__file__).resolve().parents[2] / "recipes" / "accelerate"
CONFIGS = sorted(LAUNCH.glob("*.yaml"))


def test_the_launch_configs_are_shipped():
    assert {p.name for p in CONFIGS} >= {"ddp.yaml", "fsdp.yaml", "fsdp-2nodes.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_launch_config_loads_and_asks_for_no_engine_asft_refuses(path):
    cfg = load_config_from_file(str(path))
    assert isinstance(cfg, ClusterConfig)
    assert cfg.distributed_type == DistributedType.MULTI_GPU
    assert engine_refusal(cfg.distributed_type.value) is None
    assert cfg.fsdp_config == {} and cfg.deepspeed_config == {}
    # asft sets the compute precision from training.precision; 'no' (quoted) leaves it to it
    assert cfg.mixed_precision == "no" and cfg.use_cpu is False
    assert cfg.num_processes % cfg.num_machines == 0 and cfg.num_processes >= 2
    if cfg.num_machines > 1:
        assert cfg.main_process_ip and cfg.main_process_port
    text = path.read_text()
    assert "distributed.strategy" in text and "accelerate launch --config_file" in text


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_accelerate_launch_reads_it_as_a_plain_multi_gpu_launch(path):
    # what `accelerate launch --config_file PATH -m asft.cli train` decides from the file
    # (its argument checks, without starting processes)
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(
        ["--config_file", str(path), "-m", "asft.cli", "train", "-c", "my.yaml"])
    args, _, _ = _validate_launch_command(args)
    assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed
    assert args.mixed_precision == "no" and args.module
    assert args.training_script == "asft.cli" and args.training_script_args == ["train", "-c", "my.yaml"]
