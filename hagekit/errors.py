"""Error types: every user-facing failure is a :class:`HagekitError` with a one-line message.

Messages name the file or option first, then the problem, then (where useful) the valid
choices, so that the CLI can print them as one red line and exit with code 2.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "HagekitError",
    "ConfigError",
    "DataError",
    "ProvenanceError",
    "EncoderError",
    "at",
]


class HagekitError(Exception):
    """Base class for errors caused by user input (bad files, options, pairings)."""


class ConfigError(HagekitError):
    """An option or config file value is invalid or inconsistent."""


class DataError(HagekitError):
    """An input file or folder is missing, unreadable or malformed."""


class ProvenanceError(HagekitError):
    """Two inputs do not belong together (other panel, encoder, section or leak)."""


class EncoderError(HagekitError):
    """An encoder name, its weights or its configuration is invalid."""


def at(path: Path | str, problem: str) -> str:
    """Format ``"<path>: <problem>"``, the house style for messages about a file."""
    return f"{path}: {problem}"
