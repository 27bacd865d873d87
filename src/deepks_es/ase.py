"""ASE interface: a Calculator for in-process use, and a client launcher for ASE's socket server.

``DeePKSCalculator`` gives energy (eV), forces (eV/Å) and, where the engine has a
virial, stress (eV/Å^3); ``results`` also holds ``gap``, ``homo``, ``lumo`` (eV),
``dos`` (states/eV on ``dos_energies``, eV), ``scf_converged`` and ``scf_cycles``.
Successive calls warm-start the SCF from the previous density matrix.

``DriveLauncher`` is a ``launch_client`` for ``ase.calculators.socketio.SocketIOCalculator``:
it starts ``deepks-es drive`` as the i-PI-protocol client of ASE's socket server.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from .constants import BOHR_ANGSTROM, HARTREE_EV
from .engines import make_engine
from .ipi.drive import drive_command
from .observables import DOSGrid
from .structure import Structure, write_structures


class DeePKSCalculator(Calculator):
    """DeePKS-ES (or a plain functional with ``model="none"``) as an ASE calculator.

    Args:
        model: model file path, ``"default"``, ``"none"`` or a ``CorrectionModel``.
        dos_grid: energy grid and broadening of the DOS in ``results``.
        **settings: :class:`deepks_es.scf.SCFSettings` fields (xc, basis, conv_tol, ...).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model="none", dos_grid: DOSGrid = DOSGrid(), **settings):
        super().__init__()
        self.engine = make_engine(model, **settings)
        self.dos_grid = dos_grid

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        result = self.engine.compute(Structure.from_ase(self.atoms), key="ase")
        if "stress" in properties and result.virial is None:
            raise PropertyNotImplementedError("stress unavailable: " + "; ".join(result.notes))
        energy = result.energy * HARTREE_EV
        self.results = {
            "energy": energy,
            "free_energy": energy,
            **{key.removesuffix("_ev"): value for key, value in result.levels_ev().items()},
            "dos": self.dos_grid.dos(result.mo_energy),
            "dos_energies": self.dos_grid.energies_ev,
            "scf_converged": result.converged,
            "scf_cycles": result.scf_cycles,
        }
        if result.forces is not None:
            self.results["forces"] = result.forces * HARTREE_EV / BOHR_ANGSTROM
        if result.virial is not None and self.atoms.pbc.all():
            stress = -result.virial * HARTREE_EV / self.atoms.get_volume()
            self.results["stress"] = stress.flat[[0, 4, 8, 5, 2, 1]]


class DriveLauncher:
    """``launch_client`` for ``SocketIOCalculator``: runs ``deepks-es drive`` against ASE's server.

    Args:
        options: extra ``deepks-es drive`` options, e.g. ``["--model", "model.pt", "--xc", "PBE"]``.
    """

    def __init__(self, options=()):
        self.options = list(options)
        self._workdir = tempfile.TemporaryDirectory(prefix="deepks-es-ase-")

    def __call__(self, atoms, properties=None, port=None, unixsocket=None):
        structure = Path(self._workdir.name) / "atoms.xyz"
        write_structures(structure, [Structure.from_ase(atoms)])
        where = ["--unix", unixsocket] if unixsocket else ["--inet", f"localhost:{port}"]
        return subprocess.Popen(drive_command(where, structure, bool(atoms.pbc.all()),
                                              Path(self._workdir.name) / "dos_grid.json", self.options))
