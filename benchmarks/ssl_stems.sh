#!/usr/bin/env bash
# SimCLR stem ablation (issue 3): pretrain one encoder per stem and pretraining seed with the
# same epochs and recipe, then probe each at 10%, 20% and 100% of the labels (probe seeds 0-2).
# Compare the stems on the probes' VALIDATION AUROC; test is reported, not chosen on.
# Usage: SEEDS="0 1 2" bash benchmarks/ssl_stems.sh DATASET EPOCHS "STEM ..." [DATA_ROOT] [OUT]
# SEEDS are the pretraining seeds (default "0"). Prints, per stem, each encoder's probe and then
# the mean ± std over pretraining seeds of the per-encoder means: the spread that one SimCLR run
# hides. Finished steps are skipped; a killed pretraining resumes.
set -euo pipefail
ds=$1; epochs=$2; stems=$3
root=${4:-${MEDSSL_DATA_ROOT:-../shared/data/medmnist}}
out=${5:-runs/ssl-stems}
seeds=${SEEDS:-0}
for stem in $stems; do
  csvs=()
  for seed in $seeds; do
    ssl="$out/$ds-$stem-s$seed-simclr"
    probe="$out/$ds-$stem-s$seed-probe"
    if [ ! -f "$ssl/pretrain.json" ]; then
      resume=""; [ -f "$ssl/last.pt" ] && resume="--resume"
      medssl pretrain --dataset "$ds" --data-root "$root" --out "$ssl" --epochs "$epochs" \
        --stem "$stem" --seed "$seed" --knn-every 10 --no-progress $resume
    fi
    [ -f "$probe/summary.json" ] || medssl probe --encoder "$ssl/encoder.safetensors" \
      --dataset "$ds" --data-root "$root" --out "$probe" --label-fractions 0.1,0.2,1.0 \
      --no-progress
    csvs+=("$probe/results.csv")
  done
  python3 - "$stem" "${csvs[@]}" <<'PY'
import csv, statistics as st, sys

def sd(xs):
    return st.stdev(xs) if len(xs) > 1 else 0.0

stem, paths = sys.argv[1], sys.argv[2:]
per_encoder = []  # {fraction: (mean val, mean test)} per pretraining seed
for path in paths:
    rows = list(csv.DictReader(open(path)))
    means = {}
    for f in sorted({r["label_fraction"] for r in rows}, key=float):
        rs = [r for r in rows if r["label_fraction"] == f]
        v = [float(r["val_auroc"]) for r in rs]
        t = [float(r["test_auroc"]) for r in rs]
        means[f] = (st.mean(v), st.mean(t))
        print(f"{stem:9s} {path.split('/')[-2]:28s} labels {f:>4s}: val AUROC {st.mean(v):.3f}"
              f"  test AUROC {st.mean(t):.3f} ± {sd(t):.3f} (probe seeds, n={len(rs)})")
    per_encoder.append(means)
if len(per_encoder) > 1:
    for f in per_encoder[0]:
        v = [m[f][0] for m in per_encoder]
        t = [m[f][1] for m in per_encoder]
        print(f"{stem:9s} over {len(per_encoder)} pretraining seeds, labels {f:>4s}: val AUROC "
              f"{st.mean(v):.3f} ± {sd(v):.3f}  test AUROC {st.mean(t):.3f} ± {sd(t):.3f}")
PY
done
