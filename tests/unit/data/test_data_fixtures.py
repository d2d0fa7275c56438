"""The raw-format builders of :mod:`toys.raw_formats` write what the published formats specify."""

from __future__ import annotations

import gzip
from pathlib import Path

from toys.raw_formats import GENES, make_cscc, make_her2st, make_visium


def test_builders_write_published_layouts(tmp_path: Path) -> None:
    import h5py

    her = make_her2st(tmp_path / "her2st")
    assert (her / "data" / "ST-cnts" / "A1.tsv.gz").is_file()
    assert gzip.decompress((her / "data" / "ST-cnts" / "A1.tsv.gz").read_bytes()).startswith(b"\tERBB2\t")
    outs, _ = make_visium(tmp_path / "outs")
    with h5py.File(outs / "filtered_feature_bc_matrix.h5") as fh:
        shape = tuple(fh["matrix/shape"][()])
        assert shape == (len(GENES), 14)
        assert len(fh["matrix/indptr"]) == 15
    cs = make_cscc(tmp_path / "GSE144240_RAW")
    assert len(list(cs.glob("*_stdata.tsv.gz"))) == 3
