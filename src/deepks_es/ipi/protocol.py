"""The i-PI socket protocol, client side.

Messages start with a 12-byte, space-padded ASCII header; integers are int32 and
reals float64 in native byte order. The server sends STATUS, INIT (rid, length,
bytes), POSDATA (h, h^-1, natoms, positions in Bohr), GETFORCE and EXIT; the
client answers STATUS with READY, HAVEDATA or NEEDINIT, and GETFORCE with
FORCEREADY, energy, natoms, forces, virial (3x3, laid out like h) and an extras
string. Headers are read strictly in sequence, so POSDATA and GETFORCE arriving
back to back (i-PI >= 3.2) need no special case.
"""

from __future__ import annotations

import socket

import numpy as np

from ..errors import DeePKSError

HEADER_LEN = 12
SERVER_MESSAGES = ("STATUS", "INIT", "POSDATA", "GETFORCE", "EXIT")
MAX_ATOMS = 1_000_000
MAX_INIT_BYTES = 1 << 20


class ServerGone(DeePKSError):
    """The server closed the connection (an empty read)."""


class ServerSilent(ServerGone):
    """The server sent nothing for longer than the idle timeout."""


class ProtocolError(DeePKSError):
    """Traffic that does not follow the i-PI protocol."""


def header(name: str) -> bytes:
    return name.ljust(HEADER_LEN).encode("ascii")


class Channel:
    """Framed reads and writes on a connected stream socket; a read waits at most ``idle_timeout_s`` seconds
    for the server's next bytes (None: for ever)."""

    def __init__(self, sock: socket.socket, idle_timeout_s: float | None = None):
        self.sock = sock
        self.idle_timeout_s = idle_timeout_s
        if idle_timeout_s is not None:
            sock.settimeout(idle_timeout_s)

    def recv_exact(self, nbytes: int) -> bytes:
        buffer = bytearray(nbytes)
        view, got = memoryview(buffer), 0
        while got < nbytes:
            try:
                n = self.sock.recv_into(view[got:], nbytes - got)
            except ConnectionResetError:
                n = 0
            except TimeoutError:
                raise ServerSilent(f"i-PI sent nothing for {self.idle_timeout_s:g} s (the idle timeout) "
                                 f"{'in the middle of a message' if got else 'while the client waited'}; "
                                 "giving up") from None
            if n == 0:
                if got:
                    raise ProtocolError(f"connection closed in the middle of a message ({got} of {nbytes} bytes)")
                raise ServerGone("i-PI server closed the connection")
            got += n
        return bytes(buffer)

    def recv_header(self) -> str:
        raw = self.recv_exact(HEADER_LEN)
        try:
            name = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            name = None
        if name not in SERVER_MESSAGES:
            raise ProtocolError(f"unexpected message header {raw!r} from the server")
        return name

    def recv_int32(self) -> int:
        return int(np.frombuffer(self.recv_exact(4), dtype=np.int32)[0])

    def recv_float64(self, count: int) -> np.ndarray:
        return np.frombuffer(self.recv_exact(8 * count), dtype=np.float64).copy()

    def send(self, *parts: bytes) -> None:
        try:
            self.sock.sendall(b"".join(parts))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            raise ServerGone("i-PI server closed the connection (or stopped reading)") from None


def read_init(channel: Channel) -> tuple[int, str]:
    """The payload of INIT: replica index and parameter string."""
    rid = channel.recv_int32()
    length = channel.recv_int32()
    if not 0 <= length <= MAX_INIT_BYTES:
        raise ProtocolError(f"INIT parameter string of length {length}")
    text = channel.recv_exact(length).decode("utf-8", errors="replace")
    return rid, text


def read_posdata(channel: Channel) -> tuple[np.ndarray, np.ndarray]:
    """The payload of POSDATA: cell h (3x3, lattice vectors as columns) and positions (N, 3), Bohr."""
    cell_h = channel.recv_float64(9).reshape(3, 3)
    channel.recv_float64(9)  # h^-1, redundant
    natoms = channel.recv_int32()
    if not 0 < natoms <= MAX_ATOMS:
        raise ProtocolError(f"POSDATA announces {natoms} atoms")
    positions = channel.recv_float64(3 * natoms).reshape(natoms, 3)
    if not (np.all(np.isfinite(positions)) and np.all(np.isfinite(cell_h))):
        raise ProtocolError("POSDATA contains NaN or infinite positions or cell")
    return cell_h, positions


def forces_message(energy: float, forces: np.ndarray, virial: np.ndarray, extras: str) -> bytes:
    """FORCEREADY with its payload (Hartree, Hartree/Bohr, Hartree)."""
    forces = np.ascontiguousarray(forces, dtype=np.float64)
    encoded = extras.encode("utf-8")
    return b"".join([
        header("FORCEREADY"),
        np.float64(energy).tobytes(),
        np.int32(len(forces)).tobytes(),
        forces.tobytes(),
        np.ascontiguousarray(virial, dtype=np.float64).tobytes(),
        np.int32(len(encoded)).tobytes(),
        encoded,
    ])
