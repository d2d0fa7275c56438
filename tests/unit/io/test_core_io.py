"""Atomic writes, feature h5 round trips, gene lists, workspace resolution, CLI startup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hagekit.errors import ConfigError, DataError, ProvenanceError
from hagekit.io.atomic import atomic_path, write_json
from hagekit.io.genelist import read_gene_list, write_gene_list
from hagekit.io.h5 import check_same_encoder, read_features, write_features
from hagekit.workspace import Workspace, canonical_dataset, encoder_slug


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    write_json(target, {"a": float("nan"), "b": np.float32(1.5), "c": np.arange(2)})
    assert target.read_text().replace(" ", "").replace("\n", "") == '{"a":null,"b":1.5,"c":[0,1]}'


def test_features_round_trip_and_clam_layout(tmp_path: Path):
    f = np.arange(12, dtype=np.float32).reshape(3, 4)
    c = np.array([[0, 0], [256, 0], [0, 256]])
    p = write_features(tmp_path / "s.h5", f, c, barcodes=["a", "b", "c"],
                       attrs={"encoder": "builtin", "mpp": 0.5}, coords_attrs={"patch_size": 256})
    ff = read_features(p)
    assert np.array_equal(ff.features, f) and ff.barcodes.tolist() == ["a", "b", "c"]
    assert ff.attrs["encoder"] == "builtin" and ff.attrs["feature_dim"] == 4
    assert ff.coords_attrs["patch_size"] == 256
    # a CLAM-style file written by another tool: (1, N, D) features, no barcodes
    with h5py.File(tmp_path / "clam.h5", "w") as h5:
        h5["features"] = f[None]
        h5["coords"] = c[None]
    clam = read_features(tmp_path / "clam.h5")
    assert clam.features.shape == (3, 4) and clam.barcodes is None


def test_features_bad_files(tmp_path: Path):
    with pytest.raises(DataError, match="not found"):
        read_features(tmp_path / "nope.h5")
    (tmp_path / "junk.h5").write_bytes(b"not an h5 file")
    with pytest.raises(DataError, match="not a readable h5"):
        read_features(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "nofeat.h5", "w") as h5:
        h5["coords"] = np.zeros((2, 2))
    with pytest.raises(DataError, match="no 'features'"):
        read_features(tmp_path / "nofeat.h5")
    with pytest.raises(ProvenanceError, match="encoder"):
        check_same_encoder({"a.h5": {"encoder": "uni"}, "b.h5": {"encoder": "builtin"}})


def test_gene_list(tmp_path: Path):
    p = write_gene_list(tmp_path / "panel.txt", ["ERBB2", "GRB7"])
    assert read_gene_list(p) == ["ERBB2", "GRB7"]
    (tmp_path / "dup.txt").write_text("A\nB\nA\n")
    with pytest.raises(DataError, match="line 3: gene A already listed on line 1"):
        read_gene_list(tmp_path / "dup.txt")
    with pytest.raises(DataError, match="empty"):
        write_gene_list(tmp_path / "e.txt", [])
    assert not (tmp_path / "e.txt").exists()


def test_workspace(monkeypatch, tmp_path: Path):
    monkeypatch.delenv("HAGEKIT_HOME", raising=False)
    assert Workspace.resolve().root == Path("hagekit-work")
    monkeypatch.setenv("HAGEKIT_HOME", str(tmp_path))
    ws = Workspace.resolve()
    assert ws.section_path("her2st", "C2") == tmp_path / "data/her2/C2.h5ad"
    assert ws.features_dir("her2", "timm:vit_small") == tmp_path / "features/her2/timm-vit_small"
    assert Workspace.resolve(tmp_path / "x").root == tmp_path / "x"
    assert canonical_dataset("HER2ST") == "her2" and encoder_slug("ge:/a/b:0:1") == "ge-a-b-0-1"
    with pytest.raises(ConfigError):
        canonical_dataset("../evil")


def test_cli_help_is_fast_and_does_not_import_torch():
    code = (
        "import sys, time; t=time.perf_counter(); from typer.testing import CliRunner;"
        "from hagekit.cli.main import app; r=CliRunner().invoke(app, ['--help']);"
        "assert r.exit_code == 0, r.output; assert 'torch' not in sys.modules, 'torch imported';"
        "assert 'anndata' not in sys.modules, 'anndata imported'; print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) < 1.5


def test_public_api_names_resolve():
    import hagekit

    for name in hagekit.__all__:
        assert getattr(hagekit, name) is not None, name
    with pytest.raises(AttributeError):
        hagekit.not_a_name  # noqa: B018
