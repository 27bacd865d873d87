"""Atom-centred projector functions and their overlaps with the AO basis.

Each atom carries the same set of primitive, normalised Gaussian shells
alpha^I_{nlm}: one shell per exponent for every l = 0..lmax. The projectors sit
on ghost atoms of a second PySCF ``Mole`` or ``Cell`` (same geometry, same
lattice), so the cross overlaps <phi_mu|alpha_p> and their derivatives come from
PySCF's integral library, image-summed for periodic cells.

The default exponents (2^k Bohr^-2, k = 3 ... -3) cover the valence region of
the GTH pseudopotential basis: with no core density, tighter functions would see
almost nothing; the most diffuse one reaches the first-neighbour shell in water.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..linalg import ao_atoms
from ..pyscf_compat import intor_cross

DEFAULT_EXPONENTS = (8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.125)


@dataclass(frozen=True)
class ProjectorSpec:
    """Projector set: Gaussian exponents (Bohr^-2) and the maximum angular momentum."""

    exponents: tuple[float, ...] = DEFAULT_EXPONENTS
    lmax: int = 2

    @property
    def shells(self) -> list[tuple[int, int]]:
        """(l, exponent index) of each shell, in the order the projector basis lists them."""
        return [(l, n) for l in range(self.lmax + 1) for n in range(len(self.exponents))]

    @property
    def nproj(self) -> int:
        """Projector functions per atom."""
        return len(self.exponents) * (self.lmax + 1) ** 2

    @property
    def ndescriptor(self) -> int:
        """Descriptors per atom: one eigenvalue per m for every (n, l) block."""
        return self.nproj

    def pyscf_basis(self) -> list:
        return [[l, [self.exponents[n], 1.0]] for l, n in self.shells]

    def block_indices(self) -> list[np.ndarray]:
        """Per l, an (nshell, 2l+1) array of projector indices within one atom."""
        blocks, offset = [], 0
        for l in range(self.lmax + 1):
            size = len(self.exponents) * (2 * l + 1)
            blocks.append(np.arange(offset, offset + size).reshape(len(self.exponents), 2 * l + 1))
            offset += size
        return blocks

    def to_dict(self) -> dict:
        return {"kind": "gaussian", "exponents": list(self.exponents), "lmax": self.lmax}

    @classmethod
    def from_dict(cls, data: dict) -> ProjectorSpec:
        if data.get("kind", "gaussian") != "gaussian":
            raise ValueError(f"unknown projector kind {data.get('kind')!r}")
        return cls(tuple(float(e) for e in data["exponents"]), int(data["lmax"]))


@dataclass
class ProjectorOverlaps:
    """<phi_mu | alpha_p> for one geometry.

    Attributes:
        ovlp: (nao, natm, nproj) overlaps, projector index grouped per atom.
        ip_ao: (3, nao, natm, nproj) <d/dr phi_mu | alpha_p> (electron coordinate). The projector-side
            derivative needs no integral of its own: <phi_mu | d/dr alpha_p> = -<d/dr phi_mu | alpha_p>,
            the overlap of two functions being invariant under a common translation (image by image for
            a Cell).
        ao_atom: (nao,) atom index of each AO.
    """

    ovlp: np.ndarray
    ao_atom: np.ndarray
    ip_ao: np.ndarray | None = field(default=None, repr=False)


def projector_system(system, spec: ProjectorSpec):
    """The ghost-atom ``Mole``/``Cell`` carrying the projectors of ``system``'s atoms."""
    proj = system.copy(deep=True)
    proj.atom = [("X-" + system.atom_pure_symbol(i), system.atom_coord(i)) for i in range(system.natm)]
    proj.unit = "Bohr"
    proj.basis = spec.pyscf_basis()
    proj.pseudo = None
    proj.ecp = None
    proj.charge = 0
    proj.spin = 0
    proj.verbose = 0
    proj.build(dump_input=False, parse_arg=False)
    return proj


def projector_overlaps(system, spec: ProjectorSpec, with_derivatives: bool = False) -> ProjectorOverlaps:
    """Overlaps (and optionally their derivatives) between ``system``'s AOs and its projectors."""
    proj = projector_system(system, spec)
    cross = intor_cross(system)
    natm, nproj = system.natm, spec.nproj
    nao = system.nao_nr()
    ovlp = cross("int1e_ovlp", system, proj).reshape(nao, natm, nproj)
    out = ProjectorOverlaps(ovlp=np.ascontiguousarray(ovlp), ao_atom=ao_atoms(system))
    if with_derivatives:
        out.ip_ao = projector_overlap_derivatives(system, spec, proj)
    return out


def projector_overlap_derivatives(system, spec: ProjectorSpec, proj=None) -> np.ndarray:
    """(3, nao, natm, nproj) <d/dr phi_mu | alpha_p> (``proj``: the projector system, built if None)."""
    proj = projector_system(system, spec) if proj is None else proj
    ip_ao = intor_cross(system)("int1e_ipovlp", system, proj, comp=3)
    return ip_ao.reshape(3, system.nao_nr(), system.natm, spec.nproj)
