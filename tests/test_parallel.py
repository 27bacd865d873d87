"""Processes and threads: the cores a process may use are those its CPU affinity allows."""

import os
import subprocess
import sys

import pytest


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_cores_follow_the_cpu_affinity():
    """Under ``taskset`` or a batch allocation a process sees only its cores, and divides those (at least 1 each)."""
    first = min(os.sched_getaffinity(0))
    code = ("import os; from deepks_es.parallel import available_cores, cores_per_process; "
            f"os.sched_setaffinity(0, {{{first}}}); "
            "print(available_cores(), cores_per_process(1), cores_per_process(4))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1", "1", "1"]
    from deepks_es.parallel import available_cores, cores_per_process

    assert available_cores() == len(os.sched_getaffinity(0))
    assert cores_per_process(1) == available_cores()
