"""The atomic graph of a structure: every pair (i, j, lattice shift) within a cutoff, from vesin's neighbour list."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..structure import Structure


@dataclass(frozen=True)
class Graph:
    """Directed pairs i -> j (j != i, or j = i in another cell) with r_ij = x_j - x_i + shift @ cell (Bohr).

    Attributes:
        src, dst: (E,) atom indices i and j.
        shifts: (E, 3) integer lattice shifts (zeros for a cluster).
        cutoff: the pair cutoff (Bohr).
    """

    src: torch.Tensor
    dst: torch.Tensor
    shifts: torch.Tensor
    cutoff: float

    def vectors(self, positions: torch.Tensor, cell: torch.Tensor | None) -> torch.Tensor:
        """(E, 3) r_ij from ``positions`` (N, 3) and ``cell`` (3, 3) rows, differentiable in both."""
        vectors = positions[self.dst] - positions[self.src]
        if cell is not None:
            vectors = vectors + self.shifts.to(positions.dtype) @ cell
        return vectors

    def within(self, lengths: torch.Tensor, cutoff: float) -> Graph:
        """The pairs shorter than ``cutoff`` (given their ``lengths``)."""
        keep = lengths < cutoff
        return Graph(self.src[keep], self.dst[keep], self.shifts[keep], cutoff)


def build_graph(structure: Structure, cutoff: float) -> Graph:
    """All pairs of ``structure`` within ``cutoff`` Bohr (periodic images of a box included)."""
    from vesin import NeighborList

    periodic = structure.is_periodic
    box = np.asarray(structure.cell) if periodic else np.zeros((3, 3))
    src, dst, shifts = NeighborList(cutoff=cutoff, full_list=True).compute(
        points=np.asarray(structure.positions), box=box, periodic=periodic, quantities="ijS")
    return Graph(torch.as_tensor(src.astype(np.int64)), torch.as_tensor(dst.astype(np.int64)),
                 torch.as_tensor(shifts.astype(np.int64)), cutoff)
