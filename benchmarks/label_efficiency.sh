#!/usr/bin/env bash
# Issue-3 label-efficiency grid for one dataset: SimCLR pretraining, linear probes of the SSL
# encoder and of a random encoder, and (optionally) supervised / SSL fine-tuning at each
# fraction. Finished steps are skipped; killed ones resume.
# Usage: bash benchmarks/label_efficiency.sh DATASET PRETRAIN_EPOCHS [DATA_ROOT] [OUT] [--finetune]
set -euo pipefail
ds=$1; pt_epochs=$2
root=${3:-${MEDSSL_DATA_ROOT:-../shared/data/medmnist}}
out=${4:-runs/ssl}
fractions=0.01,0.05,0.1,0.2,1.0
ssl="$out/$ds-simclr"
if [ ! -f "$ssl/pretrain.json" ]; then
  resume=""; [ -f "$ssl/last.pt" ] && resume="--resume"
  medssl pretrain --dataset "$ds" --data-root "$root" --out "$ssl" --epochs "$pt_epochs" \
    --knn-every 5 --no-progress $resume
fi
[ -f "$out/$ds-probe-ssl/summary.json" ] || medssl probe --encoder "$ssl/encoder.safetensors" \
  --dataset "$ds" --data-root "$root" --out "$out/$ds-probe-ssl" --label-fractions "$fractions" \
  --no-progress
[ -f "$out/$ds-probe-random/summary.json" ] || medssl probe --encoder random --stem imagenet \
  --dataset "$ds" --data-root "$root" --out "$out/$ds-probe-random" \
  --label-fractions "$fractions" --no-progress
if [ "${5:-}" = "--finetune" ]; then
  for f in ${fractions//,/ }; do
    for seed in 0 1 2; do
      for init in scratch ssl; do
        dir="$out/$ds-ft-$init-f$f-s$seed"
        [ -f "$dir/metrics.json" ] && continue
        resume=""; [ -f "$dir/last.pt" ] && resume="--resume"
        src=scratch; extra=""
        [ "$init" = ssl ] && src="$ssl/encoder.safetensors" && extra="--encoder-lr-scale 0.1"
        medssl train --dataset "$ds" --data-root "$root" --out "$dir" --stem imagenet \
          --init "$src" --label-fraction "$f" --seed "$seed" --no-progress $extra $resume
      done
    done
  done
fi
