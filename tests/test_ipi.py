"""The i-PI driver against the real i-PI server (subprocess), and its behaviour under faults."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import ipi
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepks_es.engines import make_engine
from deepks_es.ipi.client import DriverClient
from deepks_es.ipi.launcher import find_tool, prepare_input
from deepks_es.ipi.protocol import ProtocolError, ServerGone, header
from deepks_es.observables import DOSGrid

from conftest import (CLI, REPO, STRUCTURES, assert_seamless, deepks_es_run, init_message, ipi_input,
                      kill_and_resume, posdata_message, private_socket_dir)


def data_rows(path: Path) -> np.ndarray:
    """The numeric rows of an i-PI properties file (none yet: an empty array)."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return np.loadtxt(lines, ndmin=2) if lines else np.empty((0, 0))


def extras(run_dir: Path, name: str, bead: int = 0) -> dict:
    return ipi.read_trajectory(str(run_dir / f"simulation.{name}_{bead}"), format="extras")


def test_nvt_cluster_run_logs_gap_and_dos_every_step(nvt_cluster_run):
    tmp_path = nvt_cluster_run
    steps = data_rows(tmp_path / "simulation.out")
    assert len(steps) == 5  # step 0 .. 4
    gap = extras(tmp_path, "gap")["gap_ev"]
    dos = extras(tmp_path, "dos")["dos"]
    grid = json.loads((tmp_path / "dos_grid.json").read_text())
    assert len(gap) == 5 and np.all((gap > 3) & (gap < 10))
    assert dos.shape == (5, grid["npoints"]) and len(grid["energies_ev"]) == grid["npoints"]
    # up to just above the HOMO, the DOS integrates to the 16 valence electrons of two waters
    energies = np.array(grid["energies_ev"])
    below = energies <= extras(tmp_path, "homo")["homo_ev"][0] + 1.0
    assert np.trapezoid(dos[0][below], energies[below]) == pytest.approx(16, rel=1e-3)
    o_h = extras(tmp_path, "dos_O")["dos_O"] + extras(tmp_path, "dos_H")["dos_H"]
    np.testing.assert_allclose(o_h, dos, atol=1e-4)  # element projections add up to the total


def test_pimd_four_beads_two_clients_warm_start(pimd_run, dimer):
    tmp_path = pimd_run
    cold = make_engine("none").compute(dimer).scf.cycles
    for bead in range(4):
        cycles = extras(tmp_path, "scf", bead)["scf_cycles"]
        assert len(cycles) == 4  # steps 0 .. 3
        assert np.all(cycles[1:] < cold), (bead, cycles, cold)
    assert len(data_rows(tmp_path / "simulation.out")) == 4


def test_periodic_box_run_reports_nan_pressure(tmp_path):
    """Γ-point multigrid forces through i-PI; the unavailable virial makes i-PI's pressure NaN, not 0."""
    (tmp_path / "box.xml").write_text(ipi_input("nvt_liquid.xml", 2, {
        "water_liquid_8.xyz": "water_box_2.xyz",
        "potential{electronvolt} ]": "potential{electronvolt}, pressure_md{megapascal} ]"}))
    run = deepks_es_run(tmp_path / "box.xml", tmp_path, "--ke-cutoff", 60)
    assert run.returncode == 0, run.stderr
    rows = data_rows(tmp_path / "simulation.out")
    assert len(rows) == 3 and np.all(np.isnan(rows[:, -1])) and np.all(np.isfinite(rows[:, :-1]))
    assert len(extras(tmp_path, "gap")["gap_ev"]) == 3


