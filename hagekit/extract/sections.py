"""Spot features for ST sections: a patch of ``patch_um`` µm centred on every spot.

One ``<out>/<section>.h5`` per section (``features``, ``coords`` = integer top-left corners
of the spot patches in level-0 px, ``centres`` = spot centres, ``barcodes`` = the section's
obs_names in order) with provenance and TRIDENT/CLAM attributes (:func:`hagekit.io.h5.spot_coords`);
``--dump-patches`` adds HEST's patch files (:mod:`hagekit.io.hest`); finished
sections are skipped unless ``overwrite``; a failing section is reported and the rest run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import ConfigError, DataError, at
from hagekit.extract.common import provenance
from hagekit.extract.engine import EncoderSetup, run_encoder
from hagekit.extract.resolution import source_resolution_attrs
from hagekit.extract.runner import SkipItem, run_items
from hagekit.extract.spec import EncoderSpec, ExtractionSpec
from hagekit.extract.summary import ExtractSummary
from hagekit.progress import Reporter, reporter_or_null
from hagekit.slides.patches import check_patch_um

__all__ = ["extract_sections", "SpotDataset"]

log = logging.getLogger(__name__)


class SpotDataset:
    """Transformed spot patches of one section; with ``dump`` (a second patcher at HEST's
    224 px / 0.5 µm/px), also that raw uint8 patch for ``--dump-patches``."""

    def __init__(self, patcher: Any, transform: Any, *, dump: Any = None) -> None:
        self.patcher = patcher
        self.transform = transform
        self.dump = dump

    def __len__(self) -> int:
        return len(self.patcher)

    def __getitem__(self, i: int) -> Any:
        import torch

        x = self.transform(self.patcher.patch(i))
        if self.dump is not None:
            return x, torch.from_numpy(np.array(self.dump.patch(i), dtype=np.uint8, order="C"))
        return x


def _read_spots(path: Path) -> dict[str, Any]:
    """A section's spots and image metadata without loading its counts."""
    from hagekit.data.section import read_section, section_image_path

    adata = read_section(path, backed=True)
    try:
        if "hagekit" not in adata.uns or "spatial" not in adata.obsm:
            raise DataError(at(path, "not a prepared section (no uns['hagekit'] or obsm['spatial'])"))
        meta = dict(adata.uns["hagekit"])
        return {
            "section": str(meta.get("section", path.stem)),
            "dataset": str(meta.get("dataset", "")),
            "has_image": bool(meta.get("has_image", False)),
            "image_path": str(section_image_path(adata, path) or ""),
            "mpp": float(meta.get("mpp", float("nan"))),
            "patches_path": str(meta.get("patches_path", "") or ""),
            "barcodes": np.asarray(adata.obs_names.astype(str)),
            "centres": np.asarray(adata.obsm["spatial"], dtype=np.float64),
        }
    finally:
        if getattr(adata, "file", None) is not None:
            adata.file.close()


def _extract_one(
    path: Path,
    spots: dict[str, Any],
    setup: EncoderSetup,
    *,
    out_path: Path,
    dataset: str,
    patch_um: float,
    batch_size: int,
    num_workers: int,
    dump_dir: Path | None,
    reporter: Reporter,
) -> int:
    from hagekit.io.h5 import spot_coords, write_features
    from hagekit.io.hest import HEST_MPP, HEST_PATCH_PX, write_hest_patches
    from hagekit.slides.patches import SpotPatcher

    section = spots["section"]
    if not spots["has_image"] or not spots["image_path"]:
        raise DataError(at(path, "section has no image"))
    mpp = spots["mpp"]
    if not (math.isfinite(mpp) and mpp > 0):
        raise DataError(at(path, f"section has no valid microns per pixel (mpp={mpp})"))
    image = Path(spots["image_path"])
    if not image.is_file():
        raise DataError(at(image, f"image of section {section} not found"))
    bundle = setup.bundle
    resolution = source_resolution_attrs(section, source_px=patch_um / mpp, out_px=int(bundle.input_size), source_mpp=mpp)
    patcher = SpotPatcher(
        image, spots["centres"], mpp=mpp, patch_um=patch_um, out_size=bundle.input_size, barcodes=spots["barcodes"]
    )
    dumps: list[np.ndarray] = []
    dump = None
    if dump_dir is not None:
        dump = SpotPatcher(image, spots["centres"], mpp=mpp, patch_um=HEST_PATCH_PX * HEST_MPP, out_size=HEST_PATCH_PX,
                           barcodes=spots["barcodes"])
    ds = SpotDataset(patcher, bundle.transform, dump=dump)
    task = reporter.task(f"{section}", total=len(ds))
    try:
        feats, stats = run_encoder(
            setup,
            ds,
            batch_size=batch_size,
            num_workers=num_workers,
            task=task,
            on_batch=(lambda rest: dumps.append(rest[0].numpy())) if dump_dir is not None else None,
        )
    finally:
        task.close()
        patcher.close()
        if dump is not None:
            dump.close()
    if not np.all(np.isfinite(feats)):
        raise DataError(at(path, "encoder produced NaN/Inf features"))
    attrs = provenance(
        setup,
        patch_size_px=float(patcher.size_px),
        patch_size_um=float(patch_um),
        mpp=float(mpp),
        dataset=dataset,
        section=section,
        image_path=str(image),
        **resolution,
    )
    coords, coords_attrs = spot_coords(spots["centres"], patcher.size_px, mpp, patcher.dimensions,
                                       name=section, savetodir=out_path.parent.resolve())
    if dump_dir is not None:
        patches = np.concatenate(dumps) if dumps else np.zeros((0, HEST_PATCH_PX, HEST_PATCH_PX, 3), np.uint8)
        write_hest_patches(dump_dir / f"{section}.h5", patches, spots["centres"], spots["barcodes"], mpp=mpp, name=section)
    write_features(out_path, feats, coords, barcodes=spots["barcodes"], attrs=attrs, coords_attrs=coords_attrs,
                   extra_datasets={"centres": np.asarray(spots["centres"], dtype=np.float64)})
    log.info("%s: %d spots in %.1fs (%.0f patches/s)", section, stats.n, stats.seconds, stats.patches_per_s)
    return stats.n


