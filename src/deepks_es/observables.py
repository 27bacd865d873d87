"""Electronic observables logged along a trajectory: the broadened DOS on a fixed grid.

:meth:`deepks_es.engines.Result.observables` builds each step's record (the i-PI extras) with it:
the same keys at every step (i-PI aborts on a missing key), null where a quantity does not exist
for a step (no virtual orbital). Beside the total DOS, ``dos_<element>`` (e.g. ``dos_O``,
``dos_H``) is the element-projected DOS from Löwdin weights; the projections add up to the total.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from .constants import HARTREE_EV
from .errors import SettingsError
from .fileio import write_json


@dataclass(frozen=True)
class DOSGrid:
    """Fixed energy grid (eV) and Gaussian broadening (eV) for the density of states.

    The DOS is in states/eV, spin included (two electrons per Kohn-Sham orbital).
    """

    emin_ev: float = -35.0
    emax_ev: float = 15.0
    npoints: int = 251
    sigma_ev: float = 0.2

    def __post_init__(self):
        if not (self.emax_ev > self.emin_ev and self.npoints >= 2 and self.sigma_ev > 0):
            raise SettingsError(f"the DOS grid needs emax > emin, at least 2 points and a positive broadening; "
                                f"got emin {self.emin_ev} eV, emax {self.emax_ev} eV, {self.npoints} points, "
                                f"sigma {self.sigma_ev} eV")

    @property
    def energies_ev(self) -> np.ndarray:
        return np.linspace(self.emin_ev, self.emax_ev, self.npoints)

    def dos(self, mo_energy_hartree: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Gaussian-broadened DOS (states/eV) of orbital energies in Hartree, optionally weighted per orbital."""
        levels = np.asarray(mo_energy_hartree) * HARTREE_EV
        x = (self.energies_ev[:, None] - levels[None, :]) / self.sigma_ev
        peaks = np.exp(-0.5 * x**2) * (1.0 if weights is None else np.asarray(weights)[None, :])
        return 2.0 * peaks.sum(axis=1) / (self.sigma_ev * np.sqrt(2 * np.pi))

    def write_metadata(self, path: str | os.PathLike) -> None:
        """Write the grid (parameters and energies) as JSON, atomically."""
        record = {**asdict(self), "energies_ev": self.energies_ev.tolist(), "units": "states/eV, spin included"}
        write_json(path, record)
