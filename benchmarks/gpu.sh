#!/usr/bin/env bash
# Issue 5's GPU figures in one call of the device tool (a lent H100/H200 with no network).
#
#   here, once (needs the package index):  bash benchmarks/gpu.sh prepare
#       -> .gpu/whl (medmnist, lightly, shtab wheels for the device's Python 3.12) and
#          .gpu/data (the two official npz files); .gpu/ is git-ignored through .git/info/exclude
#   on the device (carry [".gpu"]):        bash benchmarks/gpu.sh [study] [suite] [tests]
#       study  time of the quick BreastMNIST study on CUDA        -> $OUT/study-*.{json,md,txt}
#       suite  benchmarks/suite.py --device cuda (lightly side by side) -> $OUT/suite-cuda.{md,json}
#       tests  the test suite with CUDA visible: every `--device auto` test runs on the GPU
#   Commit $OUT's suite-cuda.* under benchmarks/results/ and the study time in docs/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == prepare ]]; then
  root="${MEDSSL_DATA_ROOT:-../shared/data/medmnist}"
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
  mkdir -p .gpu/whl .gpu/data
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/whl medmnist==3.0.2 shtab lightly==1.6.0
  cp "$root"/breastmnist.npz "$root"/pneumoniamnist.npz .gpu/data/
  du -sh .gpu
  exit 0
fi

[[ -d .gpu/whl && -d .gpu/data ]] || { echo "gpu.sh: run 'bash benchmarks/gpu.sh prepare' here and carry .gpu" >&2; exit 2; }
# torch, torchvision, numpy, sklearn, matplotlib, safetensors, tensorboard... are on the image
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/src" PYTHONUNBUFFERED=1 LIGHTLY_DID_VERSION_CHECK=True
export MEDSSL_DATA_ROOT="$PWD/.gpu/data"
OUT="${OUT:-/tmp/medssl-gpu}"
DEVICE="${DEVICE:-cuda}"  # DEVICE=cpu checks this script on a machine without a GPU
mkdir -p "$OUT"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.version.cuda)"

steps=("$@")
[[ $# -gt 0 ]] || steps=(study suite)
for s in "${steps[@]}"; do
  case "$s" in
    study)
      rm -rf /tmp/study-gpu
      t0=$(date +%s%N)
      python3 -m medssl.cli study --dataset breastmnist --budget quick --device "$DEVICE" \
        --out /tmp/study-gpu --no-progress | tee "$OUT/study-stdout.txt"
      echo "quick study wall time: $(( ($(date +%s%N) - t0) / 1000000 )) ms" | tee "$OUT/study-time.txt"
      cp /tmp/study-gpu/summary.json "$OUT/study-summary.json"
      cp /tmp/study-gpu/report.md "$OUT/study-report.md"
      ;;
    suite)
      python3 benchmarks/suite.py --device "$DEVICE" --out "$OUT"
      ;;
    tests)
      # mlflow (optional) and chromium (the report's browser test) are not on the image
      python3 -m pytest -q -p no:cacheprovider -k "not mlflow and not renders_offline" 2>&1 \
        | tee "$OUT/tests.txt" | tail -30
      ;;
    *) echo "gpu.sh: unknown step $s (study, suite, tests)" >&2; exit 2 ;;
  esac
done
