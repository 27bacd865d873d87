"""SurrogateEngine: the distilled E(3)-equivariant committee (no SCF): energy, forces and virial by autograd,
orbital energies from the predicted Kohn-Sham matrix and PySCF's analytic overlap."""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from ..constants import BOHR_ANGSTROM, HARTREE_EV
from ..errors import SettingsError
from ..linalg import ao_atoms, element_weights
from ..model.modelfile import ModelFile
from ..scf.systems import SCFSettings, build_system, overlap_matrix
from ..structure import Structure, check_geometry
from ..surrogate.committee import KIND, Committee, CommitteePrediction
from .base import EngineInfo
from .result import Result
from .spec import EngineSpec

UNUSED_OPTIONS = ("xc", "conv_tol", "conv_tol_grad", "extrapolation", "ke_cutoff")
FORCE_SPREAD_LIMIT = 1.0
"""eV/Å: a Result whose committee force spread (largest per-atom RMS) exceeds it is flagged. The shipped
committee gives 0.1-0.5 on water inputs, 0.5 on the non-equilibrated ``water_liquid_8.xyz``, 3.5 on a dimer
pushed to O-O 1.5 Å; an NVE run that collapses (O-O 1.5 Å within 100 fs) crosses it after ~20 fs."""


@dataclass(frozen=True)
class Spread:
    """Committee standard deviations: energy (Hartree per atom), forces (largest per-atom RMS over Cartesian
    components, Hartree/Bohr) and gap (Hartree; each member's gap to first order in its deviation from the
    mean H, from the mean H's HOMO and LUMO)."""

    energy: float
    forces: float
    gap: float | None

    def scalars(self) -> dict:
        return {"committee_energy_std_mev_per_atom": self.energy * HARTREE_EV * 1e3,
                "committee_force_std_ev_per_angstrom": self.forces * HARTREE_EV / BOHR_ANGSTROM,
                "committee_gap_std_ev": None if self.gap is None else self.gap * HARTREE_EV}


