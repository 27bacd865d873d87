"""Electronic observables logged along a trajectory: frontier levels and a broadened DOS.

The extras dictionary has the same keys at every step (i-PI aborts on a missing
key); quantities that do not exist for a step (no virtual orbital) are null.
Beside the total DOS, ``dos_<element>`` (e.g. ``dos_O``, ``dos_H``) is the
element-projected DOS from Löwdin weights; the projections add up to the total.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from .constants import HARTREE_EV
from .engines.result import Result
from .fileio import write_json

EXTRAS_KEYS = ("energy_hartree", "gap_ev", "homo_ev", "lumo_ev", "dos", "e_delta_hartree", "scf_converged",
               "scf_cycles", "scf_stage", "wall_s", "virial_available")
"""Keys of every step's extras; ``dos_<element>`` for each element of the structure follow."""


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
            raise ValueError("DOS grid needs emax > emin, at least 2 points and a positive width")

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


def electronic_extras(result: Result, grid: DOSGrid) -> dict:
    """The per-step observables of ``result`` (eV for levels), always with every key of EXTRAS_KEYS."""
    def rounded(values):
        return np.round(values, 6).tolist()

    extras = {
        "energy_hartree": result.energy,
        **result.levels_ev(),
        "dos": rounded(grid.dos(result.mo_energy)),
        "e_delta_hartree": result.e_delta,
        "scf_converged": result.converged,
        "scf_cycles": result.scf_cycles,
        "scf_stage": result.scf_stage,
        "wall_s": result.wall_s,
        "virial_available": result.virial is not None,
    }
    for element, weights in result.element_weights.items():
        extras[f"dos_{element}"] = rounded(grid.dos(result.mo_energy, weights))
    return extras

