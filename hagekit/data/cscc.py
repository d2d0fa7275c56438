"""Reader for the cutaneous SCC ST data (Ji et al. 2020, GEO GSE144240, ``GSE144240_RAW``).

The extracted GEO archive is one flat folder; per section ``<name>`` (``P{2,5,9,10}_ST_rep{1,2,3}``)::

    *<name>_stdata.tsv(.gz)          spots x genes raw counts; first column "{x}x{y}"
    *spot*<name>.tsv(.gz)            x y [new_x new_y] pixel_x pixel_y [selected]
    *<name>.jpg                      full-resolution H&E

Same legacy ST platform as her2st (100 µm spots on a 200 µm grid), so spots are matched on
rounded ``x, y`` and microns per pixel come from the fitted array pitch.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from hagekit.data.her2st import build_her2st_section
from hagekit.data.prepare import (
    PrepareReport,
    SectionSource,
    require_dir,
    select_sections,
)
from hagekit.errors import DataError, at
from hagekit.progress import Reporter

__all__ = ["find_cscc_sections", "prepare_cscc"]

log = logging.getLogger(__name__)

DATASET = "cscc"
_COUNTS_RE = re.compile(r"^(?:GSM\d+_)?(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*?)_stdata\.tsv(?:\.gz)?$")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def _patient(name: str) -> str:
    m = re.match(r"^(P\d+)(?:_|$)", name)
    return m.group(1) if m else name.split("_")[0]


def _ends_with_name(filename: str, name: str, suffixes: Sequence[str]) -> bool:
    """``filename`` is ``<anything><sep><name><suffix>`` (or ``<name><suffix>``), sep not alphanumeric."""
    for suffix in suffixes:
        tail = name + suffix
        if filename.lower().endswith(tail.lower()) and filename[: -len(tail)][-1:] in ("", "_", "-", "."):
            return True
    return False


def find_cscc_sections(
    raw: Path | str, sections: Sequence[str] | None = None, *, dataset: str = DATASET
) -> list[SectionSource]:
    """Find the cSCC sections in a GSE144240_RAW folder (all, or those named)."""
    raw = require_dir(Path(raw), "GSE144240_RAW folder")
    files = sorted(p for p in raw.iterdir() if p.is_file() and not p.name.startswith("."))
    counts: dict[str, list[Path]] = {}
    for path in files:
        m = _COUNTS_RE.match(path.name)
        if m:
            counts.setdefault(m.group("name"), []).append(path)
    if not counts:
        raise DataError(at(raw, "no *<name>_stdata.tsv(.gz) counts files (expected the GEO GSE144240_RAW layout)"))
    names = select_sections(sorted(counts), sections)
    sources = []
    for name in names:
        if len(counts[name]) > 1:
            raise DataError(at(counts[name][1], f"section {name!r} named twice (also {counts[name][0]}); keep one counts file"))
        counts_file = counts[name][0]
        spot_files = [
            p for p in files if "spot" in p.name.lower() and _ends_with_name(p.name, name, (".tsv", ".tsv.gz", ".csv", ".csv.gz"))
        ]
        if not spot_files:
            raise DataError(at(counts_file, f"counts file with no matching spot file (expected *spot*{name}.tsv.gz in {raw})"))
        if len(spot_files) > 1:
            raise DataError(at(spot_files[1], f"section {name!r} has two spot files (also {spot_files[0]}); keep one"))
        images = [
            p
            for p in files
            if "spot" not in p.name.lower() and "stdata" not in p.name.lower() and _ends_with_name(p.name, name, _IMAGE_SUFFIXES)
        ]
        if len(images) > 1:
            raise DataError(at(images[1], f"section {name!r} has two images (also {images[0]}); keep one"))
        image = images[0] if images else None
        if image is None:
            log.warning("%s: no image *%s.jpg; section prepared with counts only", raw, name)
        spot_file = spot_files[0]

        def build(counts_file=counts_file, spot_file=spot_file, image=image, name=name):
            return build_her2st_section(
                counts_file,
                spot_file,
                image=image,
                label_file=None,
                section=name,
                dataset=dataset,
                patient=_patient(name),
                source="GEO GSE144240",
            )

        files_t = tuple(p for p in (counts_file, spot_file, image) if p is not None)
        sources.append(SectionSource(name, _patient(name), files_t, build, has_image=image is not None))
    return sources


def prepare_cscc(raw: Path | str, out_root: Path | str, *, sections: Sequence[str] | None = None, dataset: str = DATASET,
                 overwrite: bool = False, progress: Reporter | None = None) -> PrepareReport:
    """Prepare cSCC sections from a GSE144240_RAW folder into ``<out_root>/<dataset>/``."""
    from hagekit.data.prepare import prepare_layout

    return prepare_layout(find_cscc_sections, raw, sections, out_root, dataset, overwrite=overwrite, progress=progress)
