"""RunPlan: what ``deepks-es run`` starts, recorded in the run directory so that a killed run can resume."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..engines import EngineSpec
from ..errors import SettingsError
from ..fileio import write_json
from ..monitoring import MonitorSettings
from ..observables import DOSGrid

RUN_RECORD = "run.json"
"""The plan of a run, in its directory."""


@dataclass(frozen=True)
class RunPlan:
    """An i-PI run: the input, where it runs, and the clients that serve it.

    Attributes:
        input: the i-PI input file.
        run_dir: where i-PI runs and writes its outputs.
        engine: the engine every client builds.
        grid: the DOS grid of the logged observables.
        clients: client processes (e.g. one per bead).
        timeout_s: i-PI's per-request timeout, raised to this if the input has less (s).
        wait_s: how long clients wait for i-PI to come up (s).
        monitor: observables stride and on-the-fly validation of the clients.
    """

    input: Path
    run_dir: Path
    engine: EngineSpec = field(default_factory=EngineSpec)
    grid: DOSGrid = field(default_factory=DOSGrid)
    clients: int = 1
    timeout_s: float = 3600.0
    wait_s: float = 60.0
    monitor: MonitorSettings = field(default_factory=MonitorSettings)


def write_run_record(run_dir: Path, plan: RunPlan, structure: Path, started: float) -> None:
    """Record ``plan``, the structure file its clients read and when the run started (epoch s), atomically."""
    write_json(run_dir / RUN_RECORD, {"input": str(plan.input), "engine": asdict(plan.engine),
                                      "grid": asdict(plan.grid), "clients": plan.clients,
                                      "timeout_s": plan.timeout_s, "wait_s": plan.wait_s,
                                      "monitor": plan.monitor.as_dict(),
                                      "structure": str(structure), "started": started})


def read_run_record(run_dir: Path) -> tuple[RunPlan, Path, float]:
    """The plan, structure file and start time (epoch s) recorded in ``run_dir``."""
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        raise SettingsError(f"{run_dir} holds no {RUN_RECORD}: not a run directory of deepks-es run, or one "
                            "started before runs were recorded")
    try:
        record = json.loads(path.read_text())
        plan = RunPlan(Path(record["input"]), Path(run_dir), EngineSpec(**record["engine"]),
                       DOSGrid(**record["grid"]), record["clients"], record["timeout_s"], record["wait_s"],
                       MonitorSettings(**record.get("monitor", {})))
        return plan, Path(record["structure"]), float(record["started"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SettingsError(f"{path} is damaged ({type(exc).__name__}): start the run afresh") from None
