#!/usr/bin/env bash
# Packs into .device/ (git-ignored) what the GPU checks need on a lent machine that reaches no
# network and lacks some of asft's packages, SmolLM2's weights and ../shared; run it here, on
# the machine with the package registries, before the device call. Then one call of the
# device tool runs everything:
#   bash scripts/device_prepare.sh                       # here: .device/, about 20 MiB
#   device run: bash scripts/device_run.sh  (carry: [".device"])
# .device/ holds:
#   whl/    wheels for the device image's Python 3.12 on x86-64, no dependencies: the versions
#           constraints.txt pins for transformers, peft, trl and datasets, what those need that
#           the image may lack or hold in another version (regex, dill, multiprocess, fsspec),
#           and datasets 4.7 with its own needs as a fallback should the image's pyarrow be
#           older than datasets 5's (pyarrow's own wheel, 55 MB, would not fit the 64 MiB the
#           device tool carries); scripts/device_run.sh lets pip choose among them;
#   data/   the HH-RLHF file from ../shared (a transport copy, never committed);
#   smollm2-135m/  SmolLM2-135M-Instruct's config and tokenizer without its weights: the GPU
#           bench trains that architecture with random weights (bench/gpu.py --random-weights),
#           the GGUF (98 MB) being too large to carry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
D=.device
HH=../shared/data/hh-rlhf/harmless-base-test.jsonl.gz
[ -f "$HH" ] || { echo "$HH not found: the GPU bench needs the HH-RLHF file" >&2; exit 2; }
pin() { grep -E "^$1==" constraints.txt; }
rm -rf "$D"
mkdir -p "$D/whl" "$D/data" "$D/smollm2-135m"
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$D/whl" "$@"
}
download "$(pin transformers)" "$(pin peft)" "$(pin trl)" "$(pin datasets)" \
  'regex>=2025.10.22' 'dill>=0.3,<0.4.1' 'multiprocess<0.70.20' 'fsspec<=2026.9.0'
download 'datasets==4.7.0' 'multiprocess<0.70.19' 'fsspec<=2026.2.0'
cp "$HH" "$D/data/"
model=$("$PY" -c "from asft.model.load import resolve_model; print(resolve_model('smollm2-135m'))")
[ -d "$model" ] || { echo "smollm2-135m did not resolve to a folder ($model)" >&2; exit 2; }
find "$model" -maxdepth 1 -type f ! -name '*.safetensors' -exec cp {} "$D/smollm2-135m/" \;
ls -la "$D/whl" "$D/smollm2-135m"
size=$(du -sb "$D" | cut -f1)
echo "$D: $((size / 1024 / 1024)) MiB (the device tool carries 64 MiB with the working tree)"
[ "$size" -lt $((56 * 1024 * 1024)) ] || { echo "$D is too large to carry" >&2; exit 1; }
