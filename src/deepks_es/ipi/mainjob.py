"""The main job of ``deepks-es run`` with no input: an embedded liquid-water NVT run whose input, engine options
and logging follow the kind of engine the model names (the surrogate by default, or an SCF engine)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path

from ..engines import EngineSpec
from ..engines.registry import is_surrogate_model
from ..monitoring import MonitorSettings
from ..scf.systems import PERIODIC_KE_CUTOFF

MAIN_JOB_RUN_DIR = "runs/liquid-water"


@dataclass(frozen=True)
class MainJob:
    """An embedded run: its i-PI input (package data) and the defaults of the options a user leaves unset.

    Attributes:
        input: the i-PI input's file name in ``deepks_es/data``.
        summary: what it runs, in words (for ``--help``).
        engine: engine options; each unset option takes this value.
        monitor: client logging; each option left at its generic default takes this value.
        skip: MD steps its analysis leaves out (equilibration from the embedded start).
    """

    input: str
    summary: str
    engine: EngineSpec
    monitor: MonitorSettings = MonitorSettings()
    skip: int = 0

    @property
    def input_path(self) -> Path:
        return Path(str(resources.files("deepks_es") / "data" / self.input))

    def engine_options(self, options: dict) -> dict:
        """``options`` (an engine-option dict) with this job's engine defaults where they are None; the two SCF
        tolerances only together (a user who sets one sets the policy)."""
        defaults = {f.name: getattr(self.engine, f.name) for f in fields(EngineSpec)
                    if getattr(self.engine, f.name) != getattr(EngineSpec(), f.name)}
        if options.get("conv_tol") is not None or options.get("conv_tol_grad") is not None:
            defaults.pop("conv_tol", None)
            defaults.pop("conv_tol_grad", None)
        return {**options, **{name: value for name, value in defaults.items() if options.get(name) is None}}

    def monitor_settings(self, given: MonitorSettings) -> MonitorSettings:
        """``given`` with this job's logging where ``given`` keeps the generic default."""
        generic = MonitorSettings()
        return replace(given, **{f.name: getattr(self.monitor, f.name) for f in fields(MonitorSettings)
                                 if getattr(given, f.name) == getattr(generic, f.name)})


SURROGATE_MAIN_JOB = MainJob(
    input="main_run.xml",
    summary="1 ps NVT (1 fs steps, 300 K) of 64 liquid waters in a periodic box with the shipped surrogate: levels "
            "and DOS every 10 fs, the committee spread every 50 fs, four validations against DeePKS-ES on a 5-water "
            "cluster cut around a random water; analysed after 0.2 ps",
    engine=EngineSpec(model="surrogate", committee_every=50),
    monitor=MonitorSettings(observables_every=10, validate_every=250, validate_cluster=5), skip=200)
SCF_MAIN_JOB = MainJob(
    input="main_run_scf.xml",
    summary="20 NVT steps (0.5 fs, 300 K) of 8 liquid waters in a periodic box, self-consistent at every step "
            f"(Γ point, multigrid --ke-cutoff {PERIODIC_KE_CUTOFF:g}, the MD tolerance policy --conv-tol 1e-7 "
            "--conv-tol-grad 1.8e-4)",
    engine=EngineSpec(model="default", ke_cutoff=PERIODIC_KE_CUTOFF, conv_tol=1e-7, conv_tol_grad=1.8e-4))


def main_job(model: str | None) -> MainJob:
    """The main job of ``model`` (None: the surrogate's): a surrogate file runs the surrogate job, anything else
    (``default``, ``none``, a DeePKS-ES file) the SCF job."""
    if model is None:
        return SURROGATE_MAIN_JOB
    return SURROGATE_MAIN_JOB if is_surrogate_model(model) else SCF_MAIN_JOB
