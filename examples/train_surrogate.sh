#!/usr/bin/env bash
# Round 3 of the surrogate (shipped as --model surrogate until stop 45; now round 5: train_surrogate_r5.sh), end
# to end: DeePKS-ES (shipped model) labels of 8-water liquid
# boxes (300 K and 450 K) and 2-8-water clusters from q-SPC/Fw MD, a 3-member committee learning DeePKS-ES minus
# q-SPC/Fw (round 0), two active-learning rounds (round 1: the round-0 committee's own MD, labelled with DeePKS-ES,
# fine-tunes it; round 2: clusters cut from round 1's own MD and its frames fine-tune round 1), round 3 (the
# smooth network, warm-started from round 2: shipped until stop 45), and the evaluation on held-out 16-, 32- and
# 64-water boxes and 5-water clusters from independent MDs.
# Resumable: rerun after an interruption. Run from the repository root. The labels of boxes are made at the
# 100-Ha multigrid cutoff round 3 was trained with (the default is now 500 Ha: README "Periodic cutoff").
set -euo pipefail
out=runs/surrogate
mkdir -p "$out"
source examples/surrogate_steps.sh
sample boxes8   --clusters 0 --liquid-boxes 48 --md-molecules 8  --seed 11
sample test16   --clusters 0 --liquid-boxes 4  --md-molecules 16 --seed 12
sample clusters --clusters 24 --sizes 2-8 --md-molecules 64 --seed 13
sample hot8     --clusters 0 --liquid-boxes 24 --md-molecules 8  --seed 14 --temperature 450
sample test32   --clusters 0 --liquid-boxes 2  --md-molecules 32 --seed 101
sample test64   --clusters 0 --liquid-boxes 1  --md-molecules 64 --seed 102
for name in boxes8 clusters hot8 test16 test32 test64; do  # 23 s, 21 s, ... a frame on 2 cores (README)
  [ -s "$out/$name.h5" ] || deepks-es label "$out/$name.xyz" -o "$out/$name.h5" --distill default --ke-cutoff 100
done
# one member per core side by side; the last to finish writes the model file
train_committee inputs/training/surrogate.toml  # writes $out/train/surrogate.pt
round0=$out/train/surrogate.pt
# round 1: exploration MD with the round-0 committee (member 0 drives), its frames labelled, fine-tuning
explore() {  # explore NAME TEMPLATE SKIP FRAMES SEED
  [ -s "$out/$1-md/simulation.out" ] || deepks-es run "inputs/ipi/$2" --model "$round0" --committee-every 100 \
      --observables-every 100 --run-dir "$out/$1-md"
  sample "$1" --from-run "$out/$1-md" --skip "$3" --clusters 0 --liquid-boxes "$4" --distortion 0 --seed "$5"
  [ -s "$out/$1.h5" ] || deepks-es label "$out/$1.xyz" -o "$out/$1.h5" --distill default --ke-cutoff 100
}
explore al8 explore_liquid8_surrogate.xml 100 24 22
explore al64 explore_liquid64_surrogate.xml 200 2 23
train_committee inputs/training/surrogate_al.toml  # writes $out/al1/surrogate.pt
round1=$out/al1/surrogate.pt
# round 2: the round-1 committee's own 64-water MD; clusters of 3-7 waters cut from it (what the main job's
# on-the-fly validation computes: round 1 had seen no cluster), four of its frames, fresh 8-water anchor boxes
[ -s "$out/al2-md/simulation.out" ] || deepks-es run inputs/ipi/explore_liquid64_surrogate.xml --model "$round1" \
    --committee-every 100 --observables-every 100 --run-dir "$out/al2-md"
from_al2() { sample "$1" --from-run "$out/al2-md" --skip 100 --distortion 0 "${@:2}"; }
from_al2 al2c  --clusters 20 --sizes 4-6 --size-bias 0 --liquid-boxes 0 --seed 31
from_al2 al2c2 --clusters 20 --sizes 3-7 --size-bias 0 --liquid-boxes 0 --seed 34
from_al2 al2b  --clusters 0 --liquid-boxes 2 --seed 32        # steps 100 and 600
if [ ! -s "$out/al2b2.xyz" ]; then                             # steps 225 and 475: frames 1 and 3 of 5
  deepks-es sample -o "$out/al2b5.xyz" --from-run "$out/al2-md" --skip 100 --distortion 0 --clusters 0 \
      --liquid-boxes 5 --seed 33
  python -c "import ase.io as io, sys; f = io.read(sys.argv[1], ':'); io.write(sys.argv[2], [f[1], f[3]])" \
      "$out/al2b5.xyz" "$out/al2b2.xyz"
fi
sample anchor8     --clusters 0 --liquid-boxes 12 --md-molecules 8 --seed 41
sample anchorhot8  --clusters 0 --liquid-boxes 12 --md-molecules 8 --seed 42 --temperature 450
sample testclusters --clusters 6 --sizes 5-5 --md-molecules 64 --seed 103   # held out: 5-water cuts of q-SPC/Fw MD
for name in al2c al2c2 al2b al2b2 anchor8 anchorhot8 testclusters; do
  [ -s "$out/$name.h5" ] || deepks-es label "$out/$name.xyz" -o "$out/$name.h5" --distill default --ke-cutoff 100
done
train_committee inputs/training/surrogate_al2.toml  # writes $out/al2/surrogate.pt
# round 3 (shipped until stop 45): round 2's weights warm-start the smooth network (message_envelope: no energy jump
# where a pair crosses the cutoff), refitted on round 2's data plus fresh q-SPC/Fw boxes and clusters
sample anchor8b    --clusters 0 --liquid-boxes 24 --md-molecules 8 --seed 51
sample anchorhot8b --clusters 0 --liquid-boxes 24 --md-molecules 8 --seed 52 --temperature 450
sample clusters2   --clusters 24 --sizes 2-8 --md-molecules 64 --seed 53
for name in anchor8b anchorhot8b clusters2; do
  [ -s "$out/$name.h5" ] || deepks-es label "$out/$name.xyz" -o "$out/$name.h5" --distill default --ke-cutoff 100
done
train_committee inputs/training/surrogate_smooth.toml  # writes $out/smooth/surrogate.pt
model=$out/smooth/surrogate.pt
for name in test16 test32 test64 testclusters; do deepks-es evaluate "$model" "$out/$name.h5" -o "$out/eval_$name"; done
# against HSE06 on the test clusters of the DeePKS-ES model (9-15 waters, inputs/training/valid.xyz)
[ -s "$out/valid_hse.h5" ] || deepks-es label inputs/training/valid.xyz -o "$out/valid_hse.h5"
deepks-es evaluate "$model" "$out/valid_hse.h5" -o "$out/eval_valid_hse"
