"""Training frames: everything the loss needs about one configuration, precomputed at a fixed density.

At the density rho of the latest SCF (the base functional's at first, then the
model's) the descriptors d^I_k, their derivatives dd/drho = u_k u_k^T (u_k = the
projector overlaps times the block eigenvector) and dd/dR at fixed rho are fixed
tensors. With g_k = dE_delta/dd_k from the network:

    E = E_base + E_delta(d),  F = F_base - sum_k g_k (dd_k/dR + dW_k/dR),
    H = H_base[rho] + sum_k g_k u_k u_k^T   (in the Löwdin basis S^-1/2 ... S^-1/2),

the same correction the SCF applies, now differentiable in the network parameters.
where dW_k/dR is V_delta's share of the energy-weighted density-matrix (Pulay)
term per unit g_k, with W = dm F dm / 2. F_base excludes both correction shares
(see records.base_part), so the force is exact at the model's own SCF density and
first-order right at another density (phase 0: the base functional's); without
the Pulay share a potential that shifts the levels by ~1 eV would leave forces
hundreds of meV/Angstrom off after the first phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.descriptors import density_factor, projected_density
from ..model.network import CorrectionModel
from ..model.projectors import ProjectorSpec, projector_overlaps
from ..scf.correction import overlap_derivative
from ..scf.systems import SCFSettings, build_system
from ..structure import Structure
from .label import energies_comparable
from .losses import (density_loss, eigenvalue_loss, energy_loss, force_loss, frontier_loss, hamiltonian_loss,
                     occupied_spectrum)

LOSS_TERMS = ("energy", "forces", "hamiltonian", "eigenvalues", "frontier", "density")


def descriptor_jacobians(system, spec: ProjectorSpec, dm: np.ndarray, with_forces: bool = True):
    """Descriptors (natm, nd), u (nao, natm, nd) with dd/drho = u u^T, and the force tensor (natm, nd, natm, 3)
    or None: dd/dR at fixed dm plus the derivative, per unit g, of V_delta's energy-weighted density-matrix term,
    so that the correction's gradient is sum_k g_k tensor_k."""
    overlaps = projector_overlaps(system, spec, with_derivatives=with_forces)
    ovlp = overlaps.ovlp
    proj_dm = projected_density(*(torch.from_numpy(a) for a in (ovlp, *density_factor(dm)))).numpy()
    values, vectors, derivs = [], [], []
    for idx in spec.block_indices():
        blocks = proj_dm[:, idx[:, :, None], idx[:, None, :]]  # (natm, nshell, m, m)
        evals, evecs = np.linalg.eigh(blocks)
        values.append(evals.reshape(system.natm, -1))
        vectors.append(np.einsum("uinp,inpk->uink", ovlp[:, :, idx], evecs).reshape(len(ovlp), system.natm, -1))
        if with_forces:
            derivs.append(np.einsum("xuinp,inpk->xuink", overlaps.ip_ao[:, :, :, idx], evecs)
                          .reshape(3, len(ovlp), system.natm, -1))
    u = np.concatenate(vectors, axis=2)
    if not with_forces:
        return np.concatenate(values, axis=1), u, None
    w = np.einsum("uv,vik->uik", dm, u)
    q_ao = np.concatenate(derivs, axis=3)
    natm = system.natm
    ao_onehot = np.zeros((len(ovlp), natm))
    ao_onehot[np.arange(len(ovlp)), overlaps.ao_atom] = 1.0
    # dC_{mu,Ip}/dR_A = -[A = atom(mu)] <d phi_mu|alpha_Ip> - [A = I] <phi_mu|d alpha_Ip>; dd = 2 w.(dC v);
    # <phi_mu|d alpha_Ip> = -<d phi_mu|alpha_Ip> (ProjectorOverlaps)
    jac = -2.0 * np.einsum("uik,xuik,ua->ikax", w, q_ao, ao_onehot)
    jac[np.arange(natm), :, np.arange(natm), :] += 2.0 * np.einsum("uik,xuik->ikx", w, q_ao)
    # V_delta's share of the energy-weighted density matrix term (see scf.correction.pulay_gradient)
    ip_w = np.einsum("xuv,vik->xuik", overlap_derivative(system), w)
    jac += np.einsum("uik,xuik,ua->ikax", w, ip_w, ao_onehot)
    return np.concatenate(values, axis=1), u, jac


