"""``deepks-es evaluate``: a model's self-consistent errors against the target, beside plain base and scissor.

For every frame the SCF runs with the model (from the base density); errors are
taken against the frame's target labels. Side by side: the plain base functional
(its energies shifted by the per-element offsets fitted on the training set) and
the scissor baseline (base levels shifted by the constant HOMO/LUMO/gap/occupied
shifts fitted on the training set; energies and forces as the base). Units: energy
per atom meV, forces meV/Angstrom, levels eV, Hamiltonian µHa (Löwdin-basis
elements). Force errors are also summarised per element (``forces:O``, ``forces:H``: the components on the atoms
of that element). The summary's ``per_frame`` gives each frame's SCF outcome, its target gap and its signed gap,
HOMO, LUMO (and energy) errors per method, and where forces are labelled their RMSE and largest component error.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..constants import FORCE_EV_ANGSTROM, HARTREE_EV
from ..errors import DeePKSError
from ..linalg import lowdin
from ..model.network import CorrectionModel
from .dataset import Frame, qualified_name, read_datasets
from .label import LabelSettings, energies_comparable
from .records import record_levels_ev, scf_record

QUANTITIES = {  # key: (label, unit)
    "energy": ("energy per atom", "meV/atom"),
    "forces": ("forces", "meV/Å"),
    "gap": ("gap", "eV"),
    "homo": ("HOMO", "eV"),
    "lumo": ("LUMO", "eV"),
    "occupied": ("occupied levels", "eV"),
    "hamiltonian": ("H (Löwdin)", "µHa"),
}
METHODS = ("model", "base", "scissor")
FRAME_ERRORS = ("gap", "homo", "lumo", "energy")  # signed, one a frame: per_frame rows (beside forces_rmse, _max)


def row_model_error(row: dict, quantity: str) -> float | None:
    """The model's signed error of ``quantity`` (a FRAME_ERRORS key) in one ``per_frame`` row of an evaluation's JSON:
    a DeePKS-ES evaluation's ``errors.model`` or a surrogate evaluation's ``errors`` (one-element lists); None for a
    row without it (a frame left out as an unconverged label, or whose SCF with the model did not converge)."""
    errors = row.get("errors")
    value = None if errors is None else errors.get("model", errors).get(quantity)
    return None if value is None else float(np.atleast_1d(value)[0])


def _lowdin_fock(record: dict) -> np.ndarray:
    x, _ = lowdin(record["overlap"])
    return x @ record["fock"] @ x


def frame_errors(frame: Frame, record: dict, baselines: dict) -> dict[str, dict[str, np.ndarray]]:
    """Signed errors {method: {quantity: array}} of one frame against its target."""
    target, base = frame.target, frame.base
    natoms = frame.structure.natoms
    offset = sum(baselines["atom_energy_ha"].get(s, 0.0) for s in frame.structure.symbols)
    shifts = baselines["shift_ev"]
    levels = {"target": record_levels_ev(target), "model": record_levels_ev(record), "base": record_levels_ev(base)}
    levels["scissor"] = {k: v + shifts[k] for k, v in levels["base"].items()}
    energy = {"model": record["energy"], "base": base["energy"] + offset, "scissor": base["energy"] + offset}
    h_target = _lowdin_fock(target)
    symbols = np.asarray(frame.structure.symbols)
    elements = {element: symbols == element for element in sorted(set(frame.structure.symbols))}
    errors = {}
    for method in METHODS:
        err = {k: np.atleast_1d(levels[method][k] - levels["target"][k]) for k in ("gap", "homo", "lumo", "occupied")}
        if energies_comparable(frame.structure):
            err["energy"] = np.atleast_1d((energy[method] - target["energy"]) * HARTREE_EV * 1000.0 / natoms)
        forces = record.get("forces") if method == "model" else base.get("forces")
        if forces is not None and "forces" in target:
            by_atom = (forces - target["forces"]) * FORCE_EV_ANGSTROM * 1000.0
            err["forces"] = by_atom.ravel()
            for element, atoms in elements.items():
                err[f"forces:{element}"] = by_atom[atoms].ravel()
        if method != "scissor":
            err["hamiltonian"] = ((_lowdin_fock(record if method == "model" else base) - h_target) * 1e6).ravel()
        errors[method] = err
    return errors


def evaluate(model: CorrectionModel, data: Sequence[str | os.PathLike], subset: str = "all",
             baselines: dict | None = None, progress: bool = True, ke_cutoff: float | None = None) -> dict:
    """Run the model on the frames of the labelled files ``data``, one test set (``subset``: all, train or
    validation), and summarise the errors over all of them; with several files a frame is named
    ``<file stem>/<name>``. ``ke_cutoff`` (Hartree) runs the model's SCF on periodic frames at this multigrid cutoff
    instead of the labels' (the HSE06 targets, Gaussian density fitting, do not depend on it; the PBE and scissor
    columns stay the labels')."""
    from ..engines import DeePKSEngine

    if isinstance(data, (str, os.PathLike)):  # one file
        data = [data]
    frames, attrs = read_datasets(data)
    settings = LabelSettings.from_attrs(attrs).at_periodic_cutoff(ke_cutoff)
    held_out = set(model.provenance.get("validation_frames", []))
    if subset != "all":
        if not held_out:
            raise DeePKSError("the model records no validation split; use --subset all")

        def is_held_out(name: str) -> bool:  # a training on several files names its frames <file stem>/<name>
            return name in held_out or (len(data) == 1 and qualified_name(data[0], name, several=True) in held_out)

        frames = [f for f in frames if is_held_out(f.name) == (subset == "validation")]
    if not frames:
        raise DeePKSError(f"no frames to evaluate in {', '.join(map(str, data))} (subset {subset})")
    baselines = baselines or model.provenance.get("baselines")
    if baselines is None:
        raise DeePKSError("the model records no training baselines (per-element energy offsets, scissor shifts): "
                          "pass --baselines TRAIN.h5")
    collected = {m: {} for m in METHODS}
    converged, cycles, skipped, per_frame = 0, [], [], {}
    iterator = frames
    if progress:
        import sys

        from tqdm import tqdm

        iterator = tqdm(frames, unit="frame", desc="evaluate", file=sys.stderr, dynamic_ncols=True)
    for frame in iterator:
        if not (frame.target["converged"] and frame.base["converged"]):
            skipped.append(frame.name)
            continue
        _, base_settings = settings.for_structure(frame.structure)
        record = scf_record(DeePKSEngine(model, base_settings), frame.structure, dm0=frame.base["dm"])
        converged += bool(record["converged"])
        cycles.append(int(record["scf_cycles"]))
        row = per_frame[frame.name] = {"waters": frame.structure.natoms // 3, "converged": bool(record["converged"]),
                                       "scf_cycles": int(record["scf_cycles"])}
        if not record["converged"]:
            continue
        errors = frame_errors(frame, record, baselines)
        row.update(target_gap=float(record_levels_ev(frame.target)["gap"]),
                   errors={m: {k: float(e[k][0]) for k in FRAME_ERRORS if k in e} for m, e in errors.items()})
        for method, errs in errors.items():
            if "forces" in errs:
                stats = error_stats(errs["forces"])
                row["errors"][method].update(forces_rmse=stats["rmse"], forces_max=stats["max"])
            for key, value in errs.items():
                collected[method].setdefault(key, []).append(value)
    metrics = {method: {key: error_stats(np.concatenate(values)) for key, values in errs.items()}
               for method, errs in collected.items()}
    sizes = sorted({f.structure.natoms // 3 for f in frames})
    return {"data": [str(path) for path in data], "subset": subset, "frames": len(frames), "molecules": sizes,
            "base_xc": settings.base.xc, "target_xc": settings.target.xc,
            "model_ke_cutoff": settings.periodic_ke_cutoff if any(f.structure.is_periodic for f in frames) else None,
            "scf_converged": converged, "scf_attempted": len(frames) - len(skipped), "mean_scf_cycles":
            float(np.mean(cycles)) if cycles else None, "skipped_unconverged_labels": skipped,
            "units": {k: unit for k, (_, unit) in QUANTITIES.items()}, "metrics": metrics, "per_frame": per_frame}


def error_stats(values) -> dict:
    """MAE, RMSE, mean (signed: a bias), largest absolute value and count of errors ``values``."""
    values = np.asarray(values, dtype=float)
    return {"mae": float(np.mean(np.abs(values))), "rmse": float(np.sqrt(np.mean(values**2))),
            "mean": float(np.mean(values)), "max": float(np.max(np.abs(values))), "n": int(values.size)}


def markdown_table(summary: dict) -> str:
    """The evaluation as a markdown table (MAE / RMSE per method)."""
    cycles = summary["mean_scf_cycles"]
    base = summary["base_xc"]
    lines = [f"{summary['frames']} frames of {min(summary['molecules'])}–{max(summary['molecules'])} waters "
             f"({summary['subset']}), errors against {summary['target_xc']}; SCF converged "
             f"{summary['scf_converged']}/{summary['scf_attempted']}"
             + (f", mean {cycles:.1f} cycles from the {base} density" if cycles is not None else "")
             + (f"; the model at a {summary['model_ke_cutoff']:g}-Ha periodic cutoff" if summary.get("model_ke_cutoff")
                else ""), "",
             f"| quantity | unit | model MAE | model RMSE | {base} MAE | {base} RMSE | scissor MAE | scissor RMSE |",
             "|---|---|---|---|---|---|---|---|"]
    for quantity, (label, unit) in QUANTITIES.items():  # then per element, where evaluated: "forces:O" -> forces on O
        parts = [key for key in summary["metrics"]["model"] if key.startswith(f"{quantity}:")]
        for key, name in [(quantity, label)] + [(key, f"{label} on {key.split(':', 1)[1]}") for key in parts]:
            cells = []
            for method in METHODS:
                stats = summary["metrics"][method].get(key)
                cells += ["—", "—"] if stats is None else [_fmt(stats["mae"]), _fmt(stats["rmse"])]
            lines.append(f"| {name} | {unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
