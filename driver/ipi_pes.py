"""deepks-es engines as a PES of i-PI's Python driver.

    i-pi-py_driver -m custom -P driver/ipi_pes.py -u -a NAME \
        -o structure=inputs/structures/water_dimer.xyz,model=none,xc=PBE

Options (``-o key=value,...``): ``structure`` (file with the atoms in i-PI's order,
required), ``pbc`` (true for periodic boxes), and any
:class:`deepks_es.engines.EngineSpec` field (model, xc, basis, pseudo, conv_tol, ...).
Extras are the same JSON as ``deepks-es drive`` sends. i-PI's Python driver does not
pass the bead index on, so all beads share one warm-start chain; use
``deepks-es drive`` for per-bead warm starts.
"""

from ipi.pes.dummy import Dummy_driver

from deepks_es.engines import EngineSpec
from deepks_es.engines.spec import ENGINE_OPTIONS
from deepks_es.ipi.client import DriverClient
from deepks_es.structure import read_structure

__DRIVER_NAME__ = "deepks_es"
__DRIVER_CLASS__ = "DeePKSESDriver"

TRUE = ("1", "true", "yes")


class DeePKSESDriver(Dummy_driver):
    """i-PI PES: energy (Hartree), forces (Hartree/Bohr), virial (Hartree) and JSON extras."""

    def __init__(self, structure=None, pbc="false", *args, **options):
        if structure is None:
            raise ValueError("deepks-es PES needs -o structure=FILE (the atoms in i-PI's order)")
        types = {name: kind for name, kind, _ in ENGINE_OPTIONS}
        unknown = sorted(set(options) - set(types))
        if unknown:
            raise ValueError(f"deepks-es PES: unknown option(s) {', '.join(unknown)} (known: structure, pbc, "
                             f"{', '.join(types)})")
        spec = EngineSpec.from_options({name: types[name](value) for name, value in options.items()})
        self.client = DriverClient(spec, read_structure(structure).symbols, str(pbc).lower() in TRUE)
        super().__init__(*args)

    def compute_structure(self, cell, pos):
        return self.client.compute(cell, pos.reshape(-1, 3))
