"""The frontier levels of labelled frames, per dataset: mean and spread of the gap, of the LUMO -> LUMO+1 and of
the HOMO-1 -> HOMO spacing (eV), e.g. to see a small cell's isolated conduction state (README, surrogate round 5);
with ``--evaluations`` (``deepks-es evaluate``'s JSON, one per data file), each frame's HOMO-1 -> HOMO spacing
beside the model's HOMO error there (a surrogate's or a DeePKS-ES model's) and their rank correlation (README,
surrogate round 9); with ``--spread``, each frame's target - base gap (the HSE06 correction to the PBE gap) and
over how many waters the target's HOMO and LUMO spread (participation number of their Löwdin weights per molecule:
1 on one water, N evenly on N; the atoms must be consecutive O, H, H waters) (README, "The periodic gap and the
LUMO's spread").

    python examples/label_levels.py DATA.h5 [DATA.h5 ...] [--evaluations EVAL.json [EVAL.json ...]] [--spread]
"""

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from deepks_es.constants import HARTREE_EV
from deepks_es.errors import StructureError
from deepks_es.linalg import ao_atoms, lowdin
from deepks_es.scf.systems import build_system
from deepks_es.training.dataset import read_dataset
from deepks_es.training.evaluate import row_model_error
from deepks_es.training.label import LabelSettings
from deepks_es.training.records import record_levels_ev


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


def spreads(path: str) -> dict[str, tuple[float, float, float, int]]:
    """Frame name -> target - base gap (eV), the participation numbers (waters) of the target's HOMO and LUMO, and
    the number of waters, for the converged frames of ``path``."""
    raw, attrs = read_dataset(path)
    settings = LabelSettings.from_attrs(attrs)
    rows = {}
    for frame in raw:
        target, base = frame.target, frame.base
        if base is None:
            raise SystemExit(f"{path}: --spread needs target and base labels (not a distilled dataset)")
        if not (target.get("converged", True) and base.get("converged", True)):
            continue
        try:
            waters = frame.structure.water_count()
        except StructureError as exc:
            raise SystemExit(f"{path} frame {frame.name}: {exc}") from None
        water = ao_atoms(build_system(frame.structure, settings.for_structure(frame.structure)[1])) // 3
        nocc, orthogonal = int(target["nocc"]), lowdin(target["overlap"])[1] @ target["mo_coeff"]
        participation = []
        for orbital in (nocc - 1, nocc):
            weights = np.bincount(water, orthogonal[:, orbital] ** 2)
            participation.append(1.0 / np.sum((weights / weights.sum()) ** 2))
        gap = record_levels_ev(target)["gap"] - record_levels_ev(base)["gap"]
        rows[frame.name] = (gap, *participation, waters)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+", help="labelled HDF5 files (deepks-es label)")
    parser.add_argument("--evaluations", nargs="+", default=[], help="deepks-es evaluate JSON files, one per DATA")
    parser.add_argument("--spread", action="store_true",
                        help="each frame's target - base gap and the spread of its HOMO and LUMO over the waters")
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
        if args.spread:
            table = spreads(path)
            for name, (correction, homo, lumo, waters) in table.items():
                print(f"  {name}: {waters} waters, target - base gap {correction:+.3f} eV, HOMO on {homo:.1f} "
                      f"waters, LUMO on {lumo:.1f}")
            values = np.array(list(table.values())).reshape(-1, 4)
            print(f"  mean: target - base gap {values[:, 0].mean():+.3f} ± {values[:, 0].std():.3f} eV, HOMO on "
                  f"{values[:, 1].mean():.1f} waters, LUMO on {values[:, 2].mean():.1f} "
                  f"({values[:, 3].min():.0f}-{values[:, 3].max():.0f} waters a frame)")
        if args.evaluations:
            frames = json.loads(Path(args.evaluations[k]).read_text())["per_frame"]
            for name, (_, _, spacing) in rows.items():
                error = row_model_error(frames.get(name, {}), "homo")
                if error is None:
                    print(f"  {name}: HOMO-1 -> HOMO {spacing:.3f} eV, no model HOMO error (not evaluated or not "
                          "converged)")
                    continue
                pairs.append((spacing, error))
                print(f"  {name}: HOMO-1 -> HOMO {spacing:.3f} eV, model HOMO error {error:+.3f} eV")
    if len(pairs) > 2:
        spacing, error = np.array(pairs).T
        isolated = spacing > 0.3
        print(f"{len(pairs)} frames: Spearman(spacing, -HOMO error) {spearmanr(spacing, -error).statistic:.2f}; "
              f"mean HOMO error {error[isolated].mean():+.3f} eV where the HOMO stands > 0.3 eV above HOMO-1 "
              f"({isolated.sum()} frames), {error[~isolated].mean():+.3f} eV elsewhere")


if __name__ == "__main__":
    main()