class SurrogateEngine:
    """A :class:`Committee` behind the Engine interface: the members' mean energy, forces, virial and
    Kohn-Sham matrix; orbital energies, element weights and the committee spread in every Result."""

    kind = KIND

    def __init__(self, committee: Committee, model_name: str = "in memory"):
        self.committee = committee
        self.model_name = model_name
        self.settings = SCFSettings(basis=committee.settings.basis, pseudo=committee.settings.pseudo)

    @classmethod
    def from_spec(cls, spec: EngineSpec, model_file: ModelFile | None = None) -> SurrogateEngine:
        """Registry factory: the committee in ``model_file``; SCF options are refused, as is another basis."""
        committee = Committee.from_file(model_file)
        given = [name for name in UNUSED_OPTIONS if getattr(spec, name) is not None]
        if given:
            raise SettingsError(f"the surrogate runs no SCF: drop --{', --'.join(n.replace('_', '-') for n in given)}")
        for what, ours in (("basis", spec.basis), ("pseudo", spec.pseudo)):
            theirs = getattr(committee.settings, what)
            if ours is not None and ours.lower() != str(theirs).lower():
                raise SettingsError(f"the surrogate predicts a {theirs!r} Hamiltonian, not {what} {ours!r}")
        if spec.charge:
            raise SettingsError("the surrogate was trained on neutral water: --charge must be 0")
        if spec.precision is not None:
            committee.to_precision(getattr(torch, spec.precision))
        return cls(committee, str(model_file.path))

    def describe(self) -> EngineInfo:
        s = self.committee.settings
        return EngineInfo(name="surrogate", kind=self.kind, model=self.model_name, periodic_virial=True,
                          settings={"members": len(self.committee.members), "basis": s.basis, "pseudo": s.pseudo,
                                    "cutoff_bohr": s.cutoff, "hamiltonian_cutoff_bohr": s.hamiltonian_cutoff,
                                    "dtype": str(self.committee.dtype).removeprefix("torch.")})

    def close(self) -> None:
        pass

    def compute(self, structure: Structure, key: Hashable = None, observables: bool = True) -> Result:
        """Committee-mean energy (Hartree), forces (Hartree/Bohr), virial (Hartree) and orbitals of ``structure``;
        ``observables=False`` skips the Hamiltonian head and the diagonalisation (no orbitals, no gap spread)."""
        start = time.perf_counter()
        prediction = self.predict(structure, observables)
        result = self.result(structure, prediction) if observables else self.mechanics(structure, prediction)
        result.wall_s = time.perf_counter() - start
        return result

    def predict(self, structure: Structure, hamiltonian: bool = True) -> CommitteePrediction:
        """Every member's prediction for ``structure`` (with H unless ``hamiltonian`` is False), after the geometry
        and element checks."""
        check_geometry(structure)
        try:
            self.committee.members[0].species(structure.symbols)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        with torch.inference_mode(False):
            return self.committee.predict(structure, hamiltonian)

    def mechanics(self, structure: Structure, prediction: CommitteePrediction, spread_gap: float | None = None,
                  **orbitals) -> Result:
        """The :class:`Result` of ``prediction``'s means and spreads; without ``orbitals`` (the :class:`Result`
        fields ``mo_energy``, ``mo_occ``, ``element_weights``, ``hamiltonian``, ``overlap``) it has none."""
        natoms = structure.natoms
        spread = Spread(energy=float(prediction.energies.std()) / natoms,
                        forces=float(np.sqrt((prediction.forces.std(axis=0) ** 2).mean(axis=1)).max()),
                        gap=spread_gap)
        orbitals = orbitals or {"mo_energy": np.empty(0), "mo_occ": np.empty(0),
                                "element_weights": {el: np.empty(0) for el in sorted(set(structure.symbols))}}
        result = Result(energy=float(prediction.energies.mean()), forces=prediction.forces.mean(axis=0),
                        virial=prediction.virials.mean(axis=0), scalars=spread.scalars(), **orbitals)
        if not (np.isfinite(result.energy) and np.all(np.isfinite(result.forces))):
            result.flag("the surrogate gave non-finite energy or forces: a corrupt model or a geometry far outside "
                        "its training data")
        force_spread = result.scalars["committee_force_std_ev_per_angstrom"]
        if len(self.committee.members) > 1 and not force_spread <= FORCE_SPREAD_LIMIT:
            result.flag(f"committee force spread {force_spread:.2f} eV/A exceeds {FORCE_SPREAD_LIMIT} eV/A: the "
                        "structure is far outside the surrogate's training data (check it against DeePKS-ES)")
        return result

    def result(self, structure: Structure, prediction: CommitteePrediction) -> Result:
        """The :class:`Result` of a committee ``prediction``: means, orbitals from the mean H, spreads."""
        system = build_system(structure, self.settings)
        overlap = overlap_matrix(system)
        hamiltonian = prediction.hamiltonians.mean(axis=0)
        mo_energy, mo_coeff = scipy.linalg.eigh(hamiltonian, overlap)
        nocc = system.nelectron // 2
        mo_occ = np.where(np.arange(len(mo_energy)) < nocc, 2.0, 0.0)
        gaps = []  # each member's gap to first order in its H - mean H (the mean H's HOMO and LUMO): no eigh each
        if len(mo_energy) > nocc:
            edges = mo_coeff[:, nocc - 1:nocc + 1]
            gaps = [np.diff(np.einsum("ai,ab,bi->i", edges, h, edges))[0] for h in prediction.hamiltonians]
        return self.mechanics(structure, prediction, float(np.std(gaps)) if gaps else None,
                              mo_energy=mo_energy, mo_occ=mo_occ, hamiltonian=hamiltonian, overlap=overlap,
                              element_weights=element_weights(structure.symbols, ao_atoms(system), overlap, mo_coeff))
