"""The DeePKS correction inside a PySCF Kohn-Sham calculation.

:class:`Correction` evaluates, for one geometry, E_delta (Hartree), the
correction potential V_delta = dE_delta/drho (added to the Fock matrix) and the
explicit nuclear gradient of E_delta at fixed density matrix. :class:`DeePKSMixin`
splices it into any PySCF RKS class (molecular, density-fitted, periodic), so the
SCF is self-consistent in H = H_base[rho] + V_delta.

Forces: with the SCF converged in the corrected Hamiltonian, the base functional's
analytic gradient (whose energy-weighted density matrix already uses the corrected
orbital energies) plus :meth:`Correction.nuclear_gradient` is the full gradient.
"""

from __future__ import annotations

import numpy as np
import torch
from pyscf import lib

from ..model.descriptors import density_factor, eigen_descriptors, projected_density
from ..model.network import CorrectionModel
from ..model.projectors import projector_overlap_derivatives, projector_overlaps


class Correction:
    """E_delta, V_delta and dE_delta/dR for the atoms of a PySCF ``Mole`` or Γ-point ``Cell``."""

    def __init__(self, model: CorrectionModel, system):
        self.model = model
        self.system = system
        symbols = [system.atom_pure_symbol(i) for i in range(system.natm)]
        self.element_index = model.element_index(symbols)
        overlaps = projector_overlaps(system, model.spec)
        self.ovlp, self.ao_atom = torch.from_numpy(overlaps.ovlp), overlaps.ao_atom

    def _projected_density(self, dm, ovlp: torch.Tensor | None = None) -> torch.Tensor:
        factor, signs = density_factor(dm)
        return projected_density(self.ovlp if ovlp is None else ovlp, torch.from_numpy(factor),
                                 torch.from_numpy(signs))

    def _energy(self, proj_dm: torch.Tensor) -> torch.Tensor:
        return self.model(eigen_descriptors(proj_dm, self.model.spec), self.element_index).sum()

    def descriptors(self, dm: np.ndarray) -> np.ndarray:
        """(natm, ndescriptor) eigenvalue descriptors of a total density matrix."""
        with torch.no_grad():
            return eigen_descriptors(self._projected_density(dm), self.model.spec).numpy()

    def energy_potential(self, dm: np.ndarray) -> tuple[float, np.ndarray]:
        """E_delta (Hartree) and V_delta (nao, nao) = dE_delta/d(dm) for a total density matrix."""
        proj_dm = self._projected_density(dm).requires_grad_(True)
        energy = self._energy(proj_dm)
        (grad,) = torch.autograd.grad(energy, proj_dm)
        return float(energy.detach()), block_potential(self.ovlp.numpy(), 0.5 * (grad + grad.mT).numpy())

    def nuclear_gradient(self, dm: np.ndarray) -> np.ndarray:
        """(natm, 3) dE_delta/dR at fixed dm (Hartree/Bohr): moving AOs and moving projectors."""
        ovlp = self.ovlp.detach().requires_grad_(True)  # shares storage; self.ovlp stays a constant
        energy = self._energy(self._projected_density(dm, ovlp))
        (d_ovlp,) = torch.autograd.grad(energy, ovlp)
        # dC_{mu,Ip}/dR_A = -[A = atom(mu)] <d phi_mu|alpha_Ip> - [A = I] <phi_mu|d alpha_Ip>, and
        # <phi_mu|d alpha_Ip> = -<d phi_mu|alpha_Ip> (ProjectorOverlaps)
        shares = np.einsum("xuip,uip->uix", projector_overlap_derivatives(self.system, self.model.spec),
                           d_ovlp.numpy())
        grad = shares.sum(axis=0)
        np.subtract.at(grad, self.ao_atom, shares.sum(axis=1))
        return grad


def block_potential(ovlp: np.ndarray, grad_blocks: np.ndarray) -> np.ndarray:
    """(nao, nao) sum_I C_I G_I C_I^T: dE/d(dm) from G_I = dE/dD^I (natm, nproj, nproj, symmetric) and the
    overlaps C (nao, natm, nproj).

    With G_I = U_I diag(g) U_I^T and B = C U |g|^(1/2), the sum is B+ B+^T - B- B-^T over the columns with
    g > 0 and g < 0: two symmetric rank-k products (BLAS syrk), half the work of C (G C^T).
    """
    eigenvalues, vectors = np.linalg.eigh(grad_blocks)
    scaled = (ovlp.transpose(1, 0, 2) @ (vectors * np.sqrt(np.abs(eigenvalues))[:, None, :])).transpose(1, 0, 2)
    positive, negative = scaled[:, eigenvalues > 0], scaled[:, eigenvalues < 0]  # (nao, k), contiguous
    return positive @ positive.T - negative @ negative.T


def overlap_derivative(system) -> np.ndarray:
    """(3, nao, nao) <d/dr phi_mu | phi_nu> (electron coordinate; image-summed at Γ for a Cell)."""
    if hasattr(system, "pbc_intor"):
        return np.asarray(system.pbc_intor("int1e_ipovlp", comp=3)).real
    return system.intor("int1e_ipovlp", comp=3)


def pulay_gradient(system, dm: np.ndarray, potential: np.ndarray) -> np.ndarray:
    """(natm, 3) share of a potential term in the energy-weighted density matrix term of the gradient.

    PySCF's gradient contains -2 Tr(W dS/dR) with W = dm F dm / 2; this is that term for F -> ``potential``,
    i.e. 2 sum_{mu on A, nu} <d phi_mu|phi_nu> W_{mu nu} (Hartree/Bohr).
    """
    weighted = 0.5 * dm @ potential @ dm
    per_ao = 2.0 * np.einsum("xuv,uv->ux", overlap_derivative(system), weighted)
    grad = np.zeros((system.natm, 3))
    for atom, (_, _, p0, p1) in enumerate(system.aoslice_by_atom()):
        grad[atom] = per_ao[p0:p1].sum(axis=0)
    return grad


class DeePKSMixin:
    """Mixin for PySCF RKS classes: V_delta joins the effective potential, E_delta the energy.

    The returned veff carries ``e_delta`` beside PySCF's ``ecoul``/``exc`` tags.
    """

    _keys = {"correction"}

    def get_veff(self, mol=None, dm=None, *args, **kwargs):
        if dm is None:
            dm = self.make_rdm1()
        veff = super().get_veff(mol, dm, *args, **kwargs)
        if np.asarray(dm).ndim != 2:  # response-type calls on several density matrices
            return veff
        e_delta, v_delta = self.correction.energy_potential(dm)
        return lib.tag_array(np.asarray(veff) + v_delta, **{**veff.__dict__, "e_delta": e_delta})

    def energy_elec(self, dm=None, h1e=None, vhf=None):
        if dm is None:
            dm = self.make_rdm1()
        if getattr(vhf, "e_delta", None) is None:
            vhf = self.get_veff(self.mol, dm)
        e_tot, e_two = super().energy_elec(dm, h1e, vhf)
        return e_tot + vhf.e_delta, e_two

    def nuc_grad_delta(self) -> np.ndarray:
        """Explicit correction gradient (natm, 3) at the converged density matrix."""
        return self.correction.nuclear_gradient(self.make_rdm1())


def add_correction(mf, model: CorrectionModel):
    """Turn a PySCF RKS object into its DeePKS-corrected counterpart (in place; returned)."""
    mf.correction = Correction(model, mf.mol)
    return lib.set_class(mf, (DeePKSMixin, mf.__class__), name="DeePKS" + mf.__class__.__name__)
