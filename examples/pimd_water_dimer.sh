#!/usr/bin/env bash
# Path-integral MD of the water dimer (4 beads, PILE-L, 300 K) with two DeePKS-ES clients,
# followed by the electronic analysis (bead-averaged DOS with its bead spread, gap statistics).
#
#   bash examples/pimd_water_dimer.sh [MODEL]        # MODEL: a model file, default or none (default: none)
#
# Outputs: runs/pimd-dimer/ (i-PI files) and runs/pimd-dimer/analysis/ (PNG, CSV, summary.json).
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-none}"

# 20 steps instead of the template's 3: a short but analysable trajectory (~3 min on 2 cores)
mkdir -p runs/pimd-dimer
sed -e 's|<total_steps> 3 </total_steps>|<total_steps> 20 </total_steps>|' \
    -e "s|../structures/|$PWD/inputs/structures/|" inputs/ipi/pimd_cluster.xml > runs/pimd-dimer/pimd.xml

deepks-es run runs/pimd-dimer/pimd.xml --run-dir runs/pimd-dimer --clients 2 --model "$model"
deepks-es analyze runs/pimd-dimer --skip 5        # again, leaving out the first 5 steps as equilibration
