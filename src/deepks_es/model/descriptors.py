"""Projected density-matrix blocks and their rotation-invariant eigenvalue descriptors (torch).

D^I_{nl,mm'} = sum_{mu nu} <alpha^I_{nlm}|phi_mu> rho_{mu nu} <phi_nu|alpha^I_{nlm'}>,
d^I = eigenvalues of every (2l+1)x(2l+1) block, ascending. ``rho`` is the total
(spin-summed) AO density matrix. Everything is differentiable, so autograd of
E_delta(d) gives dE/drho (the correction potential) and dE/d<phi|alpha> (forces).

Sorted eigenvalues have kinks where two of them cross (common in the nearly isotropic
d blocks), so a network on them has a V_delta that jumps there and an SCF that cannot
converge across it. :func:`block_moments` turns each block's eigenvalues into their mean
and central moments, mean((lambda - mean)^k) = tr((D - mean)^k) / (2l+1), k = 2..2l+1:
the same information, polynomials in D, smooth everywhere.
"""

from __future__ import annotations

import numpy as np
import torch

from .projectors import ProjectorSpec

RANK_TOL = 1e-12  # relative size of the density-matrix eigenvalues a factor drops


def projected_density(ovlp: torch.Tensor, factor: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """(natm, nproj, nproj) blocks D^I from overlaps (nao, natm, nproj) and a factor of the density matrix,
    rho = factor diag(signs) factor^T (factor (nao, r), signs (r,) of +-1; see :func:`density_factor`).

    Through the factor a projection costs nao r nproj per atom instead of nao^2 nproj (r ~ nocc).
    """
    nao, natm, nproj = ovlp.shape
    projected = (factor.T @ ovlp.reshape(nao, natm * nproj)).reshape(-1, natm, nproj)
    return torch.einsum("rip,riq->ipq", projected * signs[:, None, None], projected)


def density_factor(dm) -> tuple[np.ndarray, np.ndarray]:
    """(factor (nao, r), signs (r,)) with dm = factor diag(signs) factor^T.

    From the orbitals PySCF tags its density matrices with (``mo_coeff``, ``mo_occ``; r = occupied orbitals)
    when they reproduce dm on a probe vector, else from dm's eigenvectors, dropping eigenvalues below
    :data:`RANK_TOL` times the largest (their share of D^I is below that relative size).
    """
    mo_coeff, mo_occ = getattr(dm, "mo_coeff", None), getattr(dm, "mo_occ", None)
    dm = np.asarray(dm)
    if mo_coeff is not None and np.isrealobj(mo_coeff) and np.shape(mo_occ) == mo_coeff.shape[1:]:
        occupied = mo_occ > 0
        factor = mo_coeff[:, occupied] * np.sqrt(mo_occ[occupied])
        probe = np.random.default_rng(0).standard_normal(len(dm))
        reference = dm @ probe
        if np.abs(factor @ (factor.T @ probe) - reference).max() <= 1e-10 * max(np.abs(reference).max(), 1.0):
            return factor, np.ones(factor.shape[1])
    eigenvalues, vectors = np.linalg.eigh(dm)
    keep = np.abs(eigenvalues) > RANK_TOL * np.abs(eigenvalues).max(initial=0.0)
    return vectors[:, keep] * np.sqrt(np.abs(eigenvalues[keep])), np.sign(eigenvalues[keep])


def eigen_descriptors(proj_dm: torch.Tensor, spec: ProjectorSpec) -> torch.Tensor:
    """(natm, ndescriptor) eigenvalues of the (n, l) blocks of D^I, grouped by l then n."""
    natm = proj_dm.shape[0]
    parts = []
    for idx in spec.block_indices():
        idx = torch.as_tensor(idx, device=proj_dm.device)
        blocks = proj_dm[:, idx[:, :, None], idx[:, None, :]]  # (natm, nshell, 2l+1, 2l+1)
        parts.append(torch.linalg.eigvalsh(blocks).reshape(natm, -1))
    return torch.cat(parts, dim=1)


def block_moments(eigenvalues: torch.Tensor, spec: ProjectorSpec) -> torch.Tensor:
    """(natm, ndescriptor) mean and central moments k = 2..2l+1 of each (n, l) block's eigenvalues
    (laid out as :func:`eigen_descriptors` returns them)."""
    parts, offset = [], 0
    for idx in spec.block_indices():
        nshell, size = idx.shape
        block = eigenvalues[:, offset:offset + nshell * size].reshape(-1, nshell, size)
        mean = block.mean(-1, keepdim=True)
        moments = [mean[..., 0]] + [((block - mean) ** k).mean(-1) for k in range(2, size + 1)]
        parts.append(torch.stack(moments, dim=-1).reshape(len(block), -1))
        offset += nshell * size
    return torch.cat(parts, dim=1)
