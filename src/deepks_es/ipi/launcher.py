"""``deepks-es run INPUT.xml``: the real i-PI server as a subprocess plus DeePKS-ES clients.

The input is rewritten into the run directory with a private socket prefix (a fresh
short directory, so names never collide and no stale socket blocks the start), a
per-request ``timeout`` above the SCF time and ``consolidate_messages`` false (a
dead client is dropped and its bead re-queued). i-PI's exit code is returned;
Ctrl-C (SIGINT) or a batch system's SIGTERM stops everything, removes the sockets
and exits with 128 + the signal number (130, 143).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import SettingsError
from ..fileio import DOS_GRID_FILE, RUN_INPUT, atomic_path
from .client import SocketAddress
from .drive import ClientPlan, stop_processes
from .outputs import output_names
from .resume import RESUME_INPUT, latest_checkpoint, truncate_outputs
from .runplan import RunPlan, read_run_record, write_run_record

IPI_LOG = "i-pi.log"
TRUE = ("true", "1", "yes")


@dataclass
class PreparedRun:
    """The rewritten input and what the clients need to reach the server."""

    xml_text: str
    prefix: str
    structure: Path
    address: SocketAddress
    pbc: bool
    nbeads: int
    total_steps: int
    properties: str  # i-PI's properties file name, relative to the run directory
    extras: tuple[str, ...]  # the extras keys the input logs


def _set_child(parent: ET.Element, tag: str, text: str) -> None:
    child = parent.find(tag)
    if child is None:
        child = ET.SubElement(parent, tag)
    child.text = f" {text} "


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def prepare_input(xml_path: Path, prefix: str, min_timeout_s: float, structure: Path | None = None) -> PreparedRun:
    """Rewrite an i-PI input for a private socket; paths made absolute. One ffsocket is supported.

    ``structure``: the atoms of an input without ``<initialize><file>`` (an i-PI checkpoint).
    """
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise SettingsError(f"cannot read i-PI input {xml_path}: {exc}") from None
    if root.tag != "simulation":
        raise SettingsError(f"{xml_path}: the root element must be <simulation>, found <{root.tag}>")
    sockets = root.findall("ffsocket")
    if len(sockets) != 1:
        raise SettingsError(f"{xml_path}: expected exactly one <ffsocket> (found {len(sockets)})")
    ff = sockets[0]
    if int((ff.findtext("batch_size") or "1").strip()) > 1:
        raise SettingsError(f"{xml_path}: batch_size > 1 is not supported by the DeePKS-ES client")
    root.set("sockets_prefix", prefix)
    mode = ff.get("mode", "inet")
    if mode == "unix":
        address = SocketAddress(unix=(ff.findtext("address") or "").strip() or "deepks", prefix=prefix)
        _set_child(ff, "address", address.unix)
    elif mode == "inet":
        address = SocketAddress(host="localhost", port=_free_port())
        _set_child(ff, "address", address.host)
        _set_child(ff, "port", str(address.port))
    else:
        raise SettingsError(f"{xml_path}: ffsocket mode {mode!r} is not supported (use unix or inet)")
    timeout = float((ff.findtext("timeout") or "0").strip() or 0)
    _set_child(ff, "timeout", str(max(timeout, min_timeout_s)))
    _set_child(ff, "consolidate_messages", "false")

    init = root.find("system/initialize")
    file_node = None if init is None else init.find("file")
    if structure is None:
        if file_node is None or not (file_node.text or "").strip():
            raise SettingsError(f"{xml_path}: needs <system><initialize><file>STRUCTURE</file> for the atom list")
        structure = (xml_path.parent / file_node.text.strip()).resolve()
        if not structure.is_file():
            raise SettingsError(f"{xml_path}: initial structure {structure} not found")
        file_node.text = f" {structure} "
    beads = init if init is not None else root.find("system/beads")
    nbeads = int(beads.get("nbeads", "1")) if beads is not None else 1
    outputs = output_names(root)
    return PreparedRun(ET.tostring(root, encoding="unicode"), prefix, structure, address,
                       ff.get("pbc", "false").lower() in TRUE, nbeads,
                       int((root.findtext("total_steps") or "0").strip() or 0), outputs.properties,
                       tuple(outputs.extras))


def find_tool(name: str) -> str | None:
    """A command installed beside this Python (e.g. i-pi from the ipi package), else on PATH."""
    return shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def run(plan: RunPlan) -> int:
    """Start i-PI on ``plan.input`` in ``plan.run_dir`` with ``plan.clients`` clients; i-PI's exit code.

    The plan is recorded in the run directory (:data:`RUN_RECORD`), so :func:`resume` can continue the run.
    """
    plan = replace(plan, engine=plan.engine.with_absolute_model(), input=Path(plan.input).resolve(),
                   run_dir=Path(plan.run_dir).resolve())
    return _launch(plan, Path(plan.input), None, time.time())


def resume(run_dir: Path) -> int:
    """Continue a run of :func:`run` that was killed, from its newest i-PI checkpoint, with the same plan.

    Outputs written after the checkpoint are cut back to it first, so every step appears once.
    """
    run_dir = Path(run_dir).resolve()
    plan, structure, started = read_run_record(run_dir)
    checkpoint, step = latest_checkpoint(run_dir, started)
    truncate_outputs(run_dir, step)
    print(f"deepks-es run: resuming {run_dir} from {checkpoint.name} (step {step})", file=sys.stderr, flush=True)
    return _launch(replace(plan, run_dir=run_dir), checkpoint, structure, started)


def _launch(plan: RunPlan, xml: Path, structure: Path | None, started: float) -> int:
    """i-PI on ``xml`` in the run directory, clients of ``plan``; ``structure``: the atoms of a checkpoint;
    ``started``: when the run (not this continuation) started."""
    ipi = find_tool("i-pi")
    if ipi is None:
        raise SettingsError("the i-pi command is not on PATH: install i-PI (pip install ipi)")
    run_dir = plan.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    prefix_dir = tempfile.mkdtemp(prefix="dks", dir="/tmp")
    processes = []
    with StopSignals() as stop:
        try:
            prepared = prepare_input(xml, prefix_dir + "/", plan.timeout_s, structure)
            server_input = RUN_INPUT if structure is None else RESUME_INPUT
            with atomic_path(run_dir / server_input) as tmp:
                Path(tmp).write_text(prepared.xml_text)
            write_run_record(run_dir, plan, prepared.structure, started)
            clients = max(1, plan.clients)
            with open(run_dir / IPI_LOG, "a" if structure is not None else "w") as log:
                server = subprocess.Popen([ipi, server_input], cwd=run_dir, stdout=log, stderr=subprocess.STDOUT)
            processes.append(server)
            client = ClientPlan(prepared.address, prepared.structure, prepared.pbc, plan.engine, plan.grid,
                                run_dir / DOS_GRID_FILE, plan.wait_s, required_extras=prepared.extras,
                                monitor=plan.monitor)
            print(f"deepks-es run: i-PI on {xml} in {run_dir} ({prepared.nbeads} bead(s), {clients} "
                  f"client(s)); i-PI log: {run_dir / IPI_LOG}", file=sys.stderr, flush=True)
            command = client.with_threads(clients).client_command()
            workers = [subprocess.Popen(command, cwd=run_dir) for _ in range(clients)]
            processes += workers
            code = _supervise(server, workers, Progress(run_dir / prepared.properties, prepared.total_steps))
        except KeyboardInterrupt:
            stop.signum = stop.signum or signal.SIGINT
        finally:
            stop_processes(processes)
            shutil.rmtree(prefix_dir, ignore_errors=True)
    if stop.signum is not None:
        print(f"deepks-es run: interrupted ({signal.Signals(stop.signum).name}); stopped i-PI and the clients "
              f"(continue with: deepks-es run --resume {run_dir})", file=sys.stderr)
        return 128 + stop.signum
    if code:
        lines = (run_dir / IPI_LOG).read_text(errors="replace").strip().splitlines() or ["(empty log)"]
        print(f"deepks-es run: i-PI exited with code {code}: {lines[-1]} (full log: {run_dir / IPI_LOG})",
              file=sys.stderr)
    return code


class StopSignals:
    """Within the block, the first SIGINT or SIGTERM is recorded and raised as KeyboardInterrupt; later ones are
    only recorded, so the clean-up (stopping i-PI and the clients) is not cut short by an impatient second Ctrl-C.

    The record decides the exit code: an interrupt that a finaliser swallowed still counts.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class Progress:
    """A progress bar over MD steps, read from the growing i-PI properties file."""

    def __init__(self, properties: Path, total_steps: int):
        from tqdm import tqdm

        self.properties = properties
        self.bar = tqdm(total=total_steps + 1, unit="step", desc="MD", file=sys.stderr, dynamic_ncols=True)

    def update(self) -> None:
        if self.properties.is_file():
            with open(self.properties) as handle:
                done = sum(1 for line in handle if line.strip() and not line.startswith("#"))
            if done > self.bar.n:
                self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.update()
        self.bar.close()


def _supervise(server: subprocess.Popen, workers: list[subprocess.Popen], progress: Progress,
               poll_s: float = 0.5) -> int:
    """Wait for i-PI; stop it if every client has died (it would wait for clients forever)."""
    try:
        while server.poll() is None:
            progress.update()
            if all(worker.poll() is not None for worker in workers):
                try:
                    return server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    print("deepks-es run: error: every client exited before i-PI finished; stopping i-PI",
                          file=sys.stderr)
                    return 1
            time.sleep(poll_s)
        return server.returncode
    finally:
        progress.close()
