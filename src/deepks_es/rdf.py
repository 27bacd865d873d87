"""Radial distribution function of a periodic trajectory, and its first peak against experiment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.geometry import get_distances

from .errors import DeePKSError

EXPERIMENT_OO_PEAK = (2.80, 2.57)
"""Position (Å) and height of the first peak of liquid water's O-O g(r) at 295 K from X-ray diffraction
(:data:`EXPERIMENT_SOURCE`)."""
EXPERIMENT_SOURCE = "Skinner et al., J. Chem. Phys. 138, 074506 (2013)"


class RDFError(DeePKSError):
    """Frames from which no RDF can be computed (not periodic, no such element)."""


@dataclass(frozen=True)
class RDF:
    """g(r) of one element pair, averaged over frames.

    Attributes:
        r: bin centres (Å).
        g: g(r), 1 for an ideal gas of the same density.
        frames: how many frames were averaged.
        pair: the two elements.
    """

    r: np.ndarray
    g: np.ndarray
    frames: int
    pair: tuple[str, str]

    @property
    def rmax(self) -> float:
        """The outer edge of the last bin (Å)."""
        return float(1.5 * self.r[-1] - 0.5 * self.r[-2])

    def first_peak(self) -> tuple[float, float]:
        """Position (Å) and height of the highest point of g(r) at r < 3.3 Å (the first shell of water's O-O;
        the whole range for other pairs)."""
        window = self.r < 3.3 if self.pair == ("O", "O") else np.ones_like(self.r, dtype=bool)
        i = int(np.argmax(np.where(window, self.g, -np.inf)))
        return float(self.r[i]), float(self.g[i])


def largest_radius(cell: np.ndarray) -> float:
    """Half the smallest perpendicular width of ``cell`` (rows are lattice vectors; their length unit): the
    largest r at which the minimum image counts every neighbour once."""
    volume = abs(np.linalg.det(cell))
    widths = [volume / np.linalg.norm(np.cross(cell[i - 2], cell[i - 1])) for i in range(3)]
    return 0.5 * min(widths)


def radial_distribution(frames: list[Atoms], pair: tuple[str, str] = ("O", "O"), rmax: float | None = None,
                        bins: int = 120) -> RDF:
    """g(r) of ``pair`` over periodic ``frames`` (Å), by minimum-image distances up to ``rmax`` (default and
    at most :func:`largest_radius` of the smallest cell)."""
    if not frames:
        raise RDFError("no frames to compute an RDF from")
    if not all(frame.pbc.all() and frame.cell.rank == 3 for frame in frames):
        raise RDFError("the RDF needs periodic frames (a cell with three lattice vectors)")
    limit = min(largest_radius(np.asarray(frame.cell)) for frame in frames)
    rmax = limit if rmax is None else min(rmax, limit)
    edges = np.linspace(0.0, rmax, bins + 1)
    counts, ideal_density = np.zeros(bins), 0.0
    for frame in frames:
        symbols = np.array(frame.get_chemical_symbols())
        first, second = (np.flatnonzero(symbols == element) for element in pair)
        if not first.size or not second.size:
            raise RDFError(f"no {pair[0]}-{pair[1]} pairs: the frames hold {sorted(set(symbols))}")
        _, distances = get_distances(frame.positions[first], frame.positions[second], cell=frame.cell, pbc=True)
        same = pair[0] == pair[1]
        if same:
            distances = distances[~np.eye(len(first), dtype=bool)]
        counts += np.histogram(distances.ravel(), bins=edges)[0] / len(first)
        ideal_density += (len(second) - same) / frame.get_volume()
    shells = 4.0 / 3.0 * np.pi * np.diff(edges ** 3)
    return RDF(0.5 * (edges[1:] + edges[:-1]), counts / (ideal_density * shells), len(frames), tuple(pair))
