#!/usr/bin/env bash
# The periodic test set of the shipped model: 4 liquid boxes of 8 waters (snapshots of a q-SPC/Fw MD at
# 300 K and 1.0 g/cm3, seed 2399: no training frame comes from it), labelled with periodic HSE06 (Gaussian
# density fitting, Γ point) and PBE (multigrid), then `deepks-es evaluate MODEL` against HSE06.
# Usage: bash examples/periodic_test_set.sh [MODEL]     (default: default, the shipped model)
# Everything goes to runs/periodic-test/; labelling resumes after a crash or Ctrl-C (rerun the script).
# On 2 cores: labelling ~11 min per box at 1 thread (~45 min), evaluation ~2 min.
set -euo pipefail
model=${1:-default}
cd "$(dirname "$0")/.."
out=runs/periodic-test
mkdir -p "$out"
[ -f "$out/boxes8.xyz" ] || deepks-es sample -o "$out/boxes8.xyz" --clusters 0 --liquid-boxes 4 --md-molecules 8 \
    --seed 2399
[ -f "$out/boxes8.h5" ] || deepks-es label "$out/boxes8.xyz" -o "$out/boxes8.h5"
deepks-es evaluate "$model" "$out/boxes8.h5" -o "$out/eval_$(basename "$model" .pt)"
