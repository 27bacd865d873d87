"""A DeePKS-ES client for an i-PI server: one engine call per POSDATA, extras as JSON.

After each force reply the client answers NEEDINIT, so the server's INIT names the
replica (bead) of the next structure; the engine keeps one warm-start density
matrix per bead. An empty read means the server is gone: the client returns.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..engines import Engine, EngineSpec, as_engine
from ..errors import ComputeError, DeePKSError, SettingsError, engine_failure
from ..monitoring import VALIDATION_KEYS, MonitorSettings, Validator, monitored_compute
from ..observables import DOSGrid
from ..structure import Structure
from .protocol import Channel, ProtocolError, ServerGone, forces_message, header, read_init, read_posdata

SOCKET_PREFIX = "/tmp/ipi_"
"""i-PI's default ``sockets_prefix``: a unix socket NAME lives at SOCKET_PREFIX + NAME."""


@dataclass(frozen=True)
class SocketAddress:
    """A unix socket (``prefix + name``) or an inet ``host:port``."""

    unix: str | None = None
    host: str | None = None
    port: int | None = None
    prefix: str = SOCKET_PREFIX

    @classmethod
    def parse_inet(cls, text: str) -> SocketAddress:
        """``HOST:PORT`` (an empty host is localhost); a one-line error for a bad port."""
        host, _, port = text.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"--inet needs HOST:PORT with a port in 1-65535, got {text!r}")
        return cls(host=host or "localhost", port=int(port))

    @property
    def path(self) -> str:
        return self.prefix + self.unix

    def argv(self) -> list[str]:
        """The ``deepks-es drive`` options that name this address."""
        if self.unix:
            return ["--unix", self.unix, "--socket-prefix", self.prefix]
        return ["--inet", f"{self.host}:{self.port}"]

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.unix else f"inet:{self.host}:{self.port}"

    def connect(self, wait_s: float = 0.0) -> socket.socket:
        """Connected socket; retry for up to ``wait_s`` seconds while the server is not up yet."""
        deadline = time.monotonic() + wait_s
        while True:
            if self.unix:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                target = self.path
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                keepalive(sock)
                target = (self.host, self.port)
            try:
                sock.connect(target)
                return sock
            except OSError as exc:
                sock.close()
                if time.monotonic() >= deadline:
                    raise ServerGone(f"cannot connect to i-PI at {self}: {exc.strerror or exc}") from None
                time.sleep(0.2)


KEEPALIVE = {"TCP_KEEPIDLE": 60, "TCP_KEEPINTVL": 15, "TCP_KEEPCNT": 4}  # probe after 60 s idle, give up after 2 min


