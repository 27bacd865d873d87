"""DeePKS-ES as a PES of i-PI's Python driver.

    i-pi-py_driver -m custom -P driver/ipi_pes.py -u -a NAME \
        -o structure=inputs/structures/water_dimer.xyz,model=none,xc=PBE

Options (``-o key=value,...``): ``structure`` (file with the atoms in i-PI's order,
required), ``model`` (path, default or none), ``pbc`` (true for periodic boxes),
and any :class:`deepks_es.scf.SCFSettings` field (xc, basis, pseudo, conv_tol, ...).
Extras are the same JSON as ``deepks-es drive`` sends. i-PI's Python driver does not
pass the bead index on, so all beads share one warm-start chain; use
``deepks-es drive`` for per-bead warm starts.
"""

from ipi.pes.dummy import Dummy_driver

from deepks_es.engines import make_engine
from deepks_es.ipi.client import DriverClient
from deepks_es.structure import read_structure

__DRIVER_NAME__ = "deepks_es"
__DRIVER_CLASS__ = "DeePKSESDriver"


class DeePKSESDriver(Dummy_driver):
    """i-PI PES: energy (Hartree), forces (Hartree/Bohr), virial (Hartree) and JSON extras."""

    def __init__(self, structure=None, model="none", pbc=False, *args, **settings):
        if structure is None:
            raise ValueError("deepks-es PES needs -o structure=FILE (the atoms in i-PI's order)")
        self.client = DriverClient(make_engine(str(model), **settings), read_structure(structure).symbols,
                                   bool(pbc))
        super().__init__(*args)

    def compute_structure(self, cell, pos):
        return self.client.compute(cell, pos.reshape(-1, 3))
