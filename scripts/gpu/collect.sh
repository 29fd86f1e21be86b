#!/usr/bin/env bash
# Back here, after scripts/gpu/finetune.sh ran on a GPU machine: unpack the run(s)-*.tar.gz the
# device call brought back into results/gpu/finetune/, evaluate every run that came back as codes
# only (`hashbench evaluate`: the metrics are computed on this machine's CPU), and print the
# per-stage training throughput the runs recorded.
#   scripts/gpu/collect.sh FOLDER_WITH_THE_FILES [...]
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${DEST:-results/gpu/finetune}
HB=${HASHBENCH:-.venv/bin/hashbench}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$DEST"
for src in "$@"; do
  # run-<method>.tar.gz: one run each (the script's parts 1/2); runs-<step>.tar.gz: a step's runs
  for t in "$src"/run-*.tar.gz "$src"/runs-*.tar.gz; do [ -e "$t" ] && tar -C "$DEST" --no-same-permissions -xzf "$t"; done
  for f in "$src"/log-*.txt "$src"/env-*.txt "$src"/throughput-*.csv; do [ -e "$f" ] && cp "$f" "$DEST/"; done
done
chmod -R u=rwX,go=rX "$DEST"   # run folders 0755, files 0644 (tar keeps the machine's modes)
for run in "$DEST"/*/; do
  if [ -f "$run/codes.npz" ] && [ ! -f "$run/metrics.csv" ]; then "$HB" evaluate "$run"; fi
done
$PY scripts/bench/training_throughput.py "$DEST"
