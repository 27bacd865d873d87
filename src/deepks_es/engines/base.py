"""The engine interface: what every front end (i-PI client, ASE, LAMMPS, bench, CLI) calls."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..structure import Structure
from .result import Result

ATOMIC_UNITS = {"energy": "hartree", "length": "bohr", "forces": "hartree/bohr", "virial": "hartree"}


@dataclass(frozen=True)
class EngineInfo:
    """What an engine is, for logs and provenance.

    Attributes:
        name: the method, e.g. ``DeePKS-ES``, ``PBE``, ``HSE06``.
        kind: the registry kind that built it (see :mod:`.registry`).
        model: the model file it serves, or ``none``.
        settings: its settings, JSON-ready.
        periodic_virial: whether it gives the virial of periodic structures (then ASE gets a stress).
        units: the units of :class:`Result` (atomic units for every engine).
    """

    name: str
    kind: str
    model: str = "none"
    settings: dict = field(default_factory=dict)
    periodic_virial: bool = False
    units: dict = field(default_factory=lambda: dict(ATOMIC_UNITS))

    def label(self) -> str:
        """One line, e.g. ``DeePKS-ES (model: /path/model.pt)``."""
        return f"{self.name} (model: {self.model})"


@runtime_checkable
class Engine(Protocol):
    """Structure in, :class:`Result` out.

    ``key`` names a trajectory (an i-PI bead, an ASE calculator): an engine may keep state per key
    (warm starts) and must give the same answer whatever the key, within its tolerances.
    ``observables=False`` (passed only by a front end that logs orbital observables every k-th step, on
    the steps between) lets an engine whose orbitals cost extra skip them: :attr:`Result.has_orbitals`
    false. An SCF engine has them anyway and may ignore it; an engine that does not take the keyword
    serves front ends that log every step.
    """

    def compute(self, structure: Structure, key: Hashable = None, observables: bool = True) -> Result:
        """Energy, forces, virial and (unless ``observables`` is False) orbitals of ``structure`` (atomic units)."""
        ...

    def describe(self) -> EngineInfo:
        """Name, model, settings and units."""
        ...

    def close(self) -> None:
        """Release what the engine holds (warm-start histories, devices, processes)."""
        ...
