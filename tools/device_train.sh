#!/bin/bash
# Fine-tune the bundled denoiser on a lent GPU (the device tool's `run`; bench/README.md, "Training on
# a lent GPU") and bring the exported weights back in $OUT.
#
#   bash tools/device_train.sh [MINUTES] [BATCH] [LR]      # defaults 6, 256, 4e-4
#
# DEVICE=cpu PYTHON=.venv/bin/python OUT=DIR: the same run on this machine's CPU, a rehearsal.
#
# Runs on the device image's own Python (torch, numpy, scipy, opencv, tqdm, pyyaml), with this
# checkout on PYTHONPATH and nothing installed: the clips come in the carried data_cache/train.npz
# and index.json, the captions already encoded in data_cache/captions.pt (genmo-live data captions).
# MINUTES counts training steps only; loading and the first observations take about a minute more.
set -euo pipefail
minutes=${1:-6}
batch=${2:-256}
lr=${3:-4e-4}
device=${DEVICE:-cuda}
python=${PYTHON:-python3}
out=${OUT:?set by the device tool: the folder whose files come back}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
for f in data_cache/index.json data_cache/train.npz data_cache/captions.pt; do
    [ -f "$f" ] || { echo "missing $f: carry it (see bench/README.md)" >&2; exit 2; }
done
# The rendered train set (real MediaPipe output), when an earlier call left it there: without it a
# fine-tune wears off what the bundled weights learnt from it (bench/README.md, 2026-12-04).
rendered=()
[ -d data_cache/rendered/train ] && rendered=(--rendered data_cache/rendered/train)
[ "$device" = cpu ] || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$python" -m clients.cli train --device "$device" --from assets/genmo_live.pt --out runs/device --minutes "$minutes" \
    --steps 1000000 --batch "$batch" --lr "$lr" --warmup 100 --threads "$(nproc)" "${rendered[@]}" 2>&1 \
    | tr '\r' '\n' > "$out/train.log"
grep -E "step [0-9]+ loss|stopped at|wrote" "$out/train.log" | tail -20
"$python" -m clients.cli export-weights runs/device/last.pt --to "$out/genmo_live.pt"
