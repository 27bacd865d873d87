"""ReferenceEngine: the PySCF Kohn-Sham engine base, and a plain functional (PBE, HSE06, ...) through it."""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import asdict

import numpy as np

from ..errors import SettingsError
from ..linalg import ao_atoms, element_weights, lowdin
from ..model.modelfile import ModelFile
from ..pyscf_compat import is_cell
from ..scf.extrapolation import DEFAULT_PREDICTOR, DensityHistory, parse_predictor
from ..scf.solver import SCFOutcome, run_scf
from ..scf.systems import SCFSettings, build_system, check_memory, has_analytic_forces, make_rks
from ..structure import Structure, check_geometry
from .base import EngineInfo
from .result import Result, SCFInfo
from .spec import EngineSpec

NO_FORCES = "forces unavailable: PySCF has analytic periodic gradients only for semilocal functionals with multigrid"
NO_VIRIAL = ("virial unavailable: PySCF gives the Γ-point stress only with FFTDF and plain NumInt, a route "
             "without forces; the multigrid and density-fitted periodic routes have none")


def cluster_virial(positions: np.ndarray, forces: np.ndarray) -> np.ndarray:
    """-dE/d(strain) of an isolated system: W_ab = sum_i F_ia r_ib (Hartree)."""
    return forces.T @ positions


def scf_settings(spec: EngineSpec, **model_defaults) -> SCFSettings:
    """The PySCF settings of ``spec``; unset fields from ``model_defaults`` (xc, basis, pseudo), then SCFSettings'."""
    if spec.precision == "float32":
        raise SettingsError("the SCF engines run in float64: drop --precision float32")
    if spec.committee_every is not None:
        raise SettingsError("the SCF engines have no committee: drop --committee-every")
    spec = spec.with_defaults(**model_defaults)
    chosen = {name: getattr(spec, name) for name in ("xc", "basis", "pseudo", "conv_tol", "conv_tol_grad",
                                                      "ke_cutoff") if getattr(spec, name) is not None}
    if str(chosen.get("pseudo", "")).lower() == "none":
        chosen["pseudo"] = None
    return SCFSettings(charge=spec.charge, max_cycle=spec.max_cycle, **chosen)


class ReferenceEngine:
    """Energy, forces and observables from restricted Kohn-Sham with ``settings`` (PySCF).

    ``compute`` keeps a :class:`~deepks_es.scf.extrapolation.DensityHistory` per ``key`` (e.g. a PIMD
    bead): the SCF of a key's next step starts from the density matrix extrapolated from its last converged
    steps (predictor ``extrapolation``: ``geometry[:N]``, ``aspc[:K]`` or ``previous``). A key seen for the first
    time, or after a geometry jump, starts from the latest converged density matrix of any key (a
    neighbouring bead), the very first call from PySCF's guess.

    Subclasses change the Kohn-Sham object (:meth:`make_scf`) and its gradient (:meth:`nuclear_gradient`).
    """

    kind = "reference"

    def __init__(self, settings: SCFSettings = SCFSettings(), extrapolation: str = DEFAULT_PREDICTOR):
        self.settings = settings
        parse_predictor(extrapolation)
        self.extrapolation = extrapolation
        self._histories: dict[Hashable, DensityHistory] = {}
        self._latest: np.ndarray | None = None

    @classmethod
    def from_spec(cls, spec: EngineSpec, model_file: ModelFile | None = None) -> ReferenceEngine:
        """Registry factory: the plain functional of ``spec`` (``model_file`` is None)."""
        return cls(scf_settings(spec), spec.extrapolation or DEFAULT_PREDICTOR)

    def describe(self) -> EngineInfo:
        return EngineInfo(name=self.settings.xc, kind=self.kind,
                          settings={**asdict(self.settings), "extrapolation": self.extrapolation})

    def close(self) -> None:
        self._histories.clear()
        self._latest = None

    def make_scf(self, structure: Structure):
        """The (unconverged) PySCF Kohn-Sham object for ``structure``, after the geometry and memory checks."""
        check_geometry(structure)
        system = build_system(structure, self.settings)
        check_memory(system)
        return make_rks(system, self.settings)

    def nuclear_gradient(self, mf) -> np.ndarray:
        """(natm, 3) analytic dE/dR (Hartree/Bohr) of a converged ``mf``."""
        grad = mf.Gradients()
        grad.verbose = 0
        return grad.kernel()

    def solve(self, structure: Structure, dm0: np.ndarray | None = None) -> tuple[object, SCFOutcome]:
        """The converged (or flagged) Kohn-Sham object of ``structure`` from the initial density ``dm0``."""
        mf = self.make_scf(structure)
        return mf, run_scf(mf, dm0, self.settings.second_order)

    def forces(self, mf) -> np.ndarray | None:
        """(natm, 3) analytic forces (Hartree/Bohr) of a converged ``mf``; None where PySCF has no gradient."""
        return -np.asarray(self.nuclear_gradient(mf)) if has_analytic_forces(mf) else None

    def compute(self, structure: Structure, key: Hashable = None, observables: bool = True,
                dm0: np.ndarray | None = None) -> Result:
        """Self-consistent energy (Hartree), forces (Hartree/Bohr) and orbitals of ``structure``.

        The orbitals come with every SCF (``observables`` is ignored); ``dm0`` (a total AO density matrix)
        overrides the warm start stored for ``key``.
        """
        start = time.perf_counter()
        history = self._histories.setdefault(key, DensityHistory(self.extrapolation))
        mf = self.make_scf(structure)
        if dm0 is None:
            dm0 = history.predict(structure, mf.get_ovlp(), mf.mol.nelectron // 2)
        if dm0 is None:
            dm0 = self._latest
        outcome = run_scf(mf, dm0, self.settings.second_order)
        dm = mf.make_rdm1()
        notes = [] if outcome.converged else [outcome.note or f"SCF not converged after {outcome.cycles} cycles "
                                                             f"(the last stage that ran: {outcome.stage})"]
        forces, virial = self.forces(mf), None
        if forces is None:
            notes.append(NO_FORCES)
        if is_cell(mf.mol):
            notes.append(NO_VIRIAL)
        elif forces is not None:
            virial = cluster_virial(structure.positions, forces)
        if outcome.converged:
            history.push(structure, dm)
            self._latest = dm
        else:
            history.clear()
        order = np.argsort(mf.mo_energy)
        mo_coeff = np.asarray(mf.mo_coeff)[:, order]
        return Result(energy=float(mf.e_tot), forces=forces, virial=virial,
                      mo_energy=np.asarray(mf.mo_energy)[order], mo_occ=np.asarray(mf.mo_occ)[order],
                      element_weights=element_weights(structure.symbols, ao_atoms(mf.mol), lowdin(mf.get_ovlp())[1] @ mo_coeff),
                      wall_s=time.perf_counter() - start,
                      scf=SCFInfo(outcome.converged, outcome.cycles, outcome.stage, dm),
                      scalars=self.scalars(mf, dm), notes=notes)

    def scalars(self, mf, dm) -> dict:
        """Engine-specific numbers of a converged ``mf`` for :attr:`Result.scalars`."""
        return {}
