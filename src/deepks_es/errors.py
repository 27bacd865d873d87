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
