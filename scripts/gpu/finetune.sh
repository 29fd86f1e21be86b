#!/usr/bin/env bash
# GPU benchmark (not CI), prepared to run unchanged on a lent H100 or H200 (or any CUDA machine
# with torch, torchvision and pytorch-lightning): the fine-tuned CIFAR-10 query1k-train5k-db54k
# runs of issue 22 (seed 0, --variant finetune), trained AND evaluated on that machine, in steps
# that each fit one device call of at most 9 minutes:
#   hashnet  HashNet at HASHNET_BITS (default "32 64 16 48", in that order), mAP@all
#   drq      DRQ, one 32-bit training evaluated at 8/16/24/32 bits, mAP@all
#   dht      DHT then the cascade, d = 16, s = 1 (P@k and SUF of the hash table)
# and, optional: tests (the device-side pipeline's GPU tests), throughput (bare backbone,
# HashNet, DRQ at 224 px), throughput-dht (bare, DHT, cascade), sweep (the 4-cell digits sweep).
# A step starts a run only while its elapsed time plus the previous run's wall time stays under
# BUDGET_S (default 500 s); a run that would not fit is skipped with a line saying so, and the
# runs already finished under the step's store are skipped on a later call (--resume).
#
# What it expects in the checkout (git-ignored; scripts/gpu/carry.sh fills it here):
#   .gpu-carry/part1/cifar10-jpg.tar.gz, .gpu-carry/part1/wheels/*.whl  (EfficientNet-Lite0, faiss)
#   .gpu-carry/part2/wheels/*.whl                                       (ortools and its pins)
# part1 + part2 do not fit one call's 64 MiB: the dht step carries part2 and reuses what an
# earlier step of the same warm machine left there (.gpu-carry/part1, .gpu-carry/site). In order:
#   run(command="bash scripts/gpu/finetune.sh hashnet", carry=[".gpu-carry/part1"], timeout_s=560)
#   run(command="bash scripts/gpu/finetune.sh drq", carry=[".gpu-carry/part1"], timeout_s=560)
#   run(command="bash scripts/gpu/finetune.sh dht", carry=[".gpu-carry/part2"], timeout_s=560)
# Everything for the trip back goes to $OUT (results/gpu/out when unset), at most 4 files a
# step: log-<step>.txt (with each run's wall time), env-<step>.txt, runs-<step>.tar.gz (every
# finished run of the step: config, split, metrics, per-query values, curves, training logs; no
# checkpoints, no codes) and, for throughput steps, throughput-<step>.csv.
# Back here: scripts/gpu/collect.sh <the files' folder> unpacks the runs into results/gpu/finetune/.
#
# Environment: HASHNET_EPOCHS, DRQ_EPOCHS, DHT_EPOCHS (default: the variant's own), HASHNET_BITS,
# BUDGET_S, VARIANT (finetune), PYTHON (python3); STEPS (50 timed batches per throughput stage),
# BATCH (250). For a stand-in elsewhere: DEVICE (gpu), DATASET (cifar10), PROTOCOL (empty: the
# dataset's default), BACKBONE (efficientnet-lite0), SIZE (224), PRECISION (bf16-mixed), EXTRA
# (more `run` arguments, e.g. "--set backbone=small-cnn"), GPU_CARRY (.gpu-carry). Exit status:
# 0, 1 (a run failed; the others are packed), 2 (something to carry is missing), 3 (install failed).
set -uo pipefail
cd "$(dirname "$0")/../.."
STEP=${1:-all}
# -P: never the working directory first on sys.path, where the checkout's bare hashbench/ folder
# would shadow the package installed into $CARRY/site (its subpackages live in other folders)
PY="${PYTHON:-python3} -P"
CARRY=${GPU_CARRY:-.gpu-carry}
OUT=${OUT:-results/gpu/out}
BUDGET_S=${BUDGET_S:-500}
VARIANT=${VARIANT:-finetune}
STEPS=${STEPS:-50}
BATCH=${BATCH:-250}
DEVICE=${DEVICE:-gpu}
DATASET=${DATASET:-cifar10}
PROTOCOL=${PROTOCOL-query1k-train5k-db54k}
BACKBONE=${BACKBONE:-efficientnet-lite0}
SIZE=${SIZE:-224}
PRECISION=${PRECISION:-bf16-mixed}
read -r -a EXTRA_ARGS <<<"${EXTRA:-}"
mkdir -p "$OUT" "$CARRY/site" "$CARRY/cache"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
CARRY_DIR=$(realpath -m "$CARRY")
export HASHBENCH_DATA="$CARRY_DIR/part1" HASHBENCH_CACHE="$CARRY_DIR/cache"
export PYTHONPATH="$CARRY_DIR/site${PYTHONPATH:+:$PYTHONPATH}"
LOG="$OUT/log-$STEP.txt"
exec > >(tee -a "$LOG") 2>&1
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }
BEGAN=$(date +%s)
LAST_RUN_S=0
FAILED=()
fits() {  # fits WHAT: false (and a line) when elapsed + the previous run's wall time > BUDGET_S
  local elapsed=$(( $(date +%s) - BEGAN ))
  [ $(( elapsed + LAST_RUN_S )) -le "$BUDGET_S" ] && return 0
  echo "skipped ($elapsed s elapsed + $LAST_RUN_S s for the previous run > BUDGET_S=$BUDGET_S s): $*"; return 1
}

