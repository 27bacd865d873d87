"""Training recipes compared over seeds: each recipe's evaluations (``deepks-es evaluate`` JSON files, one per
trained seed and test set) grouped by test set, and per quantity the mean over the seeds with its sample standard
deviation and range (README, "The shipped model in the periodic liquid"). One training per recipe cannot tell
recipes apart when a second seed moves the errors as much as the recipe does; this says by how much.

    python examples/seed_spread.py --recipe NAME EVAL.json [EVAL.json ...] [--recipe NAME EVAL.json ...]
"""

import argparse
import json
from collections import defaultdict

import numpy as np

# (label, metrics key, statistic, unit, decimals) in the order of deepks-es evaluate's table
QUANTITIES = (("energy per atom MAE", "energy", "mae", "meV/atom", 3),
              ("forces RMSE", "forces", "rmse", "meV/Å", 1),
              ("gap MAE", "gap", "mae", "eV", 3),
              ("gap mean error", "gap", "mean", "eV", 3),
              ("HOMO MAE", "homo", "mae", "eV", 3),
              ("LUMO MAE", "lumo", "mae", "eV", 3),
              ("occupied levels RMSE", "occupied", "rmse", "eV", 3))


def read_evaluation(path: str) -> tuple[tuple[str, ...], dict]:
    """The test set (the evaluated files) and the model's metrics of one evaluation JSON."""
    try:
        with open(path) as handle:
            evaluation = json.load(handle)
        data, metrics = evaluation["data"], evaluation["metrics"]["model"]
        unconverged = evaluation["frames"] - evaluation["scf_converged"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path}: not a deepks-es evaluate JSON of a DeePKS-ES model ({exc})") from None
    if unconverged:
        raise SystemExit(f"{path}: the model's SCF did not converge on {unconverged} frame(s); its statistics are "
                         "over fewer frames than the other seeds'")
    return tuple(sorted([data] if isinstance(data, str) else data)), metrics


def spread(values: list[float], decimals: int) -> str:
    """``mean ± sample sd (min … max)``, or the one value."""
    v = np.array(values)
    if len(v) == 1:
        return f"{v[0]:.{decimals}f}"
    return (f"{v.mean():.{decimals}f} ± {v.std(ddof=1):.{decimals}f} "
            f"({v.min():.{decimals}f} … {v.max():.{decimals}f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", nargs="+", action="append", required=True, metavar=("NAME", "EVAL.json"),
                        help="a recipe's name and its evaluations (one per seed and test set)")
    args = parser.parse_args()
    tables: dict[tuple[str, ...], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for name, *paths in args.recipe:
        if not paths:
            parser.error(f"--recipe {name}: give its evaluation files")
        for path in paths:
            test_set, metrics = read_evaluation(path)
            tables[test_set][name].append(metrics)
    names = [name for name, *_ in args.recipe]
    for test_set, recipes in tables.items():
        present = [n for n in names if n in recipes]  # the recipes evaluated on this test set, in the given order
        print(f"\n{', '.join(test_set)}: mean ± sd (range) over seeds\n")
        print("| quantity | unit | " + " | ".join(f"{n} (n = {len(recipes[n])})" for n in present) + " |")
        print("|---|---|" + "---|" * len(present))
        for label, key, stat, unit, decimals in QUANTITIES:
            cells = []
            for name in present:
                values = [m[key][stat] for m in recipes[name] if m.get(key, {}).get("n")]
                cells.append(spread(values, decimals) if len(values) == len(recipes[name]) else "—")
            if any(c != "—" for c in cells):
                print(f"| {label} | {unit} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
