#!/usr/bin/env bash
# Benchmark (not CI): the CPU-sized fine-tune protocol of issue 22. CIFAR-10
# query500-train2k-db10k (500 queries, 1,800 train + 200 val, a disjoint 10,000-image database),
# ImageNet EfficientNet-Lite0 at 96 px, seed 0: each method fine-tuned (--variant finetune-cpu)
# vs the same method on frozen 96-px features (its cifar10 block, --set image_size=96).
#   HASHBENCH_DATA=<folder with cifar10-jpg.tar.gz> scripts/experiments/finetune_cpu.sh [WHICH...]
# WHICH (default: all of them, one at a time): hashnet-frozen hashnet-finetune drq-frozen
# drq-finetune dht-frozen dht-finetune; `table` prints the headline numbers. Runs go to $OUT (results/finetune-cpu/runs); each run's
# wall time, CPU seconds (user + system of the process tree) and the load average before and
# after are appended to $OUT/../timings.txt. EXTRA: more `run` arguments (e.g. "--set lr=3e-4").
# HashNet 32 bits (mAP@all), DRQ one 32-bit training (8/16/24/32 bits, mAP@all), DHT d = 16,
# s = 1 (hash-table P@16 with SUF). results/finetune-cpu/NOTES.md has the numbers.
set -euo pipefail
cd "$(dirname "$0")/../.."
HB=${HASHBENCH:-.venv/bin/hashbench}
OUT=${OUT:-results/finetune-cpu/runs}
TIMINGS=${TIMINGS:-$(dirname "$OUT")/timings.txt}
read -r -a EXTRA_ARGS <<<"${EXTRA:-}"
# THREADS (default 1): torch's intra-op threads. On the shared 2-core machine two threads ran
# many times slower than one (results/gpu/finetune/NOTES.md); the feature extraction of the frozen
# runs (60,000 images at 96 px, once, then cached) and the fine-tuning both take this setting.
export OMP_NUM_THREADS=${THREADS:-1}
mkdir -p "$OUT"
COMMON=(--dataset cifar10 --protocol query500-train2k-db10k --seeds 0 --device cpu --no-speed
        --no-progress --out "$OUT")

timed() {  # timed LABEL ARGS...: one `hashbench run`, its wall/CPU seconds and load on one line
  local label=$1; shift
  local before; before=$(cut -d' ' -f1-3 /proc/loadavg)
  /usr/bin/time -f "%e %U %S" -o "$OUT/.time-$label" "$HB" run "${COMMON[@]}" "$@" "${EXTRA_ARGS[@]}"
  read -r wall user sys <"$OUT/.time-$label"
  echo "$(date -u +%FT%TZ) $label wall_s=$wall cpu_s=$(echo "$user + $sys" | bc) load_before=[$before]" \
       "load_after=[$(cut -d' ' -f1-3 /proc/loadavg)] args: $*" | tee -a "$TIMINGS"
  rm -f "$OUT/.time-$label"
}

table() {  # the headline numbers of every run under $OUT: mAP@all (default variant: ties by
  # expectation) per evaluated length of binary/additive runs, hash-table P@16 and SUF@16 of
  # sparse ones, the best validation score and the training seconds
  "$(dirname "$HB")/python" - "$OUT" <<'EOF'
import sys, pathlib, pandas as pd, yaml
rows = []
for run in sorted(pathlib.Path(sys.argv[1]).glob("*/metrics.csv")):
    m = pd.read_csv(run, keep_default_na=False)
    cfg = yaml.safe_load((run.parent / "config.yaml").read_text())
    key = dict(run=run.parent.name[:18], method=m.method[0], backbone=m.backbone[0],
               best_val=round(float(cfg["training"]["best_score"] or float("nan")), 3),
               train_s=round(float(m.value[m.metric == "train_seconds"].iloc[0])))
    ranked = m[(m.metric == "map@all") & m.variant.str.contains("ties=expected")
               & m.variant.str.contains("denominator=relevant_retrieved,empty=zero")]
    for bits, v in zip(ranked.bits, ranked.value):
        rows.append({**key, "bits": bits, "metric": "mAP@all", "value": round(float(v), 3)})
    table = m[m.variant.str.contains("search=hash_table") & (m.metric == "precision@16")]
    suf = m[(m.metric == "suf@16") & m.variant.str.contains("rerank=")]
    for (bits, v), s in zip(zip(table.bits, table.value), suf.value):
        rows.append({**key, "bits": bits, "metric": "P@16 (SUF@16)", "value": f"{float(v):.3f} ({float(s):.2f})"})
print(pd.DataFrame(rows).to_markdown(index=False))
EOF
}

step() {
  case $1 in
    hashnet-frozen)   timed "$1" --method hashnet --bits 32 --set image_size=96 ;;
    hashnet-finetune) timed "$1" --method hashnet --bits 32 --variant finetune-cpu ;;
    drq-frozen)       timed "$1" --method drq --bits 32 --set image_size=96 ;;
    drq-finetune)     timed "$1" --method drq --bits 32 --variant finetune-cpu ;;
    dht-frozen)       timed "$1" --method dht --bits 16 --set sparsity=1 --set image_size=96 ;;
    dht-finetune)     timed "$1" --method dht --bits 16 --variant finetune-cpu --set sparsity=1 ;;
    table)            table ;;
    *) echo "unknown step $1" >&2; exit 2 ;;
  esac
}

for which in "${@:-hashnet-frozen hashnet-finetune drq-frozen drq-finetune dht-frozen dht-finetune}"; do
  for s in $which; do step "$s"; done
done
