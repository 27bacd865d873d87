"""The DeePKS-ES correction network and its model file.

E_delta = sum_I [ MLP_{Z_I}((f(d^I) - shift_Z) / scale_Z) + e0_Z ]  (Hartree)

with f the network inputs: ``moments`` (mean and central moments of each block's
eigenvalues, polynomials in D, smooth; the default) or ``eigenvalues`` (f = identity, the
sorted eigenvalues of models written before inputs were recorded: kinks where two cross).

The model file (:mod:`.modelfile`) has kind ``deepks``; its metadata holds the format version,
elements, base xc, basis, pseudopotential, projector spec, network shape and inputs, provenance
and units. Every mismatch is a :class:`ModelError`.
"""

from __future__ import annotations

import os

import torch

from ..errors import ModelError, first_line
from .descriptors import block_moments
from .modelfile import DEFAULT_KIND, ModelFile, read_model_file, write_model_file
from .projectors import ProjectorSpec

FORMAT_VERSION = 1
INPUTS = ("moments", "eigenvalues")
UNITS = {"energy": "hartree", "length": "bohr",
         "density_matrix": "total (spin-summed) AO density matrix, PySCF AO order"}


def _mlp(n_in: int, hidden: tuple[int, ...]) -> torch.nn.Sequential:
    layers, width = [], n_in
    for n_out in hidden:
        layers += [torch.nn.Linear(width, n_out, dtype=torch.float64), torch.nn.SiLU()]
        width = n_out
    layers.append(torch.nn.Linear(width, 1, dtype=torch.float64))
    return torch.nn.Sequential(*layers)


class CorrectionModel(torch.nn.Module):
    """Per-element MLP on (functions of) the eigenvalue descriptors; energies in Hartree.

    Args:
        elements: chemical symbols the model covers.
        spec: projector set the descriptors are built from.
        hidden: widths of the hidden layers.
        inputs: what the network sees of each block's eigenvalues (see ``INPUTS``).
        base_xc, basis, pseudo: the base calculation the correction belongs to.
        provenance: free-form record of how the model was made (JSON-serialisable).
    """

    def __init__(self, elements, spec: ProjectorSpec = ProjectorSpec(), hidden=(64, 64, 64),
                 base_xc: str = "PBE", basis: str = "gth-dzvp", pseudo: str = "gth-pbe",
                 provenance: dict | None = None, inputs: str = "moments"):
        super().__init__()
        if inputs not in INPUTS:
            raise ModelError(f"unknown network inputs {inputs!r}; known: {', '.join(INPUTS)}")
        self.inputs = inputs
        self.elements = tuple(sorted(set(elements)))
        self.spec = spec
        self.hidden = tuple(int(h) for h in hidden)
        self.base_xc, self.basis, self.pseudo = base_xc, basis, pseudo
        self.provenance = dict(provenance or {})
        nel, nd = len(self.elements), spec.ndescriptor
        self.nets = torch.nn.ModuleDict({el: _mlp(nd, self.hidden) for el in self.elements})
        self.register_buffer("input_shift", torch.zeros(nel, nd, dtype=torch.float64))
        self.register_buffer("input_scale", torch.ones(nel, nd, dtype=torch.float64))
        self.register_buffer("atom_energy", torch.zeros(nel, dtype=torch.float64))

    # -- evaluation ---------------------------------------------------------------------------
    def element_index(self, symbols) -> torch.Tensor:
        """Index into ``self.elements`` of each symbol; a clear error for uncovered elements."""
        missing = sorted(set(symbols) - set(self.elements))
        if missing:
            raise ModelError(f"model covers elements {', '.join(self.elements)} but the structure has "
                             f"{', '.join(missing)}")
        lookup = {el: i for i, el in enumerate(self.elements)}
        return torch.tensor([lookup[s] for s in symbols], dtype=torch.long)

    def features(self, descriptors: torch.Tensor) -> torch.Tensor:
        """Network inputs (natm, ndescriptor), before standardisation, from eigenvalue descriptors."""
        return block_moments(descriptors, self.spec) if self.inputs == "moments" else descriptors

    def forward(self, descriptors: torch.Tensor, element_index: torch.Tensor) -> torch.Tensor:
        """Per-atom energies (natm,) in Hartree from eigenvalue descriptors (natm, ndescriptor)."""
        x = (self.features(descriptors) - self.input_shift[element_index]) / self.input_scale[element_index]
        out = self.atom_energy[element_index].clone()
        for i, el in enumerate(self.elements):
            mask = element_index == i
            if mask.any():
                out = out.index_put((mask,), out[mask] + self.nets[el](x[mask]).squeeze(-1))
        return out

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def null(cls, elements=("H", "O"), **kwargs) -> CorrectionModel:
        """E_delta == 0 exactly (zero output layers), through the full correction code path."""
        model = cls(elements, provenance={"kind": "null"}, **kwargs)
        with torch.no_grad():
            for net in model.nets.values():
                net[-1].weight.zero_()
                net[-1].bias.zero_()
        return model

    @classmethod
    def random(cls, elements=("H", "O"), seed: int = 0, scale: float = 0.01, **kwargs) -> CorrectionModel:
        """Random weights for tests: per-atom energies of order ``scale`` Hartree, seeded."""
        generator = torch.Generator().manual_seed(seed)
        model = cls(elements, provenance={"kind": "random", "seed": seed, "scale": scale}, **kwargs)
        with torch.no_grad():
            for param in model.nets.parameters():
                param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype)
                            / max(1, param.shape[-1]) ** 0.5)
            for net in model.nets.values():
                net[-1].weight.mul_(scale)
                net[-1].bias.zero_()
        return model

    # -- file format --------------------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        return {
            "kind": DEFAULT_KIND,
            "format_version": FORMAT_VERSION,
            "elements": list(self.elements),
            "base_xc": self.base_xc,
            "basis": self.basis,
            "pseudo": self.pseudo,
            "projector": self.spec.to_dict(),
            "network": {"hidden": list(self.hidden), "activation": "silu", "inputs": self.inputs},
            "provenance": self.provenance,
            "units": UNITS,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the model file atomically (temp file, then rename)."""
        write_model_file(path, self.metadata, self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> CorrectionModel:
        """Read a model file written by :meth:`save`."""
        return cls.from_file(read_model_file(path))

    @classmethod
    def from_file(cls, file: ModelFile) -> CorrectionModel:
        """The correction model of a read model file."""
        meta, path = file.metadata, file.path
        if file.kind != DEFAULT_KIND:
            raise ModelError(f"{path} is a {file.kind!r} model, not a DeePKS-ES correction model")
        try:
            if meta["format_version"] != FORMAT_VERSION:
                raise ModelError(f"{path} has model format version {meta['format_version']}, this "
                                 f"deepks-es reads version {FORMAT_VERSION}")
            model = cls(meta["elements"], ProjectorSpec.from_dict(meta["projector"]),
                        hidden=meta["network"]["hidden"], base_xc=meta["base_xc"], basis=meta["basis"],
                        pseudo=meta["pseudo"], provenance=meta.get("provenance"),
                        inputs=meta["network"].get("inputs", "eigenvalues"))
            model.load_state_dict(file.state_dict, strict=True)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"model file {path} is corrupt or inconsistent ({type(exc).__name__}: "
                             f"{first_line(exc)})") from None
        return model.eval()

