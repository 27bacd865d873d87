#!/usr/bin/env bash
# Reproduce the trained PBE -> HSE06 water model (models/): sample -> label -> train -> evaluate.
# Usage: bash examples/train_water_model.sh [RANKS]   (RANKS MPI ranks for labelling; default 2)
# Everything goes to runs/water-model/; every step resumes after a crash or Ctrl-C (rerun the script).
# On 2 cores: labelling ~60 min (42 training frames of 1-8 waters + 2 boxes, 4 clusters of 9-15 waters),
# phase-0 training ~5 min, each refinement phase one SCF per frame (~20+ min) plus ~3 min, evaluation ~20 min.
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
echo "model: $model  (the one in the repository: models/water_pbe_hse06_phase0.pt)"
