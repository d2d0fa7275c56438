"""Gene embedding files: every format round-trips; malformed files fail with line numbers."""

from __future__ import annotations

import gzip
import json

import h5py
import numpy as np
import pytest

from hagekit.errors import DataError, ProvenanceError
from hagekit.genes.embeddings import (
    embedding_training_sections,
    embeddings_for_panel,
    load_gene_embeddings,
    read_sidecar,
    write_gene2vec_text,
    write_gene_embeddings,
)

SYMBOLS = ["TP53", "ERBB2", "GAPDH", "Sept1", "ACTB"]


def _vectors(n: int = 5, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _gene2vec_line(sym: str, row: np.ndarray, sep: str = " ") -> str:
    return sym + sep + sep.join(f"{v:.6f}" for v in row)


@pytest.mark.parametrize("name", ["emb.txt", "emb_w2v.txt", "emb.npy", "emb.npz", "emb.h5"])
def test_round_trip_every_format(tmp_path, name):
    vec = _vectors()
    path = write_gene_embeddings(tmp_path / name, SYMBOLS, vec, provenance={"sections": ["A2", "B1"], "method": "test"})
    emb = load_gene_embeddings(path)
    assert emb.symbols == SYMBOLS
    np.testing.assert_array_equal(emb.vectors, vec)  # exact float32 round trip
    assert emb.dim == 4 and emb.vectors.dtype == np.float32
    assert emb.provenance["sections"] == ["A2", "B1"]
    assert embedding_training_sections(path) == {"A2", "B1"}
    if name == "emb_w2v.txt":
        assert path.read_text().splitlines()[0] == "5 4"


def test_published_gene2vec_layouts_tab_space_header_gzip(tmp_path):
    vec = _vectors(3, 200)
    plain = tmp_path / "gene2vec_dim_200_iter_9.txt"
    plain.write_text("\n".join(_gene2vec_line(s, r, "\t" if i % 2 else " ") for i, (s, r) in enumerate(zip(SYMBOLS[:3], vec, strict=True))) + "\n")
    w2v = tmp_path / "gene2vec_dim_200_iter_9_w2v.txt"
    w2v.write_text("3 200\n" + "\n".join(_gene2vec_line(s, r) + " " for s, r in zip(SYMBOLS[:3], vec, strict=True)) + "\n")
    gz = tmp_path / "gene2vec.txt.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(plain.read_text())
    a, b, c = (load_gene_embeddings(p) for p in (plain, w2v, gz))
    assert a.symbols == b.symbols == c.symbols == SYMBOLS[:3]
    assert a.dim == 200
    np.testing.assert_allclose(a.vectors, vec, atol=1e-6)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert a.provenance == {} and embedding_training_sections(plain) == set()


def test_panel_matching_is_case_insensitive_and_follows_panel_order(tmp_path):
    vec = _vectors()
    path = write_gene2vec_text(tmp_path / "e.txt", SYMBOLS, vec)
    panel = ["actb", "SEPT1", "NOPE", "TP53", "Missing2"]
    emb = load_gene_embeddings(path, panel)
    assert emb.symbols == ["actb", "SEPT1", "TP53"]
    assert emb.unmatched == ["NOPE", "Missing2"]
    np.testing.assert_array_equal(emb.vectors, vec[[4, 3, 0]])
    # exact spelling wins over a case-folded one
    path2 = write_gene2vec_text(tmp_path / "e2.txt", ["MARCH1", "March1"], _vectors(2))
    assert np.array_equal(load_gene_embeddings(path2, ["March1"]).vectors[0], load_gene_embeddings(path2).vectors[1])


def test_embeddings_for_panel_names_missing_genes(tmp_path):
    path = write_gene2vec_text(tmp_path / "e.txt", SYMBOLS, _vectors())
    np.testing.assert_array_equal(embeddings_for_panel(path, ["GAPDH", "tp53"]), _vectors()[[2, 0]])
    panel = SYMBOLS + [f"ABSENT{i}" for i in range(7)]
    with pytest.raises(ProvenanceError) as exc:
        embeddings_for_panel(path, panel)
    msg = str(exc.value)
    assert "7 of 12 panel genes" in msg and "ABSENT0" in msg and "(7 in all)" in msg
    assert f"hagekit genes select --vocab {path}" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("A 1 2 3\nB 1 2\n", "line 2: gene B has 2 values, expected 3 (as line 1)"),
        ("A 1 2 3\nB 1 x 3\n", "line 2: non-numeric value 'x' in column 3 (gene B)"),
        ("A 1 2 3\n\nB 1 nan 3\n", "line 3: NaN or Inf in column 3 (gene B)"),
        ("A 1 2 3\nB 1 2 inf\n", "line 2: NaN or Inf in column 4 (gene B)"),
        ("A 1 2 3\nB 1 2 3\nA 1 2 4\n", "line 3: gene A repeated (first on line 1) with a different vector"),
        ("2 3\nA 1 2 3\nB 1 2\n", "line 3: gene B has 2 values, expected 3 (as the header)"),
        ("3 3\nA 1 2 3\nB 1 2 3\n", "header says 3 genes but the file has 2"),
        ("A\n", "line 1: gene A has no values"),
        ("\n\n", "no gene vectors found (expected 'SYMBOL v1 ... vd' lines)"),
    ],
)
def test_malformed_text_files_fail_with_line_numbers(tmp_path, body, expected):
    path = tmp_path / "bad.txt"
    path.write_text(body)
    with pytest.raises(DataError) as exc:
        load_gene_embeddings(path)
    assert str(exc.value) == f"{path}: {expected}"


