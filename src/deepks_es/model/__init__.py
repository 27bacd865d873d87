"""The correction model: projectors, descriptors and the per-element network."""

from .network import CorrectionModel
from .projectors import ProjectorSpec

__all__ = ["CorrectionModel", "ProjectorSpec"]
