"""What every engine returns for one structure (atomic units)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..constants import HARTREE_EV


@dataclass
class Result:
    """Energy, forces, virial and electronic observables of one structure.

    Attributes:
        energy: total energy (Hartree), including E_delta for a corrected run.
        forces: (N, 3) Hartree/Bohr, or None where unavailable (see ``notes``).
        virial: (3, 3) -dE/d(strain) in Hartree, or None where unavailable (see ``notes``).
        mo_energy: orbital energies (Hartree), ascending.
        mo_occ: occupations (0 or 2) of those orbitals.
        element_weights: {symbol: (nmo,)} Löwdin weight of each element in each orbital (sums to 1).
        converged: whether the SCF met its thresholds.
        scf_cycles: SCF iterations over all solver stages.
        scf_stage: the solver stage that ended the SCF (diis, level_shift, newton).
        wall_s: wall time of the whole evaluation (s).
        e_delta: the correction energy E_delta (Hartree); None for an uncorrected run.
        density_matrix: converged total AO density matrix (for warm starts).
        notes: one-line remarks, e.g. why a quantity is unavailable.
    """

    energy: float
    forces: np.ndarray | None
    virial: np.ndarray | None
    mo_energy: np.ndarray
    mo_occ: np.ndarray
    element_weights: dict[str, np.ndarray]
    converged: bool
    scf_cycles: int
    scf_stage: str
    wall_s: float
    e_delta: float | None = None
    density_matrix: np.ndarray | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)

    @property
    def homo(self) -> float:
        """Highest occupied orbital energy (Hartree)."""
        return float(self.mo_energy[self.mo_occ > 0].max())

    @property
    def lumo(self) -> float | None:
        """Lowest unoccupied orbital energy (Hartree); None if the basis has no virtual orbital."""
        virtual = self.mo_energy[self.mo_occ == 0]
        return float(virtual.min()) if virtual.size else None

    @property
    def gap(self) -> float | None:
        """LUMO - HOMO (Hartree)."""
        return None if self.lumo is None else self.lumo - self.homo

    def levels_ev(self) -> dict[str, float | None]:
        """``gap_ev``, ``homo_ev``, ``lumo_ev`` in eV (None where there is no virtual orbital)."""
        return {f"{name}_ev": None if value is None else value * HARTREE_EV
                for name, value in (("gap", self.gap), ("homo", self.homo), ("lumo", self.lumo))}

    def to_json_dict(self) -> dict:
        """JSON-ready summary; keys carry their units."""
        return {
            "energy_hartree": self.energy,
            "forces_hartree_per_bohr": None if self.forces is None else self.forces.tolist(),
            "virial_hartree": None if self.virial is None else self.virial.tolist(),
            **self.levels_ev(),
            "orbital_energies_ev": (np.sort(self.mo_energy) * HARTREE_EV).tolist(),
            "e_delta_hartree": self.e_delta,
            "converged": self.converged,
            "scf_cycles": self.scf_cycles,
            "scf_stage": self.scf_stage,
            "wall_s": self.wall_s,
            "notes": self.notes,
        }
