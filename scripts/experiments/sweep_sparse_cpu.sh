#!/usr/bin/env bash
# Benchmark sweep (not CI) behind the Deep Hash Table and cascade results: CIFAR-10
# (query1k-train5k-db54k) and Fashion-MNIST (query1k-train5k-db64k), frozen EfficientNet-Lite0
# features, d = 16 buckets, seeds 0,1,2; dht / dht-th / dht-vq at s = 1,2,3 and cascade-dht
# (L = 2) at s = 1,2, each with the hash-table speed rows.
#   scripts/experiments/sweep_sparse_cpu.sh [OUT] [DATASETS]
set -uo pipefail
OUT=${1:-results/sparse/runs}
DATASETS=${2:-"cifar10:query1k-train5k-db54k fashion-mnist:query1k-train5k-db64k"}
PY=${PYTHON:-.venv/bin/python}
SEEDS=${SEEDS:-0,1,2}
for ds in $DATASETS; do
  IFS=: read -r dataset protocol <<<"$ds"
  for s in 1 2 3; do
    $PY -m hashbench run --method dht,dht-th,dht-vq --dataset "$dataset" --protocol "$protocol" --bits 16 \
        --seeds "$SEEDS" --set sparsity=$s --out "$OUT"
    if [ "$s" -le 2 ]; then
      $PY -m hashbench run --method cascade-dht --dataset "$dataset" --protocol "$protocol" --bits 16 \
          --seeds "$SEEDS" --set sparsity=$s --out "$OUT"
    fi
  done
done
