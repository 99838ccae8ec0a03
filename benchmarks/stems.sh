#!/usr/bin/env bash
# Stem ablation (issue 2): fine-tune-all from scratch, seed 0, default options otherwise;
# PneumoniaMNIST for 10 epochs (the CIFAR stem costs ~8 min per 10 epochs on 2 CPU cores).
# Usage: bash benchmarks/stems.sh [DATA_ROOT] [OUT]; then: medssl compare OUT/*
# Finished runs (metrics.json present) are skipped, so a killed ablation resumes.
set -euo pipefail
root=${1:-${MEDSSL_DATA_ROOT:-../shared/data/medmnist}}
out=${2:-runs/stems}
for ds in breastmnist pneumoniamnist; do
  epochs=30; [ "$ds" = pneumoniamnist ] && epochs=10
  for stem in imagenet compact cifar; do
    run="$out/$ds-$stem"
    [ -f "$run/metrics.json" ] && continue
    resume=""; [ -f "$run/last.pt" ] && resume="--resume"
    prec=fp32; [ "$stem" != imagenet ] && prec=bf16   # bf16 autocast: ~2.3x on 3x3 stems here
    medssl train --dataset "$ds" --data-root "$root" --stem "$stem" --precision "$prec" \
      --epochs "$epochs" --seed 0 --out "$run" --no-progress $resume
  done
done