install() {  # carried wheels and this checkout into $CARRY/site (no index); the environment line
  stamp "step $STEP on $(hostname): install carried wheels and this checkout into $CARRY/site"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  local wheels
  wheels=$(ls "$CARRY"/part*/wheels/*.whl 2>/dev/null)
  if [ -n "$wheels" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$CARRY/site" $wheels || exit 3
  fi
  $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$CARRY/site" . || exit 3
  $PY - <<'EOF' | tee "$OUT/env-$STEP.txt"
import importlib, os, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "| cpus", os.cpu_count())
for name in ("torchvision", "pytorch_lightning", "numpy", "faiss", "ortools", "efficientnet_lite_pytorch", "hashbench"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"), m.__file__)
    except Exception as err:
        print(name, "MISSING", type(err).__name__, err)
EOF
}

require() {  # require MODULE HINT: exit 2 with the hint when the module cannot be imported
  $PY -c "import $1" 2>/dev/null || { echo "missing Python module $1: $2"; exit 2; }
}

HB=($PY -m hashbench)
RUNS="$CARRY/runs-$STEP"
pack() {  # every finished run of the step -> $OUT/runs-$STEP.tar.gz (rewritten after each run)
  local done=() run
  for run in "$RUNS"/*/metrics.csv; do [ -f "$run" ] && done+=("$(basename "$(dirname "$run")")"); done
  [ ${#done[@]} -gt 0 ] || return 0
  tar -C "$RUNS" --exclude=checkpoints --exclude=codes.npz -czf "$OUT/.runs-$STEP.tar.gz" "${done[@]}" &&
    mv "$OUT/.runs-$STEP.tar.gz" "$OUT/runs-$STEP.tar.gz"
}
finetune() {  # finetune METHOD BITS EPOCHS [--set ...]: one fine-tuned run, trained and evaluated here
  local method=$1 bits=$2 epochs=$3; shift 3
  fits "fine-tuned $method $bits bits" || return 0
  local start=$(date +%s) rc=0
  "${HB[@]}" run --method "$method" --bits "$bits" ${epochs:+--epochs "$epochs"} --dataset "$DATASET" \
    ${PROTOCOL:+--protocol "$PROTOCOL"} --seeds 0 --device "$DEVICE" --variant "$VARIANT" --no-speed \
    --no-progress --resume --out "$RUNS" "${EXTRA_ARGS[@]}" "$@" || rc=$?
  LAST_RUN_S=$(( $(date +%s) - start ))
  [ "$rc" -eq 0 ] || FAILED+=("$method:$bits")
  echo "wall_seconds method=$method bits=$bits epochs=${epochs:-variant} $* (exit $rc): $LAST_RUN_S"
  pack
}
throughput() {  # throughput METHODS CSV [extra args]
  local methods=$1 csv=$2; shift 2
  $PY scripts/bench/training_throughput.py measure --methods "$methods" --dataset "$DATASET" --backbone "$BACKBONE" \
    --size "$SIZE" --batch "$BATCH" --steps "$STEPS" --warmup 5 --device "$DEVICE" --precision "$PRECISION" \
    --channels-last --csv "$csv" "$@"
}
gpu_sweep() {  # the 4-cell digits sweep on this machine's GPUs through the local executor (one
  # cell per GPU, pinned by CUDA_VISIBLE_DEVICES); manifest, status and cell logs -> $OUT/runs-sweep.tar.gz
  local store="$CARRY_DIR/sweep-gpu" file="$CARRY_DIR/digits-4cell-gpu.yaml" start=$(date +%s)
  sed -e "s|^out: .*|out: $store|" -e "s|^name: .*|name: digits-4cell-gpu|" -e "s|^device: cpu|device: $DEVICE|" \
    -e "/^  local: /d" sweeps/digits-4cell.yaml >"$file"
  # PYTHONSAFEPATH: the cells' `python -m hashbench` must not see the checkout's bare hashbench/ either
  PYTHONSAFEPATH=1 "${HB[@]}" sweep run "$file" --executor local
  echo "sweep exit $?: wall_seconds $(( $(date +%s) - start ))"
  PYTHONSAFEPATH=1 "${HB[@]}" sweep status "$file" | tee "$store/status.txt"
  cp "$file" "$store/"
  tar -C "$store" --exclude=checkpoints --exclude=codes.npz -czf "$OUT/runs-sweep.tar.gz" .
}

run_step() {
  case $1 in
    tests) $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_pipeline.py || true ;;
    throughput)
      throughput bare,hashnet,drq "$CARRY/tp-a.csv"
      throughput bare "$CARRY/tp-b.csv" --pipeline per_item --num-workers 12
      throughput bare "$CARRY/tp-c.csv" --precision 32-true
      $PY -c "import pandas as pd, sys; pd.concat([pd.read_csv(f) for f in sys.argv[2:]]).to_csv(sys.argv[1], index=False)" \
        "$OUT/throughput-$1.csv" "$CARRY"/tp-[abc].csv ;;
    throughput-dht) require ortools "carry .gpu-carry/part2"; throughput bare,dht,cascade-dht "$OUT/throughput-$1.csv" ;;
    hashnet)
      stamp "fine-tuned HashNet at ${HASHNET_BITS:-32 64 16 48} bits"
      for bits in ${HASHNET_BITS:-32 64 16 48}; do finetune hashnet "$bits" "${HASHNET_EPOCHS:-}"; done ;;
    drq)
      stamp "fine-tuned DRQ, one 32-bit training (8/16/24/32 bits)"
      finetune drq 32 "${DRQ_EPOCHS:-}" ;;
    dht)
      require ortools "carry .gpu-carry/part2 (the flow solver), after a part1 step on this warm machine"
      stamp "fine-tuned DHT and the cascade, d = 16, s = 1"
      finetune dht 16 "${DHT_EPOCHS:-}" --set sparsity=1
      finetune cascade-dht 16 "${DHT_EPOCHS:-}" --set sparsity=1 ;;
    sweep) gpu_sweep ;;
    *) echo "unknown step $1 (hashnet, drq, dht, tests, throughput, throughput-dht, sweep, all)"; exit 2 ;;
  esac
}

install
[ "$DATASET" != cifar10 ] || [ -f "$HASHBENCH_DATA/cifar10-jpg.tar.gz" ] ||
  { echo "missing $HASHBENCH_DATA/cifar10-jpg.tar.gz (carry .gpu-carry/part1, or run a part1 step first)"; exit 2; }
mkdir -p "$RUNS"
if [ "$STEP" = all ]; then
  for s in hashnet drq dht; do RUNS="$CARRY/runs-$s"; mkdir -p "$RUNS"; STEP=$s; run_step "$s"; done
else
  run_step "$STEP"
fi
stamp "done: $(( $(date +%s) - BEGAN )) s"
ls -la "$OUT"
[ ${#FAILED[@]} -eq 0 ] || { echo "failed runs: ${FAILED[*]}"; exit 1; }
