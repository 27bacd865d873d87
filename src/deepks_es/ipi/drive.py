"""``deepks-es drive``: one or many DeePKS-ES clients attached to an i-PI server.

Many clients serve PIMD beads in parallel: under ``mpiexec -n K`` each MPI rank is
one client; without MPI, ``--clients K`` starts K client processes. The machine's
cores are divided between the clients (PySCF and torch threads).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from ..errors import SettingsError
from ..observables import DOSGrid
from .client import DriverClient, SocketAddress
from .protocol import ServerGone

MPI_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


def mpi_rank_size() -> tuple[int, int]:
    """(rank, size) when started by mpiexec (through mpi4py), else (0, 1)."""
    if not any(int(os.environ.get(var, "1")) > 1 for var in MPI_SIZE_VARIABLES):
        return 0, 1
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()


def set_threads(nthreads: int) -> None:
    """Threads for PySCF's and torch's kernels in this process."""
    import torch
    from pyscf import lib

    lib.num_threads(nthreads)
    torch.set_num_threads(nthreads)


def address_from_args(args) -> SocketAddress:
    if args.unix:
        return SocketAddress(unix=args.unix, prefix=args.socket_prefix)
    host, _, port = args.inet.rpartition(":")
    if not port.isdigit():
        raise SettingsError(f"--inet needs HOST:PORT with a numeric port, got {args.inet!r}")
    return SocketAddress(host=host or "localhost", port=int(port))


def grid_from_args(args) -> DOSGrid:
    return DOSGrid(args.dos_emin, args.dos_emax, args.dos_points, args.dos_sigma)


def serve_one(args, nthreads: int, label: str) -> int:
    """Run one client until the server says EXIT or closes the connection (0), or vanishes mid-step (1)."""
    from ..cli import engine_from_args
    from ..structure import read_structure

    set_threads(nthreads)
    symbols = read_structure(args.structure).symbols
    client = DriverClient(engine_from_args(args), symbols, args.pbc, grid_from_args(args))
    address = address_from_args(args)
    sock = address.connect(args.wait)
    client.grid.write_metadata(args.dos_metadata)
    client.log(f"deepks-es drive [{label}]: connected to {address}, {nthreads} thread(s)")
    def abandon():
        client.log(f"deepks-es drive [{label}]: i-PI at {address} went away during a computation; exiting")
        os._exit(1)

    try:
        client.serve(sock, abandon)
    except ServerGone:  # a clean close between messages: how ASE's socket server ends, or a killed i-PI
        client.log(f"deepks-es drive [{label}]: i-PI at {address} went away (closed the connection without EXIT) "
                   f"after {client.steps} step(s); exiting")
        return 0
    finally:
        sock.close()
    client.log(f"deepks-es drive [{label}]: EXIT from i-PI after {client.steps} step(s)")
    return 0


def drive(args) -> int:
    """Entry point of the verb: MPI rank, K forked clients, or a single client."""
    cores = os.cpu_count() or 1
    rank, size = mpi_rank_size()
    if size > 1:
        return serve_one(args, args.threads or max(1, cores // size), f"rank {rank}/{size}")
    if args.clients <= 1:
        return serve_one(args, args.threads or cores, "client 0")
    nthreads = args.threads or max(1, cores // args.clients)
    processes = [subprocess.Popen(client_command(args, nthreads)) for _ in range(args.clients)]
    try:
        return max(process.wait() for process in processes)
    except KeyboardInterrupt:
        stop_processes(processes)
        raise


def drive_command(where: list[str], structure, pbc: bool, dos_metadata, options=()) -> list[str]:
    """``deepks-es drive`` (this interpreter) at socket ``where`` for the atoms of ``structure``."""
    return [sys.executable, "-m", "deepks_es.cli", "drive", *where, "--structure", str(structure),
            *(["--pbc"] if pbc else []), "--dos-metadata", str(dos_metadata), *options]


def client_command(args, nthreads: int) -> list[str]:
    """The command line of one client process with ``args``'s connection, engine and DOS options."""
    from ..cli import CALCULATION_OPTIONS, DOS_OPTIONS, options_argv

    where = ["--unix", args.unix, "--socket-prefix", args.socket_prefix] if args.unix else ["--inet", args.inet]
    return drive_command(where, args.structure, args.pbc, args.dos_metadata,
                         ["--wait", str(args.wait), "--clients", "1", "--threads", str(nthreads),
                          *options_argv(args, CALCULATION_OPTIONS), *options_argv(args, DOS_OPTIONS)])


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
