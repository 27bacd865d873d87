"""The AO basis as irreps: which shells each element has, and the Clebsch–Gordan change of basis between
an (A, B) block of the Kohn-Sham matrix in PySCF's AO order and the irreps that e3nn predicts.

Conventions (checked against PySCF's overlap integrals under rotation, ``tests/test_surrogate.py``): the
network sees Cartesian vectors as (y, z, x); in that frame e3nn's l = 2 components are PySCF's d order
(xy, yz, z², xz, x²-y²) and PySCF's p order (x, y, z) is e3nn's l = 1 components taken at [2, 0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

E3NN_FROM_XYZ = [1, 2, 0]
"""Cartesian (x, y, z) -> the (y, z, x) frame the network works in."""

PYSCF_FROM_E3NN = {0: [0], 1: [2, 0, 1], 2: [0, 1, 2, 3, 4]}
"""Per l: PySCF's real-harmonic components as indices into e3nn's (in the (y, z, x) frame)."""


@cache
def element_shells(element: str, basis: str, pseudo: str | None) -> tuple[int, ...]:
    """Angular momenta of ``element``'s shells in PySCF's AO order, one entry per contraction."""
    from pyscf import gto

    from ..errors import SettingsError

    try:
        atom = gto.M(atom=[(element, (0.0, 0.0, 0.0))], basis=basis, pseudo=pseudo or None, unit="Bohr",
                     spin=None, verbose=0)
    except Exception as exc:  # PySCF raises several kinds for an unknown basis or element
        raise SettingsError(f"no {basis!r} basis for {element}: {type(exc).__name__}") from None
    shells = []
    for shell in range(atom.nbas):
        shells += [atom.bas_angular(shell)] * atom.bas_nctr(shell)
    if max(shells) > 2:
        raise SettingsError(f"the surrogate handles s, p and d shells; {basis!r} gives {element} l = {max(shells)}")
    return tuple(shells)


def ao_count(shells: tuple[int, ...]) -> int:
    """Number of AOs of an atom with ``shells``."""
    return sum(2 * l + 1 for l in shells)


@dataclass(frozen=True)
class BlockIrreps:
    """The irreps of an (A, B) block and the orthogonal map between them and the block.

    Attributes:
        irreps: e3nn irreps string, one entry per (shell a, shell b, L), L = |la - lb| .. la + lb, parity
            (-1)^(la + lb).
        transform: (dim, nA * nB) orthogonal matrix: block.ravel() = x @ transform for irreps vector x.
    """

    irreps: str
    transform: np.ndarray


@cache
def block_irreps(shells_a: tuple[int, ...], shells_b: tuple[int, ...]) -> BlockIrreps:
    """The :class:`BlockIrreps` of an (A, B) block for atoms with shells ``shells_a`` and ``shells_b``."""
    import torch
    from e3nn import o3

    na, nb = ao_count(shells_a), ao_count(shells_b)
    rows, names = [], []
    offset_a = 0
    for la in shells_a:
        offset_b = 0
        for lb in shells_b:
            parity = "e" if (la + lb) % 2 == 0 else "o"
            for big_l in range(abs(la - lb), la + lb + 1):
                w3j = o3.wigner_3j(la, lb, big_l, dtype=torch.float64).numpy() * np.sqrt(2 * big_l + 1)
                w3j = w3j[np.ix_(PYSCF_FROM_E3NN[la], PYSCF_FROM_E3NN[lb])]
                for m in range(2 * big_l + 1):
                    block = np.zeros((na, nb))
                    block[offset_a:offset_a + 2 * la + 1, offset_b:offset_b + 2 * lb + 1] = w3j[:, :, m]
                    rows.append(block.ravel())
                names.append(f"1x{big_l}{parity}")
            offset_b += 2 * lb + 1
        offset_a += 2 * la + 1
    return BlockIrreps("+".join(names), np.array(rows))


def ao_rotation(shells_per_atom: list[tuple[int, ...]], rotation: np.ndarray) -> np.ndarray:
    """(nao, nao) matrix D with A(R x) = D A(x) D^T for AO matrices A in PySCF's order, for the Cartesian
    ``rotation`` R (3, 3) acting on positions as x -> x @ R.T."""
    import torch
    from e3nn import o3
    from scipy.linalg import block_diag

    frame = np.asarray(rotation)[np.ix_(E3NN_FROM_XYZ, E3NN_FROM_XYZ)]
    blocks = []
    for shells in shells_per_atom:
        for l in shells:
            d = o3.Irrep(l, (-1) ** l).D_from_matrix(torch.as_tensor(frame, dtype=torch.float64)).numpy()
            blocks.append(d[np.ix_(PYSCF_FROM_E3NN[l], PYSCF_FROM_E3NN[l])])
    return block_diag(*blocks)
