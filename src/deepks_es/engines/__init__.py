"""Engines: structure in, :class:`Result` out. Front ends never know which engine they serve.

The interface is :class:`Engine` (``compute``, ``describe``, ``close``); :func:`make_engine` builds one
from an :class:`EngineSpec` by the kind its model file declares (:mod:`.registry`). The engine classes
load on first use, so a process that serves one engine never imports another's stack (e3nn, PySCF).
"""

from importlib import import_module

from .base import Engine, EngineInfo
from .registry import (BUILTIN_ENGINES, REFERENCE_KIND, as_engine, engine_kinds, make_engine, register_engine,
                       resolve_model, shipped_model_path)
from .result import Result, SCFInfo
from .spec import EngineSpec

_ENGINE_CLASSES = {path.rsplit(":", 1)[1]: path for path in BUILTIN_ENGINES.values()}


def __getattr__(name: str):
    """``DeePKSEngine``, ``ReferenceEngine``, ``SurrogateEngine``: imported when first named."""
    if name not in _ENGINE_CLASSES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _ENGINE_CLASSES[name].split(":")
    return getattr(import_module(module, __name__), attribute)


__all__ = ["DeePKSEngine", "Engine", "EngineInfo", "EngineSpec", "ReferenceEngine", "Result", "SCFInfo", "SurrogateEngine",
           "as_engine", "engine_kinds", "make_engine", "register_engine", "resolve_model", "shipped_model_path"]
