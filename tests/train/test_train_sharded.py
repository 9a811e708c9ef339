"""distributed.strategy fsdp: FSDP2 applied by asft on 2 CPU processes (torchrun, gloo)
trains like DDP, resumes exactly after a kill, saves one consolidated model, and refuses what
it cannot do yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from safetensors.torch import load_file

from asft.model.load import resolve_model
from asft.train import sharding

SETTINGS = [
    "model.name=tiny-llama", "model.dtype=fp32", "training.precision=fp32",
    "data.source=builtin:mixed", "data.limit=40", "data.probe_size=6",
    "training.max_steps=4", "training.batch_size=2", "optim.lr=1e-3", "logging.every=1",
    "logging.probe_every=2", "logging.progress=false", "logging.tensorboard=false",
]


def _torchrun(out: Path, *settings: str) -> subprocess.CompletedProcess:
    sets = [x for s in [*SETTINGS, *settings] for x in ("--set", s)]
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "asft.cli", "train", *sets, "--output-dir", str(out)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)


class Run(NamedTuple):
    out: Path
    stderr: str


DPO_CACHE = ["loss.name=dpo", "reference.strategy=cache"]


@pytest.fixture(scope="module")
def fsdp_cache(tmp_path_factory) -> Run:
    """DPO with the cached reference under fsdp: the fsdp side of the fsdp-vs-ddp test and
    the cache side of the copy-vs-cache test (one run for both)."""
    out = tmp_path_factory.mktemp("fsdp-cache") / "run"
    proc = _torchrun(out, "distributed.strategy=fsdp", *DPO_CACHE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Run(out, proc.stderr)


def _trained_alike(ddp_run: Path, fsdp_run: Path) -> tuple[dict, dict]:
    """Assert that two runs of SETTINGS under ddp and fsdp logged the same metrics at steps 0-4
    (to 1e-4: the same sums, reduced in another order, reduce-scatter vs all-reduce) and saved
    the same weights under the same names (to 1e-5); return both final state dicts."""
    records = [[json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
               for run in (ddp_run, fsdp_run)]
    assert [r["step"] for r in records[0]] == [r["step"] for r in records[1]] == [0, 1, 2, 3, 4]
    for a, b in zip(*records):
        for key in a:
            if not key.startswith("throughput/") and key != "time":
                assert a[key] == pytest.approx(b[key], abs=1e-4), (a["step"], key)
    ddp, fsdp = (load_file(run / "model" / "model.safetensors") for run in (ddp_run, fsdp_run))
    assert fsdp.keys() == ddp.keys()
    for key, value in ddp.items():
        assert torch.allclose(value, fsdp[key], atol=1e-5), key
    return ddp, fsdp


@pytest.mark.slow
def test_fsdp_trains_like_ddp_and_saves_one_consolidated_model(fsdp_cache, tmp_path):
    """The same DPO run (reference log-probs cached before the first step, by the scorer of
    each strategy) under ddp and under fsdp: the same metrics and final weights."""
    from transformers import AutoModelForCausalLM

    proc = _torchrun(tmp_path / "ddp", "distributed.strategy=ddp", *DPO_CACHE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {"ddp": tmp_path / "ddp", "fsdp": fsdp_cache.out}
    assert "distributed: fsdp (FSDP2 over 2 processes: 2 decoder layers" in fsdp_cache.stderr
    ddp, fsdp = _trained_alike(runs["ddp"], runs["fsdp"])
    # the tied LM head is written once, as ddp writes it (the gathered state holds it twice)
    assert "lm_head.weight" not in fsdp
    # training moved the weights (lr 1e-3), so agreeing is not agreeing on the start
    start = load_file(Path(resolve_model("tiny-llama")) / "model.safetensors")
    assert max((fsdp[k] - start[k]).abs().max().item() for k in start) > 1e-3
    loaded = AutoModelForCausalLM.from_pretrained(runs["fsdp"] / "model")
    assert torch.allclose(loaded.model.embed_tokens.weight, ddp["model.embed_tokens.weight"],
                          atol=1e-5)


@pytest.mark.slow
def test_fsdp_copy_reference_is_sharded_and_scores_as_the_cache(fsdp_cache, tmp_path):
    """DPO under fsdp with a frozen copy of the reference (sharded too) trains as with the
    cache, which is scored by the policy before its first step: the same model both ways."""
    proc = _torchrun(tmp_path / "copy", "distributed.strategy=fsdp", "loss.name=dpo",
                     "reference.strategy=copy")
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = {"copy": proc.stderr.replace("\n", " ")}  # the console wraps long lines
    runs = {strategy: [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
            for strategy, out in (("copy", tmp_path / "copy"), ("cache", fsdp_cache.out))}
    assert "sharded (FSDP2) over 2 processes" in logs["copy"], logs["copy"][-2000:]
    assert len(runs["copy"]) == len(runs["cache"]) == 5
    for a, b in zip(runs["copy"], runs["cache"]):
        for key in ("loss", "logps/chosen", "rewards/margin"):
            if key in a:
                assert a[key] == pytest.approx(b[key], abs=1e-4), (a["step"], key)
    assert any(abs(r.get("rewards/margin", 0.0)) > 1e-4 for r in runs["copy"][1:])


# The contract run is shortened from the recipe's 60 steps to 12: every step after the resume
# (step 2) is the same kind of step, and 12 keep what 60 exercised: the step-10 logging window
# spans the kill and the resume (its running sums come from the checkpoint), checkpoints every
# 2 steps are pruned to the last 2, and a final window and probe follow.
CONTRACT_STEPS = 12


def _contract(out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command the issue names, verbatim but for the output folder and max_steps."""
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "smoke.yaml"
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "asft.cli", "train", "--config", str(recipe), "--set", "distributed.strategy=fsdp",
         "--set", "checkpoint.every=2", "--set", f"training.max_steps={CONTRACT_STEPS}",
         "-o", str(out), *extra],
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, capture_output=True,
        text=True, timeout=300)


