"""The first O-O shell of periodic water frames, per file: how many O lie within 3.3 Angstrom of an O and the
mean distance to its 4 nearest O, over every periodic image (a small box's neighbours include several images of
one molecule, which a minimum-image count misses), as mean ± standard error over the frames
(docs/periodic_fidelity.md, "The sampler's small boxes"). With ``--evaluations`` (``deepks-es evaluate``'s JSON of
a DeePKS-ES model or a surrogate, one per file, its frames in the file's order), each frame's distance beside the
model's gap error there, and over all the frames their rank correlation and a least-squares line (README, "Where
the periodic error comes from").

    python examples/first_shell.py FRAMES.xyz [FRAMES.xyz ...] [--evaluations EVAL.json [EVAL.json ...]]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from deepks_es.constants import ANGSTROM_BOHR, BOHR_ANGSTROM
from deepks_es.errors import StructureError
from deepks_es.structure import Structure, read_structures
from deepks_es.surrogate.graph import build_graph
from deepks_es.training.evaluate import row_model_error

SHELL = 3.3  # Angstrom, the first minimum of liquid water's O-O g(r)
NEAREST = 4


def first_shell(structure: Structure) -> tuple[float, float]:
    """O neighbours within :data:`SHELL` of an O, and the mean distance (Angstrom) to its :data:`NEAREST` nearest
    O, averaged over the O of a periodic ``structure``."""
    oxygens = Structure(("O",) * (structure.natoms // 3), structure.positions[0::3], structure.cell)
    graph = build_graph(oxygens, 6.0 * ANGSTROM_BOHR)
    vectors = graph.vectors(torch.tensor(oxygens.positions), torch.tensor(oxygens.cell))
    lengths = vectors.norm(dim=1).numpy() * BOHR_ANGSTROM
    per_oxygen = [np.sort(lengths[graph.src.numpy() == i]) for i in range(oxygens.natoms)]
    if min(len(d) for d in per_oxygen) < NEAREST:
        raise SystemExit(f"an O has fewer than {NEAREST} O within 6 Å: not liquid water")
    return (float(np.mean([np.sum(d < SHELL) for d in per_oxygen])),
            float(np.mean([d[:NEAREST].mean() for d in per_oxygen])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", nargs="+", help="extended XYZ files of periodic O, H, H waters")
    parser.add_argument("--evaluations", nargs="+", default=[], help="deepks-es evaluate JSON files, one per FRAMES")
    args = parser.parse_args()
    if args.evaluations and len(args.evaluations) != len(args.frames):
        parser.error("give one --evaluations file per frames file")
    pairs = []
    for k, path in enumerate(args.frames):
        frames = read_structures(path)
        if not all(f.is_periodic for f in frames):
            raise SystemExit(f"{path}: the frames must be periodic")
        try:
            for f in frames:
                f.water_count()
        except StructureError as exc:
            raise SystemExit(f"{path}: {exc}") from None
        values = np.array([first_shell(f) for f in frames])
        mean = values.mean(0)
        error = values.std(0) / np.sqrt(len(values) - 1) if len(values) > 1 else np.full(2, np.nan)
        print(f"{path}: {len(frames)} frames of {frames[0].natoms // 3} waters, O within {SHELL} Å "
              f"{mean[0]:.2f} ± {error[0]:.2f}, mean distance to the {NEAREST} nearest O {mean[1]:.3f} ± "
              f"{error[1]:.3f} Å")
        if args.evaluations:
            rows = json.loads(Path(args.evaluations[k]).read_text()).get("per_frame", {})
            names = [f"{i:06d}" for i in range(len(frames))]  # label's frame names: their index in the file
            if not rows or set(rows) - set(names):
                raise SystemExit(f"{args.evaluations[k]}: no per-frame rows of the {len(frames)} frames of {path}")
            for name, (_, distance) in zip(names, values):
                gap = row_model_error(rows.get(name, {}), "gap")
                if gap is None:
                    print(f"  {name}: {distance:.3f} Å, no model gap error (not evaluated or not converged)")
                    continue
                pairs.append((distance, gap))
                print(f"  {name}: {distance:.3f} Å, model gap error {gap:+.3f} eV")
    distance, gap = np.array(pairs).reshape(-1, 2).T
    if len(pairs) > 2 and np.ptp(distance) > 0:
        slope, offset = np.polyfit(distance, gap, 1)
        scatter = np.std(gap - (slope * distance + offset), ddof=2)
        print(f"{len(pairs)} frames: Spearman(distance, gap error) {spearmanr(distance, gap).statistic:.2f}; "
              f"gap error = {slope:.2f} eV/Å × (distance − {-offset / slope:.3f} Å), scatter {scatter:.3f} eV")


if __name__ == "__main__":
    main()
