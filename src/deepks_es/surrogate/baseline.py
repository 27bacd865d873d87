"""q-SPC/Fw flexible water (Paesani et al., J. Chem. Phys. 125, 184507, 2006): its terms, and the same force
field on the surrogate's atomic graph as the physical baseline under the learned energy (Δ-learning).

The baseline gives the surrogate bonded molecules and an O-O wall by construction: the network learns
DeePKS-ES minus q-SPC/Fw, a smaller and smoother target than the whole energy, and cannot open the holes
(molecules falling into each other) that a purely learned surface has where no training frame was. On the
graph the molecules are found from the geometry: each H belongs to its nearest O (minimum image), an O with
two such H has the angle term; intermolecular charges (damped-shifted-force Coulomb) and the O-O Lennard-Jones
are taken within the network's cutoff, both shifted so that energy and force vanish there (continuous MD).

``qspcfw-refit`` adds to q-SPC/Fw a refit of its intramolecular part (:func:`intramolecular_terms`: polynomials
in the two O-H stretches and the bend, and their couplings), its coefficients fitted by least squares to the
training forces before the network is trained. q-SPC/Fw's harmonic terms are far from DFT water's (its O-H
stretch force is off by ~1.1 eV/Angstrom RMS in the liquid), and ten fitted numbers take that error from the
network, which then learns the intermolecular and environment-dependent remainder.
"""

from __future__ import annotations

import math

import torch

from ..constants import BOHR_ANGSTROM, HARTREE_EV

KCAL_MOL = 0.0433641  # eV
COULOMB = 332.0637 * KCAL_MOL  # eV Angstrom / e^2
BOND_K, BOND_R0 = 1059.162 * KCAL_MOL, 1.0  # eV/Angstrom^2, Angstrom
ANGLE_K, ANGLE_THETA0 = 75.90 * KCAL_MOL, math.radians(112.0)  # eV/rad^2, rad
LJ_EPSILON, LJ_SIGMA = 0.1554 * KCAL_MOL, 3.1655  # eV, Angstrom
CHARGE_O, CHARGE_H = -0.84, 0.42  # e
DSF_ALPHA = 0.2  # 1/Angstrom (Fennell & Gezelter 2006)

BASELINES = ("none", "qspcfw", "qspcfw-refit")
"""Baselines a surrogate can learn on top of: nothing, q-SPC/Fw on its graph, or q-SPC/Fw with its intramolecular
part refitted to the training data."""

WATER_BASELINES = ("qspcfw", "qspcfw-refit")
"""The baselines that are water models: they need whole O, H, H molecules (:func:`broken_water`)."""

INTRAMOLECULAR_TERMS = 10
"""The number of :func:`intramolecular_terms` of a water."""


def bond_energy(r: torch.Tensor) -> torch.Tensor:
    """Harmonic O-H bond energies (eV) of bond lengths ``r`` (Angstrom)."""
    return 0.5 * BOND_K * (r - BOND_R0) ** 2


def angle_energy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Harmonic H-O-H angle energies (eV) of the O->H vectors ``a``, ``b`` (..., 3)."""
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return 0.5 * ANGLE_K * (torch.acos(cos.clamp(-1.0, 1.0)) - ANGLE_THETA0) ** 2


def intramolecular_terms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., 10) terms of waters with O->H vectors ``a``, ``b`` (..., 3, Angstrom): with the stretches s = r - r0
    (Angstrom) and the bend t = theta - theta0 (rad) of q-SPC/Fw's reference geometry, s1^k + s2^k and t^k for
    k = 1..4, s1 s2 and (s1 + s2) t. An energy is their dot product with coefficients in eV per unit term."""
    r_a, r_b = a.norm(dim=-1), b.norm(dim=-1)
    s1, s2 = r_a - BOND_R0, r_b - BOND_R0
    bend = torch.acos(((a * b).sum(-1) / (r_a * r_b)).clamp(-1.0, 1.0)) - ANGLE_THETA0
    powers = [s1 ** k + s2 ** k for k in range(1, 5)] + [bend ** k for k in range(1, 5)]
    return torch.stack(powers + [s1 * s2, (s1 + s2) * bend], dim=-1)


