"""How far a small liquid cell's Γ-point labels are from its supercell's: the finite-size part of a label.

    python examples/cell_size_labels.py [STRUCTURE] [--frame N] [--reps 2,1,1] [--models default,MODEL.pt ...]
                                        [--ke-cutoff 500] [--threads N]

The supercell (``--reps`` copies of the box, default 2,1,1) holds the same atoms in the same local structure; its Γ
point samples the box's Brillouin zone at n1 n2 n3 k-points. A local model (the surrogate) gives both the same energy
per atom and the same force on every copy of an atom, so where an SCF engine's box and supercell differ, the box is
too small for its Γ-point label to be the bulk's, and a local model trained on such boxes learns that finite-size
error. (The box's Γ-point levels are among a local model's supercell levels, so there its HOMO can only rise and
its LUMO only fall: the supercell's other k-points.) For each model (default: `default`, DeePKS-ES with the
shipped model; a surrogate file for comparison), prints the box's and the supercell's energy per atom, the
change of the box's forces (copy 0 of the supercell; RMS and largest component), and HOMO, LUMO and gap of both
(eV; a periodic cell's levels are referenced to its mean potential, the same in both cells).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from deepks_es.constants import FORCE_EV_ANGSTROM, HARTREE_EV
from deepks_es.engines import make_engine
from deepks_es.engines.registry import is_surrogate_model
from deepks_es.structure import read_structures

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("structure", nargs="?",
                    default=Path(__file__).parents[1] / "src/deepks_es/data/water_liquid_8.xyz")
parser.add_argument("--frame", type=int, default=0, help="frame of STRUCTURE (default: 0)")
parser.add_argument("--reps", default="2,1,1", help="copies along the three lattice vectors (default: 2,1,1)")
parser.add_argument("--models", default="default", help="comma-separated: default, none (PBE), a model file")
parser.add_argument("--ke-cutoff", type=float, default=500.0, help="multigrid cutoff of periodic SCFs (Hartree)")
parser.add_argument("--threads", type=int, default=None)
args = parser.parse_args()

box = read_structures(args.structure)[args.frame]
supercell = box.repeated([int(n) for n in args.reps.split(",")])
print(f"{args.structure} frame {args.frame}: {box.natoms} atoms; supercell {args.reps}: {supercell.natoms} atoms")
for model in args.models.split(","):
    scf = {} if is_surrogate_model(model) else {"ke_cutoff": args.ke_cutoff}
    engine = make_engine(model, threads=args.threads, **scf)
    results = []
    for structure in (box, supercell):
        start = time.perf_counter()
        results.append(engine.compute(structure))
        print(f"  {model}: {structure.natoms} atoms in {time.perf_counter() - start:.0f} s, "
              f"converged {results[-1].converged}", flush=True)
    small, large = results
    change = (large.forces[:box.natoms] - small.forces) * FORCE_EV_ANGSTROM * 1000
    per_atom = [r.energy * HARTREE_EV * 1000 / s.natoms for r, s in zip(results, (box, supercell))]
    print(f"{model}: energy per atom supercell - box {per_atom[1] - per_atom[0]:+.3f} meV/atom; forces supercell - "
          f"box RMS {np.sqrt((change ** 2).mean()):.1f}, largest {np.abs(change).max():.1f} meV/Å")
    for name in ("homo", "lumo", "gap"):
        values = [getattr(r, name) * HARTREE_EV for r in results]
        print(f"  {name.upper():4s} box {values[0]:+.4f}  supercell {values[1]:+.4f}  change {values[1] - values[0]:+.4f} eV")
