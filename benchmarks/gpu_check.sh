#!/usr/bin/env bash
# The CUDA path in one short, time-boxed run (a lent GPU machine, or any CUDA host). Needs torch
# with CUDA, numpy, pillow, scikit-learn and pydantic; not Prefect or MLflow.
#   1. training throughput of both 28-px models against the plain loop, bf16 autocast
#   2. the DCGAN's training cost per image at 28, 32, 64 and 128 px (images/s, ratio to 28 px)
#   3. sampling against a plain batched forward, every noise scheme
#   4. colour MNIST at 64x64 RGB (benchmarks.colour_mnist) trained on the GPU to its quality bar
#      (TSTR >= 0.90, fid_like <= 4x floor), scored like `ganvirt run`: minutes and the scores
#   OUT=/tmp/out MNIST=../shared/data/mnist bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gpu-check}; MNIST=${MNIST:-../shared/data/mnist}; DEVICE=${DEVICE:-cuda}
IMAGES=${IMAGES:-1280000}; SECONDS_PER=${SECONDS_PER:-2}
mkdir -p "$OUT"
export PYTHONPATH=.
PY=${PY:-python3}
nvidia-smi -L 2>/dev/null
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
timeout 150 $PY -u -m benchmarks.throughput --device "$DEVICE" --seconds "$SECONDS_PER" > "$OUT/throughput.log" 2>&1
grep "img/s" "$OUT/throughput.log"; tail -2 "$OUT/throughput.log"
timeout 120 $PY -u -m benchmarks.scaling --device "$DEVICE" --steps 48 --rounds 3 > "$OUT/scaling.log" 2>&1
grep "ms/image" "$OUT/scaling.log"; tail -2 "$OUT/scaling.log"
timeout 90 $PY -u -m benchmarks.sampling --device "$DEVICE" --rounds 5 > "$OUT/sampling.log" 2>&1
grep "paired" "$OUT/sampling.log"; tail -2 "$OUT/sampling.log"
cp benchmarks/results/*-"$DEVICE".json "$OUT/" 2>/dev/null
$PY -m benchmarks.colour_mnist --mnist "$MNIST" --out "$OUT" --sizes 64 > "$OUT/colour.log" 2>&1 || tail -3 "$OUT/colour.log"
timeout 420 $PY -u -m benchmarks.quality_mnist --source "$OUT/colour-mnist-64" --models dcgan --device "$DEVICE" \
  --images "$IMAGES" --figure "$OUT/colour64-dcgan-$DEVICE.png" --out "$OUT/colour64.json" > "$OUT/quality.log" 2>&1
tail -25 "$OUT/quality.log"
