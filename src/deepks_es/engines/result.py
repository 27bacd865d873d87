"""What every engine returns for one structure (atomic units), and the per-step observables built from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..constants import HARTREE_EV
from ..observables import DOSGrid


@dataclass
class SCFInfo:
    """Diagnostics of a self-consistent field solution.

    Attributes:
        converged: whether the SCF met its thresholds.
        cycles: SCF iterations over all solver stages.
        stage: the solver stage that ended the SCF (diis, level_shift, newton).
        density_matrix: converged total AO density matrix (warm starts, reference checks).
    """

    converged: bool
    cycles: int
    stage: str
    density_matrix: np.ndarray | None = field(default=None, repr=False)


@dataclass
class Result:
    """Energy, forces, virial and electronic structure of one structure.

    Attributes:
        energy: total energy (Hartree).
        forces: (N, 3) Hartree/Bohr, or None where unavailable (see ``notes``).
        virial: (3, 3) -dE/d(strain) in Hartree, or None where unavailable (see ``notes``).
        mo_energy: orbital energies (Hartree), ascending; empty where the engine skipped its orbitals for this
            call (``compute(..., observables=False)``).
        mo_occ: occupations (0 or 2) of those orbitals.
        element_weights: {symbol: (nmo,)} Löwdin weight of each element in each orbital (sums to 1);
            empty where the engine has no orbitals to project (each element's entry empty where it skipped them).
        wall_s: wall time of the whole evaluation (s).
        scf: SCF diagnostics, for engines that solve a self-consistent field (None otherwise).
        scalars: engine-specific per-step numbers (name with its unit -> value), logged with the
            observables, e.g. ``e_delta_hartree`` of DeePKS-ES.
        hamiltonian: (nao, nao) Kohn-Sham matrix (Hartree) where the engine has one.
        overlap: (nao, nao) AO overlap where the engine has one.
        notes: one-line remarks, e.g. why a quantity is unavailable.
        flags: why the numbers must not be trusted although they exist (e.g. a correction far outside the
            model's range); each is also a note.
    """

    energy: float
    forces: np.ndarray | None
    virial: np.ndarray | None
    mo_energy: np.ndarray
    mo_occ: np.ndarray
    element_weights: dict[str, np.ndarray] = field(default_factory=dict)
    wall_s: float = 0.0
    scf: SCFInfo | None = None
    scalars: dict[str, float | int | bool | str | None] = field(default_factory=dict)
    hamiltonian: np.ndarray | None = field(default=None, repr=False)
    overlap: np.ndarray | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        """False only for an SCF that missed its thresholds."""
        return self.scf is None or self.scf.converged

    @property
    def trusted(self) -> bool:
        """Converged, finite, and not flagged: numbers an MD may use."""
        finite = np.isfinite(self.energy) and (self.forces is None or np.all(np.isfinite(self.forces)))
        return self.converged and not self.flags and bool(finite)

    def flag(self, reason: str) -> None:
        """Mark the result untrusted for ``reason`` (one line)."""
        self.flags.append(reason)
        self.notes.append(reason)

    @property
    def has_orbitals(self) -> bool:
        """Whether this result carries orbital energies (an engine may skip them on steps nobody logs)."""
        return self.mo_energy.size > 0

    @property
    def homo(self) -> float | None:
        """Highest occupied orbital energy (Hartree); None without orbitals."""
        occupied = self.mo_energy[self.mo_occ > 0]
        return float(occupied.max()) if occupied.size else None

    @property
    def lumo(self) -> float | None:
        """Lowest unoccupied orbital energy (Hartree); None if the basis has no virtual orbital."""
        virtual = self.mo_energy[self.mo_occ == 0]
        return float(virtual.min()) if virtual.size else None

    @property
    def gap(self) -> float | None:
        """LUMO - HOMO (Hartree)."""
        return None if self.lumo is None or self.homo is None else self.lumo - self.homo

    def levels_ev(self) -> dict[str, float | None]:
        """``gap_ev``, ``homo_ev``, ``lumo_ev`` in eV (None where there is no virtual orbital)."""
        return {f"{name}_ev": None if value is None else value * HARTREE_EV
                for name, value in (("gap", self.gap), ("homo", self.homo), ("lumo", self.lumo))}

    def diagnostics(self) -> dict:
        """SCF diagnostics (``scf_converged``, ``scf_cycles``, ``scf_stage``; none without an SCF), wall time
        and the engine's scalars: the same keys at every step of one engine."""
        scf = {} if self.scf is None else {"scf_converged": self.scf.converged, "scf_cycles": self.scf.cycles,
                                           "scf_stage": self.scf.stage}
        return {**scf, "wall_s": self.wall_s, **self.scalars}

    def observables(self, grid: DOSGrid, orbitals: bool = True) -> dict:
        """The per-step observables (the i-PI extras): energy, levels (eV), the DOS on ``grid`` and its
        element projections ``dos_<element>``, whether a virial exists, and :meth:`diagnostics`.

        The keys are the same at every step; levels are null and the DOS a list of nulls as long as the grid
        (i-PI's extras files stay rectangular) where ``orbitals`` is False (a step between logged ones) or the
        result has none."""
        orbitals = orbitals and self.has_orbitals

        def dos(weights=None):
            return np.round(grid.dos(self.mo_energy, weights), 6).tolist() if orbitals else [None] * grid.npoints

        levels = self.levels_ev() if orbitals else dict.fromkeys(self.levels_ev())
        extras = {"energy_hartree": self.energy, **levels, "dos": dos(), "virial_available": self.virial is not None,
                  "trusted": self.trusted, **self.diagnostics()}
        for element, weights in self.element_weights.items():
            extras[f"dos_{element}"] = dos(weights)
        return finite_json(extras)

    def to_json_dict(self) -> dict:
        """JSON-ready summary; keys carry their units; non-finite numbers become null (with a note)."""
        summary = {
            "energy_hartree": self.energy,
            "forces_hartree_per_bohr": None if self.forces is None else self.forces.tolist(),
            "virial_hartree": None if self.virial is None else self.virial.tolist(),
            **self.levels_ev(),
            "orbital_energies_ev": (np.sort(self.mo_energy) * HARTREE_EV).tolist(),
            "converged": self.converged,
            "trusted": self.trusted,
            **{key: value for key, value in self.diagnostics().items() if key != "scf_converged"},
            "notes": self.notes,
        }
        cleaned = finite_json(summary)
        if cleaned != summary:
            cleaned["notes"] = [*self.notes, "non-finite numbers (NaN, inf) replaced by null"]
        return cleaned


def finite_json(value):
    """``value`` (dicts, lists, numbers) with every non-finite float replaced by None: strict JSON."""
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
