"""Engines: structure in, :class:`Result` out. Front ends never know which engine they serve.

The interface is :class:`Engine` (``compute``, ``describe``, ``close``); :func:`make_engine` builds one
from an :class:`EngineSpec` by the kind its model file declares (:mod:`.registry`). The engine classes
load on first use, so a process that serves one engine never imports another's stack (e3nn, PySCF).
"""

from .base import Engine, EngineInfo
from .registry import (BUILTIN_ENGINES, as_engine, builtin_engine_class, engine_kinds, make_engine,
                       register_engine, resolve_model, shipped_model_path)
from .result import Result, SCFInfo
from .spec import EngineSpec

_KIND_OF_CLASS = {path.rsplit(":", 1)[1]: kind for kind, path in BUILTIN_ENGINES.items()}


def __getattr__(name: str):
    """``DeePKSEngine``, ``ReferenceEngine``, ``SurrogateEngine``: imported when first named."""
    if name not in _KIND_OF_CLASS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return builtin_engine_class(_KIND_OF_CLASS[name])


__all__ = ["DeePKSEngine", "Engine", "EngineInfo", "EngineSpec", "ReferenceEngine", "Result", "SCFInfo", "SurrogateEngine",
           "as_engine", "engine_kinds", "make_engine", "register_engine", "resolve_model", "shipped_model_path"]
