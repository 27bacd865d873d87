"""Training frames: everything the loss needs about one configuration, precomputed at a fixed density.

At the density rho of the latest SCF (the base functional's at first, then the
model's) the descriptors d^I_k, their derivatives dd/drho = u_k u_k^T (u_k = the
projector overlaps times the block eigenvector) and dd/dR at fixed rho are fixed
tensors. With g_k = dE_delta/dd_k from the network:

    E = E_base + E_delta(d),  F = F_base - sum_k g_k (dd_k/dR + dW_k/dR),
    H = H_base[rho] + sum_k g_k u_k u_k^T   (in the Löwdin basis S^-1/2 ... S^-1/2),

the same correction the SCF applies, now differentiable in the network parameters
(:meth:`deepks_es.scf.correction.Correction.descriptor_jacobians` gives u and the force tensor),
where dW_k/dR is V_delta's share of the energy-weighted density-matrix (Pulay)
term per unit g_k, with W = dm F dm / 2. F_base excludes both correction shares
(see records.base_part), so the force is exact at the model's own SCF density and
first-order right at another density (phase 0: the base functional's); without
the Pulay share a potential that shifts the levels by ~1 eV would leave forces
hundreds of meV/Angstrom off after the first phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..linalg import lowdin
from ..model.network import CorrectionModel
from ..scf.correction import Correction
from ..scf.systems import SCFSettings, build_system
from ..structure import Structure
from .label import energies_comparable
from .losses import (density_loss, eigenvalue_loss, energy_loss, force_loss, frontier_loss, hamiltonian_loss,
                     occupied_spectrum)

LOSS_TERMS = ("energy", "forces", "hamiltonian", "eigenvalues", "frontier", "density")


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
    factors: dict  # loss-weight factor per term for this frame (TrainConfig.train_weights; a term not named: 1)


def prepare_frame(name: str, structure: Structure, base: dict, target: dict, model: CorrectionModel,
                  settings: SCFSettings, factors: dict | None = None) -> TrainingFrame:
    """Tensors of one frame at the density of ``base`` (a base-functional record, see :func:`.records.base_part`);
    ``factors`` multiply its loss weights per term."""
    correction = Correction(model, build_system(structure, settings))
    with_forces = "forces" in base and "forces" in target
    descriptors, u, jac = correction.descriptor_jacobians(base["dm"], with_forces)
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
        target_eigenvalues=t(target["mo_energy"][:nocc + 1]), target_projector=t(0.5 * x_inv @ target["dm"] @ x_inv),
        factors=dict(factors or {}))


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


def weighted_loss(model: CorrectionModel, frame: TrainingFrame, weights: dict) -> tuple[torch.Tensor, dict]:
    """The objective of one frame, sum_k weights[k] * frame.factors[k] * loss_k, and its terms
    (:func:`frame_losses`)."""
    losses = frame_losses(model, frame)
    return sum(weights[k] * frame.factors.get(k, 1.0) * v for k, v in losses.items()), losses
