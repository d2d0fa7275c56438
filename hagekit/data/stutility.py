"""Reader for legacy ST data in STUtility's layout (``jbergenstrahle/STUtility``, ``inst/extdata``).

One flat folder; per section ``<S>``::

    <S>.tsv(.gz)                    spots x genes raw counts; first column "{x}x{y}"; genes are
                                    often Ensembl ids (ENSMUSG00000064339.1)
    alignment_table_<S>.tsv(.gz)    x y new_x new_y pixel_x pixel_y selected (as HER2ST's spot files)
    <S>.jpg (or .png, .tif)         the H&E the pixel coordinates refer to (optional)

The array (1k or 2k) is told from the occupied positions (:mod:`hagekit.data.st_array`).
Ensembl-id gene columns stay as they are, or, with a ``gene_names`` mapping (id, symbol per
line: a 10x ``features.tsv`` works), become symbols with the ids kept in ``var["gene_ids"]``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hagekit.data.her2st import build_her2st_section
from hagekit.data.prepare import (
    PrepareReport,
    SectionSource,
    require_dir,
    require_file,
    select_sections,
)
from hagekit.errors import DataError, at
from hagekit.progress import Reporter

if TYPE_CHECKING:
    import anndata

__all__ = ["find_stutility_sections", "read_gene_names", "prepare_stutility"]

log = logging.getLogger(__name__)

DATASET = "stutility"
_ALIGN_RE = re.compile(r"^alignment_table_(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*?)\.tsv(?:\.gz)?$")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def _unversioned(gene_id: str) -> str:
    """``ENSMUSG00000064339.1`` -> ``ENSMUSG00000064339`` (Ensembl ids carry a version suffix)."""
    return re.sub(r"^(ENS[A-Z]*G\d+)\.\d+$", r"\1", gene_id.strip())


def read_gene_names(path: Path | str) -> dict[str, str]:
    """An id -> symbol mapping from a two-or-more-column text file (tab or comma; gzip allowed),
    the id first: a 10x ``features.tsv(.gz)`` or a BioMart export. Ids are matched unversioned."""
    import gzip

    path = require_file(path, "--gene-names file")
    with path.open("rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rt", encoding="utf-8") if gz else path.open("r", encoding="utf-8")) as fh:
            lines = fh.read().splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(at(path, f"not a readable (gzip) text file ({exc})")) from None
    mapping: dict[str, str] = {}
    for line in lines:
        parts = [p.strip().strip('"') for p in (line.split("\t") if "\t" in line else line.split(","))]
        if len(parts) >= 2 and parts[0] and parts[1]:
            mapping.setdefault(_unversioned(parts[0]), parts[1])
    if not mapping:
        raise DataError(at(path, "no 'id<TAB>symbol' lines (a gene id, then its symbol)"))
    return mapping


def _name_genes(adata: anndata.AnnData, mapping: dict[str, str] | None, source: Path | None) -> anndata.AnnData:
    """Keep the columns' ids in ``var["gene_ids"]``; with a mapping, symbols become the gene names
    (ids without a symbol keep their id; repeated symbols are made unique)."""
    import anndata as ad
    import pandas as pd

    ids = [str(g) for g in adata.var_names]
    adata.var["gene_ids"] = ids
    if mapping is None:
        return adata
    names = [mapping.get(_unversioned(g), g) for g in ids]
    n_mapped = sum(1 for g, n in zip(ids, names, strict=True) if n != g)
    if n_mapped == 0:
        raise DataError(at(source or "--gene-names", f"maps none of the {len(ids)} gene ids (e.g. {ids[0]})"))
    if n_mapped < len(ids):
        log.warning("%s: %d of %d gene ids have no symbol in %s; they keep their id", adata.uns["hagekit"]["section"],
                    len(ids) - n_mapped, len(ids), source)
    index = ad.utils.make_index_unique(pd.Index(names, name="gene"), join="-")
    adata.var_names = index
    return adata


def _find_file(files: Sequence[Path], name: str, suffixes: Sequence[str]) -> Path | None:
    found = [p for p in files if any(p.name == f"{name}{s}" for s in suffixes)]
    return found[0] if found else None


def find_stutility_sections(
    raw: Path | str, sections: Sequence[str] | None = None, *, dataset: str = DATASET, gene_names: Path | None = None
) -> list[SectionSource]:
    """Find the sections of an STUtility folder (all, or those named); check their files exist."""
    raw = require_dir(Path(raw), "STUtility folder")
    files = sorted(p for p in raw.iterdir() if p.is_file() and not p.name.startswith("."))
    tables = {m.group("name"): p for p in files if (m := _ALIGN_RE.match(p.name))}
    if not tables:
        raise DataError(at(raw, "no alignment_table_<S>.tsv files (expected the STUtility layout: <S>.tsv, "
                                "alignment_table_<S>.tsv, <S>.jpg)"))
    mapping = read_gene_names(gene_names) if gene_names is not None else None
    sources = []
    for name in select_sections(sorted(tables), sections):
        counts = _find_file(files, name, (".tsv", ".tsv.gz"))
        if counts is None:
            raise DataError(at(tables[name], f"alignment table with no counts file (expected {raw / (name + '.tsv')})"))
        image = _find_file(files, name, _IMAGE_SUFFIXES)
        if image is None:
            log.warning("%s: no image %s.jpg; section prepared with counts only", raw, name)

        def build(counts=counts, table=tables[name], image=image, name=name):
            adata = build_her2st_section(counts, table, image=image, label_file=None, section=name, dataset=dataset,
                                         patient=name, source="STUtility")
            return _name_genes(adata, mapping, gene_names)

        files_t = tuple(p for p in (counts, tables[name], image) if p is not None)
        sources.append(SectionSource(name, name, files_t, build, has_image=image is not None))
    return sources


def prepare_stutility(
    raw: Path | str,
    out_root: Path | str,
    *,
    sections: Sequence[str] | None = None,
    dataset: str = DATASET,
    gene_names: Path | str | None = None,
    overwrite: bool = False,
    progress: Reporter | None = None,
) -> PrepareReport:
    """Prepare STUtility-layout sections from ``raw`` into ``<out_root>/<dataset>/``."""
    from hagekit.data.prepare import prepare_layout

    names = Path(gene_names) if gene_names is not None else None

    def find(raw_, selection, *, dataset):
        return find_stutility_sections(raw_, selection, dataset=dataset, gene_names=names)

    return prepare_layout(find, raw, sections, out_root, dataset, overwrite=overwrite, progress=progress)
