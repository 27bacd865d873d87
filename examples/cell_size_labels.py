"""How far a small liquid cell's Γ-point labels are from its supercell's: the finite-size part of a label.

    python examples/cell_size_labels.py [STRUCTURE] [--frame N] [--reps 2,1,1] [--models default,MODEL.pt ...]
                                        [--ke-cutoff 500] [--threads N]
    python examples/cell_size_labels.py [STRUCTURE] [--frame N] [--reps 2,1,1] --write-supercell SUPERCELL.xyz
    python examples/cell_size_labels.py --labels BOX.h5 SUPERCELL.h5 [--frame N]

The supercell (``--reps`` copies of the box, default 2,1,1) holds the same atoms in the same local structure; its Γ
point samples the box's Brillouin zone at n1 n2 n3 k-points. A local model (the surrogate) gives both the same energy
per atom and the same force on every copy of an atom, so where an SCF engine's box and supercell differ, the box is
too small for its Γ-point label to be the bulk's, and a local model trained on such boxes learns that finite-size
error. (The box's Γ-point levels are among a local model's supercell levels, so there its HOMO can only rise and
its LUMO only fall: the supercell's other k-points.) For each model (default: `default`, DeePKS-ES with the
shipped model; a surrogate file for comparison), prints the box's and the supercell's energy per atom, the
change of the box's forces (copy 0 of the supercell; RMS and largest component), and HOMO, LUMO and gap of both
(eV; a periodic cell's levels are referenced to its mean potential, the same in both cells).

With ``--labels`` it compares two ``deepks-es label`` files instead (frame N of the box's, the supercell made of
that box in frame 0 of the other's): the target (HSE06: energy and levels, Γ point, Gaussian density fitting; no
periodic hybrid forces) and the base functional (PBE, with forces) — HSE06's own finite-size change, whose
labels take about an hour for 16 waters at one thread here; ``--write-supercell`` writes the supercell for ``deepks-es label``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from deepks_es.constants import FORCE_EV_ANGSTROM, HARTREE_EV
from deepks_es.engines import make_engine
from deepks_es.engines.registry import is_surrogate_model
from deepks_es.errors import DeePKSError
from deepks_es.structure import read_structures, write_structures
from deepks_es.training.dataset import read_dataset
from deepks_es.training.records import record_levels_ev

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("structure", nargs="?",
                    default=Path(__file__).parents[1] / "src/deepks_es/data/water_liquid_8.xyz")
parser.add_argument("--frame", type=int, default=0, help="frame of STRUCTURE or of BOX.h5 (default: 0)")
parser.add_argument("--reps", default="2,1,1", help="copies along the three lattice vectors (default: 2,1,1)")
parser.add_argument("--models", default="default", help="comma-separated: default, none (PBE), a model file")
parser.add_argument("--ke-cutoff", type=float, default=500.0, help="multigrid cutoff of periodic SCFs (Hartree)")
parser.add_argument("--threads", type=int, default=None)
parser.add_argument("--write-supercell", metavar="SUPERCELL.xyz", help="write the supercell and stop")
parser.add_argument("--labels", nargs=2, metavar=("BOX.h5", "SUPERCELL.h5"),
                    help="compare the labels of a box and of its supercell instead of running engines")
args = parser.parse_args()


def compare(name: str, cells, energies, forces, levels) -> None:
    """Print the change box -> supercell of the energy per atom, of the box's forces (None: not computed) and of
    HOMO, LUMO and gap (``levels``: (homo, lumo) per cell, eV)."""
    box, supercell = cells
    per_atom = [e * HARTREE_EV * 1000 / c.natoms for e, c in zip(energies, cells)]
    line = f"{name}: energy per atom supercell - box {per_atom[1] - per_atom[0]:+.3f} meV/atom"
    if forces is not None:
        change = (forces[1][:box.natoms] - forces[0]) * FORCE_EV_ANGSTROM * 1000
        line += f"; forces supercell - box RMS {np.sqrt((change ** 2).mean()):.1f}, largest {np.abs(change).max():.1f} meV/Å"
    print(line)
    gaps = [lumo - homo for homo, lumo in levels]
    for label, values in (("HOMO", [h for h, _ in levels]), ("LUMO", [l for _, l in levels]), ("GAP", gaps)):
        print(f"  {label:4s} box {values[0]:+.4f}  supercell {values[1]:+.4f}  change {values[1] - values[0]:+.4f} eV")


def labelled_frame(path: str, index: int):
    """Frame ``index`` of the label file ``path`` and the file's label settings (functionals, cutoff)."""
    try:
        frames, attrs = read_dataset(path)
    except DeePKSError as exc:
        raise SystemExit(f"cell_size_labels.py: {exc}") from None
    if not -len(frames) <= index < len(frames):
        raise SystemExit(f"cell_size_labels.py: {path} has {len(frames)} frames, no frame {index}")
    return frames[index], attrs.get("settings")


if args.labels:
    (box_frame, box_settings), (big_frame, big_settings) = (labelled_frame(args.labels[0], args.frame),
                                                            labelled_frame(args.labels[1], 0))
    if box_settings != big_settings:
        raise SystemExit(f"cell_size_labels.py: {args.labels[0]} and {args.labels[1]} were labelled with other "
                         f"settings (functionals, basis or cutoff): {box_settings} against {big_settings}")
    frames, cells = (box_frame, big_frame), (box_frame.structure, big_frame.structure)
    reps = np.rint(np.linalg.norm(cells[1].cell, axis=1) / np.linalg.norm(cells[0].cell, axis=1)).astype(int)
    made = cells[0].repeated(np.maximum(reps, 1))
    if (reps.min() < 1 or made.natoms != cells[1].natoms or not np.allclose(made.cell, cells[1].cell, atol=1e-6)
            or not np.allclose(made.positions, cells[1].positions, atol=1e-6)):
        raise SystemExit(f"cell_size_labels.py: {args.labels[1]} frame 0 is not a supercell of {args.labels[0]} "
                         f"frame {args.frame}")
    print(f"{args.labels[0]} frame {args.frame}: {cells[0].natoms} atoms; {args.labels[1]}: {cells[1].natoms} atoms")
    for side in ("target", "base"):
        records = [getattr(frame, side) for frame in frames]
        forces = [r["forces"] for r in records] if all("forces" in r for r in records) else None
        compare(f"{side} (converged {all(bool(r['converged']) for r in records)})", cells,
                [float(r["energy"]) for r in records], forces,
                [(levels["homo"], levels["lumo"]) for levels in map(record_levels_ev, records)])
    raise SystemExit(0)

box = read_structures(args.structure)[args.frame]
supercell = box.repeated([int(n) for n in args.reps.split(",")])
print(f"{args.structure} frame {args.frame}: {box.natoms} atoms; supercell {args.reps}: {supercell.natoms} atoms")
if args.write_supercell:
    write_structures(args.write_supercell, [supercell])
    raise SystemExit(0)
for model in args.models.split(","):
    scf = {} if is_surrogate_model(model) else {"ke_cutoff": args.ke_cutoff}
    engine = make_engine(model, threads=args.threads, **scf)
    results = []
    for structure in (box, supercell):
        start = time.perf_counter()
        results.append(engine.compute(structure))
        print(f"  {model}: {structure.natoms} atoms in {time.perf_counter() - start:.0f} s, "
              f"converged {results[-1].converged}", flush=True)
    compare(model, (box, supercell), [r.energy for r in results], [r.forces for r in results],
            [(r.homo * HARTREE_EV, r.lumo * HARTREE_EV) for r in results])
