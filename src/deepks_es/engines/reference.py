"""ReferenceEngine: a plain PySCF Kohn-Sham functional (PBE, HSE06, ...) through the project's code path."""

from __future__ import annotations

import time
from typing import Hashable

import numpy as np

from ..scf.extrapolation import DEFAULT_PREDICTOR, DensityHistory, parse_predictor
from ..scf.solver import run_scf
from ..scf.systems import SCFSettings, build_system, has_analytic_forces, is_cell, make_rks
from ..structure import Structure
from .result import Result

NO_FORCES = "forces unavailable: PySCF has analytic periodic gradients only for semilocal functionals with multigrid"
NO_VIRIAL = ("virial unavailable: PySCF gives the Γ-point stress only with FFTDF and plain NumInt, a route "
             "without forces; the multigrid and density-fitted periodic routes have none")


def cluster_virial(positions: np.ndarray, forces: np.ndarray) -> np.ndarray:
    """-dE/d(strain) of an isolated system: W_ab = sum_i F_ia r_ib (Hartree)."""
    return forces.T @ positions


def element_weights(system, ovlp: np.ndarray, mo_coeff: np.ndarray) -> dict[str, np.ndarray]:
    """Löwdin weight of each element in each orbital: {symbol: (nmo,)}, summing to 1 per orbital."""
    eigval, eigvec = np.linalg.eigh(ovlp)
    orthogonal = (eigvec * np.sqrt(eigval)) @ eigvec.T @ mo_coeff  # S^1/2 C
    per_ao = orthogonal**2
    weights: dict[str, np.ndarray] = {}
    for atom, (_, _, p0, p1) in enumerate(system.aoslice_by_atom()):
        symbol = system.atom_pure_symbol(atom)
        weights[symbol] = weights.get(symbol, 0.0) + per_ao[p0:p1].sum(axis=0)
    return dict(sorted(weights.items()))


class ReferenceEngine:
    """Energy, forces and observables from restricted Kohn-Sham with ``settings``.

    ``compute`` keeps a :class:`~deepks_es.scf.extrapolation.DensityHistory` per ``key`` (e.g. a PIMD
    bead): the SCF of a key's next step starts from the density matrix extrapolated from its last converged
    steps (predictor ``extrapolation``: ``geometry[:N]``, ``aspc[:K]`` or ``previous``). A key seen for the first
    time, or after a geometry jump, starts from the latest converged density matrix of any key (a
    neighbouring bead), the very first call from PySCF's guess.
    """

    def __init__(self, settings: SCFSettings = SCFSettings(), extrapolation: str = DEFAULT_PREDICTOR):
        self.settings = settings
        parse_predictor(extrapolation)
        self.extrapolation = extrapolation
        self._histories: dict[Hashable, DensityHistory] = {}
        self._latest: np.ndarray | None = None

    def make_scf(self, structure: Structure):
        """The (unconverged) PySCF Kohn-Sham object for ``structure``."""
        return make_rks(build_system(structure, self.settings), self.settings)

    def nuclear_gradient(self, mf) -> np.ndarray:
        """(natm, 3) analytic dE/dR (Hartree/Bohr) of a converged ``mf``."""
        grad = mf.Gradients()
        grad.verbose = 0
        return grad.kernel()

    def compute(self, structure: Structure, key: Hashable = None, dm0: np.ndarray | None = None) -> Result:
        """Self-consistent energy (Hartree), forces (Hartree/Bohr) and orbitals of ``structure``.

        ``dm0`` (a total AO density matrix) overrides the warm start stored for ``key``.
        """
        start = time.perf_counter()
        mf = self.make_scf(structure)
        history = self._histories.setdefault(key, DensityHistory(self.extrapolation))
        if dm0 is None:
            dm0 = history.predict(structure, mf.get_ovlp(), mf.mol.nelectron // 2)
        if dm0 is None:
            dm0 = self._latest
        outcome = run_scf(mf, dm0, self.settings.second_order)
        dm = mf.make_rdm1()
        notes = [] if outcome.converged else [f"SCF not converged after {outcome.cycles} cycles "
                                              f"(the last stage that ran: {outcome.stage})"]
        forces = virial = None
        if has_analytic_forces(mf):
            forces = -np.asarray(self.nuclear_gradient(mf))
        else:
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
        return Result(energy=float(mf.e_tot), forces=forces, virial=virial,
                      mo_energy=np.asarray(mf.mo_energy)[order], mo_occ=np.asarray(mf.mo_occ)[order],
                      element_weights=element_weights(mf.mol, mf.get_ovlp(), np.asarray(mf.mo_coeff)[:, order]),
                      converged=outcome.converged, scf_cycles=outcome.cycles, scf_stage=outcome.stage,
                      wall_s=time.perf_counter() - start, e_delta=self.correction_energy(mf, dm),
                      density_matrix=dm, notes=notes)

    def correction_energy(self, mf, dm) -> float | None:
        """E_delta of a converged ``mf`` (Hartree); None for an uncorrected engine."""
        return None
