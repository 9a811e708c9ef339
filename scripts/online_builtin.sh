#!/usr/bin/env bash
# The on-policy report (issue 18's docs/online-builtin/): SmolLM2-135M-Instruct on the built-in
# arithmetic task, three methods from the same start with the same budget of 24 steps of 4 pairs:
#   online ASFT   recipes/online-builtin.yaml: 3 rounds of (sample 4 answers to 16 prompts,
#                 verifier, best vs worst, 8 steps of ASFT), each round from the last one's model
#   online DPO    the same rounds with DPO (its reference: each round's starting policy)
#   static ASFT   ASFT for 24 steps on the first round's pairs (the base model's samples)
# then exact match (greedy) on 64 held-out test problems for the base model and each result.
#   bash scripts/online_builtin.sh [OUT]      (default OUT: docs/online-builtin)
# Runs go to runs/online-builtin/ (RUNS=...). Run it on quiet cores: about 30 minutes on 2.
set -euo pipefail
OUT=${1:-docs/online-builtin}
RUNS=${RUNS:-runs/online-builtin}
ASFT=${ASFT:-.venv/bin/asft}
PY=${PY:-.venv/bin/python}
EVAL_N=${EVAL_N:-64}
NOPROG="--set logging.progress=false"
mkdir -p "$OUT" "$RUNS"
$ASFT train --config recipes/online-builtin.yaml -o "$RUNS/online-asft" $NOPROG --resume
$ASFT train --config recipes/online-builtin.yaml --loss dpo -o "$RUNS/online-dpo" $NOPROG --resume
$ASFT train --config recipes/online-builtin.yaml --set online.rounds=0 --max-steps 24 \
  --data "$RUNS/online-asft/rounds/01/pairs.jsonl" -o "$RUNS/static-asft" $NOPROG --resume
for m in base online-asft online-dpo static-asft; do
  model="$RUNS/$m/model"; [ "$m" = base ] && model=smollm2-135m
  [ -f "$RUNS/eval-$m/eval.json" ] || $ASFT eval --model "$model" --data builtin:arithmetic:test \
    --num-samples "$EVAL_N" --max-new-tokens 48 --no-pairwise --output "$RUNS/eval-$m"
done
$ASFT plot "$RUNS/online-asft" "$RUNS/online-dpo" "$RUNS/static-asft" --output "$OUT/dynamics.png" \
  --title "SmolLM2-135M, arithmetic: online ASFT, online DPO, static ASFT"
$PY scripts/online_report.py "$RUNS" "$OUT"
