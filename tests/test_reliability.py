"""Hostile but fair input: one-line errors, flagged results, no hang, no traceback, nothing non-finite sent."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepks_es.engines import Result
from deepks_es.errors import ComputeError, DeePKSError
from deepks_es.ipi.client import DriverClient, SocketAddress
from deepks_es.ipi.protocol import ServerGone, header
from deepks_es.model import CorrectionModel
from deepks_es.observables import DOSGrid
from deepks_es.structure import Structure, check_geometry, read_structure, write_structures

from conftest import (CLI, INPUTS, REPO, STRUCTURES, assert_seamless, init_message, ipi_input, kill_and_resume,
                      posdata_message)

sys.path.insert(0, str(REPO / "tests" / "plugins"))
import toy_water_engine  # noqa: E402

DIMER = STRUCTURES / "water_dimer.xyz"


def deepks_es(*args, timeout=300, cwd=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def one_line_error(run, code=1):
    lines = run.stderr.strip().splitlines()
    assert run.returncode == code and "Traceback" not in run.stderr, run.stderr
    assert lines and lines[-1].startswith("deepks-es: error:"), run.stderr
    return lines[-1]


def written(tmp_path, name, structure):
    path = tmp_path / name
    write_structures(path, [structure])
    return path


# -- absurd geometries ----------------------------------------------------------------------------

def absurd_geometries(tmp_path):
    dimer = read_structure(DIMER)
    on_top = np.array(dimer.positions)
    on_top[1] = on_top[0]
    box = read_structure(STRUCTURES / "water_box_2.xyz")
    return [
        (written(tmp_path, "on_top.xyz", Structure(dimer.symbols, on_top)), "apart"),
        (written(tmp_path, "tiny.xyz", Structure(dimer.symbols, dimer.positions * 1e-300)), "apart"),
        (written(tmp_path, "huge.xyz", Structure(dimer.symbols, dimer.positions * 1e300)), "not a molecular geometry"),
        (written(tmp_path, "cell.xyz", Structure(box.symbols, box.positions * 0.01, np.eye(3) * 0.05)),
         "periodic image of itself"),
    ]


def test_absurd_geometries_are_refused_before_pyscf(tmp_path):
    for path, message in absurd_geometries(tmp_path):
        assert message in one_line_error(deepks_es("compute", path, "--ke-cutoff", 60))


def test_check_geometry_accepts_the_shipped_structures():
    for path in [*STRUCTURES.glob("*.xyz"), *(REPO / "src" / "deepks_es" / "data").glob("*.xyz")]:
        check_geometry(read_structure(path))


class FakeServer:
    """A unix-socket i-PI server that sends ``script`` (bytes) and records what it gets until the client hangs up."""

    def __init__(self, script: bytes, name: str):
        self.path = f"/tmp/ipi_{name}"
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.received = b""
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self.thread.start()

    def _serve(self, script):
        conn, _ = self.listener.accept()
        conn.settimeout(60)
        with conn:
            conn.sendall(script)
            while chunk := conn.recv(65536):
                self.received += chunk

    def close(self):
        self.listener.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def test_drive_logs_the_error_and_exits_cleanly_on_an_absurd_geometry(tmp_path):
    dimer = read_structure(DIMER)
    on_top = np.array(dimer.positions)
    on_top[1] = on_top[0]
    script = header("STATUS") + init_message() + header("STATUS") + posdata_message(on_top)
    server = FakeServer(script, f"rel{os.getpid()}")
    try:
        run = deepks_es("drive", "--unix", f"rel{os.getpid()}", "--structure", DIMER, "--wait", "10", timeout=120,
                        cwd=tmp_path)
        assert "step 1 (bead 0)" in one_line_error(run) and "apart" in run.stderr
        assert b"FORCEREADY" not in server.received  # nothing sent for that step
    finally:
        server.close()


# -- flagged results ------------------------------------------------------------------------------

def test_aufbau_violation_is_flagged(tmp_path):
    """A water with one H 1e4 Bohr away: a closed-shell solution with the LUMO 18 eV below the HOMO."""
    water = read_structure(DIMER)
    positions = np.array(water.positions[:3])
    positions[2] += [1e4, 0.0, 0.0]
    path = written(tmp_path, "far.xyz", Structure(water.symbols[:3], positions))
    run = deepks_es("compute", path, "--json")
    assert run.returncode == 3, run.stderr
    out = json.loads(run.stdout)
    assert not out["converged"] and not out["trusted"] and out["scf_stage"] == "aufbau"
    assert any("aufbau violated" in note for note in out["notes"])


def test_non_finite_weights_are_refused_at_load(tmp_path):
    model = CorrectionModel.random(seed=1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    model.save(tmp_path / "nan.pt")
    assert "non-finite weights" in one_line_error(deepks_es("compute", DIMER, "--model", tmp_path / "nan.pt"))


def test_correction_far_outside_the_range_is_flagged(tmp_path):
    model = CorrectionModel.load(REPO / "src" / "deepks_es" / "data" / "default_model.pt")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1e6)
    model.save(tmp_path / "huge.pt")
    water = read_structure(DIMER)
    path = written(tmp_path, "water.xyz", Structure(water.symbols[:3], water.positions[:3]))
    run = deepks_es("compute", path, "--model", tmp_path / "huge.pt", "--json", "--max-cycle", "2")
    assert run.returncode == 3, run.stderr
    out = json.loads(run.stdout)  # strict JSON: a NaN would not parse
    assert not out["trusted"] and any("outside the model's range" in note for note in out["notes"])


def test_non_finite_numbers_become_null_in_json():
    result = Result(energy=float("nan"), forces=np.array([[np.inf, 0.0, 0.0]]), virial=None,
                    mo_energy=np.array([-0.5, 0.1]), mo_occ=np.array([2.0, 0.0]))
    out = result.to_json_dict()
    assert out["energy_hartree"] is None and out["forces_hartree_per_bohr"][0][0] is None
    assert not out["trusted"] and "non-finite" in out["notes"][-1]
    json.dumps(out, allow_nan=False)
    json.dumps(result.observables(DOSGrid()), allow_nan=False)


class NaNEngine:
    """An engine gone wrong: a finite spectrum, a NaN energy."""

    def compute(self, structure, key=None):
        return Result(energy=float("nan"), forces=np.zeros((structure.natoms, 3)), virial=None,
                      mo_energy=np.array([-0.5, 0.1]), mo_occ=np.array([2.0, 0.0]))

    def describe(self):
        return toy_water_engine.EngineInfo(name="nan", kind="test")

    def close(self):
        pass


def test_client_refuses_to_send_non_finite_numbers():
    client = DriverClient(NaNEngine(), ("O", "H", "H"), periodic=False, log=lambda message: None)
    with pytest.raises(ComputeError, match="non-finite energy or forces; not sent"):
        client.compute(np.eye(3) * 30, read_structure(DIMER).positions[:3])


# -- the socket --------------------------------------------------------------------------------------

def test_silent_server_is_given_up_after_the_idle_timeout():
    client = DriverClient(toy_water_engine.HarmonicWaterEngine(0.5, 1.8, 0.1, 1.8), ("O", "H", "H"), False,
                          log=lambda message: None)
    server, ours = socket.socketpair()
    try:
        server.sendall(header("STATUS")[:6])  # half a header, then silence with the connection open
        start = time.monotonic()
        with pytest.raises(ServerGone, match="sent nothing for 0.5 s"):
            client.serve(ours, idle_timeout_s=0.5)
        assert time.monotonic() - start < 5
    finally:
        server.close()
        ours.close()


def test_inet_sockets_keep_alive():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("localhost", 0))
        listener.listen(1)
        sock = SocketAddress(host="localhost", port=listener.getsockname()[1]).connect(5)
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        finally:
            sock.close()


def test_templates_drop_dead_clients():
    for path in [*INPUTS.glob("*.xml"), *(REPO / "src" / "deepks_es" / "data").glob("*.xml")]:
        assert "<consolidate_messages> false </consolidate_messages>" in path.read_text(), path


def test_consolidating_server_gets_a_warning():
    logged = []
    client = DriverClient(toy_water_engine.HarmonicWaterEngine(0.5, 1.8, 0.1, 1.8), ("O", "H", "H"), False,
                          log=logged.append)
    water = read_structure(DIMER).positions[:3]
    server, ours = socket.socketpair()
    try:  # i-PI's consolidated mode: POSDATA and GETFORCE back to back, no STATUS between
        server.sendall(header("STATUS") + init_message() + posdata_message(water) + header("GETFORCE") + header("EXIT"))
        client.serve(ours)
        assert any("consolidates messages" in line for line in logged)
    finally:
        server.close()
        ours.close()


# -- protocol fuzz: random and mutated server traffic against the real client code --------------------

def valid_session(steps: int) -> bytes:
    water = read_structure(DIMER).positions[:3]
    one = (header("STATUS") + init_message() + header("STATUS") + posdata_message(water) + header("STATUS")
           + header("GETFORCE"))
    return one * steps + header("EXIT")


traffic = st.one_of(
    st.binary(max_size=400),
    st.tuples(st.integers(1, 3), st.integers(0, 10_000), st.binary(min_size=1, max_size=16)).map(
        lambda t: (lambda s: s[:t[1] % len(s)] + t[2] + s[t[1] % len(s):])(valid_session(t[0]))),
    st.tuples(st.integers(1, 3), st.integers(0, 10_000)).map(
        lambda t: (lambda s: s[:t[1] % len(s)])(valid_session(t[0]))),
    st.tuples(st.integers(1, 3), st.integers(0, 10_000), st.integers(0, 255)).map(
        lambda t: (lambda s: s[:t[1] % len(s)] + bytes([t[2]]) + s[t[1] % len(s) + 1:])(valid_session(t[0]))),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=traffic)
def test_protocol_fuzz(stream):
    """Whatever the server sends: a clean return (EXIT), or one of the project's one-line errors, within 5 s."""
    client = DriverClient(toy_water_engine.HarmonicWaterEngine(0.5, 1.8, 0.1, 1.8), ("O", "H", "H"), False,
                          log=lambda message: None)
    server, ours = socket.socketpair()
    server.settimeout(5)
    reader = threading.Thread(target=lambda: _drain(server), daemon=True)
    try:
        server.sendall(stream)
        server.shutdown(socket.SHUT_WR)
        reader.start()
        start = time.monotonic()
        try:
            client.serve(ours, idle_timeout_s=2.0)
        except DeePKSError as exc:
            assert str(exc) and "\n" not in str(exc)
        assert time.monotonic() - start < 5
    finally:
        server.close()
        ours.close()


