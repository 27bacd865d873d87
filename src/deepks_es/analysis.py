"""Electronic analysis of an i-PI trajectory run with the DeePKS-ES client.

Reads the properties file and the per-bead extras (gap, HOMO, LUMO, total and
element-projected DOS, SCF counters) of a run directory or an i-PI output prefix,
and writes: time series and histogram of the gap, the trajectory-averaged DOS
(averaged over beads, with the bead-to-bead spread) and its O/H projections, and for a
periodic run the O-O radial distribution function against experiment, as PNG; the same
numbers as CSV; a JSON summary with block-averaged error bars.
"""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .constants import AVOGADRO, BOHR_ANGSTROM
from .errors import DeePKSError
from .fileio import DOS_GRID_FILE, RUN_INPUT, atomic_path, write_json
from .ipi.outputs import OutputNames, output_names
from .rdf import EXPERIMENT_OO_PEAK, EXPERIMENT_SOURCE, RDF, RDFError, radial_distribution

LEVELS = ("gap_ev", "homo_ev", "lumo_ev")
FILENAME_GUESSES = {"gap_ev": ("gap_ev", "gap"), "homo_ev": ("homo_ev", "homo"), "lumo_ev": ("lumo_ev", "lumo"),
                    "scf_cycles": ("scf_cycles", "scf")}  # for a bare prefix with no input file
STEP_COMMENT = re.compile(r"^# CELL.*Step:\s+(\d+)")
"""The MD step in the comment line of an i-PI xyz frame."""


class AnalysisError(DeePKSError):
    """A run that cannot be analysed (missing or inconsistent files)."""


@dataclass(frozen=True)
class ValidationLimits:
    """|Deviation| from the validation reference above which ``analyze`` warns. Defaults: the shipped
    surrogate's largest per-frame error against DeePKS-ES on its 18 held-out 5-water clusters (6 from the
    q-SPC/Fw liquid, 12 from stage 4's MD), the structures the main job's validation compares (README, the
    shipped surrogate: round 5, stage 5). A comparison drawn like those frames exceeds the largest of them
    with probability 1/19: the warning rate of a surrogate as good along the run as on its test set."""

    energy_mev_per_atom: float = 5.3
    force_rmse_ev_per_angstrom: float = 0.048
    gap_ev: float = 0.75

    def of(self, key: str) -> float | None:
        """The limit of validation extras ``key``, None where there is none (HOMO, LUMO)."""
        return {"validation_energy_mev_per_atom": self.energy_mev_per_atom,
                "validation_force_rmse_ev_per_angstrom": self.force_rmse_ev_per_angstrom,
                "validation_gap_ev": self.gap_ev}.get(key)


@dataclass
class RunFiles:
    """Where a run's outputs are: its directory and i-PI's output names."""

    directory: Path
    names: OutputNames

    def symbols(self) -> tuple[str, ...] | None:
        """The elements of one bead, from the first frame of bead 0's positions trajectory (xyz); None if not
        logged or unreadable."""
        if self.names.positions is None:
            return None
        for path in sorted(self.directory.glob(f"{self.names.prefix}.{self.names.positions}_0*.xyz")):
            with path.open() as handle:
                first = handle.readline().split()
                if not (first and first[0].isdigit()):
                    return None
                handle.readline()  # the comment (cell, step)
                rows = [handle.readline().split() for _ in range(int(first[0]))]
            return tuple(row[0] for row in rows) if all(rows) else None
        return None

    def atom_count(self) -> int | None:
        """Atoms per bead (:meth:`symbols`); None if the positions were not logged."""
        symbols = self.symbols()
        return None if symbols is None else len(symbols)

    def position_frames(self, skip: int = 0) -> list:
        """ASE frames of every bead's positions trajectory (xyz) from MD step ``skip`` on; [] if not logged."""
        import ipi

        if self.names.positions is None:
            return []
        frames = []
        for path in sorted(self.directory.glob(f"{self.names.prefix}.{self.names.positions}_*.xyz")):
            steps = [int(m.group(1)) for line in path.open() if (m := STEP_COMMENT.search(line))]
            frames += [frame for frame, step in zip(ipi.read_trajectory(str(path), format="xyz"), steps)
                       if step >= skip]
        return frames

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
    extras.update({name: name for name in found if name == "dos" or name.startswith(("dos_", "validation_"))})
    return RunFiles(directory, OutputNames(prefix, extras=extras, positions="pos" if "pos" in found else None))


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


