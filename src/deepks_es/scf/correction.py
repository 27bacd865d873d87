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

from ..linalg import atom_sums
from ..model.descriptors import density_factor, eigen_descriptors, projected_density
from ..model.network import CorrectionModel
from ..model.projectors import projector_overlap_derivatives, projector_overlaps
from ..pyscf_compat import add_to_veff


class Correction:
    """E_delta, V_delta and dE_delta/dR for the atoms of a PySCF ``Mole`` or Γ-point ``Cell``."""

    def __init__(self, model: CorrectionModel, system):
        self.model = model
        self.system = system
        symbols = [system.atom_pure_symbol(i) for i in range(system.natm)]
        self.element_index = model.element_index(symbols)
        overlaps = projector_overlaps(system, model.spec)
        self.ovlp, self.ao_atom = torch.from_numpy(overlaps.ovlp), overlaps.ao_atom
        self._ip_ovlp: np.ndarray | None = None

    @property
    def ip_ovlp(self) -> np.ndarray:
        """(3, nao, natm, nproj) <d phi_mu|alpha_Ip>, computed on first use."""
        if self._ip_ovlp is None:
            self._ip_ovlp = projector_overlap_derivatives(self.system, self.model.spec)
        return self._ip_ovlp

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

    def descriptor_gradient(self, descriptors: np.ndarray) -> np.ndarray:
        """(natm, ndescriptor) g = dE_delta/dd at the eigenvalue descriptors ``descriptors``."""
        values = torch.from_numpy(descriptors).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.model(values, self.element_index).sum(), values)
        return grad.numpy()

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
        shares = np.einsum("xuip,uip->uix", self.ip_ovlp, d_ovlp.numpy())
        return projector_chain_rule(shares, self.ao_atom).sum(axis=0)

    def descriptor_jacobians(self, dm: np.ndarray, with_forces: bool = True):
        """Per-descriptor derivatives at the density ``dm``, for training at a fixed density.

        Returns the eigenvalue descriptors d (natm, nd); u (nao, natm, nd) with dd_k/d(dm) = u_k u_k^T; and
        the force tensor (natm, nd, natm, 3) or None: dd_k/dR at fixed dm plus the derivative, per unit
        g_k, of V_delta's share of the energy-weighted density-matrix (Pulay) term, so that the correction's
        whole gradient at a self-consistent dm is sum_k g_k tensor_k.
        """
        ovlp = self.ovlp.numpy()
        proj_dm = self._projected_density(dm).numpy()
        natm = proj_dm.shape[0]
        values, vectors, pieces = [], [], []
        for idx in self.model.spec.block_indices():
            evals, evecs = np.linalg.eigh(proj_dm[:, idx[:, :, None], idx[:, None, :]])  # (natm, nshell, m[, m])
            values.append(evals.reshape(natm, -1))
            vectors.append(np.einsum("uinp,inpk->uink", ovlp[:, :, idx], evecs).reshape(len(ovlp), natm, -1))
            if with_forces:
                pieces.append(np.einsum("xuinp,inpk->xuink", self.ip_ovlp[:, :, :, idx], evecs)
                              .reshape(3, len(ovlp), natm, -1))
        descriptors, u = np.concatenate(values, axis=1), np.concatenate(vectors, axis=2)
        if not with_forces:
            return descriptors, u, None
        w = np.einsum("uv,vik->uik", dm, u)  # dd_k/dC_{mu,Ip} = 2 w_{mu,k} v_{p,k}
        shares = 2.0 * np.einsum("uik,xuik->uikx", w, np.concatenate(pieces, axis=3))
        # V_delta's share of the energy-weighted density matrix, -2 Tr(W dS/dR) with W = w_k w_k^T / 2 per unit g_k
        pulay = np.einsum("uik,xuik->uikx", w, np.einsum("xuv,vik->xuik", overlap_derivative(self.system), w))
        jacobian = projector_chain_rule(shares, self.ao_atom)
        jacobian += np.moveaxis(atom_sums(pulay, self.ao_atom, natm), 0, -2)
        return descriptors, u, jacobian


def projector_chain_rule(shares: np.ndarray, ao_atom: np.ndarray) -> np.ndarray:
    """d/dR_A of a function of the projector overlaps C_{mu,Ip} = <phi_mu|alpha_Ip>, per projector atom I.

    ``shares`` (nao, natm, ..., 3) = sum_p <d phi_mu|alpha_Ip> dX/dC_{mu,Ip} (for any trailing indices of X).
    With dC_{mu,Ip}/dR_A = -[A = atom(mu)] <d phi_mu|alpha_Ip> - [A = I] <phi_mu|d alpha_Ip> and
    <phi_mu|d alpha_Ip> = -<d phi_mu|alpha_Ip>, the result (natm_I, ..., natm_A, 3) is
    [A = I] sum_mu shares_{mu,I} - sum_{mu on A} shares_{mu,I}; its sum over I is dX/dR.
    """
    natm = shares.shape[1]
    out = -np.moveaxis(atom_sums(shares, ao_atom, natm), 0, -2)
    diagonal = np.arange(natm)
    out[diagonal, ..., diagonal, :] += shares.sum(axis=0)
    return out


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
        return add_to_veff(veff, v_delta, e_delta=e_delta)

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
