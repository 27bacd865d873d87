#!/usr/bin/env bash
# Reproduce the shipped PBE -> HSE06 water model (src/deepks_es/data/default_model.pt):
# sample -> label -> train -> evaluate.
# Usage: bash examples/train_water_model.sh [RANKS]   (RANKS MPI ranks for labelling; default 2)
# Everything goes to runs/water-model/; every step resumes after a crash or Ctrl-C (rerun the script).
# On 2 cores: labelling ~65 min (42 training frames of 1-8 waters + 2 boxes, 4 clusters of 9-15 waters),
# training ~17 min (phase 0 ~2 min; each of 3 refinement phases one SCF per frame ~3 min + ~2 min of epochs),
# evaluation ~15 min.
set -euo pipefail
ranks=${1:-2}
cd "$(dirname "$0")/.."
out=runs/water-model
mkdir -p "$out"
label() { if [ "$ranks" -gt 1 ]; then mpiexec -n "$ranks" deepks-es label "$@"; else deepks-es label "$@"; fi; }

# The configurations of the trained model are in inputs/training/ (MD is chaotic: resampling on another
# machine gives other frames). They were made with
#   deepks-es sample -o train.xyz --sizes 1-8 --clusters 40 --boxes 2 --seed 1   (clusters + periodic boxes)
#   deepks-es sample -o valid.xyz --sizes 8-16 --clusters 4 --size-bias 0 --seed 2
# the second from an independent MD (another seed): test clusters larger than any training cluster.
for set in train valid; do [ -f "$out/$set.xyz" ] || cp "inputs/training/$set.xyz" "$out/$set.xyz"; done
[ -f "$out/train.h5" ] || label "$out/train.xyz" -o "$out/train.h5"
[ -f "$out/valid.h5" ] || label "$out/valid.xyz" -o "$out/valid.h5"

deepks-es train inputs/training/water.toml           # -> runs/water-model/train/model.pt, loss.png

model=$out/train/model.pt
deepks-es evaluate "$model" "$out/train.h5" --subset train -o "$out/eval_train"
deepks-es evaluate "$model" "$out/train.h5" --subset validation -o "$out/eval_validation"
deepks-es evaluate "$model" "$out/valid.h5" -o "$out/eval_large_clusters"
echo "model: $model  (shipped as src/deepks_es/data/default_model.pt)"
