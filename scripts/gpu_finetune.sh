#!/usr/bin/env bash
# GPU check (not CI), prepared to run unchanged on a lent H200 (or any CUDA machine with torch,
# torchvision and pytorch-lightning): training throughput at 224 px in bf16, and the fine-tuned
# CIFAR-10 query1k-train5k-db54k runs (seed 0, --variant finetune), trained and encoded there
# with --encode-only. Everything it writes for the trip back goes to $OUT (results/gpu/out when
# unset): per part a log, the environment, the throughput CSV and one run-<method>.tar.gz per run
# (at most 5 files; the device tool brings back 8 files of 16 MiB each).
#
# What it expects in the checkout (git-ignored; scripts/gpu_carry.sh fills it here):
#   .gpu-carry/part1/cifar10-jpg.tar.gz, .gpu-carry/part1/wheels/*.whl  (EfficientNet-Lite0, faiss)
#   .gpu-carry/part2/wheels/*.whl                                       (ortools and its pins)
# Each part fits one device call (64 MiB with the checkout); part 2 reuses what part 1 left on
# the machine (.gpu-carry/site, .gpu-carry/cache and the tarball), so run them back to back:
#   run(command="bash scripts/gpu_finetune.sh 1", carry=[".gpu-carry/part1"], timeout_s=600)
#   run(command="bash scripts/gpu_finetune.sh 2", carry=[".gpu-carry/part2"], timeout_s=600)
# PART: 1 = bare backbone, HashNet and DRQ (throughput + fine-tuned runs); 2 = DHT and the cascade
# (they need the flow solver); all = both (one machine holding every wheel and the data).
# Environment: HASHNET_EPOCHS (30), DRQ_EPOCHS (20), DHT_EPOCHS (20), STEPS (50 timed batches per
# stage), BATCH (250 = 10 classes x 25 for the class-balanced samplers), PYTHON (python3); for a
# smoke test elsewhere: DEVICE (gpu), DATASET (cifar10), PROTOCOL, BACKBONE (efficientnet-lite0),
# SIZE (224), PRECISION (bf16-mixed), EXTRA (more `run` arguments, e.g. "--set backbone=small-cnn").
# START_BY (seconds, default none): a training or sweep step that would start later than this
# after the script began is skipped with a line saying so (a device call's time is fixed; each
# run is packed for the trip back as soon as it finishes, so what ran before the limit returns).
#
# Back here: `scripts/gpu_collect.sh <the files' folder>` unpacks the runs under
# results/gpu/finetune/ and evaluates those that came back as codes only (`hashbench evaluate`).
set -uo pipefail
cd "$(dirname "$0")/.."
PART=${1:-all}
# -P: never the working directory first on sys.path, where the checkout's bare hashbench/ folder
# would shadow the package installed into $CARRY/site (its subpackages live in other folders)
PY="${PYTHON:-python3} -P"
CARRY=${GPU_CARRY:-.gpu-carry}
OUT=${OUT:-results/gpu/out}
STEPS=${STEPS:-50}
BATCH=${BATCH:-250}
DEVICE=${DEVICE:-gpu}
DATASET=${DATASET:-cifar10}
PROTOCOL=${PROTOCOL-query1k-train5k-db54k}
BACKBONE=${BACKBONE:-efficientnet-lite0}
SIZE=${SIZE:-224}
PRECISION=${PRECISION:-bf16-mixed}
read -r -a EXTRA_ARGS <<<"${EXTRA:-}"
RUNS="$CARRY/runs-part$PART"
mkdir -p "$OUT" "$CARRY/site" "$CARRY/cache" "$RUNS"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
CARRY_DIR=$(realpath -m "$CARRY")
export HASHBENCH_DATA="$CARRY_DIR/part1" HASHBENCH_CACHE="$CARRY_DIR/cache"
export PYTHONPATH="$CARRY_DIR/site${PYTHONPATH:+:$PYTHONPATH}"
LOG="$OUT/log-part$PART.txt"
exec > >(tee -a "$LOG") 2>&1
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }
BEGAN=$(date +%s)
in_time() {  # in_time WHAT: false (and a line) when START_BY seconds have passed
  local elapsed=$(( $(date +%s) - BEGAN ))
  [ -z "${START_BY:-}" ] || [ "$elapsed" -le "$START_BY" ] && return 0
  echo "skipped ($elapsed s > START_BY=$START_BY s): $*"; return 1
}

stamp "part $PART on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
[ "$DATASET" != cifar10 ] || [ -f "$HASHBENCH_DATA/cifar10-jpg.tar.gz" ] || { echo "missing $HASHBENCH_DATA/cifar10-jpg.tar.gz (run part 1 first, or carry .gpu-carry/part1)"; exit 2; }

