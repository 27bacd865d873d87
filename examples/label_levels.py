"""The frontier levels of labelled frames, per dataset: mean and spread of the gap and of the LUMO -> LUMO+1
spacing (eV), e.g. to see a small cell's isolated conduction state (README, surrogate round 5).

    python examples/label_levels.py DATA.h5 [DATA.h5 ...]
"""

import argparse

import numpy as np

from deepks_es.constants import HARTREE_EV
from deepks_es.training.dataset import read_dataset


def frontier(path: str) -> np.ndarray:
    """(frames, 2): gap and LUMO -> LUMO+1 spacing (eV) of the converged frames of ``path``."""
    raw, _ = read_dataset(path)
    rows = []
    for frame in raw:
        record = frame.target
        if record.get("converged", True):
            nocc, levels = int(record["nocc"]), np.asarray(record["mo_energy"]) * HARTREE_EV
            rows.append((levels[nocc] - levels[nocc - 1], levels[nocc + 1] - levels[nocc]))
    return np.array(rows).reshape(-1, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="labelled HDF5 files (deepks-es label)")
    for path in parser.parse_args().data:
        rows = frontier(path)
        print(f"{path}: {len(rows)} frames, gap {rows[:, 0].mean():.2f} ± {rows[:, 0].std():.2f} eV, "
              f"LUMO -> LUMO+1 {rows[:, 1].mean():.2f} ± {rows[:, 1].std():.2f} eV")


if __name__ == "__main__":
    main()
