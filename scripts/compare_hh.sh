#!/usr/bin/env bash
# The HH-RLHF comparison (issue 16's docs/compare-hh/): the shared harmless-base test split
# (2,312 pairs) cut into train / test by a fixed seed, then every method at its best of two
# learning rates (chosen on 48 validation pairs held out of the training part) and 3 seeds.
#   bash scripts/compare_hh.sh [OUT]      (default OUT: docs/compare-hh)
# Cost measured on 2 CPU cores: a selection job (24 steps of 4 HH pairs, ~4 s a step, plus
# scoring 48 validation pairs) takes about 3.3 minutes, so the whole run (12 selection jobs,
# 12 more seeds, evaluations on 64 test pairs) takes about 95 minutes. Run it on quiet cores:
# a second torch process on the same 2 cores slows both several times.
set -euo pipefail
OUT=${1:-docs/compare-hh}
SHARED=${SHARED:-../shared}
SPLIT=${SPLIT:-runs/hh-split}
ASFT=${ASFT:-.venv/bin/asft}
$ASFT data split "$SHARED/data/hh-rlhf/harmless-base-test.jsonl.gz" --parts train=0.9,test=0.1 \
  --seed 0 -o "$SPLIT"
$ASFT compare --methods "sft; dpo; orpo; simpo; asft; sft>asft:beta=0.2,sft_weight=0" \
  --data "$SPLIT/train.jsonl" --eval-data "$SPLIT/test.jsonl" --lrs 5e-6,2e-5 --seeds 3 \
  --max-steps 24 --eval-samples 64 --val-samples 48 --output "$OUT"
