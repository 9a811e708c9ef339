#!/usr/bin/env bash
# Every GPU check of this project in one command for the device tool's lent machine (one H100
# or H200, no network, bare after each start), inside its 600 s per command:
#   here:    bash scripts/device_prepare.sh
#   device:  bash scripts/device_run.sh        (carry: [".device"]; timeout_s 600)
# Rehearsed on a CPU against a stand-in for the image (Python 3.12, torch 2.11.0+cu130,
# transformers 5.17, huggingface_hub 1.33, pyarrow 22, no datasets/trl): pip upgraded
# transformers, fell back to datasets 4.7, and every bench row and the sharded check ran
# (2026-12-07). Not yet run on a GPU. Arguments go on to bench/gpu.py. A rehearsal on a CPU (the bench's rows on SmolLM2's shape,
# without the sharded check), here: PY=.venv/bin/python SKIP_SHARDED=1 BUDGET=900 \
#   bash scripts/device_run.sh --device cpu --attn sdpa --warmup 1 --steps 1 --batch-size 2
# 1. installs the carried wheels into the image's Python (pip chooses among them against what
#    the image holds; the machine is thrown away after the session); without TRL's packages
#    the bench runs without its TRL rows and says so;
# 2. bash scripts/gpu_bench.sh: SmolLM2-135M's architecture with random weights (the weights
#    do not travel), bench/results/gpu.json and bench/RESULTS.md's GPU section;
# 3. bash scripts/gpu_check_sharded.sh: the sharded recipe on the GPU (1 GPU: one process),
#    killed and resumed, and compiled with inductor.
# Each part gets what is left of BUDGET seconds (default 560) and is cut off at its share;
# the bench rewrites gpu.json after every row, so a cut keeps the finished rows. Everything
# the checks write comes back under $OUT (runs/device without the tool): gpu.json,
# RESULTS.md, the two logs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/device}
mkdir -p "$OUT"
BUDGET=${BUDGET:-560}
PY=${PY:-python3}
D=.device
t0=$SECONDS
left() { echo $((BUDGET - (SECONDS - t0))); }
[ -d "$D/whl" ] || { echo "$D/ is missing: run scripts/device_prepare.sh, carry .device" >&2; exit 2; }
pin() { grep -E "^$1==" constraints.txt; }
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PYTHONUNBUFFERED=1 TRL_EXPERIMENTAL_SILENCE=1
install() { "$PY" -m pip install -q --no-index --find-links "$D/whl" --no-cache-dir "$@"; }
install "$(pin transformers)" "$(pin peft)" 'regex>=2025.10.22' \
  || { echo "asft's packages did not install from $D/whl (above: what is missing)" >&2; exit 3; }
TRL=()
install "$(pin trl)" 'datasets>=4.7' \
  || { TRL=(--no-trl); echo "TRL or datasets did not install: the bench runs without TRL rows"; }
echo "set-up: $((SECONDS - t0)) s"

# the bench: 6 rows (asft ASFT sdpa/flex/FA2, asft DPO sdpa/flex, TRL ORPO/DPO), 150 s a row at
# most; 170 s are kept for the sharded check
share=$(( $(left) - 170 ))
[ "$share" -ge 60 ] || { echo "only $(left) s left after the set-up: nothing run" >&2; exit 4; }
LIMIT=$share PY=$PY DATA="$D/data/harmless-base-test.jsonl.gz" \
  bash scripts/gpu_bench.sh --random-weights --model "$D/smollm2-135m" --timeout 150 "${TRL[@]}" "$@"
echo "bench: exit $?, $((SECONDS - t0)) s so far"
if [ -f bench/results/gpu.json ]; then  # also a cut run's rows: RESULTS.md from what finished
  cp bench/results/gpu.json "$OUT/"
  "$PY" bench/run.py --report-only >/dev/null 2>&1 && cp bench/RESULTS.md "$OUT/"
fi

[ "${SKIP_SHARDED:-0}" = 1 ] && { echo "sharded check skipped (SKIP_SHARDED=1)"; exit 0; }
[ "$(left)" -ge 30 ] || { echo "sharded check not run: $(left) s left of BUDGET"; exit 0; }
PY=$PY timeout -k 10 "$(( $(left) - 5 ))" bash scripts/gpu_check_sharded.sh /tmp/gpu-check \
  2>&1 | tee "$OUT/gpu-check.log"
echo "sharded check: exit ${PIPESTATUS[0]}, total $((SECONDS - t0)) s"
