"""Shared fixtures: where ``../shared/data`` is, and tiny synthetic inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One wide, fixed console for every CLI test, whatever the terminal or CI sets: rich reads
# COLUMNS when hagekit.cli creates its consoles (after this file) and truncates table cells on a
# narrow one. Plain lines may still wrap around long temporary paths, so tests compare CLI text
# only through clitext.flat (whitespace-normalised), never verbatim.
os.environ["COLUMNS"] = "200"


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


@pytest.fixture(scope="session")
def her2_root(her2st_raw: Path, tmp_path_factory) -> Path:
    """All 36 HER2ST sections prepared once per session, through the CLI as a user would."""
    from typer.testing import CliRunner

    from hagekit.cli.main import app

    root = tmp_path_factory.mktemp("her2_data")
    args = ["-q", "data", "prepare", "her2st", "--raw", str(her2st_raw), "--out", str(root)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="session")
def her2_builtin_features(her2_root: Path, tmp_path_factory) -> Path:
    """``builtin`` spot features of the imaged sections C2..C6, extracted once per session."""
    from hagekit.extract import EncoderSpec, ExtractionSpec, extract_sections

    out = tmp_path_factory.mktemp("her2_feats") / "builtin"
    summary = extract_sections(her2_root, "her2", encoder=EncoderSpec("builtin", device="cpu", num_workers=0), spec=ExtractionSpec(out_dir=out))
    assert not getattr(summary, "failed", None), summary
    return out


@pytest.fixture
def one_torch_thread():
    """The test runs with one torch thread: tiny models are fastest so and do not fight other test
    processes for cores (use as ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    from hagekit.device import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def one_torch_thread_module():
    """One torch thread for a whole module, module-scoped fixtures included."""
    from hagekit.device import torch_threads

    with torch_threads(1):
        yield


def _h5_items(path: Path) -> dict:
    """Every dataset's bytes and every attribute of an h5 file, except the folder it was written to."""
    import h5py
    import numpy as np

    items: dict = {}

    def visit(name, obj):
        for k, v in obj.attrs.items():
            if k != "savetodir":  # TRIDENT's attribute: the output folder itself
                items[f"{name}@{k}"] = np.asarray(v).tobytes()
        if isinstance(obj, h5py.Dataset):
            data = np.asarray(obj[()])
            if data.dtype.kind == "O":  # variable-length strings: compare the text, not pointers
                items[name] = (str(obj.dtype), obj.shape, [v.decode() if isinstance(v, bytes) else str(v) for v in data.ravel()])
            else:
                items[name] = (str(obj.dtype), obj.shape, data.tobytes())

    with h5py.File(path, "r") as h5:
        for k, v in h5.attrs.items():
            items[f"/@{k}"] = np.asarray(v).tobytes()
        h5.visititems(visit)
    return items


@pytest.fixture()
def same_h5():
    """``same_h5(a, b)``: True when two feature files hold identical bytes in every dataset and
    attribute (bar TRIDENT's ``savetodir``, which names the output folder)."""
    return lambda a, b: _h5_items(Path(a)) == _h5_items(Path(b))
