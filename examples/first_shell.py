"""The first O-O shell of periodic water frames, per file: how many O lie within 3.3 Angstrom of an O and the
mean distance to its 4 nearest O, over every periodic image (a small box's neighbours include several images of
one molecule, which a minimum-image count misses), as mean ± standard error over the frames (README, "The
sampler's small boxes").

    python examples/first_shell.py FRAMES.xyz [FRAMES.xyz ...]
"""

import argparse

import numpy as np
import torch

from deepks_es.constants import ANGSTROM_BOHR, BOHR_ANGSTROM
from deepks_es.errors import StructureError
from deepks_es.structure import Structure, read_structures
from deepks_es.surrogate.graph import build_graph

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
    args = parser.parse_args()
    for path in args.frames:
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


if __name__ == "__main__":
    main()
