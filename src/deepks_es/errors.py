"""Exceptions whose message is a one-line, user-facing explanation.

The CLI prints ``error: <message>`` and exits non-zero for any of them; anything
else escaping is a bug.
"""


class DeePKSError(Exception):
    """Base class: a problem the user can fix, described in one line."""


class StructureError(DeePKSError):
    """Malformed or unsupported structure input."""


class ModelError(DeePKSError):
    """Missing, corrupt or mismatched model file."""


class SettingsError(DeePKSError):
    """Inconsistent calculation settings."""


class ComputeError(DeePKSError):
    """An engine could not give usable numbers for a structure."""


def first_line(exc: BaseException, empty: str = "") -> str:
    """The first line of an exception's message (``empty`` when it has none)."""
    text = str(exc)
    return text.splitlines()[0] if text else empty


def engine_failure(where: str, exc: BaseException) -> ComputeError:
    """The one-line error for an exception raised inside an engine's libraries (never a traceback)."""
    return ComputeError(f"{where}: the engine failed ({type(exc).__name__}: {first_line(exc)})")
