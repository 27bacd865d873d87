"""Engines: structure in, :class:`Result` out. Front ends never know which engine they serve.

The interface is :class:`Engine` (``compute``, ``describe``, ``close``); :func:`make_engine` builds one
from an :class:`EngineSpec` by the kind its model file declares (:mod:`.registry`).
"""

from .base import Engine, EngineInfo
from .deepks import DeePKSEngine
from .reference import ReferenceEngine
from .registry import (REFERENCE_KIND, as_engine, engine_kinds, make_engine, register_engine, resolve_model,
                       shipped_model_path)
from .result import Result, SCFInfo
from .spec import EngineSpec
from .surrogate import SurrogateEngine

register_engine(REFERENCE_KIND, ReferenceEngine.from_spec)
register_engine(DeePKSEngine.kind, DeePKSEngine.from_spec)
register_engine(SurrogateEngine.kind, SurrogateEngine.from_spec)

__all__ = ["DeePKSEngine", "Engine", "EngineInfo", "EngineSpec", "ReferenceEngine", "Result", "SCFInfo", "SurrogateEngine",
           "as_engine", "engine_kinds", "make_engine", "register_engine", "resolve_model", "shipped_model_path"]
