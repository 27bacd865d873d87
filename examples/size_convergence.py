"""Finite-size convergence of the gap and the conduction-band DOS of liquid water with the surrogate.

For each box size, an NVT run at 300 K through the real i-PI (``deepks-es run`` on a copy of
``inputs/ipi/nvt_liquid_surrogate.xml``), levels and DOS every ``--every`` steps, then ``deepks-es analyze``.
The boxes: 8 waters (``inputs/structures/water_md_8.xyz``), 32 (the shipped 32-water box) and 64 x 2^k
(the shipped 64-water box replicated, as ``deepks-es bench --scaling`` does; the MD decorrelates the
copies). The DOS of each size is per molecule and aligned at its trajectory-mean HOMO (a periodic box's
absolute surrogate levels carry a per-frame constant, see the README), so the conduction-band onset reads
as the gap.

    python examples/size_convergence.py [--sizes 8,32,64,128,256] [--steps 400] [--every 20] [-o runs/size-convergence]

Writes OUT/size_convergence.json (per size: mean gap and block error, HOMO, LUMO, wall time) and
OUT/size_convergence.png (gap against size; the conduction-band DOS per molecule of every size).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "inputs" / "ipi" / "nvt_liquid_surrogate.xml"


def box(molecules: int):
    """The periodic liquid box of ``molecules`` waters."""
    from deepks_es.bench.suite import replicated_box
    from deepks_es.structure import read_structure

    if molecules == 8:
        return read_structure(ROOT / "inputs" / "structures" / "water_md_8.xyz")
    return replicated_box(molecules)


def input_file(run_dir: Path, molecules: int, steps: int) -> Path:
    """An i-PI input for ``molecules`` waters and ``steps`` steps in ``run_dir``: the template's NVT, its
    validation extras dropped (this script does not validate)."""
    from deepks_es.structure import write_structures

    run_dir.mkdir(parents=True, exist_ok=True)
    write_structures(run_dir / "start.xyz", [box(molecules)])
    text = TEMPLATE.read_text()
    text = re.sub(r"<file mode='ase'>[^<]*</file>", "<file mode='ase'> start.xyz </file>", text)
    text = re.sub(r"<total_steps>[^<]*</total_steps>", f"<total_steps> {steps} </total_steps>", text)
    text = "\n".join(line for line in text.splitlines() if "validation_" not in line)
    path = run_dir / "input.xml"
    path.write_text(text)
    return path


def run_size(out: Path, molecules: int, steps: int, every: int, model: str) -> dict:
    """Run and analyse one size; the analysis summary, the aligned DOS per molecule and the wall time."""
    run_dir = out / f"water{molecules}"
    summary_file = run_dir / "analysis" / "summary.json"
    if not summary_file.is_file():
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "deepks_es.cli", "run", str(input_file(run_dir, molecules, steps)),
                        "--model", model, "--observables-every", str(every), "--run-dir", str(run_dir)], check=True)
        (run_dir / "wall_s.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    summary = json.loads(summary_file.read_text())
    dos = np.genfromtxt(summary["files"]["dos_csv"], delimiter=",", names=True)
    levels = summary["levels_ev"]
    return {"molecules": molecules, "gap_ev": levels["gap"]["mean"], "gap_block_error_ev": levels["gap"]["block_error"],
            "homo_ev": levels["homo"]["mean"], "lumo_ev": levels["lumo"]["mean"],
            "wall_s": float((run_dir / "wall_s.txt").read_text()),
            "dos_energy_ev": (dos["energy_ev"] - levels["homo"]["mean"]).tolist(),
            "dos_per_molecule": (dos["dos_mean"] / molecules).tolist()}


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = [r["molecules"] for r in rows]
    left.errorbar(sizes, [r["gap_ev"] for r in rows], yerr=[r["gap_block_error_ev"] for r in rows], marker="o")
    left.set(xscale="log", xlabel="waters in the box", ylabel="mean gap (eV)")
    left.set_xticks(sizes, [str(n) for n in sizes])
    left.xaxis.set_minor_formatter(NullFormatter())
    for r in rows:
        right.plot(r["dos_energy_ev"], r["dos_per_molecule"], label=f"{r['molecules']} waters")
    right.set(xlim=(-2, 12), xlabel="E - <HOMO> (eV)", ylabel="DOS per molecule (states/eV)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,32,64,128,256", help="waters per box: 8, 32, 64 x 2^k")
    parser.add_argument("--steps", type=int, default=400, help="MD steps (0.5 fs) per size")
    parser.add_argument("--every", type=int, default=20, help="levels and DOS every this many steps")
    parser.add_argument("--model", default="surrogate", help="a surrogate model file, or 'surrogate'")
    parser.add_argument("-o", "--out", default="runs/size-convergence", type=Path)
    args = parser.parse_args(argv)
    rows = [run_size(args.out, int(n), args.steps, args.every, args.model) for n in args.sizes.split(",")]
    (args.out / "size_convergence.json").write_text(json.dumps(rows, indent=1))
    plot(args.out / "size_convergence.png", rows)
    for r in rows:
        print(f"{r['molecules']:5d} waters: gap {r['gap_ev']:.3f} +- {r['gap_block_error_ev']:.3f} eV, "
              f"{r['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
