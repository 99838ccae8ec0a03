#!/usr/bin/env bash
# Issue-2 result tables: default recipe (fine-tune all, BCE), weighted BCE and head-only, 3 seeds,
# both datasets. Finished runs are skipped and a killed run resumes, so rerunning continues.
# Usage: bash benchmarks/baselines.sh [DATA_ROOT] [OUT]; then: medssl compare OUT/<dataset>-*
set -euo pipefail
root=${1:-${MEDSSL_DATA_ROOT:-../shared/data/medmnist}}
out=${2:-runs/baselines}
run() {  # run NAME ARGS...
  local dir="$out/$1"; shift
  [ -f "$dir/metrics.json" ] && return 0
  local resume=""; [ -f "$dir/last.pt" ] && resume="--resume"
  medssl train --data-root "$root" --out "$dir" --no-progress $resume "$@"
}
for ds in breastmnist pneumoniamnist; do
  for seed in 0 1 2; do
    run "$ds-all-bce-s$seed" --dataset "$ds" --seed "$seed"
    run "$ds-all-wbce-s$seed" --dataset "$ds" --seed "$seed" --loss weighted-bce
    run "$ds-head-bce-s$seed" --dataset "$ds" --seed "$seed" --mode head --augment none --lr 1e-2
  done
done
