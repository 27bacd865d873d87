"""The benchmark suite: single points, an MD segment and a tolerance scan, side by side in one run.

Systems: clusters of N waters (the N molecules nearest to molecule 0 of the shipped 64-water liquid
snapshot, whole) and the shipped periodic liquid boxes (``data/water_liquid_<N>.xyz``: 8, 32, 64
molecules; q-SPC/Fw snapshots at 300 K and 1 g/cm³ made with ``deepks_es.training.sample.md_snapshots``).

Each measurement runs in a fresh spawned process, one at a time, so its peak resident memory is that of
one MD client and no measurement inherits another's caches. Results are appended to ``OUT/bench.json``
as they finish; a rerun with the same output directory skips those already there, and may add systems
or methods, the MD segment or the tolerance scan (the report covers them all) as long as the settings of
how to measure (model, SCF tolerance, cutoff, density predictor, seed) are unchanged.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import MISSING, asdict, dataclass, fields
from importlib import resources
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from ..constants import FORCE_EV_ANGSTROM
from ..errors import SettingsError, first_line
from ..fileio import write_json
from ..parallel import available_cores, die_with_parent
from ..scf.extrapolation import DEFAULT_PREDICTOR
from ..scf.systems import PERIODIC_KE_CUTOFF
from ..structure import Structure, read_structure
from .profile import PARTS, profiled_compute

METHODS = ("PBE", "DeePKS-ES", "HSE06", "surrogate")
SURROGATE_REPEATS = 5  # timed surrogate steps after one warm-up step (an MD step is never the first call)
FORCE_MEV_A = FORCE_EV_ANGSTROM * 1000.0  # Hartree/Bohr -> meV/Angstrom
REFERENCE_TOL = 1e-12  # Hartree: "fully converged"
MD_TIMESTEP_FS = 0.5
MD_TEMPERATURE = 300.0
SCALING_REPEATS = 3  # timed surrogate steps per size in the scaling scan, after one warm-up step
ENGINE_CALLS = max(2 + 2 * SURROGATE_REPEATS, 2 * (1 + SCALING_REPEATS))
"""The most structures one surrogate engine computes in a bench task: a ``committee_every`` above it makes every
timed step member 0's (the warm-up step, the first, is the whole committee's)."""
PER_RUN = ("clusters", "boxes", "methods", "md_molecules", "md_steps", "check_every", "tolerances", "scaling",
           "scaling_observables")  # what to
# measure, free to differ between runs into one output directory (how to measure may not)


@dataclass(frozen=True)
class BenchPlan:
    """What ``deepks-es bench`` measures (sizes in water molecules).

    Attributes:
        model: DeePKS-ES model (path, or ``default``).
        surrogate: surrogate model of the ``surrogate`` method (path, or ``surrogate``, the shipped one).
        committee_every: None: the surrogate's whole committee each step (its mean and spread); K (above
            :data:`ENGINE_CALLS`): member 0 alone after the warm-up step, the step an MD with
            ``--committee-every`` runs between its committee steps.
        clusters, boxes: sizes of the single-point clusters and periodic boxes.
        methods: of :data:`METHODS`.
        md_molecules, md_steps: the NVT MD segment (Langevin, 300 K, 0.5 fs) with DeePKS-ES.
        check_every: every so many MD steps, the step is recomputed cold (PySCF's guess) and fully
            converged to compare cycles, time and forces.
        extrapolation: density predictor of the MD segment (``geometry[:N]``, ``aspc[:K]``, ``previous``).
        tolerances: SCF energy tolerances (Hartree) of the force-error scan on the MD cluster.
        conv_tol: SCF energy tolerance of the single points and the MD segment.
        conv_tol_grad: their orbital-gradient tolerance (None: sqrt(conv_tol)).
        ke_cutoff: periodic multigrid cutoff (Hartree).
        seed: MD velocities and thermostat.
        scaling: box sizes (waters: 32, or 64 times a power of 2, replicas of the shipped 64-water box) of the
            surrogate's scaling scan: an MD step with energy, forces and virial, and up to
            ``scaling_observables`` waters also with the Hamiltonian, levels and DOS (dense diagonalisation).
    """

    model: str
    surrogate: str = "surrogate"
    committee_every: int | None = None
    clusters: tuple[int, ...] = (4, 8, 16, 32)
    boxes: tuple[int, ...] = (32, 64)
    methods: tuple[str, ...] = METHODS
    md_molecules: int = 8
    md_steps: int = 50
    check_every: int = 10
    extrapolation: str = DEFAULT_PREDICTOR
    tolerances: tuple[float, ...] = (1e-6, 1e-7, 1e-8, 1e-9)
    conv_tol: float = 1e-9
    conv_tol_grad: float | None = None
    ke_cutoff: float = PERIODIC_KE_CUTOFF
    seed: int = 0
    scaling: tuple[int, ...] = ()
    scaling_observables: int = 256

    def __post_init__(self):
        if self.committee_every is not None and self.committee_every <= ENGINE_CALLS:
            raise SettingsError(f"bench --committee-every must exceed {ENGINE_CALLS} (the steps one surrogate "
                                f"engine takes in a task), so that every timed step is member 0's; got "
                                f"{self.committee_every}")

    def tasks(self) -> list[dict]:
        """The measurements, cheapest first within each kind."""
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise SettingsError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
        systems = [("cluster", n) for n in sorted(self.clusters)] + [("box", n) for n in sorted(self.boxes)]
        tasks = [{"kind": "single", "method": m, "system": s, "molecules": n} for s, n in systems for m in self.methods]
        if self.md_steps:
            tasks.append({"kind": "md", "system": "cluster", "molecules": self.md_molecules})
        if self.tolerances:
            tasks.append({"kind": "tolerance", "system": "cluster", "molecules": self.md_molecules})
        tasks += [{"kind": "scaling", "method": "surrogate", "system": "box", "molecules": n}
                  for n in sorted(self.scaling)]
        for task in tasks:
            task["name"] = "/".join(str(task[k]) for k in ("kind", "method", "system", "molecules") if k in task)
        return tasks


def replicated_box(molecules: int) -> Structure:
    """A periodic liquid box of ``molecules`` waters: the shipped 32-water box, or the 64-water one replicated
    (doubled along x, y, z in turn) to 64 times a power of 2."""
    if molecules == 32:
        return read_structure(box_path(32))
    factor = molecules // 64
    if molecules < 64 or molecules % 64 or factor & (factor - 1):
        raise SettingsError(f"scaling boxes have 32 or 64 x 2^k waters (64, 128, 256, ...), not {molecules}")
    box = read_structure(box_path(64))
    reps = np.ones(3, dtype=int)
    for doubling in range(factor.bit_length() - 1):
        reps[doubling % 3] *= 2
    return box.repeated(reps)


def box_path(molecules: int) -> Path:
    path = Path(str(resources.files("deepks_es") / "data" / f"water_liquid_{molecules}.xyz"))
    if not path.is_file():
        raise SettingsError(f"no shipped {molecules}-water box (have 8, 32, 64)")
    return path


def water_system(system: str, molecules: int) -> Structure:
    """A shipped periodic box, or the ``molecules`` waters nearest to molecule 0 of the 64-water box (Bohr)."""
    if system == "box":
        return read_structure(box_path(molecules))
    if not 1 <= molecules <= 64:
        raise SettingsError(f"clusters of 1-64 waters, not {molecules}")
    return read_structure(box_path(64)).water_cluster(0, molecules)


def _engine(plan: BenchPlan, method: str, periodic: bool, **settings):
    from ..engines import make_engine

    if method == "surrogate":
        return make_engine(plan.surrogate, committee_every=plan.committee_every)
    if periodic:
        settings["ke_cutoff"] = plan.ke_cutoff
    if "conv_tol" not in settings:
        settings.update(conv_tol=plan.conv_tol, conv_tol_grad=plan.conv_tol_grad)
    if method == "DeePKS-ES":
        return make_engine(plan.model, **settings)
    return make_engine("none", xc=method, **settings)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _median_wall(engine, structure: Structure, repeats: int, **kwargs) -> float:
    return float(np.median([engine.compute(structure, **kwargs).wall_s for _ in range(repeats)]))


def measure_single(plan: BenchPlan, task: dict) -> dict:
    """Cold single point (PySCF's initial guess): wall time per part (cProfile), SCF cycles. The surrogate has no
    SCF and no cold start: after a warm-up step, the median of :data:`SURROGATE_REPEATS` steps with the
    observables (H, levels, DOS) and of as many with energy, forces and virial alone (``force_wall_s``), both
    without the profiler, then one profiled step with the observables for the parts (``parts_s["total"]``)."""
    structure = water_system(task["system"], task["molecules"])
    engine = _engine(plan, task["method"], structure.is_periodic)
    surrogate = {}
    if task["method"] == "surrogate":
        engine.compute(structure)
        surrogate = {"wall_s": _median_wall(engine, structure, SURROGATE_REPEATS),
                     "force_wall_s": _median_wall(engine, structure, SURROGATE_REPEATS, observables=False),
                     "committee_every": engine.committee_every}
    result, parts = profiled_compute(engine, structure)
    return {"natoms": structure.natoms, "wall_s": result.wall_s, **surrogate,
            "scf_cycles": 0 if result.scf is None else result.scf.cycles,
            "converged": result.converged, "forces": result.forces is not None, "parts_s": parts,
            "notes": result.notes}


def _max_force_error(forces: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(forces - reference).max() * FORCE_MEV_A)


def _fully_converged(plan: BenchPlan, structure: Structure, dm0) -> np.ndarray:
    return _engine(plan, "DeePKS-ES", structure.is_periodic, conv_tol=REFERENCE_TOL).compute(structure, dm0=dm0).forces


def measure_md(plan: BenchPlan, task: dict) -> dict:
    """NVT MD with DeePKS-ES and density extrapolation; every ``check_every`` steps a cold recomputation
    and a fully converged one (forces)."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    from ..ase import DeePKSCalculator

    structure = water_system(task["system"], task["molecules"])
    atoms = structure.to_ase()
    rng = np.random.default_rng(plan.seed)
    atoms.calc = DeePKSCalculator(plan.model, extrapolation=plan.extrapolation, conv_tol=plan.conv_tol,
                                 conv_tol_grad=plan.conv_tol_grad)
    thermalize_momenta(atoms, MD_TEMPERATURE, rng=rng)
    md = Langevin(atoms, MD_TIMESTEP_FS * units.fs, temperature_K=MD_TEMPERATURE, friction=0.01 / units.fs,
                  fixcm=False, rng=rng)
    atoms.get_forces()  # the cold first step, not counted
    steps, checks = [], []
    for step in range(1, plan.md_steps + 1):
        start = time.perf_counter()
        md.run(1)
        steps.append({"scf_cycles": atoms.calc.results["scf_cycles"], "wall_s": time.perf_counter() - start,
                      "converged": atoms.calc.results["scf_converged"]})
        print(f"deepks-es bench: md step {step}/{plan.md_steps}: {steps[-1]['scf_cycles']} SCF cycles, "
              f"{steps[-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
        if step % plan.check_every == 0:
            checks.append((step, Structure.from_ase(atoms), atoms.get_forces() / FORCE_EV_ANGSTROM))
    compared = []
    for step, snapshot, forces in checks:
        cold = _engine(plan, "DeePKS-ES", snapshot.is_periodic).compute(snapshot)
        reference = _fully_converged(plan, snapshot, cold.scf.density_matrix)
        compared.append({"step": step, "cold_scf_cycles": cold.scf.cycles, "cold_wall_s": cold.wall_s,
                         "force_error_mev_a": _max_force_error(forces, reference),
                         "cold_force_error_mev_a": _max_force_error(cold.forces, reference)})
    return {"natoms": structure.natoms, "steps": steps, "checks": compared}


def measure_tolerance(plan: BenchPlan, task: dict) -> dict:
    """Max force error against a fully converged SCF, and SCF cycles, per energy tolerance (cold starts)."""
    structure = water_system(task["system"], task["molecules"])
    runs = [_engine(plan, "DeePKS-ES", False, conv_tol=tol).compute(structure) for tol in plan.tolerances]
    reference = _fully_converged(plan, structure, runs[-1].scf.density_matrix)
    return {"natoms": structure.natoms,
            "scan": [{"conv_tol": tol, "scf_cycles": run.scf.cycles, "force_error_mev_a":
                      _max_force_error(run.forces, reference)} for tol, run in zip(plan.tolerances, runs)]}


def measure_scaling(plan: BenchPlan, task: dict) -> dict:
    """Surrogate MD-step time (median of :data:`SCALING_REPEATS` after a warm-up step) of a replicated box:
    energy, forces and virial; with observables (H, dense levels, DOS) up to ``plan.scaling_observables``."""
    structure = replicated_box(task["molecules"])
    engine = _engine(plan, "surrogate", True)
    outcome = {"natoms": structure.natoms, "committee_every": engine.committee_every}
    modes = [("forces", False)] + ([("observables", True)] if task["molecules"] <= plan.scaling_observables else [])
    for name, observables in modes:
        engine.compute(structure, observables=observables)
        outcome[f"{name}_wall_s"] = _median_wall(engine, structure, SCALING_REPEATS, observables=observables)
        outcome[f"{name}_peak_rss_mib"] = _peak_mib()
    return outcome


MEASURES = {"single": measure_single, "md": measure_md, "tolerance": measure_tolerance, "scaling": measure_scaling}


def measure(plan: BenchPlan, task: dict) -> dict:
    """Run one task (in the calling process) and add its peak memory; errors become an ``error`` entry."""
    start = time.perf_counter()
    try:
        outcome = MEASURES[task["kind"]](plan, task)
    except Exception as exc:  # a benchmark row that failed is reported, the suite goes on
        outcome = {"error": f"{type(exc).__name__}: {first_line(exc)}"}
    return {**task, **outcome, "task_wall_s": time.perf_counter() - start, "peak_rss_mib": _peak_mib()}


def machine() -> dict:
    import pyscf
    import torch
    from pyscf import lib

    return {"cpus": available_cores(), "pyscf_threads": lib.num_threads(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "pyscf": pyscf.__version__, "torch": torch.__version__,
            "processor": platform.processor() or platform.machine()}


def run_bench(plan: BenchPlan, out_dir: str | os.PathLike, log=print) -> dict:
    """Run (or resume) the plan; writes ``bench.json`` after every task and ``bench.md`` at the end."""
    from .report import markdown_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    settings = {k: v for k, v in json.loads(json.dumps(asdict(plan))).items() if k not in PER_RUN}
    if data:
        defaults = json.loads(json.dumps({f.name: f.default for f in fields(BenchPlan) if f.default is not MISSING}))
        stored = {**defaults, **data["plan"]}  # a file written before a setting existed had its default
        differing = sorted(k for k in settings if stored.get(k) != settings[k])
        if differing:
            raise SettingsError(f"{path} was measured with other settings ({', '.join(differing)}): use a new "
                                "output directory")
    data = {"plan": asdict(plan), "machine": machine(), "results": data.get("results", [])}
    done = {r["name"] for r in data["results"] if "error" not in r}
    data["results"] = [r for r in data["results"] if r["name"] in done]
    tasks = [t for t in plan.tasks() if t["name"] not in done]
    for i, task in enumerate(tasks, 1):
        log(f"[{i}/{len(tasks)}] {task['name']} ...")
        with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            result = pool.submit(measure, plan, task).result()
        log(f"[{i}/{len(tasks)}] {task['name']}: " + (result.get("error") or f"{result['task_wall_s']:.1f} s, "
                                                       f"peak {result['peak_rss_mib']:.0f} MiB"))
        data["results"].append(result)
        write_json(path, data)
    write_json(path, data)
    (out / "bench.md").write_text(markdown_report(data))
    return data


__all__ = ["PARTS", "BenchPlan", "measure", "run_bench", "water_system"]
