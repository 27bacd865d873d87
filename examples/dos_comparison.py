"""PBE, DeePKS-ES and HSE06 densities of states of one liquid-water snapshot, in one plot.

    python examples/dos_comparison.py [--structure XYZ] [--model PATH|default] [--ke-cutoff HA] [--out PNG]

Periodic HSE06 runs through Gaussian density fitting (energies and levels only): it takes a few
minutes for the 8-water box. DeePKS-ES uses the shipped model unless --model says otherwise.
"""

import argparse
from pathlib import Path

import matplotlib.pyplot as plt

from deepks_es.constants import HARTREE_EV
from deepks_es.engines import make_engine
from deepks_es.observables import DOSGrid
from deepks_es.structure import read_structure

REPO = Path(__file__).resolve().parents[1]
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--structure", default=REPO / "inputs/structures/water_liquid_8.xyz")
parser.add_argument("--model", default="default")
parser.add_argument("--ke-cutoff", type=float, default=100.0, help="multigrid cutoff for PBE/DeePKS-ES, Hartree")
parser.add_argument("--out", default="dos_comparison.png")
args = parser.parse_args()

snapshot = read_structure(args.structure)
grid = DOSGrid(emin_ev=-30, emax_ev=10, npoints=801, sigma_ev=0.2)
engines = {"PBE": make_engine("none", xc="PBE", ke_cutoff=args.ke_cutoff),
           "HSE06": make_engine("none", xc="HSE06", ke_cutoff=args.ke_cutoff),
           "DeePKS-ES": make_engine(args.model, ke_cutoff=args.ke_cutoff)}

fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
for (name, engine), color in zip(engines.items(), ("tab:blue", "k", "tab:red")):
    result = engine.compute(snapshot)
    print(f"{name:10s} gap {result.gap * HARTREE_EV:6.3f} eV  HOMO {result.homo * HARTREE_EV:7.3f} eV  "
          f"{result.wall_s:6.1f} s{'' if result.converged else '  (SCF NOT converged)'}")
    ax.plot(grid.energies_ev, grid.dos(result.mo_energy), color=color, lw=1.3,
            label=f"{name} (gap {result.gap * HARTREE_EV:.2f} eV)")
ax.set_xlabel("energy (eV)")
ax.set_ylabel("DOS (states/eV)")
ax.set_title(f"{Path(args.structure).name}: {snapshot.natoms // 3} waters")
ax.legend(fontsize=8)
fig.savefig(args.out, dpi=120)
print(f"plot: {args.out}")
