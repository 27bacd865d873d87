"""The mean of several correction models as one correction model (an ensemble of trainings, e.g. seeds).

E_delta = (1/M) sum_k E_delta^k is written exactly as a single :class:`.CorrectionModel` whose per-element
network runs the M members side by side: its first layer stacks the members' first layers (each member's input
standardisation folded in, so the ensemble standardises with the members' mean shift and scale), its hidden layers
are block-diagonal and its last layer averages. The result is an ordinary model file (kind ``deepks``, hidden widths
the sums of the members'): every engine and front end serves it unchanged, and its potential, forces and SCF are those
of the mean correction. Its cost is the members' networks, small beside the SCF.

Members must agree on everything but their weights and widths: elements, projectors, inputs, base calculation and
network depth (at least one hidden layer). Fitted baselines (energy offsets, scissor shifts) are averaged; no
validation split is recorded, since each member's held-out frames trained the others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ModelError
from .network import CorrectionModel


def _check_compatible(models: Sequence[CorrectionModel]) -> None:
    first = models[0]

    def signature(m: CorrectionModel) -> dict:
        return {"elements": m.elements, "projectors": m.spec.to_dict(), "inputs": m.inputs,
                "base calculation": (m.base_xc, m.basis, m.pseudo), "network depth": len(m.hidden)}

    reference = signature(first)
    for k, model in enumerate(models[1:], start=1):
        for what, value in signature(model).items():
            if value != reference[what]:
                raise ModelError(f"member {k} differs from member 0 in its {what} ({value} against "
                                 f"{reference[what]}): only trainings of one setup can be averaged")


def _linear_layers(net: torch.nn.Sequential) -> list[torch.nn.Linear]:
    return [layer for layer in net if isinstance(layer, torch.nn.Linear)]


def _mean_baselines(models: Sequence[CorrectionModel]) -> dict | None:
    baselines = [m.provenance.get("baselines") for m in models]
    if any(b is None for b in baselines):
        return None
    return {"atom_energy_ha": {el: float(np.mean([b["atom_energy_ha"][el] for b in baselines]))
                               for el in baselines[0]["atom_energy_ha"]},
            "shift_ev": {key: float(np.mean([b["shift_ev"][key] for b in baselines]))
                         for key in baselines[0]["shift_ev"]},
            "frames": [b.get("frames") for b in baselines]}


@torch.no_grad()
def mean_model(models: Sequence[CorrectionModel], sources: Sequence[str] | None = None) -> CorrectionModel:
    """One correction model whose per-atom energies are the mean of ``models``' (Hartree), exactly.

    ``sources`` (e.g. the members' file paths) are recorded in the provenance beside each member's own."""
    models = list(models)
    if len(models) < 2:
        raise ModelError("an ensemble needs at least two models")
    _check_compatible(models)
    first, count = models[0], len(models)
    if not first.hidden:
        raise ModelError("an ensemble needs networks with hidden layers (these are linear in their inputs)")
    hidden = tuple(sum(m.hidden[i] for m in models) for i in range(len(first.hidden)))
    provenance = {"kind": "ensemble", "members": [m.provenance for m in models]}
    if sources is not None:
        provenance["sources"] = [str(s) for s in sources]
    baselines = _mean_baselines(models)
    if baselines is not None:
        provenance["baselines"] = baselines
    ensemble = CorrectionModel(first.elements, first.spec, hidden=hidden, base_xc=first.base_xc, basis=first.basis,
                               pseudo=first.pseudo, provenance=provenance, inputs=first.inputs)
    shift = torch.stack([m.input_shift for m in models]).mean(0)
    scale = torch.stack([m.input_scale for m in models]).mean(0)
    ensemble.input_shift.copy_(shift)
    ensemble.input_scale.copy_(scale)
    ensemble.atom_energy.copy_(torch.stack([m.atom_energy for m in models]).mean(0))
    for i, el in enumerate(first.elements):
        into = _linear_layers(ensemble.nets[el])
        linears = [_linear_layers(m.nets[el]) for m in models]
        # first layer: x_k = (f - s_k) / c_k = (c x + s - s_k) / c_k with x = (f - s) / c the ensemble's input
        into[0].weight.copy_(torch.cat([layers[0].weight * (scale[i] / m.input_scale[i])
                                        for layers, m in zip(linears, models)]))
        into[0].bias.copy_(torch.cat([layers[0].bias + layers[0].weight @ ((shift[i] - m.input_shift[i])
                                                                            / m.input_scale[i])
                                      for layers, m in zip(linears, models)]))
        for depth in range(1, len(into) - 1):
            into[depth].weight.copy_(torch.block_diag(*(layers[depth].weight for layers in linears)))
            into[depth].bias.copy_(torch.cat([layers[depth].bias for layers in linears]))
        into[-1].weight.copy_(torch.cat([layers[-1].weight for layers in linears], dim=1) / count)
        into[-1].bias.copy_(torch.stack([layers[-1].bias for layers in linears]).mean(0))
    return ensemble.eval()
