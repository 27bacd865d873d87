"""Processes and threads: the MPI rank of this process and the compute threads of PySCF and torch."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

MPI_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def mpi_rank_size() -> tuple[int, int]:
    """(rank, size) when started by mpiexec (through mpi4py), else (0, 1)."""
    if not any(int(os.environ.get(var, "1")) > 1 for var in MPI_SIZE_VARIABLES):
        return 0, 1
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (what a batch system's allocation or ``taskset``
    leaves it) where the platform tells, else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cores_per_process(processes: int) -> int:
    """The cores this process may use (:func:`available_cores`) divided among ``processes`` (at least 1)."""
    return max(1, available_cores() // max(1, processes))


def set_threads(nthreads: int) -> None:
    """Threads for PySCF's and torch's kernels in this process."""
    import torch
    from pyscf import lib

    lib.num_threads(nthreads)
    torch.set_num_threads(nthreads)


def compute_threads() -> int:
    """The threads of torch's kernels in this process (what :func:`set_threads` set last)."""
    import torch

    return torch.get_num_threads()


def barrier(size: int, poll_s: float = 0.5) -> None:
    """MPI barrier that sleeps while it waits (a blocking MPI barrier spins a core); nothing for one process."""
    if size > 1:
        from mpi4py import MPI

        request = MPI.COMM_WORLD.Ibarrier()
        while not request.Test():
            time.sleep(poll_s)


def abort_all(code: int = 1) -> None:
    """End every rank of an MPI run (after an error on one, the others would wait at a barrier forever)."""
    from mpi4py import MPI

    MPI.COMM_WORLD.Abort(code)


def die_with_parent(parent: int) -> None:
    """In a child process: get SIGTERM when process ``parent`` dies, however it dies (Linux; elsewhere only a
    parent already gone is caught), instead of computing on for an hour."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)
