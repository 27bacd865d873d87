"""An exponential moving average of a network's parameters (Polyak averaging), the weights a trained model serves.

With one frame per optimiser step the last step's weights carry the noise of the last few frames' gradients; their
moving average over ~1/(1 - decay) steps does not (the practice of NequIP and MACE, which serve the averaged
weights). Buffers (fitted reference energies, on-site means) are not averaged: they are not trained.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


class WeightAverage:
    """The moving average of ``model``'s parameters: after update n, avg <- d avg + (1 - d) w with
    d = min(decay, (1 + n) / (10 + n)), so the first updates are not dominated by the initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.updates = 0
        self.average = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold ``model``'s current parameters into the average (after an optimiser step)."""
        self.updates += 1
        weight = 1.0 - min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for name, p in model.named_parameters():
            self.average[name].lerp_(p.detach(), weight)

    @contextmanager
    def applied(self, model: torch.nn.Module):
        """``model`` with the averaged parameters inside the block, its own restored after."""
        own = {name: p.detach().clone() for name, p in model.named_parameters()}
        self._load(model, self.average)
        try:
            yield model
        finally:
            self._load(model, own)

    def averaged_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """``model``'s state dict (copies) with the averaged parameters: what the trained model serves."""
        with self.applied(model):
            return {name: value.detach().clone() for name, value in model.state_dict().items()}

    def state_dict(self) -> dict:
        return {"updates": self.updates, "average": self.average}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        for name, value in state["average"].items():
            self.average[name].copy_(value)

    @staticmethod
    @torch.no_grad()
    def _load(model: torch.nn.Module, values: dict[str, torch.Tensor]) -> None:
        for name, p in model.named_parameters():
            p.copy_(values[name])