def analyze(run: str | Path, out_dir: str | Path | None = None, skip: int = 0,
            limits: ValidationLimits = ValidationLimits()) -> dict:
    """Analyse a run; write PNG, CSV and ``summary.json`` to ``out_dir`` (default RUN_DIR/analysis).

    A run validated on the fly (``validation_*`` extras) gets a ``validation`` section: every comparison,
    the mean and largest |deviation| per quantity, and ``warnings`` where one exceeds ``limits``."""
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
    properties = _properties(files)
    time_ps = _time_axis(properties, nsteps)

    summary = {"run": str(files.directory), "prefix": files.names.prefix, "beads": nbeads, "steps_logged": nsteps,
               "steps_skipped": skip, "levels_ev": {}}
    for key, values in levels.items():
        if values is None:
            continue
        bead_mean = bead_average(values[:, kept])
        bead_mean = bead_mean[np.isfinite(bead_mean)]  # the observed steps (every one, or every k-th)
        summary["levels_ev"][key.removesuffix("_ev")] = {
            "mean": float(np.nanmean(bead_mean)), "block_error": block_standard_error(bead_mean),
            "std": float(np.nanstd(values[:, kept])), "min": float(np.nanmin(values[:, kept])),
            "max": float(np.nanmax(values[:, kept]))}
    cycles = read_extras(files, "scf_cycles")
    if cycles is not None:
        summary["scf"] = {"mean_cycles": float(cycles[:, kept].mean()), "max_cycles": int(cycles[:, kept].max())}

    write_csv(out / "levels.csv", ["step", "time_ps", *(f"{k}_bead_mean" for k in LEVELS if levels[k] is not None)],
               [steps, time_ps, *(bead_average(v) for v in levels.values() if v is not None)])
    plots = {"gap_timeseries": _plot_levels(out / "gap_timeseries.png", time_ps, levels, skip),
             "gap_histogram": _plot_histogram(out / "gap_histogram.png", levels["gap_ev"][:, kept])}
    dos = _dos_summary(files, kept)
    if dos is not None:
        columns = {"energy_ev": dos["energies"], "dos_mean": dos["mean"], "dos_bead_spread": dos["spread"],
                   **{f"dos_{el}": curve for el, curve in dos["elements"].items()}}
        write_csv(out / "dos.csv", list(columns), list(columns.values()))
        plots["dos"] = _plot_dos(out / "dos.png", dos, nbeads)
        summary["dos"] = {"grid": dos["grid"], "elements": sorted(dos["elements"])}
    conservation = _conservation_summary(properties, files.atom_count(), skip)
    if conservation is not None:
        summary["conserved"] = conservation
        plots["conserved"] = _plot_conserved(out / "conserved.png", conservation)
    density = _density_summary(properties, files, skip)
    if density is not None:
        summary["density"] = density
        plots["density"] = _plot_density(out / "density.png", density)
    rdf = _rdf_summary(files, skip)
    if rdf is not None:
        write_csv(out / "rdf_OO.csv", ["r_angstrom", "g_OO"], [rdf.r, rdf.g])
        plots["rdf_OO"] = _plot_rdf(out / "rdf_OO.png", rdf)
        (peak_r, peak_g), (exp_r, exp_g) = rdf.first_peak(), EXPERIMENT_OO_PEAK
        summary["rdf_OO"] = {"frames": rdf.frames, "rmax_angstrom": rdf.rmax, "first_peak_angstrom": peak_r,
                             "first_peak_height": peak_g, "experiment": {"first_peak_angstrom": exp_r,
                                                                         "first_peak_height": exp_g,
                                                                         "source": EXPERIMENT_SOURCE}}
    validation = _validation_summary(files, limits)
    if validation is not None:
        summary["validation"] = validation
        plots["validation"] = _plot_validation(out / "validation.png", validation)
    summary["files"] = {name: str(path) for name, path in
                        {**plots, "levels_csv": out / "levels.csv", "summary": out / "summary.json",
                         **({"dos_csv": out / "dos.csv"} if dos is not None else {})}.items()}
    write_json(out / "summary.json", summary)
    return summary


def _properties(files: RunFiles) -> tuple[dict, dict]:
    """i-PI's properties file as ({name: values}, {name: (unit, ...)}); empty if the run has none."""
    import ipi

    path = files.directory / files.names.properties
    return ipi.read_output(str(path)) if path.is_file() else ({}, {})


def _steps_from(properties: tuple[dict, dict], name: str, skip: int) -> np.ndarray | None:
    """Mask of the property rows from MD step ``skip`` on; None unless property ``name`` and
    ``time{picosecond}`` were logged."""
    values, info = properties
    if not {name, "time"} <= set(values) or info["time"][0] != "picosecond":
        return None
    step = np.asarray(values["step"], dtype=float) if "step" in values else np.arange(len(values["time"]))
    return step >= skip


