"""``deepks-es drive``: one or many clients attached to an i-PI server, serving any engine.

Many clients serve PIMD beads in parallel: under ``mpiexec -n K`` each MPI rank is
one client; without MPI, ``clients = K`` starts K client processes. The machine's
cores are divided between the clients (PySCF and torch threads).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..engines import Engine, EngineSpec
from ..fileio import DOS_GRID_FILE
from ..monitoring import MonitorSettings
from ..observables import DOSGrid
from ..parallel import cores_per_process, mpi_rank_size
from ..structure import read_structure
from .client import DriverClient, SocketAddress
from .protocol import ServerGone, ServerSilent


@dataclass(frozen=True)
class ClientPlan:
    """Everything a client needs: where the server is, the atoms, the engine, what to log.

    Attributes:
        address: the i-PI socket.
        structure: structure file with the atoms in i-PI's order (its symbols are used).
        periodic: the cell comes from i-PI every step (else a cluster).
        engine: the engine every client builds.
        grid: the DOS grid of the logged observables.
        dos_metadata: where the grid description is written.
        wait_s: how long to keep trying to reach the server at start (s).
        clients: client processes to start (MPI ranks replace them under mpiexec).
        idle_timeout_s: give up when the server sends nothing for this long (s; None: never); i-PI polls its
            clients every few milliseconds even while it waits for other beads, ASE's server does not.
        required_extras: the extras keys the server's input logs: a step whose engine lacks one is an error
            on the client's side (i-PI would stop with a KeyError).
        monitor: observables stride and on-the-fly validation.
    """

    address: SocketAddress
    structure: Path
    periodic: bool = False
    engine: EngineSpec = field(default_factory=EngineSpec)
    grid: DOSGrid = field(default_factory=DOSGrid)
    dos_metadata: Path = Path(DOS_GRID_FILE)
    wait_s: float = 60.0
    clients: int = 1
    idle_timeout_s: float | None = 3600.0
    required_extras: tuple[str, ...] = ()
    monitor: MonitorSettings = field(default_factory=MonitorSettings)

    def argv(self) -> list[str]:
        """The ``deepks-es drive`` options of this plan."""
        grid = self.grid
        return [*self.address.argv(), "--structure", str(self.structure), *(["--pbc"] if self.periodic else []),
                "--dos-metadata", str(self.dos_metadata), "--wait", str(self.wait_s), "--clients", str(self.clients),
                "--idle-timeout", str(self.idle_timeout_s or 0),
                *(["--require-extras", ",".join(self.required_extras)] if self.required_extras else []),
                "--dos-emin", str(grid.emin_ev), "--dos-emax", str(grid.emax_ev), "--dos-points", str(grid.npoints),
                "--dos-sigma", str(grid.sigma_ev), *self.monitor.argv(), *self.engine.to_argv()]

    def with_threads(self, processes: int) -> ClientPlan:
        """This plan with its engine's threads set: as given, else the cores divided among ``processes``."""
        threads = self.engine.threads or cores_per_process(processes)
        return replace(self, engine=replace(self.engine, threads=threads))

    def client_command(self) -> list[str]:
        """The command line of one client process (this interpreter) of this plan."""
        return [sys.executable, "-m", "deepks_es.cli", "drive", *replace(self, clients=1).argv()]


def serve_one(plan: ClientPlan, engine: Engine | EngineSpec | None = None, label: str = "client 0") -> int:
    """Run one client until the server says EXIT or closes the connection (0), or vanishes mid-step (1).

    ``engine``: an engine instance to serve (default: built from ``plan.engine``).
    """
    symbols = read_structure(plan.structure).symbols
    client = DriverClient(plan.engine if engine is None else engine, symbols, plan.periodic, plan.grid,
                          required_extras=plan.required_extras, monitor=plan.monitor)
    sock = plan.address.connect(plan.wait_s)
    plan.grid.write_metadata(plan.dos_metadata)
    client.log(f"deepks-es drive [{label}]: connected to {plan.address}, serving {client.engine.describe().label()}")

    def abandon():
        client.log(f"deepks-es drive [{label}]: i-PI at {plan.address} went away during a computation; exiting")
        os._exit(1)

    try:
        client.serve(sock, abandon, plan.idle_timeout_s)
    except ServerGone as gone:  # a clean close between messages (how ASE's socket server ends), a killed i-PI
        client.log(f"deepks-es drive [{label}]: i-PI at {plan.address} went away after {client.steps} step(s): "
                   f"{gone}; exiting")
        return 1 if isinstance(gone, ServerSilent) else 0
    finally:
        sock.close()
        client.close()
    client.log(f"deepks-es drive [{label}]: EXIT from i-PI after {client.steps} step(s)")
    return 0


def drive(plan: ClientPlan) -> int:
    """MPI rank, K client processes, or a single client; the worst exit code."""
    rank, size = mpi_rank_size()
    if size > 1:
        return serve_one(plan.with_threads(size), label=f"rank {rank}/{size}")
    if plan.clients <= 1:
        return serve_one(plan.with_threads(1))
    command = plan.with_threads(plan.clients).client_command()
    processes = [subprocess.Popen(command) for _ in range(plan.clients)]
    try:
        return max(process.wait() for process in processes)
    except KeyboardInterrupt:
        stop_processes(processes)
        raise


def stop_processes(processes, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s`` for whatever still runs."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
