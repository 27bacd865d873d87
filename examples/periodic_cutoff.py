"""How the periodic multigrid cutoff moves forces and levels: the egg-box effect and the gap's convergence.

    python examples/periodic_cutoff.py [STRUCTURE] [--cutoffs 100,200,300,400,500] [--model none|default]
                                       [--frame N] [--hse06] [--threads N]

For each cutoff (Hartree), the box (default: frame 0 of inputs/training/periodic/boxes8.xyz, 8 liquid waters) is
computed as it is and shifted rigidly by (0.11, 0.07, 0.09) Bohr, about half a mesh spacing at 100 Ha. Energy and
forces of a periodic system cannot depend on such a shift; what they do is the mesh's error (the egg-box effect).
Prints one line per cutoff: seconds per SCF, the change of energy (meV/atom) and forces (RMS and largest, meV/Å),
the largest net force (meV/Å) and the gap (eV). With --hse06, also the HSE06 gap (Gaussian density fitting: the
route of the periodic labels; ~30-50 min an 8-water box at one thread) of the unshifted box at each cutoff.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from deepks_es.constants import FORCE_EV_ANGSTROM, HARTREE_EV
from deepks_es.engines import make_engine
from deepks_es.structure import read_structures

SHIFT = np.array([0.11, 0.07, 0.09])  # Bohr
FORCE_MEV_PER_ANGSTROM = FORCE_EV_ANGSTROM * 1000

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("structure", nargs="?", default=Path(__file__).parents[1] / "inputs/training/periodic/boxes8.xyz")
parser.add_argument("--frame", type=int, default=0, help="frame of STRUCTURE (default: 0)")
parser.add_argument("--cutoffs", default="100,200,300,400,500", help="multigrid cutoffs, Hartree (comma-separated)")
parser.add_argument("--model", default="none", help="none (PBE, default) or a DeePKS-ES model, e.g. default")
parser.add_argument("--hse06", action="store_true", help="also the HSE06 gap at each cutoff (slow)")
parser.add_argument("--threads", type=int, default=None)
args = parser.parse_args()

box = read_structures(args.structure)[args.frame]
shifted = box.with_positions(box.positions + SHIFT)
for cutoff in (float(value) for value in args.cutoffs.split(",")):
    engine = make_engine(args.model, ke_cutoff=cutoff, conv_tol=1e-9, threads=args.threads)
    start = time.perf_counter()
    results = [engine.compute(box), engine.compute(shifted)]
    seconds = (time.perf_counter() - start) / 2
    forces = [np.asarray(result.forces) * FORCE_MEV_PER_ANGSTROM for result in results]
    change = forces[1] - forces[0]
    net = max(np.linalg.norm(f.sum(axis=0)) for f in forces)
    line = (f"{cutoff:6.0f} Ha  {seconds:6.1f} s/SCF  converged {all(r.converged for r in results)}  "
            f"dE {(results[1].energy - results[0].energy) * HARTREE_EV * 1000 / box.natoms:+7.3f} meV/atom  "
            f"dF RMS {np.sqrt((change ** 2).mean()):6.1f} max {np.abs(change).max():6.1f} meV/Å  "
            f"net F {net:6.1f} meV/Å  gap {results[0].gap * HARTREE_EV:.4f} {results[1].gap * HARTREE_EV:.4f} eV")
    if args.hse06:
        hse06 = make_engine("none", xc="HSE06", ke_cutoff=cutoff, conv_tol=1e-9, threads=args.threads).compute(box)
        line += f"  HSE06 gap {hse06.gap * HARTREE_EV:.4f} eV (converged {hse06.converged})"
    print(line, flush=True)
