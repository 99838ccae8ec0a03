#!/usr/bin/env bash
# SimCLR stem ablation (issue 3): pretrain one encoder per stem with the same seed, epochs and
# recipe, then probe each at 10%, 20% and 100% of the labels (seeds 0-2). Compare the stems on
# the probes' VALIDATION AUROC (results.csv, column val_auroc); test is reported, not chosen on.
# Usage: bash benchmarks/ssl_stems.sh DATASET EPOCHS "STEM ..." [DATA_ROOT] [OUT]
# Finished steps are skipped; a killed pretraining resumes.
set -euo pipefail
ds=$1; epochs=$2; stems=$3
root=${4:-${MEDSSL_DATA_ROOT:-../shared/data/medmnist}}
out=${5:-runs/ssl-stems}
for stem in $stems; do
  ssl="$out/$ds-$stem-simclr"
  if [ ! -f "$ssl/pretrain.json" ]; then
    resume=""; [ -f "$ssl/last.pt" ] && resume="--resume"
    medssl pretrain --dataset "$ds" --data-root "$root" --out "$ssl" --epochs "$epochs" \
      --stem "$stem" --knn-every 10 --no-progress $resume
  fi
  [ -f "$out/$ds-$stem-probe/summary.json" ] || medssl probe --encoder "$ssl/encoder.safetensors" \
    --dataset "$ds" --data-root "$root" --out "$out/$ds-$stem-probe" \
    --label-fractions 0.1,0.2,1.0 --no-progress
  python3 - "$out/$ds-$stem-probe/results.csv" "$stem" <<'PY'
import csv, statistics as st, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for f in sorted({r["label_fraction"] for r in rows}, key=float):
    rs = [r for r in rows if r["label_fraction"] == f]
    v = [float(r["val_auroc"]) for r in rs]; t = [float(r["test_auroc"]) for r in rs]
    print(f"{sys.argv[2]:9s} labels {f:>4s}: val AUROC {st.mean(v):.3f}  test AUROC "
          f"{st.mean(t):.3f} ± {st.stdev(t) if len(t) > 1 else 0:.3f}  (n={len(rs)})")
PY
done
