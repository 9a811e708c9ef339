#!/usr/bin/env bash
# The sharded path's GPU check (issue 13), for a machine with CUDA GPUs; never run by CI (the
# machine asft is built on has none, so this path is untested there). One short script, as
# device time is scarce:
#   bash scripts/gpu_check_sharded.sh [OUT]     (results under OUT, default runs/gpu-check)
# With 2+ GPUs: recipes/smoke-fsdp.yaml under torchrun on every GPU (NCCL, FSDP2, bf16 compute
# over fp32 master weights, sharded checkpoints), killed after step 8 and resumed; the resumed
# final weights are compared with the uninterrupted run's (bf16 kernels on GPU may not be
# bitwise deterministic: the max difference is printed, not asserted equal). Then the same with
# distributed.cpu_offload=true, and once with training.compile (inductor). With 1 GPU, FSDP2 has nothing to shard over: the recipe runs
# as one process on the GPU (bf16 autocast path) and the NCCL check is reported as not run.
set -euo pipefail
OUT=${1:-runs/gpu-check}
PY=${PY:-.venv/bin/python}
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
echo "GPUs: $NGPU"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
rm -rf "$OUT"; mkdir -p "$OUT"
launch() {  # launch OUT_SUBDIR [args...]
  local out=$1; shift
  if [ "$NGPU" -ge 2 ]; then
    $PY -m torch.distributed.run --standalone --nproc_per_node "$NGPU" -m asft.cli train \
      --config recipes/smoke-fsdp.yaml --set logging.progress=false -o "$OUT/$out" "$@"
  else
    $PY -m asft.cli train --config recipes/smoke-fsdp.yaml --set logging.progress=false \
      -o "$OUT/$out" "$@"
  fi
}
compare() {
  $PY - "$OUT/$1/model/model.safetensors" "$OUT/$2/model/model.safetensors" <<'PYEOF'
import sys
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
assert a.keys() == b.keys()
print("max |resumed - uninterrupted| =", max((a[k] - b[k]).abs().max().item() for k in a))
PYEOF
}
time launch full 2>&1 | tail -12
ASFT_FAULTS=train.step@8=kill launch killed 2>&1 | tail -3 || true
time launch killed --resume 2>&1 | tail -6
compare full killed
# training.compile (inductor): each decoder layer compiled before FSDP2 wraps it under fsdp
# (the whole scorer with 1 GPU); prints the graphs made and how far the weights land from eager
time launch compiled --set training.compile=true 2>&1 | tail -4
$PY -c "import json,sys; print('compiled_graphs:', json.load(open(sys.argv[1]))['compiled_graphs'])" \
  "$OUT/compiled/summary.json"
compare full compiled
if [ "$NGPU" -ge 2 ]; then
  time launch offload --set distributed.cpu_offload=true 2>&1 | tail -6
  compare full offload
else
  echo "NCCL/FSDP2 check not run: fewer than 2 GPUs, nothing to shard over"
fi
find "$OUT" -name "*.distcp" -o -name ".metadata" -o -name "*.pt" | sed 's/^/pickle file: /'
