"""Small dense linear-algebra helpers shared by engines, training and analysis (atomic units)."""

from __future__ import annotations

import numpy as np


def lowdin(overlap: np.ndarray, root: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(S^-1/2, S^1/2) of a symmetric positive-definite overlap matrix; S^1/2 None unless ``root`` (one dense
    product fewer where only S^-1/2 is wanted)."""
    evals, evecs = np.linalg.eigh(overlap)
    return (evecs / np.sqrt(evals)) @ evecs.T, (evecs * np.sqrt(evals)) @ evecs.T if root else None


def atom_sums(per_ao: np.ndarray, ao_atom: np.ndarray, natm: int) -> np.ndarray:
    """(natm, ...) sums of ``per_ao`` (nao, ...) over the AOs of each atom (``ao_atom``: the atom of each AO)."""
    onehot = np.zeros((natm, len(ao_atom)))
    onehot[ao_atom, np.arange(len(ao_atom))] = 1.0
    return (onehot @ per_ao.reshape(len(ao_atom), -1)).reshape((natm, *per_ao.shape[1:]))


def ao_atoms(system) -> np.ndarray:
    """(nao,) the atom each AO of a PySCF ``Mole``/``Cell`` sits on."""
    ao_atom = np.zeros(system.nao_nr(), dtype=int)
    for atom, (_, _, p0, p1) in enumerate(system.aoslice_by_atom()):
        ao_atom[p0:p1] = atom
    return ao_atom


def element_weights(symbols, ao_atom: np.ndarray, orthogonal: np.ndarray) -> dict[str, np.ndarray]:
    """Löwdin weight of each element in each orbital, {symbol: (nmo,)} summing to 1 per orbital, from the
    orthogonal coefficients S^1/2 C (the eigenvectors of S^-1/2 H S^-1/2, or ``lowdin(S)[1] @ C``)."""
    per_atom = atom_sums(orthogonal**2, ao_atom, len(symbols))
    weights: dict[str, np.ndarray] = {}
    for symbol, row in zip(symbols, per_atom):
        weights[symbol] = weights.get(symbol, 0.0) + row
    return dict(sorted(weights.items()))
