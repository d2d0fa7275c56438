"""Developer sessions: ``nox -s tests`` (the CI command), ``fast``, ``lint``, ``bench``."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]

PYTHON = ["3.11"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Install hagekit in a fresh venv and run the whole test suite."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-q", "--durations=15", *session.posargs, env={"MPLBACKEND": "Agg"})


@nox.session(python=PYTHON)
def fast(session: nox.Session) -> None:
    """The fast lane: unit tests only (no shared data, no end-to-end processes, nothing marked slow)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-q", "-m", "not slow and not integration", "tests/unit",
                *session.posargs, env={"MPLBACKEND": "Agg"})


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the package, tests and benchmarks."""
    session.install("ruff>=0.4")
    session.run("ruff", "check", "hagekit", "tests", "benchmarks", "noxfile.py")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run every benchmark script quickly (CPU; CUDA when present)."""
    session.install("-e", ".")
    import glob

    for script in sorted(glob.glob("benchmarks/*.py")):
        session.run("python", script, "--quick", *session.posargs)
