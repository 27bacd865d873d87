"""Electronic analysis of an i-PI trajectory run with the DeePKS-ES client.

Reads the properties file and the per-bead extras (gap, HOMO, LUMO, total and
element-projected DOS, SCF counters) of a run directory or an i-PI output prefix,
and writes: time series and histogram of the gap, the trajectory-averaged DOS
(averaged over beads, with the bead-to-bead spread) and its O/H projections as PNG;
the same numbers as CSV; a JSON summary with block-averaged error bars.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import DeePKSError
from .fileio import DOS_GRID_FILE, RUN_INPUT, atomic_path, write_json
from .ipi.outputs import OutputNames, output_names

LEVELS = ("gap_ev", "homo_ev", "lumo_ev")
FILENAME_GUESSES = {"gap_ev": ("gap_ev", "gap"), "homo_ev": ("homo_ev", "homo"), "lumo_ev": ("lumo_ev", "lumo"),
                    "scf_cycles": ("scf_cycles", "scf")}  # for a bare prefix with no input file


class AnalysisError(DeePKSError):
    """A run that cannot be analysed (missing or inconsistent files)."""


@dataclass
class RunFiles:
    """Where a run's outputs are: its directory and i-PI's output names."""

    directory: Path
    names: OutputNames

    def bead_files(self, key: str) -> list[Path]:
        """The per-bead files of extras ``key``, in bead order."""
        name = self.names.extras.get(key)
        if name is None:
            return []
        pattern = re.compile(re.escape(f"{self.names.prefix}.{name}_") + r"(\d+)$")
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := pattern.match(p.name))]
        return [p for _, p in sorted(found)]


def locate_run(run: str | Path) -> RunFiles:
    """A run directory (with the ``input.xml`` that ``deepks-es run`` writes) or an i-PI prefix (dir/prefix)."""
    run = Path(run)
    directory, prefix = (run, None) if run.is_dir() else (run.parent, run.name)
    inputs = [directory / RUN_INPUT] if (directory / RUN_INPUT).is_file() else sorted(directory.glob("*.xml"))
    for xml in inputs:
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError:
            continue
        if root.find("output") is not None:
            names = output_names(root)
            return RunFiles(directory, names if prefix is None else replace(names, prefix=prefix))
    if prefix is None:
        raise AnalysisError(f"{run}: no i-PI input (.xml) found; pass the output prefix instead, e.g. {run}/simulation")
    found = {p.name[len(prefix) + 1:].rsplit("_", 1)[0] for p in directory.glob(f"{prefix}.*_[0-9]*")}
    extras = {key: name for key, guesses in FILENAME_GUESSES.items() for name in guesses if name in found}
    extras.update({name: name for name in found if name == "dos" or name.startswith("dos_")})
    return RunFiles(directory, OutputNames(prefix, extras=extras))


def read_extras(files: RunFiles, key: str) -> np.ndarray | None:
    """(nbeads, nsteps[, npoints]) values of extras ``key``; None if the run did not log it."""
    import ipi

    beads = [ipi.read_trajectory(str(path), format="extras")[key] for path in files.bead_files(key)]
    if not beads:
        return None
    nsteps = min(len(b) for b in beads)  # a bead may be one step ahead when a run was cut
    return np.array([np.asarray(b, dtype=float)[:nsteps] for b in beads])


def block_standard_error(series: np.ndarray) -> float:
    """Standard error of the mean of a correlated series by Flyvbjerg-Petersen blocking.

    The largest estimate over blocking levels with at least 4 blocks (the plateau value
    for a long enough series; a conservative one otherwise).
    """
    x = np.asarray(series, dtype=float)
    if len(x) < 2:
        return float("nan")
    estimates = []
    while len(x) >= 4:
        estimates.append(np.std(x, ddof=1) / np.sqrt(len(x)))
        half = len(x) // 2 * 2
        x = 0.5 * (x[:half:2] + x[1:half:2])
    return float(max(estimates)) if estimates else float(np.std(x, ddof=1) / np.sqrt(len(x)))


def analyze(run: str | Path, out_dir: str | Path | None = None, skip: int = 0) -> dict:
    """Analyse a run; write PNG, CSV and ``summary.json`` to ``out_dir`` (default RUN_DIR/analysis)."""
    files = locate_run(run)
    levels = {key: read_extras(files, key) for key in LEVELS}
    if levels["gap_ev"] is None:
        raise AnalysisError(f"{files.directory}: no gap extras found (log 'gap_ev' with an extras trajectory)")
    nbeads, nsteps = levels["gap_ev"].shape[:2]
    if nsteps <= skip:
        raise AnalysisError(f"{files.directory}: {nsteps} logged step(s), nothing left after skipping {skip}")
    out = Path(out_dir) if out_dir is not None else files.directory / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    kept = slice(skip, nsteps)
    steps = np.arange(nsteps)
    time_ps = _time_axis(files, nsteps)

    summary = {"run": str(files.directory), "prefix": files.names.prefix, "beads": nbeads, "steps_logged": nsteps,
               "steps_skipped": skip, "levels_ev": {}}
    for key, values in levels.items():
        if values is None:
            continue
        bead_mean = np.nanmean(values[:, kept], axis=0)
        summary["levels_ev"][key.removesuffix("_ev")] = {
            "mean": float(np.nanmean(bead_mean)), "block_error": block_standard_error(bead_mean),
            "std": float(np.nanstd(values[:, kept])), "min": float(np.nanmin(values[:, kept])),
            "max": float(np.nanmax(values[:, kept]))}
    cycles = read_extras(files, "scf_cycles")
    if cycles is not None:
        summary["scf"] = {"mean_cycles": float(cycles[:, kept].mean()), "max_cycles": int(cycles[:, kept].max())}

    write_csv(out / "levels.csv", ["step", "time_ps", *(f"{k}_bead_mean" for k in LEVELS if levels[k] is not None)],
               [steps, time_ps, *(np.nanmean(v, axis=0) for v in levels.values() if v is not None)])
    plots = {"gap_timeseries": _plot_levels(out / "gap_timeseries.png", time_ps, levels, skip),
             "gap_histogram": _plot_histogram(out / "gap_histogram.png", levels["gap_ev"][:, kept])}
    dos = _dos_summary(files, kept)
    if dos is not None:
        columns = {"energy_ev": dos["energies"], "dos_mean": dos["mean"], "dos_bead_spread": dos["spread"],
                   **{f"dos_{el}": curve for el, curve in dos["elements"].items()}}
        write_csv(out / "dos.csv", list(columns), list(columns.values()))
        plots["dos"] = _plot_dos(out / "dos.png", dos, nbeads)
        summary["dos"] = {"grid": dos["grid"], "elements": sorted(dos["elements"])}
    summary["files"] = {name: str(path) for name, path in
                        {**plots, "levels_csv": out / "levels.csv", "summary": out / "summary.json",
                         **({"dos_csv": out / "dos.csv"} if dos is not None else {})}.items()}
    write_json(out / "summary.json", summary)
    return summary


def _time_axis(files: RunFiles, nsteps: int) -> np.ndarray:
    """Time (ps) of each logged step from the properties file, else the step index."""
    import ipi

    path = files.directory / files.names.properties
    if path.is_file():
        values, info = ipi.read_output(str(path))
        if "time" in values and info["time"][0] == "picosecond" and len(values["time"]) >= nsteps:
            return np.asarray(values["time"][:nsteps], dtype=float)
    return np.arange(nsteps, dtype=float)


def _dos_summary(files: RunFiles, kept: slice) -> dict | None:
    """Trajectory- and bead-averaged DOS, spread over beads, element projections; None if not logged."""
    total = read_extras(files, "dos")
    grid_file = files.directory / DOS_GRID_FILE
    if total is None or not grid_file.is_file():
        return None
    import json

    grid = json.loads(grid_file.read_text())
    energies = np.asarray(grid["energies_ev"])
    if total.shape[-1] != len(energies):
        raise AnalysisError(f"{grid_file} has {len(energies)} points but the DOS extras have {total.shape[-1]}")
    per_bead = total[:, kept].mean(axis=1)
    elements = {}
    for key in files.names.extras:
        if key.startswith("dos_") and (values := read_extras(files, key)) is not None:
            elements[key.removeprefix("dos_")] = values[:, kept].mean(axis=(0, 1))
    return {"energies": energies, "mean": per_bead.mean(axis=0), "spread": per_bead.std(axis=0),
            "elements": dict(sorted(elements.items())), "grid": {k: grid[k] for k in grid if k != "energies_ev"}}


def write_csv(path: Path, header: list[str], columns: list[np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        np.savetxt(tmp, np.column_stack(columns), delimiter=",", header=",".join(header), comments="", fmt="%.8g")


def figure(rows: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, 1, sharex=True, figsize=(6.4, 2.2 + 1.8 * rows), layout="constrained")


def save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def _plot_levels(path: Path, time_ps: np.ndarray, levels: dict, skip: int) -> Path:
    fig, (ax_gap, ax_edges) = figure(rows=2)
    gap = np.nanmean(levels["gap_ev"], axis=0)
    ax_gap.plot(time_ps, gap, color="tab:purple", lw=1.2)
    ax_gap.set_ylabel("gap (eV)")
    for key, color in (("homo_ev", "tab:blue"), ("lumo_ev", "tab:red")):
        if levels[key] is not None:
            ax_edges.plot(time_ps, np.nanmean(levels[key], axis=0), color=color, lw=1.2,
                          label=key.removesuffix("_ev").upper())
    ax_edges.set_ylabel("level (eV)")
    ax_edges.legend(loc="best", fontsize=8)
    if skip:
        for ax in (ax_gap, ax_edges):
            ax.axvspan(time_ps[0], time_ps[skip - 1], color="0.9", zorder=0)
    ax_edges.set_xlabel("time (ps)" if np.any(time_ps % 1) else "step")
    return save_figure(fig, path)


def _plot_histogram(path: Path, gaps: np.ndarray) -> Path:
    fig, ax = figure()
    values = gaps[np.isfinite(gaps)].ravel()
    ax.hist(values, bins=max(5, min(40, values.size // 3)), color="tab:purple", alpha=0.8)
    ax.axvline(values.mean(), color="k", ls="--", lw=1, label=f"mean {values.mean():.3f} eV")
    ax.set_xlabel("gap (eV)")
    ax.set_ylabel("count (steps x beads)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _plot_dos(path: Path, dos: dict, nbeads: int) -> Path:
    fig, ax = figure()
    energies = dos["energies"]
    ax.plot(energies, dos["mean"], color="k", lw=1.4, label="total")
    if nbeads > 1:
        ax.fill_between(energies, dos["mean"] - dos["spread"], dos["mean"] + dos["spread"], color="0.7",
                        label=f"bead spread ({nbeads} beads)")
    for (element, curve), color in zip(dos["elements"].items(), ("tab:red", "tab:blue", "tab:green")):
        ax.plot(energies, curve, color=color, lw=1.0, label=f"{element}-projected")
    ax.set_xlabel("energy (eV)")
    ax.set_ylabel("DOS (states/eV)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
