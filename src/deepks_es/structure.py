"""Atomic structures: symbols, positions in Bohr and an optional periodic cell.

Input and output go through ASE's extended XYZ reader and writer (Angstrom on
disk); inside the code everything is in Bohr. The cell is stored with lattice
vectors as rows, as in ASE and PySCF (i-PI's ``h`` has them as columns).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from ase.data import atomic_numbers

from .constants import ANGSTROM_BOHR, BOHR_ANGSTROM
from .errors import StructureError, first_line
from .fileio import atomic_path, existing_file

MIN_DISTANCE = 0.5 * ANGSTROM_BOHR
"""Closest approach of two atoms (or an atom and its periodic image) that a calculation accepts (Bohr)."""

MAX_COORDINATE = 1e5
"""Largest |coordinate| accepted (Bohr); beyond it the arithmetic of any engine loses its digits."""


@dataclass(frozen=True)
class Structure:
    """An atomic configuration in atomic units.

    Attributes:
        symbols: chemical symbols, one per atom.
        positions: (N, 3) Cartesian positions in Bohr.
        cell: (3, 3) lattice vectors as rows in Bohr, or None for a cluster.
    """

    symbols: tuple[str, ...]
    positions: np.ndarray
    cell: np.ndarray | None = None

    def __post_init__(self):
        symbols = tuple(str(s) for s in self.symbols)
        positions = np.array(self.positions, dtype=float)
        unknown = sorted({s for s in symbols if s not in atomic_numbers or s == "X"})
        if unknown:
            raise StructureError(f"unknown element(s) {', '.join(unknown)}: use chemical symbols such as O and H")
        if not symbols:
            raise StructureError("structure has no atoms")
        if positions.shape != (len(symbols), 3):
            raise StructureError(f"positions have shape {positions.shape}, expected ({len(symbols)}, 3)")
        if not np.all(np.isfinite(positions)):
            raise StructureError("positions contain NaN or infinite values")
        cell = None
        if self.cell is not None:
            cell = np.array(self.cell, dtype=float)
            if cell.shape != (3, 3) or not np.all(np.isfinite(cell)):
                raise StructureError("cell must be a finite 3x3 matrix (lattice vectors as rows)")
            if abs(np.linalg.det(cell)) < 1e-6:
                raise StructureError("cell is singular: give all three lattice vectors (zero volume)")
        positions.flags.writeable = False
        if cell is not None:
            cell.flags.writeable = False
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "cell", cell)

    @property
    def natoms(self) -> int:
        return len(self.symbols)

    @property
    def is_periodic(self) -> bool:
        return self.cell is not None

    def repeated(self, reps) -> Structure:
        """The periodic supercell of ``reps`` = (n1, n2, n3) copies along the lattice vectors; atoms ordered copy by
        copy (the first copy is this structure), copies in C order of their lattice shifts."""
        reps = np.asarray(reps, dtype=int)
        if self.cell is None:
            raise StructureError("only a periodic structure can be repeated")
        if reps.shape != (3,) or np.any(reps < 1):
            raise StructureError(f"repetitions must be three positive integers, not {reps.tolist()}")
        shifts = np.array(np.meshgrid(*map(np.arange, reps), indexing="ij")).reshape(3, -1).T @ self.cell
        positions = (self.positions[None] + shifts[:, None]).reshape(-1, 3)
        return Structure(self.symbols * len(shifts), positions, self.cell * reps[:, None])

    def with_positions(self, positions: np.ndarray, cell: np.ndarray | None = None) -> Structure:
        """Same atoms at new positions (Bohr); the cell is kept unless given."""
        return Structure(self.symbols, positions, self.cell if cell is None else cell)

    def minimum_image(self, vectors: np.ndarray) -> np.ndarray:
        """Difference ``vectors`` (..., 3), Bohr, as their shortest periodic images (unchanged without a cell)."""
        if self.cell is None:
            return vectors
        fractional = vectors @ np.linalg.inv(self.cell)
        return (fractional - np.round(fractional)) @ self.cell

    def water_count(self) -> int:
        """The number of waters; the atoms must be waters as consecutive O, H, H (StructureError otherwise)."""
        if self.symbols != ("O", "H", "H") * (self.natoms // 3) or self.natoms % 3:
            raise StructureError("the atoms must be consecutive O, H, H waters")
        return self.natoms // 3

    def whole_waters(self) -> np.ndarray:
        """(nmol, 3, 3) positions, Bohr, of the waters with each H at the minimum image of its own O; the atoms must
        be waters as consecutive O, H, H."""
        water = self.positions.reshape(self.water_count(), 3, 3)
        return water[:, :1] + self.minimum_image(water - water[:, :1])

    def water_cluster(self, centre: int, molecules: int) -> Structure:
        """The ``molecules`` waters nearest to water ``centre`` (O-O distance, minimum image), each made whole,
        centred on that O, as a cluster (no cell); the atoms must be waters as consecutive O, H, H."""
        whole = self.whole_waters()  # checks the atoms are waters
        nmol = len(whole)
        if not (0 <= centre < nmol and 1 <= molecules <= nmol):
            raise StructureError(f"a cluster of {molecules} around water {centre} from {nmol} waters")
        oxygens = self.minimum_image(whole[:, 0] - whole[centre, 0])
        nearest = np.argsort(np.linalg.norm(oxygens, axis=1), kind="stable")[:molecules]
        positions = whole[nearest] - whole[nearest, :1] + oxygens[nearest, None, :]
        return Structure(("O", "H", "H") * molecules, positions.reshape(-1, 3))

    @classmethod
    def from_ase(cls, atoms) -> Structure:
        """From an ``ase.Atoms`` (Angstrom); periodic when all three directions are."""
        pbc = np.asarray(atoms.pbc)
        if pbc.any() and not pbc.all():
            raise StructureError("mixed periodicity is not supported: make the structure periodic in all "
                                 "three directions or in none")
        cell = np.asarray(atoms.cell.array) * ANGSTROM_BOHR if pbc.all() else None
        return cls(tuple(atoms.get_chemical_symbols()), atoms.positions * ANGSTROM_BOHR, cell)

    def to_ase(self):
        """As an ``ase.Atoms`` in Angstrom."""
        from ase import Atoms

        if self.cell is None:
            return Atoms(self.symbols, positions=self.positions * BOHR_ANGSTROM)
        return Atoms(self.symbols, positions=self.positions * BOHR_ANGSTROM,
                     cell=self.cell * BOHR_ANGSTROM, pbc=True)


def check_geometry(structure: Structure, min_distance: float = MIN_DISTANCE) -> None:
    """Refuse, with a one-line :class:`StructureError`, a geometry no calculation should start from: a coordinate
    beyond :data:`MAX_COORDINATE`, or two atoms (or an atom and a periodic image, a cell too small) closer than
    ``min_distance`` Bohr."""
    from scipy.spatial import cKDTree

    largest = np.abs(structure.positions).max()
    if largest > MAX_COORDINATE:
        raise StructureError(f"a coordinate of {largest:.3g} Bohr: positions beyond {MAX_COORDINATE:g} Bohr are not "
                             "a molecular geometry (wrong units?)")
    points, owners = structure.positions, np.arange(structure.natoms)
    if structure.is_periodic:
        shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ structure.cell
        points = (structure.positions[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
        owners = np.tile(owners, len(shifts))
    home = np.arange(len(points)) // structure.natoms == (13 if structure.is_periodic else 0)
    pairs = cKDTree(points).query_pairs(min_distance, output_type="ndarray")
    pairs = pairs[home[pairs[:, 0]] | home[pairs[:, 1]]]
    if len(pairs):
        a, b = owners[pairs[0, 0]], owners[pairs[0, 1]]
        distance = np.linalg.norm(points[pairs[0, 0]] - points[pairs[0, 1]])
        what = (f"atom {a} ({structure.symbols[a]}) and a periodic image of itself (the cell is too small)" if a == b
                else f"atoms {a} ({structure.symbols[a]}) and {b} ({structure.symbols[b]})")
        raise StructureError(f"{what} are {distance * BOHR_ANGSTROM:.3g} Angstrom apart, closer than "
                             f"{min_distance * BOHR_ANGSTROM:.2g} Angstrom: not a physical geometry (check units "
                             "and the cell)")


def read_structure(path: str | os.PathLike, index: int = -1) -> Structure:
    """Read one frame (default: the last) of an (extended) XYZ or any ASE-readable file."""
    return read_structures(path, index=str(index))[0]


def read_structures(path: str | os.PathLike, index: str = ":") -> list[Structure]:
    """Read frames of an (extended) XYZ or any ASE-readable file, positions in Angstrom on disk; or of an i-PI
    positions trajectory (``# CELL(abcABC): ... positions{UNIT} cell{UNIT}`` comment lines), in its own units."""
    from ase.io import read
    from ase.io.formats import string2index

    path = existing_file(path, "structure file", StructureError)
    try:
        if _is_ipi_xyz(path):
            import ipi

            frames = ipi.read_trajectory(str(path), format="xyz")[string2index(index)]
        else:
            frames = read(path, index=index)
    except StructureError:
        raise
    except Exception as exc:  # ASE raises many types for malformed files
        text = first_line(exc, "malformed file")
        raise StructureError(f"cannot read structure {path}: {type(exc).__name__}: {text}") from None
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise StructureError(f"no frames in {path}")
    return [Structure.from_ase(atoms) for atoms in frames]


def _is_ipi_xyz(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an XYZ file as i-PI writes it (its cell and units on each frame's comment line, which
    a plain XYZ reader would drop: a box read as a cluster)."""
    with open(path, errors="replace") as handle:
        handle.readline()
        return handle.readline().startswith("# CELL")


def write_structures(path: str | os.PathLike, structures: list[Structure]) -> None:
    """Write frames as extended XYZ (Angstrom), atomically: temp file then rename."""
    from ase.io import write

    with atomic_path(path) as tmp:
        write(tmp, [s.to_ase() for s in structures], format="extxyz")
