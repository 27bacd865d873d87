"""Training checkpoints: one torch file per training, resumed only by the training that wrote it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import DeePKSError


def load_checkpoint(path: Path, fingerprint: dict) -> dict | None:
    """The checkpoint at ``path`` (None if there is none); unreadable, or written by a training with another
    ``fingerprint`` (JSON-ready: data, settings), is a one-line DeePKSError naming what changed."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        theirs = json.loads(payload["fingerprint"])
    except Exception as exc:
        raise DeePKSError(f"cannot resume from {path}: unreadable checkpoint ({type(exc).__name__})") from None
    if theirs != fingerprint:
        changed = sorted(k for k in fingerprint if theirs.get(k) != fingerprint[k])
        raise DeePKSError(f"{path} belongs to another training (changed: {', '.join(changed)}): use a new "
                          "workdir or remove the old one")
    return payload
