"""PBE, HSE06 and DeePKS-ES (the shipped PBE -> HSE06 model) on one water structure, side by side.

    python examples/compare_functionals.py [STRUCTURE]
"""

import sys
from pathlib import Path

from deepks_es.constants import HARTREE_EV
from deepks_es.engines import make_engine
from deepks_es.structure import read_structure

path = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1] / "inputs/structures/water_dimer.xyz"
structure = read_structure(path)
engines = {
    "PBE": make_engine("none", xc="PBE"),
    "HSE06": make_engine("none", xc="HSE06"),
    "DeePKS-ES": make_engine("default"),
}
print(f"{'method':<20} {'energy/Ha':>16} {'HOMO/eV':>9} {'LUMO/eV':>9} {'gap/eV':>8} {'cycles':>6} {'s':>6}")
for name, engine in engines.items():
    r = engine.compute(structure)
    print(f"{name:<20} {r.energy:16.8f} {r.homo * HARTREE_EV:9.3f} {r.lumo * HARTREE_EV:9.3f} "
          f"{r.gap * HARTREE_EV:8.3f} {r.scf.cycles:6d} {r.wall_s:6.1f}")