stamp "install carried wheels and this checkout into $CARRY/site (no index)"
wheels=$(ls "$CARRY"/part*/wheels/*.whl 2>/dev/null)
if [ -n "$wheels" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$CARRY/site" $wheels || exit 3
fi
$PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$CARRY/site" . || exit 3
$PY - <<'EOF' | tee "$OUT/env-part$PART.txt"
import importlib, platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for name in ("torchvision", "pytorch_lightning", "numpy", "faiss", "ortools", "efficientnet_lite_pytorch", "hashbench"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"), m.__file__)
    except Exception as err:
        print(name, "MISSING", type(err).__name__, err)
EOF

HB=($PY -m hashbench)
COMMON=(--dataset "$DATASET" ${PROTOCOL:+--protocol "$PROTOCOL"} --seeds 0 --device "$DEVICE" --variant finetune
        --no-speed --encode-only --no-progress --out "$RUNS" "${EXTRA_ARGS[@]}")
pack() {  # each finished run not packed yet -> $OUT/run-<method>.tar.gz (no checkpoints; a
  # codes.npz over 14 MiB is evaluated here and left out)
  local run name skip method
  for run in "$RUNS"/*/; do
    run=${run%/}; name=$(basename "$run")
    [ -f "$run/codes.npz" ] && [ ! -f "$run/.packed" ] || continue
    skip=()
    if [ "$(stat -c %s "$run/codes.npz")" -gt 14680064 ]; then
      [ -f "$run/metrics.csv" ] || "${HB[@]}" evaluate "$run"
      skip=(--exclude="$name/codes.npz")
    fi
    method=$(sed -n 's/^  method: //p' "$run/config.yaml" | head -1)
    tar -C "$RUNS" --exclude=checkpoints "${skip[@]}" -czf "$OUT/run-$method.tar.gz" "$name" && touch "$run/.packed"
  done
}
finetune() {  # finetune METHOD BITS EPOCHS [--set ...]
  local method=$1 bits=$2 epochs=$3; shift 3
  in_time "fine-tuned $method" || return 0
  local start=$(date +%s)
  "${HB[@]}" run --method "$method" --bits "$bits" --epochs "$epochs" "${COMMON[@]}" "$@"
  echo "wall_seconds method=$method bits=$bits epochs=$epochs $* (exit $?): $(( $(date +%s) - start ))"
  pack
}
gpu_sweep() {  # the 4-cell digits sweep on this machine's GPUs through the local executor (one
  # cell per GPU, pinned by CUDA_VISIBLE_DEVICES); manifest, status and cell logs -> $OUT/sweep-gpu.tar.gz
  in_time "GPU sweep" || return 0
  local store="$CARRY_DIR/sweep-gpu" file="$CARRY_DIR/digits-4cell-gpu.yaml" start=$(date +%s)
  # the committed file with this device, and the local executor's default jobs (one per GPU)
  sed -e "s|^out: .*|out: $store|" -e "s|^name: .*|name: digits-4cell-gpu|" -e "s|^device: cpu|device: $DEVICE|" \
    -e "/^  local: /d" sweeps/digits-4cell.yaml >"$file"
  # PYTHONSAFEPATH: the cells' `python -m hashbench` must not see the checkout's bare hashbench/ either
  PYTHONSAFEPATH=1 "${HB[@]}" sweep run "$file" --executor local
  echo "sweep exit $?: wall_seconds $(( $(date +%s) - start ))"
  PYTHONSAFEPATH=1 "${HB[@]}" sweep status "$file" | tee "$store/status.txt"
  cp "$file" "$store/"
  tar -C "$store" --exclude=checkpoints --exclude=codes.npz -czf "$OUT/sweep-gpu.tar.gz" .
}
throughput() {  # throughput METHODS CSV [extra args]
  local methods=$1 csv=$2; shift 2
  $PY scripts/training_throughput.py measure --methods "$methods" --dataset "$DATASET" --backbone "$BACKBONE" \
    --size "$SIZE" --batch "$BATCH" --steps "$STEPS" --warmup 5 --device "$DEVICE" --precision "$PRECISION" \
    --channels-last --csv "$csv" "$@"
}

# ONLY (default: all of them): the steps of part 1 to run, e.g. ONLY=drq after a call that ran out of time
want() { [[ " ${ONLY:-tests throughput hashnet sweep drq} " == *" $1 "* ]]; }
if [ "$PART" = 1 ] || [ "$PART" = all ]; then
  if want tests; then
    stamp "GPU tests (device-side pipeline)"
    $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_pipeline.py || true
  fi
  if want throughput; then
    stamp "throughput: bare, HashNet, DRQ at 224 px, bf16, channels_last, batched pipeline"
    throughput bare,hashnet,drq "$CARRY/tp-part1.csv"
    stamp "throughput: bare backbone, per-item pipeline (12 loader workers), bf16 - the old path"
    throughput bare "$CARRY/tp-part1-per-item.csv" --pipeline per_item --num-workers 12
    stamp "throughput: bare backbone, batched pipeline, float32"
    throughput bare "$CARRY/tp-part1-fp32.csv" --precision 32-true
    $PY -c "import pandas as pd, sys; pd.concat([pd.read_csv(f) for f in sys.argv[2:]]).to_csv(sys.argv[1], index=False)" \
      "$OUT/throughput-part1.csv" "$CARRY"/tp-part1*.csv
  fi
  stamp "fine-tuned runs: HashNet 32 bits, DRQ 32 bits (8/16/24/32 from one training)"
  ! want hashnet || finetune hashnet 32 "${HASHNET_EPOCHS:-30}"
  if want sweep; then
    stamp "a sweep on the GPU through the local executor"
    gpu_sweep
  fi
  ! want drq || finetune drq 32 "${DRQ_EPOCHS:-20}"
fi
if [ "$PART" = 2 ] || [ "$PART" = all ]; then
  stamp "throughput: bare, DHT, cascade at 224 px (flow solver on the CPU)"
  throughput bare,dht,cascade-dht "$OUT/throughput-part2.csv"
  stamp "fine-tuned runs: DHT and the cascade, d = 16, s = 1"
  finetune dht 16 "${DHT_EPOCHS:-20}" --set sparsity=1
  finetune cascade-dht 16 "${DHT_EPOCHS:-20}" --set sparsity=1
fi

stamp "pack what is not packed yet"
pack
ls -la "$OUT"
stamp "done"
