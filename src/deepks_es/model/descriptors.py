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

import torch

from .projectors import ProjectorSpec


def projected_density(ovlp: torch.Tensor, dm: torch.Tensor) -> torch.Tensor:
    """(natm, nproj, nproj) blocks D^I from overlaps (nao, natm, nproj) and dm (nao, nao)."""
    nao, natm, nproj = ovlp.shape
    dm_ovlp = (dm @ ovlp.reshape(nao, natm * nproj)).reshape(nao, natm, nproj)
    return torch.einsum("uip,uiq->ipq", ovlp, dm_ovlp)


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