@pytest.mark.slow
def test_fsdp_compiles_each_layer_and_trains_as_uncompiled(fsdp_cache, tmp_path):
    """training.compile under fsdp, with gradient checkpointing (the usual setting of a large
    model): each decoder layer compiled before FSDP2 wraps it, trains as the uncompiled fsdp
    run (same metrics, same final weights). aot_eager: dynamo's and AOTAutograd's graphs
    without inductor's minutes of C++ code generation."""
    out = tmp_path / "compiled"
    proc = _torchrun(out, "distributed.strategy=fsdp", *DPO_CACHE, "training.compile=true",
                     "training.compile_backend=aot_eager", "model.gradient_checkpointing=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = " ".join(proc.stderr.split())  # the console wraps long lines
    assert "torch.compile of each of the 2 decoder layers (aot_eager" in log, log[-2000:]
    assert "view tensor" not in log  # FSDP2's warning about the scorer's outputs
    _trained_alike(fsdp_cache.out, out)
    # the two layers share their graphs: one per variant of the call (with or without grad,
    # the shared layout's float mask or the plain check's bool one, one row or several),
    # not one per layer and step
    graphs = json.loads((out / "summary.json").read_text())["compiled_graphs"]
    assert 1 <= graphs <= 8, graphs


@pytest.mark.slow
def test_fsdp_resumes_exactly_after_a_kill(tmp_path):
    """The contract: the smoke recipe under fsdp with a checkpoint every 2 steps, killed at
    step 4 (SIGKILL) and resumed, ends with the uninterrupted run's weights and metrics,
    bitwise; no pickle file is written."""
    full = _contract(tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _contract(tmp_path / "run", env={"ASFT_FAULTS": "train.step@4=kill"})
    assert killed.returncode != 0
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()
            if not p.name.startswith(".")] == ["step-0000002"]
    _assert_sharded_per_rank(tmp_path / "run" / "checkpoints" / "step-0000002")
    resumed = _contract(tmp_path / "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr and "(step 2)" in resumed.stderr
    a = load_file(tmp_path / "full" / "model" / "model.safetensors")
    b = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # the recipe logs every 10 steps and probes at step 0 and at the end
    assert [r["step"] for r in ra] == [0, 10, CONTRACT_STEPS]
    strip = [{k: v for k, v in r.items() if k != "time" and not k.startswith("throughput/")}
             for r in ra + rb]
    assert strip[:len(ra)] == strip[len(ra):]
    pickled = [p for p in tmp_path.rglob("*") if p.suffix in (".pt", ".bin", ".pkl", ".distcp")
               or p.name == ".metadata"]
    assert not pickled


def _assert_sharded_per_rank(folder: Path) -> None:
    """Weights and AdamW state as one safetensors shard file per process (DCP), each holding
    part of every sharded tensor; no whole-state file; the manifest covers the shards."""
    from asft.train import checkpoint as ckpt

    assert ckpt.verify(folder) is None and ckpt.layout_of(folder) == "sharded"
    assert not (folder / "model.safetensors").exists()
    manifest = json.loads((folder / ckpt.MARKER).read_text())["files"]
    for sub in ("model", "optimizer"):
        files = sorted(p.name for p in (folder / sub).iterdir())
        assert files == [f"shard-0000{r}-model-00001-of-00001.safetensors" for r in (1, 2)], files
        assert all(f"{sub}/{f}" in manifest for f in files)
    parts = [load_file(folder / "model" / f"shard-0000{r}-model-00001-of-00001.safetensors")
             for r in (1, 2)]
    whole = load_file(Path(resolve_model("tiny-llama")) / "model.safetensors")
    key = "model.model.layers.0.mlp.up_proj.weight"
    assert parts[0][key].shape[0] + parts[1][key].shape[0] == whole[key.removeprefix("model.")].shape[0]


def test_strategy_resolution_and_refusals():
    from asft.config import load_config

    cpu = torch.device("cpu")
    assert sharding.resolve("fsdp", 1, 10, cpu) == "ddp"  # one process: nothing to shard over
    assert sharding.resolve("auto", 2, 10**12, cpu) == "ddp"  # CPU: auto never shards
    assert sharding.resolve("fsdp", 2, 10, cpu) == "fsdp"
    ok = load_config(None, ["distributed.strategy=fsdp", "checkpoint.every=2"])
    assert sharding.refusal(ok) is None
    assert "LoRA" in sharding.refusal(load_config(None, ["lora.enabled=true"]))
    copy = load_config(None, ["loss.name=dpo", "reference.strategy=copy"])
    assert sharding.refusal(copy) is None  # the copy is sharded too
    with pytest.raises(Exception, match="strategy"):
        load_config(None, ["distributed.strategy=zero3"])


def test_decoder_layers_are_the_models_no_split_blocks(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    layers = sharding.decoder_layers(model)
    assert [type(m).__name__ for m in layers] == ["LlamaDecoderLayer"] * model.config.num_hidden_layers
    with pytest.raises(ValueError, match="_no_split_modules"):
        sharding.decoder_layers(torch.nn.Linear(2, 2))


def test_accelerate_engines_are_refused_with_the_setting_to_use():
    from asft.train.setup import engine_refusal

    assert "distributed.strategy: fsdp" in engine_refusal("DEEPSPEED")
    assert "distributed.strategy: fsdp" in engine_refusal("FSDP")
    assert engine_refusal("MULTI_CPU") is None and engine_refusal("MULTI_GPU") is None


@pytest.mark.slow
def test_sharded_smoke_recipe_trains_and_resumes_in_bf16(tmp_path):
    """recipes/smoke-fsdp.yaml (the paper recipes' set-up, tiny): fp32 master weights sharded,
    bf16 compute, sharded checkpoints; killed after step 8 and resumed from step 6, its final
    fp32 weights equal the uninterrupted run's; the final folder loads with transformers."""
    from transformers import AutoModelForCausalLM

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "smoke-fsdp.yaml"

    def run(out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
             "-m", "asft.cli", "train", "--config", str(recipe), "--set", "logging.progress=false",
             "-o", str(out), *extra],
            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, capture_output=True,
            text=True, timeout=300)

    full = run(tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]
    assert "fp32 master weights sharded, bf16 compute" in full.stderr.replace("\n", " ")
    assert run(tmp_path / "run", env={"ASFT_FAULTS": "train.step@8=kill"}).returncode != 0
    _assert_sharded_per_rank(tmp_path / "run" / "checkpoints" / "step-0000006")
    # one process cannot continue a two-process run: the data order follows the global batch
    alone = subprocess.run([sys.executable, "-m", "asft.cli", "train", "--config", str(recipe),
                            "--set", "logging.progress=false", "-o", str(tmp_path / "run"),
                            "--resume"], capture_output=True, text=True, timeout=300)
    assert alone.returncode != 0
    assert "global batch of 8 pairs (2 process(es)), this run has 4" in alone.stderr.replace(
        "\n", ""), alone.stderr[-2000:]
    resumed = run(tmp_path / "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_file(tmp_path / "full" / "model" / "model.safetensors")
    b = load_file(tmp_path / "run" / "model" / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in a.values())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    assert torch.equal(model.model.norm.weight.detach(), b["model.norm.weight"])


@pytest.mark.slow
def test_an_untied_lm_head_is_its_own_unit_and_trains_like_ddp(tmp_path):
    """A model whose LM head is not tied to the embeddings: under fsdp the head is sharded on its
    own, and the chunked head runs through the unit's hooks (a DTensor shard otherwise, which
    the head's matmul refuses). Its gradient reaches FSDP2's reduce-scatter: the metrics and
    every final weight, the head's included, equal ddp's."""
    from asft.model.saving import save_complete
    from asft.model.tiny import build_model, build_tokenizer

    folder = tmp_path / "untied"
    tok = build_tokenizer()
    model = build_model(len(tok), tie=False, seed=3)
    model.config.eos_token_id = model.generation_config.eos_token_id = tok.eos_token_id
    save_complete(model, tok, folder)
    runs = {}
    for strategy in ("ddp", "fsdp"):
        proc = _torchrun(tmp_path / strategy, f"distributed.strategy={strategy}", f"model.name={folder}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[strategy] = tmp_path / strategy
    assert "2 decoder layers, the LM head, then the whole model" in " ".join(proc.stderr.split()), \
        proc.stderr[:1500]
    ddp, _ = _trained_alike(runs["ddp"], runs["fsdp"])
    assert "lm_head.weight" in ddp
    start = model.state_dict()["lm_head.weight"]
    assert (ddp["lm_head.weight"] - start).abs().max() > 1e-3  # the head trained
