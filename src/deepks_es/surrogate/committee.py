"""A committee of surrogate networks, what a surrogate model file holds, and one prediction of it.

Model file (see :mod:`deepks_es.model.modelfile`): metadata ``kind = "surrogate"``, ``settings``
(:class:`~.network.SurrogateSettings`), ``members``, ``dtype`` and the training provenance; the state_dict
holds ``member<k>.<name>`` per member.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ..model.modelfile import SURROGATE_KIND, ModelFile, write_model_file
from ..structure import Structure
from .graph import build_graph
from .network import SurrogateModel, SurrogateSettings


@dataclass
class CommitteePrediction:
    """Every member's energy (M,), forces (M, N, 3), virial (M, 3, 3) and Γ-point H (M, nao, nao): atomic units."""

    energies: np.ndarray
    forces: np.ndarray
    virials: np.ndarray
    hamiltonians: np.ndarray | None


class Committee(nn.Module):
    """Members that share settings; their spread is the uncertainty of their mean."""

    def __init__(self, settings: SurrogateSettings, members: int, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.settings = settings
        self.members = nn.ModuleList(SurrogateModel(settings) for _ in range(members))
        self.to_precision(dtype)
        self.provenance: dict = {}

    def to_precision(self, dtype: torch.dtype) -> Committee:
        """The committee in ``dtype`` (each member's energy buffers stay float64)."""
        self.dtype = dtype
        for member in self.members:
            member.to_precision(dtype)
        return self

    @classmethod
    def from_file(cls, model_file: ModelFile) -> Committee:
        """The committee in a surrogate model file; a file of another kind or shape is a ModelError."""
        meta = model_file.metadata
        if model_file.kind != SURROGATE_KIND:
            raise ModelError(f"{model_file.path} is a {model_file.kind!r} model, not a surrogate")
        try:
            committee = cls(SurrogateSettings.from_dict(meta["settings"]), int(meta["members"]),
                            getattr(torch, meta.get("dtype", "float64")))
            committee.load_state_dict(model_file.state_dict)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelError(f"surrogate model file {model_file.path} does not match this version of deepks-es "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
        committee.provenance = meta.get("provenance", {})
        committee.eval()
        return committee

    def save(self, path) -> None:
        """Write the committee as a surrogate model file (atomically)."""
        metadata = {"kind": SURROGATE_KIND, "settings": self.settings.as_dict(), "members": len(self.members),
                    "dtype": str(self.dtype).removeprefix("torch."), "units": "atomic (Bohr, Hartree)",
                    "elements": list(self.settings.elements), "basis": self.settings.basis,
                    "pseudo": self.settings.pseudo, "provenance": self.provenance}
        write_model_file(path, metadata, self.state_dict())

    def predict(self, structure: Structure, hamiltonian: bool = True,
                members: int | None = None) -> CommitteePrediction:
        """Energies, forces, virials (by autograd: -dE/dR, -dE/d(strain)) and Hamiltonians of every member, or of
        the first ``members``."""
        model = self.members[0]
        species = model.species(structure.symbols)
        graph = build_graph(structure, self.settings.hamiltonian_cutoff if hamiltonian else self.settings.cutoff)
        positions = torch.tensor(np.array(structure.positions), dtype=self.dtype)
        cell = None if structure.cell is None else torch.tensor(np.array(structure.cell), dtype=self.dtype)
        energies, forces, virials, matrices = [], [], [], []
        for member in self.members[:members]:
            strain = torch.zeros(3, 3, dtype=self.dtype, requires_grad=True)
            x = positions.clone().requires_grad_(True)
            deform = torch.eye(3, dtype=self.dtype) + 0.5 * (strain + strain.T)
            energy, h, vectors = member.energy_and_features(species, x @ deform,
                                                            None if cell is None else cell @ deform, graph)
            grad_x, grad_strain = torch.autograd.grad(energy, (x, strain))
            energies.append(float(energy.detach()))
            forces.append(-grad_x.double().numpy())
            virials.append(-grad_strain.double().numpy())
            if hamiltonian:  # no gradient needed: the Hamiltonian head runs without autograd
                with torch.no_grad():
                    matrices.append(member.hamiltonian(species, h.detach(), vectors.detach(), graph).double().numpy())
        return CommitteePrediction(np.array(energies), np.array(forces), np.array(virials),
                                   np.array(matrices) if matrices else None)