def test_identical_duplicates_are_tolerated(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("A 1 2\nB 3 4\nA 1 2\n")
    emb = load_gene_embeddings(path)
    assert emb.symbols == ["A", "B"]


def test_binary_and_array_formats_are_validated(tmp_path):
    vec = _vectors()
    np.save(tmp_path / "lonely.npy", vec)
    with pytest.raises(DataError, match="no symbol list beside the .npy"):
        load_gene_embeddings(tmp_path / "lonely.npy")
    bad = vec.copy()
    bad[3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", vectors=bad, symbols=np.array(SYMBOLS))
    with pytest.raises(DataError, match=r"row 4: NaN or Inf \(gene Sept1\)"):
        load_gene_embeddings(tmp_path / "nan.npz")
    dup = vec.copy()
    np.savez(tmp_path / "dup.npz", vectors=dup, symbols=np.array(["A", "B", "A", "C", "D"]))
    with pytest.raises(DataError, match="row 3: gene A repeated"):
        load_gene_embeddings(tmp_path / "dup.npz")
    np.savez(tmp_path / "short.npz", vectors=vec, symbols=np.array(SYMBOLS[:4]))
    with pytest.raises(DataError, match="4 symbols for 5 vectors"):
        load_gene_embeddings(tmp_path / "short.npz")
    with h5py.File(tmp_path / "nokeys.h5", "w") as f:
        f["foo"] = vec
    with pytest.raises(DataError, match="no vectors array"):
        load_gene_embeddings(tmp_path / "nokeys.h5")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="not UTF-8"):
        load_gene_embeddings(tmp_path / "binary.txt")
    with pytest.raises(DataError, match="not found"):
        load_gene_embeddings(tmp_path / "absent.txt")


def test_writes_are_atomic_and_refuse_bad_vectors(tmp_path):
    out = tmp_path / "e.txt"
    vec = _vectors()
    vec[0, 0] = np.inf
    with pytest.raises(DataError, match="NaN or Inf"):
        write_gene2vec_text(out, SYMBOLS, vec, provenance={"sections": ["A1"]})
    with pytest.raises(DataError, match="duplicated gene symbols"):
        write_gene2vec_text(out, ["A", "A"], _vectors(2))
    assert list(tmp_path.iterdir()) == []
    # a rewrite without provenance removes the stale sidecar
    write_gene2vec_text(out, SYMBOLS, _vectors(), provenance={"sections": ["A1"]})
    assert read_sidecar(out)["sections"] == ["A1"]
    write_gene2vec_text(out, SYMBOLS, _vectors())
    assert read_sidecar(out) == {} and embedding_training_sections(out) == set()
    (tmp_path / "e.txt.json").write_text("{not json")
    with pytest.raises(DataError, match=r"e.txt.json: not valid JSON"):
        embedding_training_sections(out)
    json.dumps(read_sidecar(tmp_path / "other.txt"))
