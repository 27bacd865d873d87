"""A toy engine written for the tests, plugged in through the public registry only.

Harmonic flexible water (bond and angle springs, molecules as consecutive O, H, H) with a made-up
orbital spectrum: per molecule four doubly occupied levels and two virtual ones, shifted by the
molecule's bond stretch, with fixed O/H weights. Energy, forces and the virial (periodic boxes too)
come from torch autograd of the energy under a homogeneous strain. Its model file (kind
``toy-harmonic-water``) holds the spring constants; the entry point in the dist-info beside this
file registers it, so client processes started by ``deepks-es run`` find it on the PYTHONPATH.
"""

from __future__ import annotations

import numpy as np
import torch

from deepks_es.engines import EngineInfo, Result
from deepks_es.model.modelfile import write_model_file

KIND = "toy-harmonic-water"
OCCUPIED = np.array([-1.0, -0.55, -0.45, -0.38])  # Hartree, per molecule
VIRTUAL = np.array([-0.10, 0.05])
O_WEIGHT = np.array([0.9, 0.7, 0.6, 0.8, 0.3, 0.35])  # O share of each level; H gets the rest
STRETCH_SHIFT = 0.5  # Hartree per Bohr of mean bond stretch


class HarmonicWaterEngine:
    """Bond springs k_bond (Ha/Bohr^2) around r0 (Bohr), angle springs k_angle (Ha/rad^2) around theta0 (rad)."""

    def __init__(self, k_bond: float, r0: float, k_angle: float, theta0: float, model: str = "in memory"):
        self.parameters = dict(k_bond=k_bond, r0=r0, k_angle=k_angle, theta0=theta0)
        self.model = model

    def _energy(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xyz = positions.reshape(-1, 3, 3)
        oh1, oh2 = xyz[:, 1] - xyz[:, 0], xyz[:, 2] - xyz[:, 0]
        r1, r2 = oh1.norm(dim=1), oh2.norm(dim=1)
        theta = torch.arccos((oh1 * oh2).sum(dim=1) / (r1 * r2))
        p = self.parameters
        energy = 0.5 * p["k_bond"] * ((r1 - p["r0"]) ** 2 + (r2 - p["r0"]) ** 2).sum() \
            + 0.5 * p["k_angle"] * ((theta - p["theta0"]) ** 2).sum()
        return energy, 0.5 * (r1 + r2) - p["r0"]

    def compute(self, structure, key=None, observables=True) -> Result:
        if structure.symbols != ("O", "H", "H") * (structure.natoms // 3):
            raise ValueError("the toy engine wants water molecules as consecutive O, H, H")
        positions = torch.tensor(structure.positions, requires_grad=True)
        strain = torch.zeros((3, 3), dtype=torch.float64, requires_grad=True)
        energy, stretch = self._energy(positions @ (torch.eye(3, dtype=torch.float64) + strain))
        d_positions, d_strain = torch.autograd.grad(energy, (positions, strain))
        stretch = stretch.detach().numpy()
        levels = np.concatenate([OCCUPIED + STRETCH_SHIFT * s for s in stretch]
                                + [VIRTUAL - STRETCH_SHIFT * s for s in stretch])
        occ = np.concatenate([np.full(4 * len(stretch), 2.0), np.zeros(2 * len(stretch))])
        o_share = np.concatenate([np.tile(O_WEIGHT[:4], len(stretch)), np.tile(O_WEIGHT[4:], len(stretch))])
        order = np.argsort(levels)
        return Result(energy=float(energy.detach()), forces=-d_positions.numpy(), virial=-d_strain.numpy(),
                      mo_energy=levels[order], mo_occ=occ[order],
                      element_weights={"H": 1.0 - o_share[order], "O": o_share[order]},
                      scalars={"mean_stretch_bohr": float(stretch.mean())})

    def describe(self) -> EngineInfo:
        return EngineInfo(name="toy harmonic water", kind=KIND, model=self.model, settings=dict(self.parameters),
                          periodic_virial=True)

    def close(self) -> None:
        pass


def make_toy_engine(spec, model_file) -> HarmonicWaterEngine:
    """Registry factory: the spring constants of the model file."""
    values = {name: float(tensor) for name, tensor in model_file.state_dict.items()}
    return HarmonicWaterEngine(**values, model=str(model_file.path))


def write_toy_model(path, k_bond=0.5, r0=1.81, k_angle=0.16, theta0=1.82) -> None:
    """A toy model file: kind and spring constants."""
    state = {name: torch.tensor(value, dtype=torch.float64)
             for name, value in dict(k_bond=k_bond, r0=r0, k_angle=k_angle, theta0=theta0).items()}
    write_model_file(path, {"kind": KIND, "units": {"energy": "hartree", "length": "bohr"}}, state)