def _conservation_summary(properties: tuple[dict, dict], natoms: int | None, skip: int) -> dict | None:
    """Drift (least-squares slope) and fluctuation of i-PI's conserved quantity after ``skip`` steps, per atom
    where ``natoms`` is known; None without ``conserved`` and ``time{picosecond}`` properties."""
    from ipi.utils.units import unit_to_internal

    values, info = properties
    kept = _steps_from(properties, "conserved", skip)
    if kept is None:
        return None
    time_ps = np.asarray(values["time"], dtype=float)[kept]
    ev = unit_to_internal("energy", info["conserved"][0] or "atomic_unit", 1.0) / unit_to_internal(
        "energy", "electronvolt", 1.0)
    conserved = np.asarray(values["conserved"], dtype=float)[kept] * ev
    if len(time_ps) < 3:
        return None
    slope = float(np.polyfit(time_ps, conserved, 1)[0])
    summary = {"span_ps": float(time_ps[-1] - time_ps[0]), "atoms": natoms, "drift_ev_per_ps": slope,
               "std_ev": float(conserved.std()), "time_ps": time_ps.tolist(),
               "relative_ev": (conserved - conserved[0]).tolist()}
    if natoms:
        summary["drift_mev_per_atom_per_ps"] = slope / natoms * 1e3
        summary["std_mev_per_atom"] = float(conserved.std()) / natoms * 1e3
    return summary


def _density_summary(properties: tuple[dict, dict], files: RunFiles, skip: int) -> dict | None:
    """Mass density (g/cm³) of a constant-pressure run from step ``skip`` on: mean with its block error,
    std and series; None without ``volume`` and ``time{picosecond}`` properties or a positions trajectory (the
    atoms' masses, from its first frame)."""
    from ase.data import atomic_masses, atomic_numbers
    from ipi.utils.units import unit_to_internal

    values, info = properties
    kept, symbols = _steps_from(properties, "volume", skip), files.symbols()
    if kept is None or kept.sum() < 2 or symbols is None:
        return None
    grams = sum(atomic_masses[atomic_numbers[s]] for s in symbols) / AVOGADRO
    cubic_bohr = unit_to_internal("volume", info["volume"][0] or "atomic_unit", 1.0)
    volume_cm3 = np.asarray(values["volume"], dtype=float)[kept] * cubic_bohr * (BOHR_ANGSTROM * 1e-8) ** 3
    density = grams / volume_cm3
    return {"mean_g_per_cm3": float(density.mean()), "block_error_g_per_cm3": block_standard_error(density),
            "std_g_per_cm3": float(density.std()), "steps": int(kept.sum()),
            "time_ps": np.asarray(values["time"], dtype=float)[kept].tolist(), "g_per_cm3": density.tolist()}


def _plot_density(path: Path, density: dict) -> Path:
    fig, ax = figure()
    ax.plot(density["time_ps"], density["g_per_cm3"], color="tab:blue", lw=1)
    ax.axhline(density["mean_g_per_cm3"], color="k", ls="--", lw=0.8)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("density (g/cm³)")
    ax.set_title(f"{density['mean_g_per_cm3']:.3f} ± {density['block_error_g_per_cm3']:.3f} g/cm³ "
                 "(mean, block error)", fontsize=9)
    return save_figure(fig, path)


def _plot_conserved(path: Path, conservation: dict) -> Path:
    fig, ax = figure()
    natoms = conservation["atoms"] or 1
    ax.plot(conservation["time_ps"], np.asarray(conservation["relative_ev"]) / natoms * 1e3, color="k", lw=1)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("conserved - start (meV/atom)" if conservation["atoms"] else "conserved - start (meV)")
    ax.set_title(f"drift {conservation['drift_ev_per_ps'] / natoms * 1e3:+.3g} meV"
                 f"{'/atom' if conservation['atoms'] else ''}/ps", fontsize=9)
    return save_figure(fig, path)


def _time_axis(properties: tuple[dict, dict], nsteps: int) -> np.ndarray:
    """Time (ps) of each logged step from the properties (:func:`_properties`), else the step index."""
    values, info = properties
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
    per_bead = np.nanmean(total[:, kept], axis=1)  # steps between observed ones are NaN; >= 1 is observed
    elements = {}
    for key in files.names.extras:
        if key.startswith("dos_") and (values := read_extras(files, key)) is not None:
            elements[key.removeprefix("dos_")] = np.nanmean(values[:, kept], axis=(0, 1))
    return {"energies": energies, "mean": per_bead.mean(axis=0), "spread": per_bead.std(axis=0),
            "elements": dict(sorted(elements.items())), "grid": {k: grid[k] for k in grid if k != "energies_ev"}}