@dataclass
class TrainingFrame:
    """Fixed tensors of one frame (atomic units; matrices in the Löwdin basis)."""

    name: str
    natoms: int
    nocc: int
    element_index: torch.Tensor
    descriptors: torch.Tensor
    potential_basis: torch.Tensor  # X u, (nao, natm * nd)
    descriptor_gradient: torch.Tensor | None  # (natm * nd, natm, 3)
    base_energy: torch.Tensor
    base_forces: torch.Tensor | None
    base_fock: torch.Tensor
    target_energy: torch.Tensor | None  # None where energies are not comparable (label.energies_comparable)
    target_forces: torch.Tensor | None
    target_fock: torch.Tensor
    target_eigenvalues: torch.Tensor
    target_projector: torch.Tensor


def lowdin(overlap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """S^-1/2 and S^1/2."""
    evals, evecs = np.linalg.eigh(overlap)
    return (evecs / np.sqrt(evals)) @ evecs.T, (evecs * np.sqrt(evals)) @ evecs.T


def prepare_frame(name: str, structure: Structure, base: dict, target: dict, model: CorrectionModel,
                  settings: SCFSettings) -> TrainingFrame:
    """Tensors of one frame at the density of ``base`` (a base-functional record, see :func:`.records.base_part`)."""
    system = build_system(structure, settings)
    with_forces = "forces" in base and "forces" in target
    descriptors, u, jac = descriptor_jacobians(system, model.spec, base["dm"], with_forces)
    x, x_inv = lowdin(base["overlap"])
    natm, nocc = structure.natoms, int(target["nocc"])
    t = torch.from_numpy
    return TrainingFrame(
        name=name, natoms=natm, nocc=nocc, element_index=model.element_index(structure.symbols),
        descriptors=t(descriptors), potential_basis=t(x @ u.reshape(len(u), -1)),
        descriptor_gradient=t(jac.reshape(-1, natm, 3)) if with_forces else None,
        base_energy=torch.tensor(float(base["energy"]), dtype=torch.float64),
        base_forces=t(base["forces"]) if with_forces else None, base_fock=t(x @ base["fock"] @ x),
        target_energy=(torch.tensor(float(target["energy"]), dtype=torch.float64)
                       if energies_comparable(structure) else None),
        target_forces=t(target["forces"]) if with_forces else None, target_fock=t(x @ target["fock"] @ x),
        target_eigenvalues=t(target["mo_energy"][:nocc + 1]), target_projector=t(0.5 * x_inv @ target["dm"] @ x_inv))


def predict(model: CorrectionModel, frame: TrainingFrame) -> dict[str, torch.Tensor]:
    """Energy, forces, Löwdin-basis Hamiltonian, eigenvalues and occupied projector with the model's correction."""
    descriptors = frame.descriptors.clone().requires_grad_(True)
    e_delta = model(descriptors, frame.element_index).sum()
    (grad,) = torch.autograd.grad(e_delta, descriptors, create_graph=True)
    grad = grad.reshape(-1)
    fock = frame.base_fock + (frame.potential_basis * grad) @ frame.potential_basis.T
    eigenvalues, projector = occupied_spectrum(fock, frame.nocc)
    out = {"energy": frame.base_energy + e_delta, "fock": fock, "eigenvalues": eigenvalues, "projector": projector}
    if frame.descriptor_gradient is not None:
        out["forces"] = frame.base_forces - torch.einsum("k,kax->ax", grad, frame.descriptor_gradient)
    return out


def frame_losses(model: CorrectionModel, frame: TrainingFrame) -> dict[str, torch.Tensor]:
    """Every loss term of one frame; terms without comparable data are left out: forces of a periodic hybrid
    (none in PySCF) and energies that :func:`.label.energies_comparable` rules out."""
    out = predict(model, frame)
    losses = {"hamiltonian": hamiltonian_loss(out["fock"], frame.target_fock),
              "eigenvalues": eigenvalue_loss(out["eigenvalues"], frame.target_eigenvalues, frame.nocc),
              "frontier": frontier_loss(out["eigenvalues"], frame.target_eigenvalues, frame.nocc),
              "density": density_loss(out["projector"], frame.target_projector, frame.nocc)}
    if frame.target_energy is not None:
        losses["energy"] = energy_loss(out["energy"], frame.target_energy, frame.natoms)
    if "forces" in out:
        losses["forces"] = force_loss(out["forces"], frame.target_forces)
    return losses
