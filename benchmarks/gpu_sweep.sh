#!/usr/bin/env bash
# DCGAN quality variants trained side by side on one GPU (small nets leave it mostly idle), each
# scored by the same protocol as benchmarks/quality_mnist.py. Used to choose CPU settings.
#   OUT=/tmp/out MNIST=../shared/data/mnist IMAGES=1300000 bash benchmarks/gpu_sweep.sh 'lr=1e-4' 'loss=hinge'
set -u
OUT=${OUT:-/tmp/gpu-sweep}; MNIST=${MNIST:-../shared/data/mnist}; IMAGES=${IMAGES:-1300000}
mkdir -p "$OUT"; export PYTHONPATH=.
i=0
for v in "$@"; do
  i=$((i + 1))
  timeout 400 ${PY:-python3} -u -m benchmarks.quality_mnist --mnist "$MNIST" --models dcgan --device cuda \
    --images "$IMAGES" --threads 3 --variant "$v" > "$OUT/variant-$i.log" 2>&1 &
done
wait
for f in "$OUT"/variant-*.log; do echo "== $f"; grep '^{"model"' "$f" || tail -5 "$f"; done
