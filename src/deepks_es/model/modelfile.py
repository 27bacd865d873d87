"""The model file every engine loads: ``torch.save`` of a plain dict, read with ``weights_only=True``.

Keys: ``format`` (the tag :data:`FILE_TAG`), ``metadata`` (a JSON string; its ``kind`` names the engine
that serves the file, see :mod:`deepks_es.engines.registry`) and ``state_dict`` (tensors). Files written
before kinds were recorded are DeePKS-ES correction models. Every problem is a one-line :class:`ModelError`;
non-finite weights are refused at load.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModelError
from ..fileio import atomic_path, existing_file

FILE_TAG = "deepks-es-model"
DEFAULT_KIND = "deepks"  # a correction model (deepks_es.model.network); files without a kind are these
SURROGATE_KIND = "surrogate"  # a committee of surrogate networks (deepks_es.surrogate.committee)


@dataclass(frozen=True)
class ModelFile:
    """A model file's contents: its path, metadata (dict) and state_dict (name -> tensor)."""

    path: Path
    metadata: dict
    state_dict: dict

    @property
    def kind(self) -> str:
        """The engine kind that serves this file."""
        return str(self.metadata.get("kind", DEFAULT_KIND))


def read_model_file(path: str | os.PathLike) -> ModelFile:
    """Read and check a model file: the tag, the JSON metadata, finite tensors."""
    path = existing_file(path, "model file", ModelError)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot read model file {path}: not a deepks-es model or corrupt "
                         f"({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FILE_TAG:
        raise ModelError(f"{path} is not a deepks-es model file")
    try:
        metadata = json.loads(payload["metadata"])
        state_dict = dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model file {path} is corrupt: no readable metadata or weights ({type(exc).__name__})") \
            from None
    if not isinstance(metadata, dict):
        raise ModelError(f"model file {path} is corrupt: its metadata is not a JSON object")
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise ModelError(f"model file {path} is corrupt: entry {name!r} is not a tensor")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ModelError(f"model file {path} has non-finite weights in {name!r}: retrain or restore the file")
    return ModelFile(path, metadata, state_dict)


def write_model_file(path: str | os.PathLike, metadata: dict, state_dict: dict) -> None:
    """Write a model file atomically (temp file, then rename); ``metadata`` must hold ``kind``."""
    payload = {"format": FILE_TAG, "metadata": json.dumps(metadata),
               "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
