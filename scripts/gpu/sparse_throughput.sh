#!/usr/bin/env bash
# GPU check (not CI): the Deep Hash Table and its cascading variant trained on the GPU with the
# min-cost-flow solver on the CPU — the paper's CIFAR backbone (NIN-style CNN from scratch, 32 px),
# end to end through the harness — and each stage's training throughput, so stage 2's img/s
# (GPU step + CPU flow solve per batch) can be read against stage 1's (GPU step alone).
#   scripts/gpu/sparse_throughput.sh DATASET [EPOCHS] [OUT]
# DATASET: e.g. cifar10 (the data root's CIFAR-10) or imagefolder:<folder of class sub-folders>.
# SPECS (default "dht:16:1 dht:16:2 cascade-dht:16:1"): method:bits(d):sparsity triples.
set -uo pipefail
DATASET=${1:?dataset}
EPOCHS=${2:-20}
OUT=${3:-results/runs/gpu-sparse}
PY=${PYTHON:-python3}
SPECS=${SPECS:-"dht:16:1 dht:16:2 cascade-dht:16:1"}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
COMMON=(--dataset "$DATASET" --seeds 0 --device ${DEVICE:-gpu} --no-speed --out "$OUT" --epochs "$EPOCHS"
        --set backbone=nin-cnn --set pretrained=false --set frozen=false --set image_size=null --set augment=true
        --set 'hidden_dims=[]' --set dropout=0.0 --set classes_per_batch=10 --set images_per_class=${IMAGES_PER_CLASS:-12}
        --set num_workers=${WORKERS:-8})
for spec in $SPECS; do
  IFS=: read -r method bits s <<<"$spec"
  start=$(date +%s)
  $PY -m hashbench run --method "$method" --bits "$bits" --set sparsity="$s" "${COMMON[@]}"
  echo "wall_seconds method=$method d=$bits s=$s epochs=$EPOCHS: $(( $(date +%s) - start ))"
done
$PY scripts/bench/training_throughput.py "$OUT"
