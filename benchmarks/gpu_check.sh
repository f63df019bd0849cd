#!/usr/bin/env bash
# One short check of rsir on a CUDA GPU (about 6 minutes on an H200): the GPU tests, one
# self-improvement round with the defaults (patience 5) on the GPU, then generation and training speed on
# the GPU and on all of the same machine's CPU cores, side by side.
#
#   bash benchmarks/gpu_check.sh ../shared/data/Beauty/Beauty.txt OUT_DIR
#
# Each step has its own time limit, so one that hangs does not take the others with it.
set -uo pipefail
data=$1
out=$2
run=$(mktemp -d)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # run from the repository root; no install needed

nvidia-smi -L
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
timeout 80 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/tests.log"

started=$(date +%s)
# Patience 5 keeps the round inside its limit (a time cap: today's default improves for dozens of epochs).
timeout 280 python3 -m rsir.cli improve --data "$data" --device cuda --rounds 1 --seed 0 --patience 5 --out "$run/improve" --quiet 2>&1 \
    | tee "$out/improve.log"
echo "improve wall seconds: $(( $(date +%s) - started ))" | tee -a "$out/improve.log"
cp "$run/improve/metrics.json" "$out/improve_metrics.json"

# Cached decoding needs absolute positions and masked padding (today's default re-encodes), so
# the cached-vs-re-encoded comparison decodes with a one-epoch model of the previous default.
timeout 60 python3 -m rsir.cli train --data "$data" --device cuda --preset length_batched --max-epochs 1 \
    --out "$run/cached" --quiet 2>&1 | tee "$out/cached_train.log"
checkpoint="$run/cached/model.pt"
for device in cuda cpu; do
    limit=$([ $device = cuda ] && echo 40 || echo 60)
    timeout $limit python3 benchmarks/generation_speed.py --checkpoint "$checkpoint" --data "$data" --device $device \
        --out "$out/generation_$device.json"
    timeout $limit python3 benchmarks/utilisation.py --data "$data" --device $device --out "$out/utilisation_$device.json"
done
