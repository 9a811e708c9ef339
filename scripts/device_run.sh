#!/usr/bin/env bash
# Every GPU check of this project in one command for the device tool's lent machine (one H100
# or H200, no network, bare after each start), inside its 600 s per command:
#   here:    bash scripts/device_prepare.sh
#   device:  bash scripts/device_run.sh        (carry: [".device"]; timeout_s 600)
# After set-up (the carried wheels installed into the image's Python: pip chooses among them
# against what the image holds; the machine is thrown away after the session), the PARTS, in
# this order (default all three; PARTS="bench sharded" reruns what a first call cut short):
#   kernels  python scripts/gpu_check_kernels.py: flex_attention (and FA2 where flash-attn
#            imports) log-probs and gradients against sdpa one sequence at a time; 90 s at most;
#   bench    bash scripts/gpu_bench.sh on SmolLM2-135M's architecture with random weights (the
#            weights do not travel): bench/results/gpu.json and RESULTS.md's GPU section;
#            without TRL's packages it runs without the TRL rows and says so;
#   sharded  bash scripts/gpu_check_sharded.sh: the sharded recipe on the GPU (1 GPU: one
#            process), killed and resumed, and compiled with inductor; what is left.
# Each part is cut off at its share of BUDGET seconds (default 560); the bench rewrites
# gpu.json after every row, so a cut keeps the finished rows. What the checks write comes back
# under $OUT (runs/device without the tool): gpu.json, RESULTS.md and the logs.
# Arguments go on to bench/gpu.py. Rehearsed on a CPU against a stand-in for the image (Python
# 3.12, torch 2.11.0+cu130, transformers 5.17, huggingface_hub 1.33, pyarrow 22, no
# datasets/trl): pip upgraded transformers and fell back to datasets 4.7, and the bench rows
# and the sharded check ran (2026-12-07). Not yet run on a GPU. The rehearsal, here:
#   PY=.venv/bin/python PARTS="kernels bench" KERNEL_ARGS="--device cpu" BUDGET=900 \
#     bash scripts/device_run.sh --device cpu --attn sdpa --warmup 1 --steps 1 --batch-size 2
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/device}
mkdir -p "$OUT"
BUDGET=${BUDGET:-560}
PARTS=" ${PARTS:-kernels bench sharded} "
PY=${PY:-python3}
D=.device
t0=$SECONDS
left() { echo $((BUDGET - (SECONDS - t0))); }
part() { [[ "$PARTS" == *" $1 "* ]]; }
[ -d "$D/whl" ] || { echo "$D/ is missing: run scripts/device_prepare.sh, carry .device" >&2; exit 2; }
pin() { grep -E "^$1==" constraints.txt; }
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONUNBUFFERED=1 TRL_EXPERIMENTAL_SILENCE=1
install() { "$PY" -m pip install -q --no-index --find-links "$D/whl" --no-cache-dir "$@"; }
install "$(pin transformers)" "$(pin peft)" 'regex>=2025.10.22' \
  || { echo "asft's packages did not install from $D/whl (above: what is missing)" >&2; exit 3; }
TRL=()
if part bench; then
  install "$(pin trl)" 'datasets>=4.7' \
    || { TRL=(--no-trl); echo "TRL or datasets did not install: the bench runs without TRL rows"; }
fi
echo "set-up: $((SECONDS - t0)) s"

if part kernels; then
  # shellcheck disable=SC2086  # KERNEL_ARGS: more options, e.g. --device cpu for a rehearsal
  timeout -k 5 90 "$PY" scripts/gpu_check_kernels.py ${KERNEL_ARGS:-} 2>&1 | grep -v "Loading weights" \
    | tee "$OUT/gpu-kernels.log"
  echo "kernels: exit ${PIPESTATUS[0]}, $((SECONDS - t0)) s so far"
fi

if part bench; then
  # 6 rows (asft ASFT sdpa/flex/FA2, asft DPO sdpa/flex, TRL ORPO/DPO), 150 s a row at most;
  # 150 s are kept for the sharded check when it runs
  keep=0; part sharded && keep=150
  share=$(( $(left) - keep ))
  if [ "$share" -ge 60 ]; then
    LIMIT=$share PY=$PY DATA="$D/data/harmless-base-test.jsonl.gz" bash scripts/gpu_bench.sh \
      --random-weights --model "$D/smollm2-135m" --timeout 150 "${TRL[@]}" "$@"
    echo "bench: exit $?, $((SECONDS - t0)) s so far"
  else
    echo "bench not run: $(left) s left of BUDGET"
  fi
  if [ -f bench/results/gpu.json ]; then  # also a cut run's rows: RESULTS.md from what finished
    cp bench/results/gpu.json "$OUT/"
    "$PY" bench/run.py --report-only >/dev/null 2>&1 && cp bench/RESULTS.md "$OUT/"
  fi
fi

if part sharded; then
  if [ "$(left)" -ge 30 ]; then
    PY=$PY timeout -k 10 "$(( $(left) - 5 ))" bash scripts/gpu_check_sharded.sh /tmp/gpu-check \
      2>&1 | tee "$OUT/gpu-check.log"
    echo "sharded check: exit ${PIPESTATUS[0]}, total $((SECONDS - t0)) s"
  else
    echo "sharded check not run: $(left) s left of BUDGET"
  fi
fi
