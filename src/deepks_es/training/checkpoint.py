"""Training checkpoints: one torch file per training, resumed only by the training that wrote it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import DeePKSError


def load_checkpoint(path: Path, fingerprint: dict, later_settings: dict | None = None,
                    ignored: tuple[str, ...] = ()) -> dict | None:
    """The checkpoint at ``path`` (None if there is none); unreadable, or written by a training with another
    ``fingerprint`` (JSON-ready: data, settings), is a one-line DeePKSError naming what changed. A setting of
    ``later_settings`` (name: default, at any depth) younger than the checkpoint counts as unchanged where one
    side lacks it and the other holds its default; settings named in ``ignored`` (at any depth) do not shape
    this training and are not compared."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        theirs = json.loads(payload["fingerprint"])
    except Exception as exc:
        raise DeePKSError(f"cannot resume from {path}: unreadable checkpoint ({type(exc).__name__})") from None
    mine, theirs = (_without_defaults(record, later_settings or {}, ignored) for record in (fingerprint, theirs))
    if theirs != mine:
        changed = sorted(k for k in mine.keys() | theirs.keys() if theirs.get(k) != mine.get(k))
        raise DeePKSError(f"{path} belongs to another training (changed: {', '.join(changed)}): use a new "
                          "workdir or remove the old one")
    return payload


def _without_defaults(record: dict, defaults: dict, ignored: tuple[str, ...] = ()) -> dict:
    """``record`` (nested dicts) without the entries named in ``ignored`` or whose name and value are those of
    ``defaults``."""
    return {key: _without_defaults(value, defaults, ignored) if isinstance(value, dict) else value
            for key, value in record.items()
            if key not in ignored and (key not in defaults or defaults[key] != value)}
