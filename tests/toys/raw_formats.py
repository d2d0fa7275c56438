"""Builders of tiny raw inputs in the exact published layouts (her2st, GSE144240, Space Ranger, HEST).

Imported by the data, extract, security and registry tests (and tests/e2e);
tests/unit/data/test_data_fixtures.py checks the builders write what the formats specify.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

GENES = ["ERBB2", "KRT8", "COL1A1", "PTPRC", "ACTB", "GAPDH", "MALAT1", "FN1"]


def grid_spots(nx: int = 4, ny: int = 3, *, x0: int = 2, y0: int = 3) -> list[tuple[int, int]]:
    """Array coordinates of an nx x ny legacy-ST grid."""
    return [(x0 + i, y0 + j) for j in range(ny) for i in range(nx)]


def counts_matrix(n_spots: int, n_genes: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.poisson(3.0, (n_spots, n_genes)).astype(np.int64)


def write_counts_tsv(path: Path, ids: list[str], genes: list[str], counts: np.ndarray | list[list[object]]) -> Path:
    """Spots x genes TSV, header starting with an empty cell, gzip when the name ends .gz."""
    lines = ["\t" + "\t".join(genes)]
    for sid, row in zip(ids, counts, strict=True):
        lines.append(sid + "\t" + "\t".join(str(v) for v in row))
    data = ("\n".join(lines) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def write_spot_tsv(path: Path, spots: list[tuple[int, int]], *, pitch: float, origin: tuple[float, float] = (40.0, 30.0)) -> Path:
    """``x y new_x new_y pixel_x pixel_y selected`` as the ST spot detector writes it."""
    lines = ["x\ty\tnew_x\tnew_y\tpixel_x\tpixel_y\tselected"]
    for x, y in spots:
        nx, ny = x + 0.02, y - 0.03
        px, py = origin[0] + (nx - 1) * pitch, origin[1] + (ny - 1) * pitch
        lines.append(f"{x}\t{y}\t{nx:.3f}\t{ny:.3f}\t{px:.2f}\t{py:.2f}\t1")
    data = ("\n".join(lines) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def write_jpeg(path: Path, size: tuple[int, int] = (400, 320), seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(120, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="JPEG", quality=85)
    return path


def make_her2st(root: Path, *, sections=("A1", "B1", "B2"), images=("B1", "B2"), pitch: float = 50.0) -> Path:
    """A mini almaan/her2st repository (``root/data/...``); returns ``root``."""
    data = root / "data"
    spots = grid_spots()
    for k, s in enumerate(sections):
        ids = [f"{x}x{y}" for x, y in spots]
        write_counts_tsv(data / "ST-cnts" / f"{s}.tsv.gz", ids, GENES, counts_matrix(len(ids), len(GENES), k))
        write_spot_tsv(data / "ST-spotfiles" / f"{s}_selection.tsv", spots, pitch=pitch)
        if s in images:
            write_jpeg(data / "ST-imgs" / s[0] / s / f"HE_{s}.jpg", seed=k)
    lbl = data / "ST-pat" / "lbl"
    lbl.mkdir(parents=True, exist_ok=True)
    rows = ["Row.names\tx\ty\tpixel_x\tpixel_y\tlabel"]
    for i, (x, y) in enumerate(spots[:6]):
        rows.append(f"{i}\t{x + 0.01}\t{y - 0.02}\t1\t1\t{'invasive cancer' if i % 2 else 'connective tissue'}")
    (lbl / f"{sections[0]}_labeled_coordinates.tsv").write_text("\n".join(rows) + "\n")
    return root


def make_cscc(folder: Path, *, names=("P2_ST_rep1", "P2_ST_rep2", "P10_ST_rep1"), pitch: float = 50.0) -> Path:
    """A mini GSE144240_RAW folder (flat, GSM-prefixed files)."""
    folder.mkdir(parents=True, exist_ok=True)
    spots = grid_spots()
    ids = [f"{x}x{y}" for x, y in spots]
    for k, name in enumerate(names):
        gsm = f"GSM{4284316 + k}"
        write_counts_tsv(folder / f"{gsm}_{name}_stdata.tsv.gz", ids, GENES, counts_matrix(len(ids), len(GENES), k))
        write_spot_tsv(folder / f"{gsm}_spot_data-selection-{name}.tsv.gz", spots, pitch=pitch)
        write_jpeg(folder / f"{gsm}_{name}.jpg", seed=k)
    # unrelated files of the same GEO series must be ignored
    (folder / "GSM4284320_P2_cSCC_scRNA_counts.txt.gz").write_bytes(gzip.compress(b"gene\tcell1\n"))
    return folder


def write_10x_h5(
    path: Path,
    barcodes: list[str],
    genes: list[str],
    counts: np.ndarray,
    *,
    feature_types: list[str] | None = None,
) -> Path:
    """The 10x feature-barcode HDF5 schema (Space Ranger >= 1.0): CSC of genes x barcodes."""
    import h5py
    import scipy.sparse as sp

    m = sp.csc_matrix(np.asarray(counts).T)  # genes x barcodes, column = barcode
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        g = fh.create_group("matrix")
        g.create_dataset("barcodes", data=np.array([b.encode() for b in barcodes], dtype="S"))
        g.create_dataset("data", data=m.data.astype(np.int32))
        g.create_dataset("indices", data=m.indices.astype(np.int64))
        g.create_dataset("indptr", data=m.indptr.astype(np.int64))
        g.create_dataset("shape", data=np.array(m.shape, dtype=np.int32))
        f = g.create_group("features")
        f.create_dataset("id", data=np.array([f"ENSG{i:011d}".encode() for i in range(len(genes))], dtype="S"))
        f.create_dataset("name", data=np.array([s.encode() for s in genes], dtype="S"))
        types = feature_types or ["Gene Expression"] * len(genes)
        f.create_dataset("feature_type", data=np.array([t.encode() for t in types], dtype="S"))
        f.create_dataset("genome", data=np.array([b"GRCh38"] * len(genes), dtype="S"))
        f.create_dataset("_all_tag_keys", data=np.array([b"genome"], dtype="S"))
    return path


def make_visium(outs: Path, *, new_positions: bool = True, spot_diameter_fullres: float = 20.0, image_size=(400, 320)) -> tuple[Path, Path]:
    """A mini Space Ranger ``outs`` folder and its full-resolution image; returns (outs, image)."""
    rows, cols = 3, 5
    barcodes = [f"AAAC{r:02d}{c:02d}GG-1" for r in range(rows) for c in range(cols)]
    in_tissue = [0 if i == 0 else 1 for i in range(len(barcodes))]
    counts = counts_matrix(len(barcodes), len(GENES), 7)
    # the filtered matrix holds only in-tissue barcodes
    keep = [i for i, t in enumerate(in_tissue) if t]
    write_10x_h5(outs / "filtered_feature_bc_matrix.h5", [barcodes[i] for i in keep], GENES, counts[keep])
    spatial = outs / "spatial"
    spatial.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, bc in enumerate(barcodes):
        r, c = divmod(i, cols)
        prow, pcol = 60 + r * 60, 50 + c * 60 + (30 if r % 2 else 0)
        lines.append(f"{bc},{in_tissue[i]},{r},{2 * c + r % 2},{prow},{pcol}")
    if new_positions:
        header = "barcode,in_tissue,array_row,array_col,pxl_row_in_fullres,pxl_col_in_fullres"
        (spatial / "tissue_positions.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    else:
        (spatial / "tissue_positions_list.csv").write_text("\n".join(lines) + "\n")
    (spatial / "scalefactors_json.json").write_text(
        json.dumps(
            {
                "spot_diameter_fullres": spot_diameter_fullres,
                "tissue_hires_scalef": 0.5,
                "fiducial_diameter_fullres": spot_diameter_fullres * 1.6,
                "tissue_lowres_scalef": 0.15,
            }
        )
    )
    image = write_jpeg(outs.parent / "fullres.jpg", size=image_size)
    return outs, image


def write_pyramid_tiff(path: Path, size=(512, 384), mpp: float = 0.5, seed: int = 0) -> Path:
    """A tiled pyramidal generic TIFF with resolution tags (as HEST's wsis/<id>.tif)."""
    import tifffile

    rng = np.random.default_rng(seed)
    arr = rng.integers(100, 255, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    res = 1e4 / mpp  # pixels per centimetre
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        opts = dict(tile=(128, 128), photometric="rgb", compression="zlib", resolutionunit="CENTIMETER")
        tif.write(arr, subifds=1, resolution=(res, res), **opts)
        tif.write(arr[::2, ::2], subfiletype=1, resolution=(res / 2, res / 2), **opts)
    return path


def make_hest(root: Path, ids=("TENX1", "NCBI2"), *, mpp: float = 0.5, with_wsi=True) -> Path:
    """A mini HEST-1k download: st/<id>.h5ad, wsis/<id>.tif, metadata/<id>.json."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    for k, sid in enumerate(ids):
        n = 12
        r, c = np.divmod(np.arange(n), 4)
        obs = pd.DataFrame(
            {
                "in_tissue": [0] + [1] * (n - 1),
                "array_row": r,
                "array_col": c * 2,
                "pxl_row_in_fullres": 40 + r * 80.0,
                "pxl_col_in_fullres": 50 + c * 100.0,
            },
            index=[f"BC{k}{i:03d}-1" for i in range(n)],
        )
        a = ad.AnnData(X=sp.csr_matrix(counts_matrix(n, len(GENES), k).astype(np.float32)), obs=obs, var=pd.DataFrame(index=GENES))
        a.obsm["spatial"] = obs[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy()
        a.uns["spatial"] = {"ST": {"images": {"downscaled_fullres": np.zeros((4, 4, 3), np.uint8)}, "scalefactors": {"tissue_downscaled_fullres_scalef": 0.01}}}
        (root / "st").mkdir(parents=True, exist_ok=True)
        a.write_h5ad(root / "st" / f"{sid}.h5ad")
        meta = {
            "id": sid,
            "dataset_title": "mini",
            "st_technology": "Visium",
            "patient": f"patient{k}",
            "pixel_size_um_estimated": mpp,
            "pixel_size_um_embedded": mpp * 1.01,
            "spot_diameter": 55.0,
            "inter_spot_dist": 100.0,
            "organ": "Breast",
            "species": "Homo sapiens",
        }
        (root / "metadata").mkdir(parents=True, exist_ok=True)
        (root / "metadata" / f"{sid}.json").write_text(json.dumps(meta))
        if with_wsi:
            write_pyramid_tiff(root / "wsis" / f"{sid}.tif", seed=k)
    return root


STUTILITY_IDS = [f"ENSMUSG{i:011d}.{i % 3 + 1}" for i in range(len(GENES))]


def make_stutility(folder: Path, name: str = "MOB1", *, px_x: float = 20.0, px_y: float = 20.0, with_image: bool = True) -> Path:
    """A 2k-array section: checkerboard positions 8 x 8 (x + y even), the centre 4 x 4 block
    selected, one count row without a position and counts under every position."""
    folder.mkdir(parents=True, exist_ok=True)
    pos = [(x, y) for y in range(1, 9) for x in range(1, 9) if (x + y) % 2 == 0]
    rows = ["x\ty\tnew_x\tnew_y\tpixel_x\tpixel_y\tselected"]
    for x, y in pos:
        sel = int(3 <= x <= 6 and 3 <= y <= 6)
        rows.append(f"{x}\t{y}\t{x}\t{y}\t{30 + x * px_x:.2f}\t{30 + y * px_y:.2f}\t{sel}")
    (folder / f"alignment_table_{name}.tsv").write_text("\n".join(rows) + "\n")
    ids = [f"{x}x{y}" for x, y in pos] + ["40x40"]
    write_counts_tsv(folder / f"{name}.tsv", ids, STUTILITY_IDS, counts_matrix(len(ids), len(STUTILITY_IDS), 3))
    if with_image:
        write_jpeg(folder / f"{name}.jpg", size=(260, 260))
    return folder
