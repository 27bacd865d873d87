#!/usr/bin/env bash
# Reproduce the shipped PBE -> HSE06 water model (src/deepks_es/data/default_model.pt):
# sample -> label -> train -> evaluate.
# Usage: bash examples/train_water_model.sh [RANKS] [clusters|clusters812|periodic|periodic16|liquid16|liquid16_half]
#   RANKS: MPI ranks for labelling (default 2).
#   clusters (default): inputs/training/water.toml, the shipped model's training.
#   clusters812: inputs/training/water_clusters812.toml, the same plus 8 clusters of 8-12 waters
#     (inputs/training/clusters_8-12.xyz, ~23 min of labels with 2 ranks), no boxes.
#   periodic: inputs/training/water_periodic.toml, the same plus 8 clusters of 8-12 waters
#     (inputs/training/clusters_8-12.xyz, 70 min of labels at 1 thread) and the periodic HSE06 labels of the 16
#     liquid 8-water boxes in inputs/training/periodic/ (labels the missing ones first, ~35 min a box at 1 thread),
#     then also the periodic test set (examples/periodic_test_set.sh).
#   periodic16: inputs/training/water_periodic16.toml, the shipped model's training plus the periodic HSE06 labels
#     of 2 liquid 16-water boxes (inputs/training/periodic/boxes16.xyz; parts kept in the repository, 70 min for
#     the two with 2 ranks if remade), then the periodic test set.
#   liquid16: inputs/training/water_liquid16.toml, the same with 2 16-water boxes from the corrected sampler
#     (inputs/training/periodic/liquid16.xyz; parts kept in the repository, 71 min for the two with 2 ranks if remade).
#   liquid16_half: inputs/training/water_liquid16_half.toml, the same with the boxes' level terms at half weight.
# Everything goes to runs/water-model/; every step resumes after a crash or Ctrl-C (rerun the script).
# On 2 cores: labelling ~65 min (42 training frames of 1-8 waters + 2 boxes; the 8 test clusters of 9-15 waters
# take 6-25 min each at 1 thread), training ~17 min (phase 0 ~2 min; each of 3 refinement phases one SCF per
# frame ~3 min + ~2 min of epochs; ~64 min at 1 thread with 4 boxes), evaluation ~15 min.
set -euo pipefail
ranks=${1:-2}
variant=${2:-clusters}
cd "$(dirname "$0")/.."
export PYSCF_MAX_MEMORY=${PYSCF_MAX_MEMORY:-9000}  # MB a process: periodic HSE06's density fitting builds in core
out=runs/water-model
mkdir -p "$out"
# the shipped model's labels were made at a 100-Ha multigrid cutoff for periodic frames (the default is now 500)
label() { if [ "$ranks" -gt 1 ]; then mpiexec -n "$ranks" deepks-es label "$@" --ke-cutoff 100
          else deepks-es label "$@" --ke-cutoff 100; fi; }

# The configurations of the trained model are in inputs/training/ (MD is chaotic: resampling on another
# machine gives other frames). They were made with
#   deepks-es sample -o train.xyz --sizes 1-8 --clusters 40 --boxes 2 --seed 1   (clusters + periodic boxes)
#   deepks-es sample -o valid.xyz --sizes 8-16 --clusters 4 --size-bias 0 --seed 2   (frames 0-3)
#   deepks-es sample -o more.xyz --sizes 8-16 --clusters 4 --size-bias 0 --seed 3; cat more.xyz >> valid.xyz
# the test clusters from independent MDs (other seeds), larger than any training cluster.
for set in train valid; do [ -f "$out/$set.xyz" ] || cp "inputs/training/$set.xyz" "$out/$set.xyz"; done
[ -f "$out/train.h5" ] || label "$out/train.xyz" -o "$out/train.h5"
[ -f "$out/valid.h5" ] || label "$out/valid.xyz" -o "$out/valid.h5"

case $variant in
    clusters) config=inputs/training/water.toml; model=$out/train/model.pt ;;
    clusters812) config=inputs/training/water_clusters812.toml; model=$out/train_clusters812/model.pt
              [ -f "$out/clusters_8-12.h5" ] || label inputs/training/clusters_8-12.xyz -o "$out/clusters_8-12.h5" ;;
    periodic) config=inputs/training/water_periodic.toml; model=$out/train_periodic500/model.pt
              [ -f "$out/clusters_8-12.h5" ] || label inputs/training/clusters_8-12.xyz -o "$out/clusters_8-12.h5"
              label inputs/training/periodic/boxes8.xyz -o inputs/training/periodic/boxes8.h5 ;;
    periodic16) config=inputs/training/water_periodic16.toml; model=$out/train_periodic16/model.pt
              label inputs/training/periodic/boxes16.xyz -o inputs/training/periodic/boxes16.h5 ;;
    liquid16|liquid16_half) config=inputs/training/water_$variant.toml; model=$out/train_$variant/model.pt
              label inputs/training/periodic/liquid16.xyz -o inputs/training/periodic/liquid16.h5 ;;
    *) echo "usage: $0 [RANKS] [clusters|clusters812|periodic|periodic16|liquid16|liquid16_half]" >&2; exit 2 ;;
esac
deepks-es train "$config"                            # -> $model, loss.png beside it

eval=$(dirname "$model")/eval                          # runs/water-model/train*/eval_*.md and .json
deepks-es evaluate "$model" "$out/train.h5" --subset train -o "${eval}_train"
deepks-es evaluate "$model" "$out/train.h5" --subset validation -o "${eval}_validation"
deepks-es evaluate "$model" "$out/valid.h5" -o "${eval}_large_clusters"
[ "$variant" = clusters ] || bash examples/periodic_test_set.sh "$model"
echo "model: $model"
