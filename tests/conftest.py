"""Shared fixtures: shipped structures, test models and small helpers."""

from __future__ import annotations

from pathlib import Path

import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import e3nn
import numpy as np
import pytest

from deepks_es.engines import DeePKSEngine, ReferenceEngine
from deepks_es.fileio import RUN_INPUT
from deepks_es.model import CorrectionModel
from deepks_es.scf.extrapolation import DEFAULT_PREDICTOR
from deepks_es.scf.systems import SCFSettings
from deepks_es.structure import read_structure

REPO = Path(__file__).resolve().parents[1]
STRUCTURES = REPO / "inputs" / "structures"
INPUTS = REPO / "inputs" / "ipi"
CLI = [sys.executable, "-m", "deepks_es.cli"]
# e3nn's einsum-order search costs ~10 s per surrogate committee built in this process and changes no result
# beyond ~1e-10 relative (the order of a contraction); the production default keeps it (faster steps)
e3nn.set_optimization_defaults(optimize_einsums=False)
TEST_KE_CUTOFF = 60.0  # Hartree: a coarse periodic mesh keeps the box tests fast; FD consistency holds at any cutoff


@pytest.fixture(scope="session")
def dimer():
    return read_structure(STRUCTURES / "water_dimer.xyz")


@pytest.fixture(scope="session")
def tetramer():
    return read_structure(STRUCTURES / "water_tetramer.xyz")


@pytest.fixture(scope="session")
def box():
    return read_structure(STRUCTURES / "water_box_2.xyz")


@pytest.fixture(scope="session")
def random_model():
    return CorrectionModel.random(seed=1, scale=0.05)


def central_difference(energy, structure, atom, axis, step=1e-3):
    """-(E(x+h) - E(x-h)) / 2h for one Cartesian component (Hartree/Bohr)."""
    values = []
    for sign in (1, -1):
        positions = np.array(structure.positions)
        positions[atom, axis] += sign * step
        values.append(energy(structure.with_positions(positions)))
    return -(values[0] - values[1]) / (2 * step)


def ipi_input(template: str, steps: int, replacements: dict[str, str] | None = None) -> str:
    """The i-PI template ``inputs/ipi/<template>`` set to ``steps`` steps, with the structure paths absolute and
    each ``old: new`` text replacement made."""
    text = re.sub(r"<total_steps>\s*\d+\s*</total_steps>", f"<total_steps> {steps} </total_steps>",
                  (INPUTS / template).read_text()).replace("../structures/", f"{STRUCTURES}/")
    for old, new in (replacements or {}).items():
        assert old in text, f"{template} has no {old!r}"
        text = text.replace(old, new)
    return text


def deepks_es_run(xml, run_dir, *options, timeout=600):
    """``deepks-es run XML --run-dir RUN_DIR [options]`` as a subprocess."""
    return subprocess.run([*CLI, "run", str(xml), "--run-dir", str(run_dir), *map(str, options)],
                          capture_output=True, text=True, timeout=timeout)


def private_socket_dir(run_dir) -> Path:
    """The socket directory the ``deepks-es run`` in ``run_dir`` made (and must remove): the sockets_prefix of
    the i-PI input it wrote there (other runs, e.g. of a parallel test session, have their own)."""
    return Path(ET.parse(Path(run_dir) / RUN_INPUT).getroot().get("sockets_prefix"))


def _finished_run(run_dir, template, *options):
    run = deepks_es_run(INPUTS / template, run_dir, *options)
    assert run.returncode == 0, run.stderr + (run_dir / "i-pi.log").read_text()
    assert not private_socket_dir(run_dir).exists(), "deepks-es run left its socket directory behind"
    return run_dir


@pytest.fixture(scope="session")
def nvt_cluster_run(tmp_path_factory):
    """A finished 4-step NVT water-dimer run (directory)."""
    return _finished_run(tmp_path_factory.mktemp("nvt"), "nvt_cluster.xml")


@pytest.fixture(scope="session")
def pimd_run(tmp_path_factory):
    """A finished 3-step, 4-bead PIMD water-dimer run served by 2 clients (directory)."""
    return _finished_run(tmp_path_factory.mktemp("pimd"), "pimd_cluster.xml", "--clients", 2)


def pyscf_engine(model=None, extrapolation=DEFAULT_PREDICTOR, **settings):
    """A PySCF engine with :class:`SCFSettings` fields ``settings``: the plain functional (``model`` None or
    ``"none"``) or DeePKS-ES with a ``CorrectionModel`` (the model's xc, basis and pseudo unless given)."""
    if model is None or model == "none":
        return ReferenceEngine(SCFSettings(**settings), extrapolation)
    defaults = dict(xc=model.base_xc, basis=model.basis, pseudo=model.pseudo)
    return DeePKSEngine(model, SCFSettings(**{**defaults, **settings}), extrapolation)


def kill_and_resume(xml, run_dir, options, env, kill_after_steps, timeout=600):
    """``deepks-es run`` killed with SIGKILL (launcher, i-PI and clients) once the properties show
    ``kill_after_steps`` steps, then ``deepks-es run --resume``: (steps, conserved eV) of the finished run."""
    launcher = subprocess.Popen([*CLI, "run", str(xml), "--run-dir", str(run_dir), *map(str, options)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    properties = run_dir / "simulation.out"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and launcher.poll() is None:
        if properties.is_file() and sum(1 for line in open(properties) if not line.startswith("#")) >= kill_after_steps:
            break
        time.sleep(0.05)
    assert launcher.poll() is None, "the run ended before it could be killed"
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    killed_at = sum(1 for line in open(properties) if not line.startswith("#"))
    resumed = subprocess.run([*CLI, "run", "--resume", str(run_dir)], capture_output=True, text=True, env=env,
                             timeout=timeout)
    assert resumed.returncode == 0, resumed.stderr + (run_dir / "i-pi.log").read_text()
    assert "resuming" in resumed.stderr
    rows = np.loadtxt(properties, comments="#", ndmin=2)
    return killed_at, rows[:, 0].astype(int), rows[:, 2], resumed


def assert_seamless(steps, conserved, total_steps):
    assert list(steps) == list(range(total_steps + 1))  # every step exactly once
    jumps = np.abs(np.diff(conserved))
    assert jumps.max() <= 5 * np.percentile(jumps, 90) + 1e-6, jumps.max()


def posdata_message(positions, natoms: int | None = None, cell=None) -> bytes:
    """POSDATA and its payload as i-PI sends it (h and h^-1 with lattice vectors as columns, Bohr); ``natoms``
    may disagree with ``positions`` (malformed traffic)."""
    from deepks_es.ipi.protocol import header

    cell = np.eye(3) * 30.0 if cell is None else np.asarray(cell)
    positions = np.asarray(positions, dtype=np.float64)
    natoms = len(positions) if natoms is None else natoms
    return (header("POSDATA") + cell.T.tobytes() + np.linalg.inv(cell.T).tobytes() + np.int32(natoms).tobytes()
            + positions.tobytes())


def init_message(rid: int = 0) -> bytes:
    """INIT for replica ``rid`` with an empty parameter string."""
    from deepks_es.ipi.protocol import header

    return header("INIT") + np.int32(rid).tobytes() + np.int32(0).tobytes()
