"""A fake installed distribution, so entry-point plugin loading is tested without pip."""

from __future__ import annotations

from pathlib import Path


def fake_distribution(root: Path, name: str, entry_points: str) -> Path:
    """Write ``<root>/<name>-0.1.dist-info`` with ``entry_points.txt`` = ``entry_points``; put
    ``root`` on sys.path (``monkeypatch.syspath_prepend``) for importlib.metadata to find it."""
    dist = root / f"{name.replace('-', '_')}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(entry_points)
    return dist
