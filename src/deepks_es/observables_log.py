"""Per-step observables of an MD engine without i-PI (LAMMPS), written in i-PI's output formats.

``PREFIX.out`` is a properties file (step, time in ps, potential energy in eV) and ``PREFIX.KEY_0`` an
extras trajectory per observable (``#EXTRAS(KEY)# Step: N`` headers), so ``deepks-es analyze PREFIX``
and ``ipi.read_trajectory(..., format="extras")`` read them as they read an i-PI run. Each step is written
once (a repeated step, e.g. the set-up of a second ``run`` command, is skipped) and flushed at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .constants import HARTREE_EV
from .fileio import DOS_GRID_FILE
from .observables import DOSGrid

PROPERTIES = (("step", "The current simulation time step."),
              ("time{picosecond}", "The elapsed simulation time."),
              ("potential{electronvolt}", "The physical system potential energy."))


class ObservablesLog:
    """Appends one record per MD step: ``prefix.out`` and ``prefix.<key>_0`` (bead 0), beside ``dos_grid.json``."""

    def __init__(self, prefix: str | Path, grid: DOSGrid):
        self.prefix = Path(prefix)
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self.last_step: int | None = None
        self._files: dict[str, object] = {}
        grid.write_metadata(self.prefix.parent / DOS_GRID_FILE)
        self._properties = open(f"{self.prefix}.out", "w")
        self._properties.writelines(f"# column {i:3d}     --> {name} : {text}\n"
                                    for i, (name, text) in enumerate(PROPERTIES, start=1))

    def write(self, step: int, time_ps: float, energy_hartree: float, observables: dict) -> bool:
        """Record ``step``; False (nothing written) for a step already recorded."""
        if self.last_step is not None and step <= self.last_step:
            return False
        self.last_step = step
        self._properties.write(f"{step:16.8e} {time_ps:16.8e} {energy_hartree * HARTREE_EV:16.8e}\n")
        self._properties.flush()
        for key, value in observables.items():
            if isinstance(value, str):  # a label (e.g. the SCF stage), not a number
                continue
            values = np.atleast_1d(np.asarray(np.nan if value is None else value, dtype=float))
            handle = self._files.get(key)
            if handle is None:
                handle = self._files[key] = open(f"{self.prefix}.{key}_0", "w")
            handle.write(f" #EXTRAS({key})# Step: {step:11d} \n")
            handle.write(" ".join(f"{v:16.8e}" for v in values) + "\n")
            handle.flush()
        return True

    def close(self) -> None:
        for handle in [self._properties, *self._files.values()]:
            handle.close()
