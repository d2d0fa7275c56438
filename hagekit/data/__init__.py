"""The data layer: one standard section layout (AnnData ``.h5ad``) and readers into it.

Images are read through :mod:`hagekit.slides` (the one image layer), never here.

:data:`READERS` is the registry of raw-layout readers ``hagekit data prepare <name>`` runs:
each entry is a ``prepare_<name>(raw, out_root, *, dataset, overwrite, progress, ...)``
function (loaded on first use) with its help line and the download manifest of its source.
A new reader is one module plus one ``READERS.register`` line here (or an entry point in the
``hagekit.readers`` group of an installed package)."""

from __future__ import annotations

from hagekit.registry import Registry

__all__ = ["READERS"]

READERS: Registry = Registry("ST reader", option="hagekit data prepare", entry_points="hagekit.readers")
READERS.register("her2st", "hagekit.data.her2st:prepare_her2st", manifest="her2st",
                 help="HER2+ breast cancer ST (almaan/her2st layout: data/ST-cnts, ST-spotfiles, ST-imgs, ST-pat).")
READERS.register("cscc", "hagekit.data.cscc:prepare_cscc", manifest="cscc",
                 help="Cutaneous SCC ST (GEO GSE144240_RAW: *_stdata.tsv.gz, *spot*.tsv.gz, *.jpg per section).")
READERS.register("stutility", "hagekit.data.stutility:prepare_stutility",
                 help="Legacy ST in STUtility's layout (<S>.tsv, alignment_table_<S>.tsv, <S>.jpg); "
                      "1k or 2k array told from the spots.")
READERS.register("visium", "hagekit.data.visium:prepare_visium",
                 help="10x Visium (Space Ranger outs); pixel size = 55 µm / (spot_diameter_fullres x the image's scale factor).")
READERS.register("hest", "hagekit.data.hest:prepare_hest", manifest="hest",
                 help="HEST-1k samples; microns per pixel from metadata pixel_size_um_estimated.")