def dsf_coulomb(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Damped-shifted-force Coulomb kernel (1/Angstrom) at ``r`` < ``cutoff`` (Angstrom): energy and force
    vanish at the cutoff; times q_i q_j COULOMB it is an energy in eV."""
    a = DSF_ALPHA
    erfc_rc = math.erfc(a * cutoff)
    slope = erfc_rc / cutoff**2 + 2 * a / math.sqrt(math.pi) * math.exp(-(a * cutoff) ** 2) / cutoff
    return torch.erfc(a * r) / r - erfc_rc / cutoff + slope * (r - cutoff)


def lennard_jones(r: torch.Tensor) -> torch.Tensor:
    """O-O Lennard-Jones energy (eV) at ``r`` (Angstrom)."""
    x6 = (LJ_SIGMA / r) ** 6
    return 4 * LJ_EPSILON * (x6 * x6 - x6)


def shifted_force_lennard_jones(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """:func:`lennard_jones` with energy and force shifted to zero at ``cutoff`` (Angstrom)."""
    rc = torch.tensor(cutoff, dtype=r.dtype)
    x6 = (LJ_SIGMA / rc) ** 6
    slope = 4 * LJ_EPSILON * (-12 * x6 * x6 + 6 * x6) / rc  # dE/dr at the cutoff
    return lennard_jones(r) - lennard_jones(rc) - slope * (r - rc)


def molecules(oxygen: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, shifts: torch.Tensor,
              lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each H's nearest O among the pairs: (bond pair indices (B,) with src H and dst O, one per H that has
    an O in range, and per atom the index and lattice shift of its molecule's O: itself for an O and for an H
    with no O in range)."""
    candidate = torch.nonzero(~oxygen[src] & oxygen[dst]).squeeze(1)
    distance = lengths[candidate].detach()
    nearest = torch.full((len(oxygen),), math.inf, dtype=distance.dtype)
    nearest.scatter_reduce_(0, src[candidate], distance, reduce="amin")
    bonds = candidate[distance == nearest[src[candidate]]]
    order, start, _ = _groups(src[bonds])
    bonds = bonds[order[start]]  # one bond per H (a tie: the first)
    anchor = torch.arange(len(oxygen))
    anchor_shift = torch.zeros(len(oxygen), 3, dtype=shifts.dtype)
    anchor[src[bonds]] = dst[bonds]
    anchor_shift[src[bonds]] = shifts[bonds]
    return bonds, anchor, anchor_shift


def _groups(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The order that sorts ``keys`` stably (the members of a group of equal keys are consecutive in it), and
    each group's start in that order and its size."""
    order = torch.argsort(keys, stable=True)
    _, counts = torch.unique_consecutive(keys[order], return_counts=True)
    return order, torch.cumsum(counts, 0) - counts, counts


def qspcfw_energy(oxygen: torch.Tensor, vectors: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                  shifts: torch.Tensor, cutoff: float, refit: torch.Tensor | None = None) -> torch.Tensor:
    """q-SPC/Fw energy (Hartree, float64) of a structure given as a full pair list: ``oxygen`` (N,) mask,
    pair ``vectors`` (E, 3, Bohr, any Cartesian frame, differentiable) from ``src`` to ``dst`` with lattice
    ``shifts`` (E, 3); intermolecular terms within ``cutoff`` (Bohr). With ``refit`` (10,), also the
    :func:`intramolecular_terms` of every O with two H, summed, dotted with these coefficients (eV per unit term)."""
    vectors = vectors.double() * BOHR_ANGSTROM
    lengths = vectors.norm(dim=1)
    bonds, anchor, anchor_shift = molecules(oxygen, src, dst, shifts, lengths)
    energy = bond_energy(lengths[bonds]).sum()
    order, start, counts = _groups(dst[bonds])  # the bonds of each O, consecutive in ``order``
    start = start[counts == 2]  # an O with two H has the angle term
    first, second = bonds[order[start]], bonds[order[start + 1]]
    energy = energy + angle_energy(-vectors[first], -vectors[second]).sum()  # pair vectors point H -> O
    if refit is not None:
        energy = energy + intramolecular_terms(-vectors[first], -vectors[second]).sum(0) @ refit
    rc = cutoff * BOHR_ANGSTROM
    same = (anchor[src] == anchor[dst]) & (anchor_shift[src] == anchor_shift[dst] + shifts).all(dim=1)
    inter = torch.nonzero(~same & (lengths < rc)).squeeze(1)
    r = lengths[inter]
    charge = torch.where(oxygen, CHARGE_O, CHARGE_H).double()
    coulomb = COULOMB * charge[src[inter]] * charge[dst[inter]] * dsf_coulomb(r, rc)
    oo = oxygen[src[inter]] & oxygen[dst[inter]]
    lj = shifted_force_lennard_jones(r[oo], rc)
    return (energy + 0.5 * (coulomb.sum() + lj.sum())) / HARTREE_EV


BOND_LIMIT = 3.0
"""Bohr (1.59 Å): an H farther than this from every O is not part of a water molecule."""


def broken_water(structure) -> str | None:
    """What makes ``structure`` something other than whole water molecules for the baseline (an H with no O
    within :data:`BOND_LIMIT`, an O that is the nearest O of other than two H), or None."""
    from .graph import build_graph

    graph = build_graph(structure, BOND_LIMIT)
    oxygen = torch.tensor([s == "O" for s in structure.symbols])
    lengths = graph.vectors(torch.tensor(structure.positions, dtype=torch.float64),
                            None if structure.cell is None else torch.tensor(structure.cell,
                                                                             dtype=torch.float64)).norm(dim=1)
    bonds, _, _ = molecules(oxygen, graph.src, graph.dst, graph.shifts, lengths)
    loose = sorted(set(torch.nonzero(~oxygen).squeeze(1).tolist()) - set(graph.src[bonds].tolist()))
    if loose:
        return f"H atom {loose[0]} has no O within {BOND_LIMIT * BOHR_ANGSTROM:.2f} Angstrom"
    counts = torch.bincount(graph.dst[bonds], minlength=len(oxygen))
    odd = torch.nonzero(oxygen & (counts != 2)).squeeze(1).tolist()
    if odd:
        return f"O atom {odd[0]} is the nearest O of {int(counts[odd[0]])} H atoms, not 2"
    return None
