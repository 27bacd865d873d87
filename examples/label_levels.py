"""The frontier levels of labelled frames, per dataset: mean and spread of the gap, of the LUMO -> LUMO+1 and of
the HOMO-1 -> HOMO spacing (eV), e.g. to see a small cell's isolated conduction state (README, surrogate round 5);
with ``--evaluations`` (``deepks-es evaluate``'s JSON, one per data file), each frame's HOMO-1 -> HOMO spacing
beside the surrogate's HOMO error there and their rank correlation (README, surrogate round 9).

    python examples/label_levels.py DATA.h5 [DATA.h5 ...] [--evaluations EVAL.json [EVAL.json ...]]
"""

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from deepks_es.constants import HARTREE_EV
from deepks_es.training.dataset import read_dataset


def frontier(path: str) -> dict[str, tuple[float, float, float]]:
    """Frame name -> gap, LUMO -> LUMO+1 and HOMO-1 -> HOMO spacings (eV), for the converged frames of ``path``."""
    raw, _ = read_dataset(path)
    rows = {}
    for frame in raw:
        record = frame.target
        if record.get("converged", True):
            nocc, levels = int(record["nocc"]), np.asarray(record["mo_energy"]) * HARTREE_EV
            rows[frame.name] = (levels[nocc] - levels[nocc - 1], levels[nocc + 1] - levels[nocc],
                                levels[nocc - 1] - levels[nocc - 2])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="labelled HDF5 files (deepks-es label)")
    parser.add_argument("--evaluations", nargs="+", default=[], help="deepks-es evaluate JSON files, one per DATA")
    args = parser.parse_args()
    if args.evaluations and len(args.evaluations) != len(args.data):
        parser.error("give one --evaluations file per data file")
    pairs = []
    for k, path in enumerate(args.data):
        rows = frontier(path)
        values = np.array(list(rows.values())).reshape(-1, 3)
        print(f"{path}: {len(rows)} frames, gap {values[:, 0].mean():.2f} ± {values[:, 0].std():.2f} eV, "
              f"LUMO -> LUMO+1 {values[:, 1].mean():.2f} ± {values[:, 1].std():.2f} eV, "
              f"HOMO-1 -> HOMO {values[:, 2].mean():.2f} ± {values[:, 2].std():.2f} eV")
        if args.evaluations:
            frames = json.loads(Path(args.evaluations[k]).read_text())["per_frame"]
            for name, (_, _, spacing) in rows.items():
                error = frames[name]["errors"]["homo"][0]
                pairs.append((spacing, error))
                print(f"  {name}: HOMO-1 -> HOMO {spacing:.3f} eV, surrogate HOMO error {error:+.3f} eV")
    if len(pairs) > 2:
        spacing, error = np.array(pairs).T
        isolated = spacing > 0.3
        print(f"{len(pairs)} frames: Spearman(spacing, -HOMO error) {spearmanr(spacing, -error).statistic:.2f}; "
              f"mean HOMO error {error[isolated].mean():+.3f} eV where the HOMO stands > 0.3 eV above HOMO-1 "
              f"({isolated.sum()} frames), {error[~isolated].mean():+.3f} eV elsewhere")


if __name__ == "__main__":
    main()