def extract_sections(
    data_root: Path | str | None,
    dataset: str,
    *,
    encoder: EncoderSpec | str = "builtin",
    spec: ExtractionSpec | None = None,
    sections: Sequence[str] | None = None,
    progress: Reporter | None = None,
    workspace: Path | str | None = None,
) -> ExtractSummary:
    """Spot features (patches of ``spec.patch_um`` µm) of every imaged section of ``dataset`` (or of ``sections``).

    ``data_root``/``spec.out_dir`` default to the workspace (``<ws>/data``,
    ``<ws>/features/<dataset>/<encoder>``). Under torchrun, or with ``spec.shard`` ("K/N"), this
    process encodes its share (:mod:`hagekit.extract.runner`). Returns the per-section
    summary; bad options, an unusable encoder and non-input errors raise.
    """
    from hagekit.data.section import dataset_sections
    from hagekit.workspace import Workspace, canonical_dataset

    t_run = time.perf_counter()
    enc, spec = EncoderSpec.of(encoder), spec if spec is not None else ExtractionSpec()
    ws = Workspace.resolve(workspace)
    root = Path(data_root) if data_root is not None else ws.data_root
    ds_name = canonical_dataset(dataset)
    check_patch_um(spec.patch_um)
    enc.validate()
    files = _chosen(dataset_sections(root, ds_name), sections)
    out = Path(spec.out_dir) if spec.out_dir is not None else ws.features_dir(ds_name, enc.name)
    reporter = reporter_or_null(progress)

    def extract(f: Path, setup: EncoderSetup, target: Path, batch: int, workers: int) -> int:
        spots = _read_spots(f)
        if spots["patches_path"] and not spots["image_path"]:  # a HEST sample without its WSI
            from hagekit.extract.stored_patches import extract_stored_patches

            return extract_stored_patches(spots, setup, out_path=target, dataset=ds_name, batch_size=batch,
                                          num_workers=workers, reporter=reporter)
        if not spots["has_image"]:
            raise SkipItem("no image")
        return _extract_one(
            f, spots, setup, out_path=target, dataset=ds_name, patch_um=spec.patch_um, batch_size=batch,
            num_workers=workers, dump_dir=out / "patches" if spec.dump_patches else None, reporter=reporter,
        )

    summary = run_items(files, extract, encoder=enc, spec=dataclasses.replace(spec, out_dir=out),
                        settings={"patch_size_um": spec.patch_um}, weigh=_n_spots, reporter=reporter)
    summary.seconds = max(summary.seconds, time.perf_counter() - t_run)
    return summary


def _chosen(files: list[Path], sections: Sequence[str] | None) -> list[Path]:
    """The files of ``sections`` in that order (all ``files`` without), refusing unknown names."""
    if not sections:
        return files
    by_name = {f.stem: f for f in files}
    unknown = [s for s in sections if s not in by_name]
    if unknown:
        raise ConfigError(f"--sections: unknown {', '.join(unknown)} (valid: {', '.join(sorted(by_name))})")
    return [by_name[s] for s in sections]


def _n_spots(path: Path) -> float:
    """Dealing weight of a section: its imaged spots (0 without image)."""
    spots = _read_spots(path)
    return float(len(spots["barcodes"])) if spots["has_image"] else 0.0