def _drain(sock):
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass


# -- a killed run resumes -------------------------------------------------------------------------------

def test_killed_run_resumes_without_a_lost_or_repeated_step(tmp_path):
    """A 400-step toy-engine NVT run, checkpoint every 20 steps, SIGKILLed mid-run, resumed."""
    model = tmp_path / "toy.pt"
    toy_water_engine.write_toy_model(model)
    (tmp_path / "toy.xml").write_text(ipi_input("nvt_cluster.xml", 400, {
        "<trajectory filename='scf' stride='1' extra_type='scf_cycles'> extras </trajectory>": "",
        "<checkpoint stride='10'/>": "<checkpoint stride='20'/>"}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "plugins"),
                                                        os.environ.get("PYTHONPATH", "")])}
    killed_at, steps, conserved, _ = kill_and_resume(tmp_path / "toy.xml", tmp_path / "run", ["--model", model], env,
                                                     kill_after_steps=150)
    assert 150 <= killed_at < 400
    assert_seamless(steps, conserved, 400)
    summary = json.loads(subprocess.run([*CLI, "analyze", str(tmp_path / "run"), "--json"], capture_output=True,
                                        text=True, env=env, timeout=120).stdout)
    assert summary["steps_logged"] == 401


def test_resume_needs_a_recorded_run(tmp_path):
    assert "holds no run.json" in one_line_error(deepks_es("run", "--resume", tmp_path))
