"""The DeePKS-ES loss terms (torch, differentiable in the model parameters).

Each term is a mean square in reporting units: eV per atom for the energy, eV/Angstrom
for forces, eV for Hamiltonian elements (in the Löwdin-orthogonalised AO basis) and
for eigenvalues; the eigenvector term is the squared distance between the
occupied-subspace projectors, ||P - P_ref||^2 / (2 nocc), a number from 0 (same
subspace) to 1 (orthogonal subspaces), unchanged by orbital signs and by rotations
among degenerate occupied levels.
"""

from __future__ import annotations

import torch

from ..constants import FORCE_EV_ANGSTROM, HARTREE_EV


class OccupiedSpectrum(torch.autograd.Function):
    """Eigenvalues of a symmetric H and the projector onto its ``nocc`` lowest eigenvectors.

    The projector's derivative only couples occupied and virtual levels, through
    1/(e_i - e_a): finite whenever there is a gap, even with degenerate occupied (or
    virtual) levels, where the generic eigenvector derivative is singular.
    """

    @staticmethod
    def forward(ctx, hamiltonian: torch.Tensor, nocc: int):
        energies, vectors = torch.linalg.eigh(hamiltonian)
        occupied = vectors[:, :nocc]
        ctx.save_for_backward(energies, vectors)
        ctx.nocc = nocc
        return energies, occupied @ occupied.T

    @staticmethod
    def backward(ctx, grad_energies, grad_projector):
        energies, vectors = ctx.saved_tensors
        nocc = ctx.nocc
        grad = torch.zeros_like(vectors)
        if grad_energies is not None:
            grad = grad + (vectors * grad_energies) @ vectors.T
        if grad_projector is not None:
            sym = 0.5 * (grad_projector + grad_projector.T)
            occ, virt = vectors[:, :nocc], vectors[:, nocc:]
            denominator = energies[:nocc][None, :] - energies[nocc:][:, None]  # (nvirt, nocc)
            coupling = 2.0 * (virt.T @ sym @ occ) / denominator
            half = virt @ coupling @ occ.T
            grad = grad + 0.5 * (half + half.T)
        return grad, None


def occupied_spectrum(hamiltonian: torch.Tensor, nocc: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues, occupied projector) of an orthonormal-basis Hamiltonian."""
    return OccupiedSpectrum.apply(hamiltonian, nocc)


def energy_loss(energy: torch.Tensor, target: torch.Tensor, natoms: int) -> torch.Tensor:
    """(ΔE / N)^2 in (eV/atom)^2; energies in Hartree."""
    return ((energy - target) * HARTREE_EV / natoms) ** 2


def force_loss(forces: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared force component error, (eV/Angstrom)^2; forces in Hartree/Bohr."""
    return (((forces - target) * FORCE_EV_ANGSTROM) ** 2).mean()


def hamiltonian_loss(hamiltonian: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared matrix-element error, eV^2; orthonormal-basis matrices in Hartree."""
    return (((hamiltonian - target) * HARTREE_EV) ** 2).mean()


def eigenvalue_loss(energies: torch.Tensor, target: torch.Tensor, nocc: int) -> torch.Tensor:
    """Mean squared error over the occupied levels and the lowest virtual one, eV^2; Hartree in."""
    return (((energies[:nocc + 1] - target[:nocc + 1]) * HARTREE_EV) ** 2).mean()


def frontier_loss(energies: torch.Tensor, target: torch.Tensor, nocc: int) -> torch.Tensor:
    """Mean squared error of the HOMO and the LUMO alone, eV^2: weights the gap beyond its share of the levels."""
    return (((energies[nocc - 1:nocc + 1] - target[nocc - 1:nocc + 1]) * HARTREE_EV) ** 2).mean()


def density_loss(projector: torch.Tensor, target: torch.Tensor, nocc: int) -> torch.Tensor:
    """||P - P_ref||_F^2 / (2 nocc) of occupied-subspace projectors in one orthonormal basis."""
    return ((projector - target) ** 2).sum() / (2 * nocc)
