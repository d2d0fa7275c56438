"""Shared fixtures: where ``../shared/data`` is, and tiny synthetic inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$HAGEKIT_SHARED_DATA`` or ``<repo>/../shared/data``."""
    return Path(os.environ.get("HAGEKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder; skips the test cleanly when it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not available at {path} (set HAGEKIT_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def her2st_raw(shared_data: Path) -> Path:
    path = shared_data / "her2st"
    if not (path / "data" / "ST-cnts").is_dir():
        pytest.skip(f"HER2ST data not available at {path}")
    return path


@pytest.fixture(scope="session")
def wsi_dir(shared_data: Path) -> Path:
    path = shared_data / "wsi"
    if not path.is_dir():
        pytest.skip(f"WSI fixtures not available at {path}")
    return path


def pytest_collection_modifyitems(config, items):
    import importlib.util

    has_cuda = False
    if importlib.util.find_spec("torch") is not None:
        try:
            import torch

            has_cuda = torch.cuda.is_available()
        except Exception:  # pragma: no cover
            has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
        if "/integration/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