@pytest.mark.parametrize("signum, group", [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["ctrl-c", "sigterm"])
def test_stop_signal_stops_everything_and_leaves_no_sockets(tmp_path, signum, group):
    """Ctrl-C in a terminal signals the whole process group; a batch system may SIGTERM the launcher alone."""
    (tmp_path / "long.xml").write_text(ipi_input("nvt_cluster.xml", 1000))
    run = subprocess.Popen([*CLI, "run", str(tmp_path / "long.xml"), "--run-dir", str(tmp_path)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not ((tmp_path / "simulation.out").exists() and len(data_rows(tmp_path / "simulation.out"))):
        assert time.monotonic() < deadline and run.poll() is None, "the run made no progress"
        time.sleep(0.2)
    (os.killpg if group else os.kill)(run.pid, signum)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 128 + signum and "interrupted" in stderr, stderr
    assert not private_socket_dir(tmp_path).exists()
    time.sleep(1)
    with pytest.raises(ProcessLookupError):  # no i-PI or client left in the group
        os.killpg(run.pid, 0)


# -- faults: i-PI and clients started by hand ------------------------------------------------------

class Simulation:
    """i-PI on a rewritten template in ``run_dir`` plus hand-started clients."""

    def __init__(self, template: str, run_dir: Path, steps: int):
        self.run_dir = run_dir
        self.prefix = f"/tmp/dkst{os.getpid()}_"
        (run_dir / "template.xml").write_text(ipi_input(template, steps))
        prepared = prepare_input(run_dir / "template.xml", self.prefix, 600)
        (run_dir / "input.xml").write_text(prepared.xml_text)
        self.socket = prepared.address.unix
        self.server = subprocess.Popen([find_tool("i-pi"), "input.xml"], cwd=run_dir, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.clients = []

    def drive(self, *command):
        """Start a client (``command`` defaults to ``deepks-es drive``)."""
        command = command or [*CLI, "drive", "--unix", self.socket, "--socket-prefix", self.prefix, "--structure",
                              str(STRUCTURES / "water_dimer.xyz"), "--threads", "1", "--dos-metadata",
                              str(self.run_dir / "dos_grid.json")]
        client = subprocess.Popen(command, cwd=self.run_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        self.clients.append(client)
        return client

    def wait_for_steps(self, count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        out = self.run_dir / "simulation.out"
        while not (out.exists() and len(data_rows(out)) >= count):
            assert time.monotonic() < deadline, "i-PI made no progress"
            time.sleep(0.2)

    def close(self):
        for process in [self.server, *self.clients]:
            if process.poll() is None:
                process.kill()
            process.wait()
        if os.path.exists(self.prefix + self.socket):
            os.unlink(self.prefix + self.socket)


@pytest.fixture
def simulation(tmp_path):
    sims = []

    def start(template, steps):
        sims.append(Simulation(template, tmp_path, steps))
        return sims[-1]

    yield start
    for sim in sims:
        sim.close()


@pytest.mark.slow
def test_killed_client_mid_pimd_run_still_completes(simulation):
    sim = simulation("pimd_cluster.xml", steps=3)
    survivor, victim = sim.drive(), sim.drive()
    sim.wait_for_steps(2)
    victim.send_signal(signal.SIGKILL)
    assert sim.server.wait(timeout=300) == 0
    assert len(data_rows(sim.run_dir / "simulation.out")) == 4
    for bead in range(4):
        assert len(extras(sim.run_dir, "gap", bead)["gap_ev"]) == 4
    survivor.wait(timeout=30)


def test_client_exits_quickly_when_server_dies(simulation):
    sim = simulation("nvt_cluster.xml", steps=1000)
    client = sim.drive()
    sim.wait_for_steps(2)
    sim.server.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, stderr = client.communicate(timeout=30)
    assert time.monotonic() - killed < 5.0
    assert "went away" in stderr and len(stderr.strip().splitlines()) == 2  # connected + went away


def test_ipi_py_driver_plugin(simulation):
    sim = simulation("nvt_cluster.xml", steps=2)
    options = f"structure={STRUCTURES / 'water_dimer.xyz'},model=none"
    driver = sim.drive(find_tool("i-pi-py_driver"), "-m", "custom", "-P", str(REPO / "driver" / "ipi_pes.py"), "-u",
                       "-a", sim.socket, "-S", sim.prefix, "-o", options)
    assert sim.server.wait(timeout=300) == 0, driver.stderr.read() if driver.poll() is not None else ""
    gap = extras(sim.run_dir, "gap")["gap_ev"]
    assert len(gap) == 3 and np.all(gap > 3)


def test_mpi_clients(simulation):
    pytest.importorskip("mpi4py")
    if find_tool("mpiexec") is None:
        pytest.skip("no mpiexec")
    sim = simulation("pimd_cluster.xml", steps=1)
    ranks = sim.drive(find_tool("mpiexec"), "-n", "2", *CLI, "drive", "--unix", sim.socket, "--socket-prefix",
                      sim.prefix, "--structure", str(STRUCTURES / "water_dimer.xyz"), "--dos-metadata",
                      str(sim.run_dir / "dos_grid.json"))
    assert sim.server.wait(timeout=300) == 0
    _, stderr = ranks.communicate(timeout=60)
    assert "rank 0/2" in stderr and "rank 1/2" in stderr, stderr


# -- malformed traffic ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    return DriverClient(make_engine("none"), ("O", "H", "H"), periodic=False, grid=DOSGrid(), log=lambda m: None)


VALID_WATER = np.array([[0.0, 0.0, 0.0], [1.43, 1.11, 0.0], [-1.43, 1.11, 0.0]])

malformed = st.one_of(
    st.binary(min_size=12, max_size=12).filter(lambda b: b.decode("latin-1").strip() not in
                                                ("STATUS", "INIT", "POSDATA", "GETFORCE", "EXIT")),
    st.integers(min_value=-(2**31), max_value=0).map(lambda n: init_message() + posdata_message([], natoms=n)),
    st.integers(min_value=1_000_001, max_value=2**31 - 1).map(
        lambda n: init_message() + posdata_message([], natoms=n)),
    st.integers(0, 8).map(lambda i: init_message() + posdata_message(
        np.where(np.arange(9).reshape(3, 3) == i, np.nan, VALID_WATER))),
    st.integers(1, len(init_message() + posdata_message(VALID_WATER)) - 1).map(
        lambda cut: (init_message() + posdata_message(VALID_WATER))[:cut]),
    st.just(header("GETFORCE")),
    st.just(posdata_message(VALID_WATER)),  # POSDATA before INIT
    st.just(init_message() + posdata_message(VALID_WATER[:2])),  # wrong atom count
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(traffic=malformed)
def test_malformed_traffic_gives_clear_error(client, traffic):
    server, ours = socket.socketpair()
    ours.settimeout(10)  # a hang fails the test instead of blocking it
    try:
        server.sendall(traffic)
        server.shutdown(socket.SHUT_WR)
        with pytest.raises((ProtocolError, ServerGone)) as info:
            client.serve(ours)
        assert "\n" not in str(info.value) and str(info.value)
    finally:
        server.close()
        ours.close()


@pytest.mark.slow
def test_nve_energy_conservation(tmp_path):
    """100 NVE steps of 0.5 fs for the water dimer (the template's first 50 fs, ~5 OH-stretch periods; ~4 min):
    conserved energy within 3 meV, drift < 5 meV/ps."""
    (tmp_path / "nve.xml").write_text(ipi_input("nve_cluster.xml", 100))
    run = deepks_es_run(tmp_path / "nve.xml", tmp_path, timeout=1800)
    assert run.returncode == 0, run.stderr
    rows = data_rows(tmp_path / "simulation.out")
    time_ps, conserved_ev = rows[:, 1], rows[:, 2]
    assert len(rows) == 101
    assert np.ptp(conserved_ev) < 3e-3
    assert abs(np.polyfit(time_ps, conserved_ev, 1)[0]) < 5e-3


@pytest.mark.slow
def test_killed_deepks_run_resumes(tmp_path):
    """30 NVE steps of the water dimer with PBE through the real engine and clients, checkpoint every 5 steps,
    SIGKILLed after 12 steps, resumed: every step once, no jump in the conserved energy (~2 min)."""
    (tmp_path / "nve.xml").write_text(ipi_input("nve_cluster.xml", 30, {"<checkpoint stride='10'/>":
                                                                        "<checkpoint stride='5'/>"}))
    killed_at, steps, conserved, _ = kill_and_resume(tmp_path / "nve.xml", tmp_path / "run", ["--model", "none"],
                                                     dict(os.environ), kill_after_steps=12)
    assert 12 <= killed_at < 30
    assert_seamless(steps, conserved, 30)
