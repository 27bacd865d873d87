#!/usr/bin/env bash
# The next surrogate, from scratch: the product-basis network (correlation 3) on DeePKS-ES labels at the
# converged 500-Ha multigrid cutoff (every label of the shipped surrogate's rounds 0-3 is at 100 Ha, where the
# mesh alone moves a box's forces by 130-165 meV/A RMS). Training data: q-SPC/Fw MD snapshots of 8-water
# boxes at 300 K and 450 K, 2-8-water clusters; held out: 16-, 32- and 64-water boxes and 5-water
# clusters from independent MDs. Then a 3-member committee and its evaluation.
#   bash examples/train_surrogate_500.sh [label|train|all]   (default all; resumable: rerun after an interruption)
# 'label' stops after the labels (they cost ~2 min a frame for 8 waters at 1 thread), 'train' needs them.
set -euo pipefail
stage=${1:-all}
case "$stage" in label|train|all) ;; *) echo "usage: $0 [label|train|all]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
out=runs/surrogate500
mkdir -p "$out"
source examples/surrogate_steps.sh
sample boxes8       --clusters 0 --liquid-boxes 48 --md-molecules 8  --seed 61
sample clusters     --clusters 24 --sizes 2-8 --md-molecules 64 --seed 63
sample hot8         --clusters 0 --liquid-boxes 24 --md-molecules 8  --seed 62 --temperature 450
sample test16       --clusters 0 --liquid-boxes 4  --md-molecules 16 --seed 65
sample testclusters --clusters 6 --sizes 5-5 --md-molecules 64 --seed 67
sample test32       --clusters 0 --liquid-boxes 2  --md-molecules 32 --seed 66
sample test64       --clusters 0 --liquid-boxes 1  --md-molecules 64 --seed 68
if [ "$stage" != train ]; then
  for name in boxes8 clusters hot8 test16 testclusters test32 test64; do
    [ -s "$out/$name.h5" ] || deepks-es label "$out/$name.xyz" -o "$out/$name.h5" --distill default --ke-cutoff 500
  done
fi
[ "$stage" = label ] && exit 0
train_committee inputs/training/surrogate_500.toml  # writes $out/train/surrogate.pt
for name in test16 testclusters test32 test64; do
  deepks-es evaluate "$out/train/surrogate.pt" "$out/$name.h5" -o "$out/eval_$name"
done
