"""``deepks-es evaluate SURROGATE DATA``: the surrogate against DeePKS-ES labels (``label --distill``) or
against HSE06 labels (``label``), and its committee spread against its true error.

Levels are compared as the training compares them: a periodic box's levels and Hamiltonian after removing
the constant shift mu S (fitted per frame on H; a box's levels are referenced to its mean potential, which a
local model cannot know), a cluster's absolutely. Gaps need no alignment. The virtual levels are those above
the LUMO up to the reference's LUMO + :data:`VIRTUAL_WINDOW_EV`, index by index: the lower conduction band.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..constants import BOHR_ANGSTROM, HARTREE_EV
from ..engines.surrogate import SurrogateEngine
from .dataset import read_dataset
from .evaluate import error_stats
from .label import energies_comparable
from .surrogate import overlap_shift, window_end

VIRTUAL_WINDOW_EV = 5.0
ROWS = (("energy per atom", "meV/atom", "energy"), ("forces", "meV/Å", "forces"), ("gap", "eV", "gap"),
        ("HOMO", "eV", "homo"), ("LUMO", "eV", "lumo"), ("occupied levels", "eV", "occupied"),
        (f"virtual levels ≤ LUMO + {VIRTUAL_WINDOW_EV:g} eV", "eV", "virtual"),
        ("H (AO, after μS)", "µHa", "hamiltonian"))


def frame_errors(engine: SurrogateEngine, structure, record: dict, energy_comparable: bool) -> dict:
    """Errors of one frame (eV, meV/atom, meV/Å, µHa; the energy only where ``energy_comparable``) and the
    committee spreads beside them."""
    prediction = engine.predict(structure)
    result = engine.result(structure, prediction)
    nocc, reference = int(record["nocc"]), np.asarray(record["mo_energy"])
    overlap = result.overlap
    delta = result.hamiltonian - record["fock"]
    shift = float(overlap_shift(delta, overlap)) if structure.is_periodic else 0.0
    levels = result.mo_energy - shift
    end = window_end(reference, nocc, VIRTUAL_WINDOW_EV)
    errors = {"gap": [(levels[nocc] - levels[nocc - 1] - reference[nocc] + reference[nocc - 1]) * HARTREE_EV],
              "homo": [(levels[nocc - 1] - reference[nocc - 1]) * HARTREE_EV],
              "lumo": [(levels[nocc] - reference[nocc]) * HARTREE_EV],
              "occupied": list((levels[:nocc] - reference[:nocc]) * HARTREE_EV),
              "virtual": list((levels[nocc + 1:end] - reference[nocc + 1:end]) * HARTREE_EV),
              "hamiltonian": list(np.ravel(delta - shift * overlap) * 1e6)}
    spread = {"gap_std_ev": result.scalars["committee_gap_std_ev"], "shift_ev": shift * HARTREE_EV}
    if energy_comparable:
        errors["energy"] = [(result.energy - float(record["energy"])) / structure.natoms * HARTREE_EV * 1e3]
        spread["energy_std_mev_per_atom"] = result.scalars["committee_energy_std_mev_per_atom"]
    if "forces" in record:
        force_error = (result.forces - record["forces"]) * (HARTREE_EV / BOHR_ANGSTROM) * 1e3
        errors["forces"] = list(force_error.ravel())
        spread["atom_force_error_mev_per_angstrom"] = list(np.linalg.norm(force_error, axis=1))
        spread["atom_force_std_mev_per_angstrom"] = list(
            np.linalg.norm(prediction.forces.std(axis=0), axis=1) * HARTREE_EV / BOHR_ANGSTROM * 1e3)
    return {"errors": errors, "spread": spread, "natoms": structure.natoms, "periodic": structure.is_periodic}


def evaluate_surrogate(engine: SurrogateEngine, data: str, progress: bool = True) -> dict:
    """Errors of the surrogate on every converged frame of ``data``: MAE, RMSE and mean (signed: a bias, such as
    an energy offset between cell sizes) per quantity, spread-error ranks."""
    from scipy.stats import spearmanr
    from tqdm import tqdm

    frames, attrs = read_dataset(data)
    reference = attrs.get("target_xc", "target")
    distilled = json.loads(attrs["settings"]).get("distill") is not None  # same energy route as the training
    per_frame = {}
    for frame in tqdm(frames, desc="evaluate", unit="frame", disable=not progress):
        if not frame.target["converged"]:
            continue
        per_frame[frame.name] = frame_errors(engine, frame.structure, frame.target,
                                             distilled or energies_comparable(frame.structure))
    pooled: dict[str, list] = {}
    for row in per_frame.values():
        for key, values in row["errors"].items():
            pooled.setdefault(key, []).extend(values)
    stats = {key: error_stats(v) for key, v in pooled.items() if v}
    force_std = [x for row in per_frame.values() for x in row["spread"].get("atom_force_std_mev_per_angstrom", [])]
    force_err = [x for row in per_frame.values() for x in row["spread"].get("atom_force_error_mev_per_angstrom", [])]
    committee = {}
    if len(force_std) > 2 and len(engine.committee.members) > 1:
        committee["atom_force_spearman"] = float(spearmanr(force_std, force_err).statistic)
    sizes = sorted({row["natoms"] // 3 for row in per_frame.values()})
    return {"data": str(data), "reference": reference, "frames": len(per_frame), "molecules": sizes,
            "periodic": sum(row["periodic"] for row in per_frame.values()), "model": engine.model_name,
            "stats": stats, "committee": committee, "per_frame": per_frame}


def markdown_table(summary: dict) -> str:
    """The summary as a Markdown table (MAE, RMSE and the mean signed error, model minus reference, per quantity)."""
    lines = [f"{summary['frames']} frames ({summary['periodic']} periodic) of {summary['molecules']} waters, "
             f"surrogate against {summary['reference']}", "",
             "| quantity | unit | MAE | RMSE | mean error |", "|---|---|---|---|---|"]
    for name, unit, key in ROWS:
        if key in summary["stats"]:
            s = summary["stats"][key]
            lines.append(f"| {name} | {unit} | {s['mae']:.4g} | {s['rmse']:.4g} | {s['mean']:+.4g} |")
    if "atom_force_spearman" in summary["committee"]:
        lines += ["", f"Committee force spread vs force error per atom: Spearman rank correlation "
                      f"{summary['committee']['atom_force_spearman']:.2f}"]
    return "\n".join(lines) + "\n"


def spread_plot(summaries: list[dict], path: Path) -> Path:
    """Scatter of per-atom committee force spread against the true force error, one colour per data set."""
    from ..analysis import figure, save_figure

    fig, ax = figure()
    for i, summary in enumerate(summaries):
        std = [x for r in summary["per_frame"].values() for x in r["spread"].get("atom_force_std_mev_per_angstrom", [])]
        err = [x for r in summary["per_frame"].values()
               for x in r["spread"].get("atom_force_error_mev_per_angstrom", [])]
        rho = summary["committee"].get("atom_force_spearman", float("nan"))
        ax.loglog(std, err, ".", markersize=2, color=f"C{i}", label=f"{Path(summary['data']).stem} (ρ = {rho:.2f})")
    ax.set_xlabel("committee force spread per atom (meV/Å)")
    ax.set_ylabel("force error per atom vs reference (meV/Å)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def write_summary(summary: dict, prefix: str) -> None:
    """PREFIX.json (per frame: the scalar errors and the force RMSE in meV/Å instead of the long lists) and
    PREFIX.md."""
    from ..fileio import atomic_path, write_json

    def scalars(errors: dict) -> dict:
        kept = {k: v for k, v in errors.items() if k in ("gap", "homo", "lumo", "energy")}
        if "forces" in errors:
            kept["force_rmse"] = [error_stats(errors["forces"])["rmse"]]
        return kept

    slim = {**summary, "per_frame": {name: {"errors": scalars(row["errors"]),
                                            "spread": {k: v for k, v in row["spread"].items()
                                                       if not k.startswith("atom_")}}
                                     for name, row in summary["per_frame"].items()}}
    write_json(f"{prefix}.json", json.loads(json.dumps(slim)))
    with atomic_path(f"{prefix}.md") as tmp, open(tmp, "w") as handle:
        handle.write(markdown_table(summary))
