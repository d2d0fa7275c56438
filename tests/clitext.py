"""CLI text as tests compare it.

Rich wraps lines at the console width, which depends on the terminal, ``COLUMNS`` and the
length of temporary paths; a test must never depend on any of them. Compare CLI output only
through :func:`flat`, which joins every run of whitespace (newlines included) into one space.
"""

from __future__ import annotations


def flat(text: str) -> str:
    """``text`` with every run of whitespace replaced by one space (wrap-independent)."""
    return " ".join(text.split())
