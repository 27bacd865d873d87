"""EngineSpec: the typed description of an engine, and its command-line form for client processes."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..errors import SettingsError

NO_MODEL = "none"
SHIPPED_MODEL = "default"
SHIPPED_SURROGATE = "surrogate"
PRECISIONS = ("float32", "float64")


@dataclass(frozen=True)
class EngineSpec:
    """Which engine, with which settings (atomic units). ``None`` leaves a setting to the engine or its model.

    Attributes:
        model: a model file path, ``default`` (the shipped model) or ``none`` (the plain functional).
        xc: functional, e.g. PBE or HSE06.
        basis: AO basis.
        pseudo: pseudopotential, ``none`` for all-electron clusters.
        charge: total charge (electrons).
        conv_tol: SCF energy tolerance (Hartree).
        conv_tol_grad: SCF orbital-gradient tolerance (Hartree).
        max_cycle: SCF iterations per solver stage.
        extrapolation: density-matrix predictor across MD steps (geometry[:N], aspc[:K], previous).
        ke_cutoff: periodic multigrid cutoff (Hartree).
        threads: compute threads of the process (None: leave as they are).
        precision: floating-point type of a surrogate's network, float32 or float64 (None: the model file's);
            the SCF engines run in float64.
        committee_every: a surrogate's committee member 0 alone gives energy, forces, virial and Hamiltonian
            of every structure, and the whole committee is evaluated every ``committee_every``-th structure
            (the first included) for its spread (DP-GEN's exploration MD: one model drives, the others measure
            the deviation); None: the committee mean every structure.
    """

    model: str = NO_MODEL
    xc: str | None = None
    basis: str | None = None
    pseudo: str | None = None
    charge: int = 0
    conv_tol: float | None = None
    conv_tol_grad: float | None = None
    max_cycle: int = 50
    extrapolation: str | None = None
    ke_cutoff: float | None = None
    threads: int | None = None
    precision: str | None = None
    committee_every: int | None = None

    def __post_init__(self):
        if self.precision not in (None, *PRECISIONS):
            raise SettingsError(f"--precision must be {' or '.join(PRECISIONS)}, not {self.precision!r}")
        for name in ("conv_tol", "conv_tol_grad", "ke_cutoff"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise SettingsError(f"--{name.replace('_', '-')} must be positive, got {value}")
        for name in ("max_cycle", "threads", "committee_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be at least 1, got {value}")

    def with_defaults(self, **defaults) -> EngineSpec:
        """This spec with ``defaults`` filled in where a field is None."""
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def with_absolute_model(self) -> EngineSpec:
        """This spec with a model file path made absolute (for processes started in another directory)."""
        if self.model.lower() in (NO_MODEL, SHIPPED_MODEL, SHIPPED_SURROGATE) or not Path(self.model).exists():
            return self
        return replace(self, model=str(Path(self.model).resolve()))

    @classmethod
    def from_options(cls, options: dict) -> EngineSpec:
        """The spec of the engine fields in ``options`` (other keys ignored; None values: the default)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names and v is not None})

    def with_options(self, **options) -> EngineSpec:
        """This spec with ``options`` (EngineSpec fields) changed; any other name is a one-line error."""
        unknown = sorted(set(options) - {f.name for f in fields(self)})
        if unknown:
            raise SettingsError(f"unknown engine option(s) {', '.join(unknown)}: the options are "
                                f"{', '.join(f.name for f in fields(self))}")
        return replace(self, **options)

    def to_argv(self) -> list[str]:
        """Command-line tokens that every engine verb of the CLI turns back into this spec."""
        argv = []
        for name, value in asdict(self).items():
            if value is not None and value != getattr(EngineSpec, name):
                argv += [f"--{name.replace('_', '-')}", str(value)]
        return argv


ENGINE_OPTIONS = (  # (field, type, help); flags are --field-name
    ("model", str, "model file PATH, 'default' (the shipped DeePKS-ES model), 'surrogate' (the shipped "
                   "surrogate) or 'none' (plain functional)"),
    ("xc", str, "functional, e.g. PBE or HSE06 (default: the model's base functional, else PBE)"),
    ("basis", str, "AO basis (default: the model's, else gth-dzvp)"),
    ("pseudo", str, "pseudopotential, 'none' for all-electron clusters (default: the model's, else gth-pbe)"),
    ("charge", int, "total charge (default: 0)"),
    ("conv_tol", float, "SCF energy tolerance in Hartree (default: 1e-9)"),
    ("conv_tol_grad", float, "SCF orbital-gradient tolerance in Hartree (default: sqrt of --conv-tol)"),
    ("max_cycle", int, "SCF iterations per solver stage (default: 50)"),
    ("extrapolation", str, "density-matrix predictor across MD steps: geometry[:N] (fit of the new geometry by "
                           "the last N steps), aspc[:K] (Kolafa) or previous (default: geometry:8)"),
    ("ke_cutoff", float, "periodic multigrid cutoff in Hartree (default: chosen by PySCF from the basis)"),
    ("threads", int, "compute threads per process (default: the cores this process may run on, its CPU "
                      "affinity, divided among processes)"),
    ("precision", str, "a surrogate's floating-point type, float32 or float64 (default: the model file's; "
                       "float64 for long NVE runs); the SCF engines run in float64"),
    ("committee_every", int, "a surrogate's member 0 alone drives the MD and the whole committee runs every "
                             "K-th structure for its spread (K x fewer network evaluations; default: the "
                             "committee mean every structure)"),
)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Add the :class:`EngineSpec` options (``--model``, ``--xc``, ...) to ``parser``."""
    for name, kind, text in ENGINE_OPTIONS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=text)
