"""ASE interface: a Calculator for in-process use, and a client launcher for ASE's socket server.

``DeePKSCalculator`` serves any engine (an :class:`~deepks_es.engines.Engine`, an
:class:`~deepks_es.engines.EngineSpec` or a model name): energy (eV), forces (eV/Å) and, where the
engine has a periodic virial, stress (eV/Å^3); ``results`` also holds ``gap``, ``homo``, ``lumo``
(eV), ``dos`` (states/eV on ``dos_energies``, eV) and the engine's diagnostics (``scf_converged``,
``scf_cycles``, ... for SCF engines). Successive calls are one trajectory for the engine (warm starts).

``DriveLauncher`` is a ``launch_client`` for ``ase.calculators.socketio.SocketIOCalculator``:
it starts ``deepks-es drive`` as the i-PI-protocol client of ASE's socket server.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .constants import FORCE_EV_ANGSTROM, HARTREE_EV
from .engines import Engine, EngineSpec, as_engine, make_engine
from .errors import SettingsError
from .fileio import DOS_GRID_FILE
from .ipi.client import SocketAddress
from .ipi.drive import ClientPlan
from .observables import DOSGrid
from .structure import Structure, write_structures


class DeePKSCalculator(Calculator):
    """An engine as an ASE calculator.

    Args:
        engine: an Engine instance, an EngineSpec, or a model name (file path, ``"default"``, ``"none"``).
        dos_grid: energy grid and broadening of the DOS in ``results``.
        **spec: :class:`EngineSpec` fields (xc, conv_tol, extrapolation, ...) applied to a spec or model name.
    """

    def __init__(self, engine: Engine | EngineSpec | str = "none", dos_grid: DOSGrid = DOSGrid(), **spec):
        super().__init__()
        if spec and isinstance(engine, Engine):
            raise SettingsError(f"engine options ({', '.join(spec)}) apply to an EngineSpec or a model name, not to "
                                "an engine instance: build the engine with them")
        self.engine = make_engine(engine, **spec) if spec else as_engine(engine)
        self.dos_grid = dos_grid

    @property
    def implemented_properties(self) -> list[str]:
        """energy, free_energy and forces; stress where the engine gives a periodic virial."""
        return ["energy", "free_energy", "forces", *(["stress"] if self.engine.describe().periodic_virial else [])]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        result = self.engine.compute(Structure.from_ase(self.atoms), key="ase")
        periodic = bool(self.atoms.pbc.all())
        if "stress" in properties and not (periodic and result.virial is not None):
            reason = "; ".join(result.notes) if periodic else "the structure is not periodic"
            raise PropertyNotImplementedError(f"stress unavailable: {reason}")
        observables = result.observables(self.dos_grid)
        energy = result.energy * HARTREE_EV
        self.results = {
            "energy": energy,
            "free_energy": energy,
            **{key.removesuffix("_ev"): value for key, value in result.levels_ev().items()},
            "dos": self.dos_grid.dos(result.mo_energy),
            "dos_energies": self.dos_grid.energies_ev,
            **result.diagnostics(),
            **{key: value for key, value in observables.items() if key.startswith("dos_")},
        }
        if result.forces is not None:
            self.results["forces"] = result.forces * FORCE_EV_ANGSTROM
        if result.virial is not None and periodic:
            stress = -result.virial * HARTREE_EV / self.atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]


class DriveLauncher:
    """``launch_client`` for ``SocketIOCalculator``: runs ``deepks-es drive`` against ASE's server.

    Args:
        engine: the spec (or model name) of the engine the client serves.
        grid: the DOS grid of the logged observables.
    """

    def __init__(self, engine: EngineSpec | str = EngineSpec(), grid: DOSGrid = DOSGrid()):
        self.engine = EngineSpec(model=engine) if isinstance(engine, str) else engine
        self.grid = grid
        self._workdir = tempfile.TemporaryDirectory(prefix="deepks-es-ase-")

    def __call__(self, atoms, properties=None, port=None, unixsocket=None):
        workdir = Path(self._workdir.name)
        structure = workdir / "atoms.xyz"
        write_structures(structure, [Structure.from_ase(atoms)])
        # ASE's server puts unix sockets at /tmp/ipi_NAME, i-PI's default prefix
        address = SocketAddress(unix=unixsocket) if unixsocket else SocketAddress(host="localhost", port=port)
        plan = ClientPlan(address, structure, bool(atoms.pbc.all()), self.engine, self.grid,
                          workdir / DOS_GRID_FILE, idle_timeout_s=None)  # ASE's server is silent between calls
        return subprocess.Popen(plan.with_threads(1).client_command())
