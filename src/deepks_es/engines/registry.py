"""Engine selection: a model file declares its kind, the registry maps kinds to engine factories.

A new engine is one module plus one registration::

    from deepks_es.engines import register_engine
    register_engine("my-kind", lambda spec, model_file: MyEngine(spec, model_file))

Installed packages register through the entry-point group ``deepks_es.engines`` (name: the kind,
value: the factory), so client processes started by ``deepks-es run``/``drive`` find them too.
``--model none`` is served by the kind ``reference`` (the plain functional).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module, metadata, resources
from pathlib import Path

from ..errors import ModelError, SettingsError
from ..model.modelfile import DEFAULT_KIND, SURROGATE_KIND, ModelFile, read_model_file
from ..parallel import set_threads
from .base import Engine
from .spec import NO_MODEL, SHIPPED_MODEL, SHIPPED_SURROGATE, EngineSpec

ENTRY_POINT_GROUP = "deepks_es.engines"
REFERENCE_KIND = "reference"
BUILTIN_ENGINES = {REFERENCE_KIND: ".reference:ReferenceEngine", DEFAULT_KIND: ".deepks:DeePKSEngine",
                   SURROGATE_KIND: ".surrogate:SurrogateEngine"}  # kind -> engine class, imported on first use
SHIPPED_FILES = {SHIPPED_MODEL: "default_model.pt", SHIPPED_SURROGATE: "surrogate_model.pt"}

EngineFactory = Callable[[EngineSpec, ModelFile | None], Engine]
_FACTORIES: dict[str, EngineFactory] = {}


def register_engine(kind: str, factory: EngineFactory, replace: bool = False) -> None:
    """Serve model files of ``kind`` with ``factory(spec, model_file)``."""
    if (kind in _FACTORIES or kind in BUILTIN_ENGINES) and not replace:
        raise SettingsError(f"an engine of kind {kind!r} is registered already")
    _FACTORIES[kind] = factory


def builtin_engine_class(kind: str) -> type:
    """The built-in engine class of ``kind`` (a key of :data:`BUILTIN_ENGINES`), imported now."""
    module, name = BUILTIN_ENGINES[kind].split(":")
    return getattr(import_module(module, __package__), name)


def _factory(kind: str) -> EngineFactory:
    if kind not in _FACTORIES and kind in BUILTIN_ENGINES:
        _FACTORIES[kind] = builtin_engine_class(kind).from_spec
    if kind not in _FACTORIES:
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if entry.name == kind:
                try:
                    factory = entry.load()
                except Exception as exc:
                    raise ModelError(f"the plugin that serves kind {kind!r} ({entry.value}) does not load: "
                                     f"{type(exc).__name__}: {exc}") from None
                register_engine(kind, factory)
                break
    if kind not in _FACTORIES:
        raise ModelError(f"no engine serves model files of kind {kind!r} (known: {', '.join(engine_kinds())}): "
                         "install the package that provides it")
    return _FACTORIES[kind]


def engine_kinds() -> list[str]:
    """Kinds registered in this process or installed as entry points."""
    installed = {entry.name for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(set(_FACTORIES) | set(BUILTIN_ENGINES) | installed)


def shipped_model_path(name: str = SHIPPED_MODEL) -> Path:
    """A shipped model file (package data): ``default`` (DeePKS-ES) or ``surrogate``."""
    return Path(str(resources.files("deepks_es") / "data" / SHIPPED_FILES[name]))


def resolve_model(name: str) -> ModelFile | None:
    """``none`` -> None, ``default`` -> the shipped DeePKS-ES model, ``surrogate`` -> the shipped surrogate,
    anything else -> the model file at that path."""
    if name.lower() == NO_MODEL:
        return None
    if name.lower() in SHIPPED_FILES:
        path = shipped_model_path(name.lower())
        if not path.is_file():
            raise ModelError(f"the shipped model {path} is missing from this installation: reinstall "
                             "deepks-es, or pass --model PATH to a trained model file")
        return read_model_file(path)
    return read_model_file(name)


def is_surrogate_model(name: str) -> bool:
    """Whether model ``name`` (as :func:`resolve_model` takes it) is a surrogate, whose engine runs no SCF and
    takes no SCF options (``ke_cutoff``, ``conv_tol``, ...)."""
    model_file = resolve_model(name)
    return model_file is not None and model_file.kind == SURROGATE_KIND


def make_engine(spec: EngineSpec | str = EngineSpec(), **overrides) -> Engine:
    """The engine that ``spec`` (or a model name) describes, with ``overrides`` of its fields.

    Sets the process's compute threads when the spec names them.
    """
    if isinstance(spec, str):
        spec = EngineSpec(model=spec)
    if overrides:
        spec = spec.with_options(**overrides)
    if spec.threads is not None:
        set_threads(spec.threads)
    model_file = resolve_model(spec.model)
    return _factory(REFERENCE_KIND if model_file is None else model_file.kind)(spec, model_file)


def as_engine(engine: Engine | EngineSpec | str) -> Engine:
    """An engine instance as it is; a spec or a model name built into one."""
    return engine if isinstance(engine, Engine) else make_engine(engine)
