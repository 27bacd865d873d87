#!/usr/bin/env bash
# Round 5 of the surrogate: two networks, trained in two stages. Data: round 4's DeePKS-ES labels at 500 Ha
# (examples/train_surrogate_500.sh label: 8-water boxes at 300 K and 450 K, 2-8-water clusters, and the held-out
# 16-, 32-, 64-water boxes and 5-water clusters) plus 96 more 300-K and 48 more 450-K 8-water boxes and 24
# 16-water boxes (an 8-water cell's conduction edge is an isolated finite-size state: README, "Round 5").
# Stage 1 trains the force field on the 8-water boxes and the clusters (energy and forces, q-SPC/Fw with its
# intramolecular part refitted as the baseline, a long learning-rate schedule), stage 2 the separate Hamiltonian
# network on top of it, the 16-water boxes included; stage 3 fine-tunes the force field with the 16-water boxes'
# energies in place of the 8-water ones (README, "Round 7"); each stage a 3-member committee (stage 2 trains 4
# and serves the 3 of lowest validation loss: README, "Round 8"); stage 4 fine-tunes the force field on the
# frames whose labels are the bulk's (clusters, 16- and 32-water boxes; an 8-water cell's Gamma-point label is
# not: README, "Round 9"); stage 5 adds an active-learning set to stage 4's frames, clusters cut from stage 4's
# own MD, and 24 32-water boxes of another MD (README, "Round 10"); then the force field of stage 1 on the
# 16-water boxes it did not train on, and the evaluation of stages 3-5 on the held-out sets (8 more 32-water boxes
# among them, seed 76, and 12 5-water clusters of stage 4's main job).
#   bash examples/train_surrogate_r5.sh [label|train|all]   (default all; resumable: rerun after an interruption)
set -euo pipefail
stage=${1:-all}
case "$stage" in label|train|all) ;; *) echo "usage: $0 [label|train|all]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
out=runs/surrogate500
[ "$stage" = train ] || bash examples/train_surrogate_500.sh label  # round 4's sets, labelled
source examples/surrogate_steps.sh
sample boxes8b --clusters 0 --liquid-boxes 96 --md-molecules 8 --seed 71
sample hot8b   --clusters 0 --liquid-boxes 48 --md-molecules 8 --seed 72 --temperature 450
sample boxes16 --clusters 0 --liquid-boxes 24 --md-molecules 16 --seed 73
sample boxes32 --clusters 0 --liquid-boxes 12 --md-molecules 32 --seed 75  # stage 4
sample test32b --clusters 0 --liquid-boxes 8 --md-molecules 32 --seed 76   # held out
sample boxes32c --clusters 0 --liquid-boxes 24 --md-molecules 32 --seed 77  # stage 5
if [ "$stage" != train ]; then
  # Stage 5's clusters come from stage 4's own MD: its main job (held out) and a 2-ps NVE run from the main job's
  # last frame (README, "NVE"), ~8 min and ~1 h on 2 cores
  own=runs/surrogate500-own
  if [ ! -s "$own/main/runs/liquid-water/analysis/summary.json" ]; then  # written when a run has finished
    mkdir -p "$own/main" && (cd "$own/main" && deepks-es run --model ../../surrogate500/r5_large/surrogate.pt)
  fi
  if [ ! -s "$own/nve/analysis/summary.json" ]; then
    python -c "import sys; from deepks_es.structure import read_structure, write_structures; \
write_structures(sys.argv[2], [read_structure(sys.argv[1])])" "$own/main/runs/liquid-water/simulation.pos_0.xyz" \
      "$own/start.xyz"
    sed 's#../structures/water_liquid_64.xyz#start.xyz#' inputs/ipi/nve_liquid_surrogate.xml > "$own/nve.xml"
    deepks-es run "$own/nve.xml" --model "$out/r5_large/surrogate.pt" --precision float64 --committee-every 4000 \
      --observables-every 200 --run-dir "$own/nve"
  fi
  sample ownclusters --from-run "$own/nve" --clusters 48 --sizes 2-8 --distortion 0 --seed 81 --skip 400
  sample owntest5 --from-run "$own/main/runs/liquid-water" --clusters 12 --sizes 5-5 --distortion 0 --seed 82 \
    --skip 200  # held out
  for name in boxes8b hot8b boxes16 boxes32 test32b boxes32c ownclusters owntest5; do  # ~40 s an 8-water frame at
    # one thread, ~4 min a 16-water one, ~6 min a 32-water one, ~15 s a cluster
    [ -s "$out/$name.h5" ] || deepks-es label "$out/$name.xyz" -o "$out/$name.h5" --distill default --ke-cutoff 500
  done
fi
[ "$stage" = label ] && exit 0
train_committee inputs/training/surrogate_r5_forcefield.toml   # writes $out/r5_forcefield/surrogate.pt
python examples/surrogate_force_breakdown.py "$out/r5_forcefield/surrogate.pt" "$out/boxes16.h5" \
    > "$out/eval_r5_forcefield_boxes16.txt"                     # forces on 24 boxes that stage 1 never saw
train_committee inputs/training/surrogate_r5_hamiltonian.toml 4  # writes $out/r5_hamiltonian/surrogate.pt
train_committee inputs/training/surrogate_r5_bulk.toml         # writes $out/r5_bulk/surrogate.pt
train_committee inputs/training/surrogate_r5_large.toml        # writes $out/r5_large/surrogate.pt
for name in boxes32c ownclusters owntest5; do
  [ -s "$out/$name.h5" ] || { echo "$0: stage 5 needs $out/$name.h5 (stage 4's own MD): run '$0 label'" >&2; exit 1; }
done
train_committee inputs/training/surrogate_r5_own.toml          # writes $out/r5_own/surrogate.pt (shipped)
for name in test16 testclusters test32 test64 test32b owntest5; do
  deepks-es evaluate "$out/r5_bulk/surrogate.pt" "$out/$name.h5" -o "$out/eval_r5_$name"
  deepks-es evaluate "$out/r5_large/surrogate.pt" "$out/$name.h5" -o "$out/eval_r5large_$name"
  deepks-es evaluate "$out/r5_own/surrogate.pt" "$out/$name.h5" -o "$out/eval_r5own_$name"
done