def keepalive(sock: socket.socket) -> None:
    """TCP keepalive on an inet socket: a peer that vanished without closing is noticed in ~2 minutes."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE.items():
        if hasattr(socket, name):  # Linux names
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class DriverClient:
    """Serves ``engine`` results (any :class:`~deepks_es.engines.Engine`, or the spec of one) for structures
    of the atoms ``symbols``; ``required_extras``: the extras keys the server's input logs (checked each step).

    ``periodic``: the cell comes from i-PI's h at every step; otherwise the structure
    is a cluster and h is ignored. ``monitor``: orbital observables every k-th structure of each bead
    (null in between, where the engine may skip its orbitals) and on-the-fly validation, which needs the
    engine as a spec or model name (its worker process builds its own).
    """

    def __init__(self, engine: Engine | EngineSpec | str, symbols, periodic: bool, grid: DOSGrid = DOSGrid(),
                 log=None, required_extras: tuple[str, ...] = (), monitor: MonitorSettings = MonitorSettings()):
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.monitor = monitor
        self.validator = Validator.of(monitor, engine, self.log)
        self.engine = as_engine(engine)
        self.bead_steps: dict[int, int] = {}
        self.required_extras = tuple(required_extras)
        self.symbols = tuple(symbols)
        self.periodic = periodic
        self.grid = grid
        self.steps = 0
        self.warned_consolidated = False

    def compute(self, cell_h: np.ndarray, positions: np.ndarray, bead: int = 0):
        """(energy, forces (N, 3), virial (3, 3, laid out like h), extras JSON) in atomic units.

        A virial the engine cannot give is sent as NaN, so i-PI's pressure reads NaN, never a
        silent zero; ``virial_available`` in the extras says so too.
        """
        if len(positions) != len(self.symbols):
            raise ProtocolError(f"server sent {len(positions)} atoms, the structure has {len(self.symbols)}")
        structure = Structure(self.symbols, positions, cell_h.T if self.periodic else None)
        step = f"step {self.steps + 1} (bead {bead})"
        bead_step = self.bead_steps.get(bead, 0)
        observed = self.monitor.observes(bead_step)
        try:
            result = monitored_compute(self.engine, structure, bead, observed)
        except DeePKSError as exc:
            raise ComputeError(f"{step}: {exc}") from None
        except Exception as exc:  # a failure inside the engine's libraries: stop cleanly, never a traceback to i-PI
            raise engine_failure(step, exc) from None
        if result.forces is None:
            raise SettingsError(f"the engine gives no forces for this run: {'; '.join(result.notes)}")
        if not (np.isfinite(result.energy) and np.all(np.isfinite(result.forces))):
            raise ComputeError(f"{step}: the engine returned a non-finite energy or forces; not sent to i-PI")
        virial = np.full((3, 3), np.nan) if result.virial is None else 0.5 * (result.virial + result.virial.T)
        self.steps += 1
        self.bead_steps[bead] = bead_step + 1
        if not result.trusted:
            self.log(f"deepks-es drive: warning: {step} is flagged (extras: trusted false): "
                     f"{'; '.join(result.notes)}")
        observables = result.observables(self.grid, orbitals=observed)
        if self.validator is not None:
            if bead == 0:
                self.validator.offer(bead_step, structure)
            observables.update(self.validator.extras())
        missing = [key for key in self.required_extras if key not in observables]
        if missing:  # i-PI would stop with a KeyError on its side
            hint = " or validate (--validate-every N)" if any(k in VALIDATION_KEYS for k in missing) else ""
            raise ComputeError(f"the i-PI input logs extras {', '.join(missing)}, which {self.engine.describe().name} "
                               f"does not give: remove those <trajectory> lines{hint} (it gives: "
                               f"{', '.join(observables)})")
        return result.energy, result.forces, virial, json.dumps(observables)

    def close(self) -> None:
        """Release the engine and stop the validation worker."""
        self.engine.close()
        if self.validator is not None:
            self.validator.close()

    def serve(self, sock: socket.socket, abandon=None, idle_timeout_s: float | None = None) -> None:
        """Answer the server until it sends EXIT or goes away (``ServerGone``).

        ``abandon``: called from a watchdog thread when the server vanishes while a structure
        is being computed (an SCF cannot be interrupted); e.g. exit the process.
        ``idle_timeout_s``: give up (``ServerGone``) when the server sends nothing for this long.
        """
        channel = Channel(sock, idle_timeout_s)
        initialised, reply, bead, polled = False, None, 0, False
        while True:
            message = channel.recv_header()
            polled = polled or message == "STATUS"
            if message == "STATUS":
                status = "NEEDINIT" if not initialised else "HAVEDATA" if reply is not None else "READY"
                channel.send(header(status))
            elif message == "INIT":
                bead, parameters = read_init(channel)
                if "batch_size" in parameters:
                    raise ProtocolError("batched requests (batch_size in the forcefield) are not supported: "
                                        "remove batch_size from the i-PI input")
                initialised = True
            elif message == "POSDATA":
                if not initialised:
                    raise ProtocolError("POSDATA before INIT")
                cell_h, positions = read_posdata(channel)
                polled = False
                with watch_connection(sock, abandon):
                    reply = forces_message(*self.compute(cell_h, positions, bead))
            elif message == "GETFORCE":
                if reply is None:
                    raise ProtocolError("GETFORCE before POSDATA")
                if not polled and not self.warned_consolidated:  # GETFORCE sent with POSDATA, not after HAVEDATA
                    self.warned_consolidated = True
                    self.log("deepks-es drive: warning: this i-PI server consolidates messages (i-PI's default "
                             "consolidate_messages true): if a client dies mid-step the run hangs; set "
                             "<consolidate_messages> false </consolidate_messages> in its <ffsocket>")
                channel.send(reply)
                reply, initialised = None, False  # NEEDINIT next: INIT tells which bead follows
            else:  # EXIT
                return


@contextmanager
def watch_connection(sock: socket.socket, abandon, poll_s: float = 0.5):
    """While the block runs, call ``abandon()`` once the peer has closed ``sock``.

    Hang-up is polled (POLLRDHUP/POLLHUP), not read: the server keeps sending STATUS
    while the client is busy, so unread bytes may sit in front of the end of stream.
    """
    if abandon is None:
        yield
        return
    done = threading.Event()
    poller = select.poll()
    poller.register(sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)

    def watch():
        while not done.wait(poll_s):
            if poller.poll(0):
                abandon()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
