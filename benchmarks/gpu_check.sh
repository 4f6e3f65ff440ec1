#!/usr/bin/env bash
# The CUDA path in one short run (for a lent GPU machine, or any CUDA host): training throughput
# of both models against the plain loop with bf16 autocast (AMP), sampling, and a DCGAN trained
# on MNIST to the quality bar on the GPU. Needs torch with CUDA, numpy, pillow, scikit-learn.
#   OUT=/tmp/out MNIST=../shared/data/mnist bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gpu-check}; MNIST=${MNIST:-../shared/data/mnist}; DEVICE=${DEVICE:-cuda}
IMAGES=${IMAGES:-960000}; SECONDS_PER=${SECONDS_PER:-3}
mkdir -p "$OUT"
export PYTHONPATH=.
PY=${PY:-python3}
nvidia-smi -L 2>/dev/null
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
timeout 240 $PY -u -m benchmarks.throughput --device "$DEVICE" --seconds "$SECONDS_PER" > "$OUT/throughput.log" 2>&1
grep "img/s" "$OUT/throughput.log"; tail -3 "$OUT/throughput.log"
cp benchmarks/results/throughput*.json "$OUT/" 2>/dev/null
timeout 300 $PY -u -m benchmarks.quality_mnist --mnist "$MNIST" --models dcgan --device "$DEVICE" \
  --images "$IMAGES" --figure "$OUT/mnist-dcgan-$DEVICE.png" > "$OUT/quality.log" 2>&1
tail -25 "$OUT/quality.log"