def _rdf_summary(files: RunFiles, skip: int) -> RDF | None:
    """The O-O g(r) of the logged positions from step ``skip`` on; None unless they are periodic and hold O."""
    frames = files.position_frames(skip)
    if not frames or "O" not in frames[0].get_chemical_symbols() or not frames[0].pbc.all():
        return None
    try:
        return radial_distribution(frames)
    except RDFError as exc:
        warnings.warn(f"no O-O RDF: {exc}", stacklevel=2)
        return None


def _plot_rdf(path: Path, rdf: RDF) -> Path:
    fig, ax = figure()
    ax.plot(rdf.r, rdf.g, color="k", lw=1.4, label=f"this run ({rdf.frames} frames)")
    exp_r, exp_g = EXPERIMENT_OO_PEAK
    ax.plot([exp_r], [exp_g], "o", color="tab:red", label="experiment, first peak (Skinner 2013)")
    ax.axhline(1.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g_OO(r)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


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


def bead_average(values: np.ndarray) -> np.ndarray:
    """(nsteps,) mean over beads of (nbeads, nsteps) values; NaN at steps no bead observed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps between observed ones
        return np.nanmean(values, axis=0)


def _plot_levels(path: Path, time_ps: np.ndarray, levels: dict, skip: int) -> Path:
    fig, (ax_gap, ax_edges) = figure(rows=2)

    def plot(ax, key, **style):
        series = bead_average(levels[key])
        observed = np.isfinite(series)
        ax.plot(time_ps[observed], series[observed], lw=1.2, **style)

    plot(ax_gap, "gap_ev", color="tab:purple")
    ax_gap.set_ylabel("gap (eV)")
    for key, color in (("homo_ev", "tab:blue"), ("lumo_ev", "tab:red")):
        if levels[key] is not None:
            plot(ax_edges, key, color=color, label=key.removesuffix("_ev").upper())
    ax_edges.set_ylabel("level (eV)")
    if ax_edges.get_legend_handles_labels()[0]:  # a run that logged only the gap has no edges to name
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


VALIDATED = ("validation_energy_mev_per_atom", "validation_force_rmse_ev_per_angstrom", "validation_gap_ev",
             "validation_homo_ev", "validation_lumo_ev")


def _validation_summary(files: RunFiles, limits: ValidationLimits) -> dict | None:
    """Each comparison once (bead 0 repeats the latest one every step), statistics and warnings; None if the run
    was not validated."""
    steps = read_extras(files, "validation_step")
    if steps is None:
        return None
    logged = steps[0]
    first = [i for i, step in enumerate(logged) if np.isfinite(step) and step not in logged[:i]]
    quantities = {key: values[0][first] for key in VALIDATED if (values := read_extras(files, key)) is not None}
    summary = {"comparisons": len(first), "md_steps": [int(logged[i]) for i in first], "quantities": {},
               "limits": {key: limits.of(key) for key in quantities if limits.of(key) is not None}, "warnings": []}
    for key, values in quantities.items():
        finite = np.abs(values[np.isfinite(values)])
        summary["quantities"][key] = {"values": [None if not np.isfinite(v) else float(v) for v in values],
                                      "mean_abs": float(finite.mean()) if finite.size else None,
                                      "rms": float(np.sqrt(np.mean(finite**2))) if finite.size else None,
                                      "max_abs": float(finite.max()) if finite.size else None}
        limit = limits.of(key)
        if limit is not None and finite.size and finite.max() > limit:
            summary["warnings"].append(f"{key}: |deviation| up to {finite.max():.3g} at "
                                       f"{int((finite > limit).sum())} of {finite.size} comparisons, above {limit:g}")
    return summary


def _plot_validation(path: Path, validation: dict) -> Path:
    shown = [key for key in VALIDATED[:3] if key in validation["quantities"]]
    fig, axes = figure(rows=max(1, len(shown)))
    for ax, key in zip(np.atleast_1d(axes), shown):
        values = np.array([np.nan if v is None else v for v in validation["quantities"][key]["values"]])
        ax.plot(validation["md_steps"], values, "o-", color="tab:green", ms=4, lw=1)
        if (limit := validation["limits"].get(key)) is not None:
            for sign in ((1, -1) if not key.endswith("rmse_ev_per_angstrom") else (1,)):
                ax.axhline(sign * limit, color="0.5", ls="--", lw=0.8)
        ax.set_ylabel(key.removeprefix("validation_").replace("_", " "), fontsize=8)
    np.atleast_1d(axes)[-1].set_xlabel("MD step (bead 0)")
    return save_figure(fig, path)
