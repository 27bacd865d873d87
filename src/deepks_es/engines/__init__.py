"""Engines: structure in, :class:`Result` out. Front ends never know which engine they serve."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import ModelError
from ..model.network import CorrectionModel
from ..scf.extrapolation import DEFAULT_PREDICTOR
from ..scf.systems import SCFSettings
from .deepks import DeePKSEngine
from .reference import ReferenceEngine
from .result import Result

DEFAULT_MODEL = "default_model.pt"


def default_model_path() -> Path:
    """The shipped model file (package data)."""
    return Path(str(resources.files("deepks_es") / "data" / DEFAULT_MODEL))


def load_model(name: str) -> CorrectionModel | None:
    """``none`` -> no correction, ``default`` -> the shipped model, anything else -> a model file path."""
    if name.lower() == "none":
        return None
    if name.lower() == "default":
        path = default_model_path()
        if not path.is_file():
            raise ModelError(f"the shipped model {path} is missing from this installation: reinstall "
                             "deepks-es, or pass --model PATH to a trained model file")
        return CorrectionModel.load(path)
    return CorrectionModel.load(name)


def make_engine(model: str | CorrectionModel | None = "none", extrapolation: str = DEFAULT_PREDICTOR,
                **settings) -> ReferenceEngine:
    """An engine for a model name/path/object; ``extrapolation`` is the density predictor across MD
    steps (see :class:`ReferenceEngine`); ``settings`` override :class:`SCFSettings` fields."""
    if isinstance(model, str):
        model = load_model(model)
    if model is None:
        return ReferenceEngine(SCFSettings(**settings), extrapolation)
    defaults = dict(xc=model.base_xc, basis=model.basis, pseudo=model.pseudo)
    return DeePKSEngine(model, SCFSettings(**{**defaults, **settings}), extrapolation)


__all__ = ["DeePKSEngine", "ReferenceEngine", "Result", "load_model", "make_engine", "default_model_path"]
