"""What an MD client logs besides energy and forces: orbital observables every k-th step, and on-the-fly
validation of its engine against a reference engine (DeePKS-ES by default).

Validation: every N-th structure of bead 0, the MD's engine and the reference compute the same structure
(the whole one, or a cluster of K waters cut around a random water: the same cut on both sides) in one
spawned worker process, so the MD does not wait; at most one comparison runs at a time (a due step while
one runs is skipped). While a comparison runs, the MD process cedes the worker's threads (so the two never
oversubscribe the cores: on 2 cores a 2-thread MD client beside a 1-thread worker ran 3-4x slower); it takes
them back when the comparison is collected. Each step's extras carry the latest finished comparison under
:data:`VALIDATION_KEYS` (null before the first), deviations as MD engine minus reference.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context

import numpy as np
from tqdm import tqdm

from .constants import FORCE_EV_ANGSTROM, HARTREE_EV
from .engines import Engine, EngineSpec
from .engines.result import Result
from .errors import SettingsError, first_line
from .parallel import compute_threads, die_with_parent, set_threads
from .scf.systems import PERIODIC_KE_CUTOFF
from .structure import Structure

VALIDATION_KEYS = ("validation_step", "validation_atoms", "validation_energy_mev_per_atom",
                   "validation_force_rmse_ev_per_angstrom", "validation_gap_ev", "validation_homo_ev",
                   "validation_lumo_ev", "validation_reference_trusted")
"""Extras of every step while validating: the MD step (of bead 0) the latest comparison was of, the atoms
compared, and the MD engine's deviations from the reference (energy per atom, force RMSE over Cartesian
components, gap, HOMO, LUMO; null where either lacks the quantity)."""


@dataclass(frozen=True)
class MonitorSettings:
    """What an MD client logs besides energy and forces.

    Attributes:
        observables_every: orbital observables (levels, DOS) of every k-th structure of each bead, the first
            included; null in between, where an engine may skip its orbitals.
        validate_every: compare with the reference every N-th structure of bead 0 (0: never).
        reference: the reference engine (a model name or file, e.g. ``default``: shipped DeePKS-ES).
        validate_cluster: cut a cluster of so many waters around a random water (0: the whole structure).
        validate_threads: compute threads of the validation worker.
        seed: of the random choice of the central water.
    """

    observables_every: int = 1
    validate_every: int = 0
    reference: str = "default"
    validate_cluster: int = 0
    validate_threads: int = 1
    seed: int = 0

    def __post_init__(self):
        for name in ("observables_every", "validate_threads"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        for name in ("validate_every", "validate_cluster"):
            if getattr(self, name) < 0:
                raise SettingsError(f"--{name.replace('_', '-')} must be 0 or more, not {getattr(self, name)}")

    @classmethod
    def from_options(cls, options: dict) -> MonitorSettings:
        """From command-line options (``observables_every``, ``validate_every``, ``validate_model``, ...)."""
        return cls(observables_every=options.get("observables_every", 1),
                   validate_every=options.get("validate_every", 0),
                   reference=options.get("validate_model", "default"),
                   validate_cluster=options.get("validate_cluster", 0),
                   validate_threads=options.get("validate_threads", 1), seed=options.get("validate_seed", 0))

    def argv(self) -> list[str]:
        """The command-line options of these settings (``deepks-es drive``)."""
        return ["--observables-every", str(self.observables_every), "--validate-every", str(self.validate_every),
                "--validate-model", self.reference, "--validate-cluster", str(self.validate_cluster),
                "--validate-threads", str(self.validate_threads), "--validate-seed", str(self.seed)]

    def as_dict(self) -> dict:
        return asdict(self)

    def observes(self, step: int) -> bool:
        """Whether the orbital observables of MD step ``step`` (0, 1, ... of a bead) are logged."""
        return step % self.observables_every == 0


def monitored_compute(engine: Engine, structure: Structure, key: Hashable, observed: bool) -> Result:
    """``engine.compute``, told to skip its orbitals where they are not ``observed`` (the keyword only then: an
    engine without it serves every-step logging)."""
    return engine.compute(structure, key=key, **({} if observed else {"observables": False}))


def compared_structure(structure: Structure, settings: MonitorSettings, rng: np.random.Generator) -> Structure:
    """What a validation computes: ``structure`` itself, or a cluster of ``validate_cluster`` waters around a
    random water of it (whole structure when it has no more waters than that)."""
    nmol = structure.natoms // 3
    if not settings.validate_cluster or settings.validate_cluster >= nmol:
        return structure
    return structure.water_cluster(int(rng.integers(nmol)), settings.validate_cluster)


def deviations(candidate: Result, reference: Result, step: int, natoms: int) -> dict:
    """The :data:`VALIDATION_KEYS` record of ``candidate`` minus ``reference`` on one structure (eV, eV/Å)."""
    def level(name):
        ours, theirs = getattr(candidate, name), getattr(reference, name)
        return None if ours is None or theirs is None else (ours - theirs) * HARTREE_EV

    forces = None
    if candidate.forces is not None and reference.forces is not None:
        forces = float(np.sqrt(np.mean((candidate.forces - reference.forces) ** 2)) * FORCE_EV_ANGSTROM)
    record = {"validation_step": step, "validation_atoms": natoms,
              "validation_energy_mev_per_atom": (candidate.energy - reference.energy) / natoms * HARTREE_EV * 1e3,
              "validation_force_rmse_ev_per_angstrom": forces, "validation_gap_ev": level("gap"),
              "validation_homo_ev": level("homo"), "validation_lumo_ev": level("lumo"),
              "validation_reference_trusted": reference.trusted}
    return {key: None if isinstance(value, float) and not np.isfinite(value) else value
            for key, value in record.items()}


def reference_spec(settings: MonitorSettings) -> EngineSpec:
    """The reference engine of a validation; an SCF one with the periodic multigrid cutoff of the main job."""
    from .engines.registry import is_surrogate_model

    scf = {} if is_surrogate_model(settings.reference) else {"ke_cutoff": PERIODIC_KE_CUTOFF}
    return EngineSpec(model=settings.reference, threads=settings.validate_threads, **scf)


def _validation_worker(connection, candidate: EngineSpec, settings: MonitorSettings, parent: int) -> None:
    """The worker process: (step, structure) in, a deviations record (or ``{"error": line}``) out; None ends."""
    from .engines import make_engine

    die_with_parent(parent)
    # e3nn's code generation draws tqdm bars, whose default lock is a multiprocessing semaphore; the worker is
    # killed at the end, so that semaphore would be left to the resource tracker, which warns at exit
    tqdm.set_lock(threading.RLock())
    try:  # built before the first job arrives: the first comparison does not wait for the imports
        engines, failure = (make_engine(candidate), make_engine(reference_spec(settings))), None
    except Exception as exc:
        engines, failure = None, f"{type(exc).__name__}: {first_line(exc)}"
    while (job := connection.recv()) is not None:
        step, structure = job
        if failure is not None:
            connection.send({"error": f"step {step}: the engines did not build: {failure}"})
            continue
        try:
            results = [engine.compute(structure, key="validation") for engine in engines]
            connection.send(deviations(*results, step, structure.natoms))
        except Exception as exc:  # reported to the MD client as one line; the MD goes on
            connection.send({"error": f"step {step}: {type(exc).__name__}: {first_line(exc)}"})


@dataclass
class Validator:
    """On-the-fly validation of ``candidate`` (the MD's engine) against ``settings.reference``, in a worker
    process. :meth:`offer` each structure of bead 0; :meth:`extras` the latest comparison for every step."""

    settings: MonitorSettings
    candidate: EngineSpec
    log: object = print
    latest: dict = field(default_factory=lambda: dict.fromkeys(VALIDATION_KEYS))
    done: int = 0

    @classmethod
    def of(cls, settings: MonitorSettings, engine: Engine | EngineSpec | str, log=print) -> Validator | None:
        """The validator of an MD front end serving ``engine`` (None unless ``settings.validate_every``); its worker
        builds its own copy of the engine, so an engine instance is refused."""
        if not settings.validate_every:
            return None
        if isinstance(engine, Engine):
            raise SettingsError("on-the-fly validation needs the engine as a spec or model name, not an instance")
        return cls(settings, EngineSpec(model=engine) if isinstance(engine, str) else engine, log)

    def __post_init__(self):
        self._rng = np.random.default_rng(self.settings.seed)
        self._md_threads: int | None = None  # while a comparison runs: the MD's threads before it ceded some
        context = get_context("spawn")  # the worker starts now and builds its engines while the MD begins
        self._connection, child = context.Pipe()
        candidate = EngineSpec(**{**asdict(self.candidate), "threads": self.settings.validate_threads})
        self._process = context.Process(target=_validation_worker, daemon=True,
                                        args=(child, candidate, self.settings, os.getpid()))
        self._process.start()
        child.close()

    @property
    def _busy(self) -> bool:
        """Whether a comparison runs (the MD has ceded the worker's threads)."""
        return self._md_threads is not None

    def offer(self, step: int, structure: Structure) -> bool:
        """Start a comparison of ``structure`` (MD step ``step``) if one is due and none runs; whether it started."""
        self.collect()
        if self._busy or step % self.settings.validate_every or not self._process.is_alive():
            return False
        self._connection.send((step, compared_structure(structure, self.settings, self._rng)))
        self._set_busy(True)
        return True

    def _set_busy(self, busy: bool) -> None:
        """Mark a comparison running (the MD cedes the worker's threads, keeping one) or over (it takes them back)."""
        if busy:
            self._md_threads = compute_threads()
            set_threads(max(1, self._md_threads - self.settings.validate_threads))
        elif self._busy:
            set_threads(self._md_threads)
            self._md_threads = None

    def collect(self) -> None:
        """Take a finished comparison, if there is one (never waits)."""
        try:
            if not self._busy or (not self._connection.poll() and self._process.is_alive()):
                return
            outcome = self._connection.recv()
        except (EOFError, OSError):
            self.log("deepks-es: warning: the validation worker died; validation stops")
            self._set_busy(False)
            self._process.kill()
            return
        self._set_busy(False)
        if "error" in outcome:
            self.log(f"deepks-es: warning: validation failed at {outcome['error']}")
            return
        self.latest, self.done = outcome, self.done + 1
        self.log(f"deepks-es: validation of step {outcome['validation_step']} ({outcome['validation_atoms']} "
                 f"atoms): dE {_text(outcome['validation_energy_mev_per_atom'], 'meV/atom')}, force RMSE "
                 f"{_text(outcome['validation_force_rmse_ev_per_angstrom'], 'eV/A')}, "
                 f"dgap {_text(outcome['validation_gap_ev'], 'eV')}")

    def extras(self) -> dict:
        """The latest finished comparison (:data:`VALIDATION_KEYS`; null before the first)."""
        self.collect()
        return dict(self.latest)

    def close(self) -> None:
        """Stop the worker (a comparison still running is abandoned) and give the MD its threads back."""
        self._set_busy(False)
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._connection.close()


def _text(value, unit: str) -> str:
    return "n/a" if value is None else f"{value:+.4g} {unit}"
