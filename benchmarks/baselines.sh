#!/usr/bin/env bash
# Issue-2 result tables for one dataset: the default recipe (fine-tune all, BCE), weighted BCE
# and head-only (frozen random-init encoder: logistic regression on cached features), 3 seeds.
# Finished runs are skipped and killed ones resume, so rerunning the script continues.
# Usage: bash benchmarks/baselines.sh DATASET [DATA_ROOT] [OUT]; then medssl compare OUT/DATASET-*
set -euo pipefail
ds=$1
root=${2:-${MEDSSL_DATA_ROOT:-../shared/data/medmnist}}
out=${3:-runs/baselines}
run() {  # run NAME ARGS...
  local dir="$out/$1"; shift
  [ -f "$dir/metrics.json" ] && return 0
  local resume=""; [ -f "$dir/last.pt" ] && resume="--resume"
  /usr/bin/time -f "$dir wall %e s" medssl train --dataset "$ds" --data-root "$root" \
    --out "$dir" --no-progress $resume "$@"
}
for seed in 0 1 2; do
  run "$ds-all-bce-s$seed" --seed "$seed"
  run "$ds-all-wbce-s$seed" --seed "$seed" --loss weighted-bce
  run "$ds-head-bce-s$seed" --seed "$seed" --mode head --augment none --lr 1e-2
done
