"""Assemble one dataset for training or benchmarking: sections x features x panel.

Every method (HAGE and each baseline) gets the same arrays from here: frozen features
joined to spots by barcode, raw panel counts, and expression targets from
:mod:`hagekit.targets`. Mismatched pairings (features of another section, encoder or
spot set; panel genes absent from the data) are refused with a clear error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import DataError, ProvenanceError, at
from hagekit.progress import Reporter, track

__all__ = ["SectionData", "STDataset", "load_dataset", "load_section_data"]

log = logging.getLogger(__name__)


@dataclass
class SectionData:
    """One section's aligned arrays (rows = spots in the section file's order)."""

    section: str
    patient: str
    barcodes: np.ndarray
    features: np.ndarray
    counts: np.ndarray
    targets: np.ndarray
    spatial: np.ndarray
    array_xy: np.ndarray | None = None
    feature_path: Path | None = None
    section_path: Path | None = None

    @property
    def n_spots(self) -> int:
        return int(self.features.shape[0])


@dataclass
class STDataset:
    """A dataset ready for cross-validation: ordered sections over one panel and encoder."""

    dataset: str
    genes: list[str]
    sections: dict[str, SectionData]
    feature_attrs: dict[str, Any] = field(default_factory=dict)
    target: str = "log1p_norm"
    _digest: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def patients(self) -> dict[str, str]:
        """``{section: patient}`` for the split functions."""
        return {name: s.patient for name, s in self.sections.items()}

    @property
    def feature_dim(self) -> int:
        return int(next(iter(self.sections.values())).features.shape[1])

    def inputs_digest(self) -> dict[str, Any]:
        """What a run is made of, by content: sha256 of the panel's genes, and per section of
        its expression (barcodes, panel counts, positions, patient) and of its features.

        Computed once per dataset (cached on it), so resuming many runs over one dataset
        hashes its arrays once; a run folder compares these, not file paths
        (:func:`hagekit.training.protocol.run_protocol`)."""
        if self._digest is None:
            self._digest = {
                "genes": sha256_parts(["\n".join(self.genes)]),
                "sections": {name: {"expression": sha256_parts([s.patient, "\n".join(map(str, s.barcodes)),
                                                                 s.counts, s.spatial]),
                                    "features": sha256_parts([s.features])}
                             for name, s in self.sections.items()},
            }
        return self._digest

    def stack(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Concatenate sections: ``(features, targets, spatial, section_index)``."""
        parts = [self.sections[n] for n in names]
        X = np.concatenate([p.features for p in parts])
        Y = np.concatenate([p.targets for p in parts])
        S = np.concatenate([_positions(p) for p in parts])
        idx = np.concatenate([np.full(p.n_spots, i) for i, p in enumerate(parts)])
        return X, Y, S, idx


def sha256_parts(parts: Sequence[Any]) -> str:
    """sha256 over strings and arrays (dtype and shape included, so a reshaped array differs)."""
    import hashlib

    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.tobytes())
        else:
            h.update(str(part).encode("utf-8", "surrogateescape"))
        h.update(b"\0")
    return h.hexdigest()


def _positions(s: SectionData) -> np.ndarray:
    """Spot grid positions for position-aware methods: array coords if known, else pixels."""
    return (s.array_xy if s.array_xy is not None else s.spatial).astype(np.float32)


def load_section_data(
    section_path: Path,
    feature_path: Path | None,
    genes: Sequence[str],
    *,
    target: str = "log1p_norm",
) -> SectionData:
    """Join one section file and its feature file by barcode over the panel ``genes``."""
    from hagekit.data.section import read_section
    from hagekit.io.h5 import read_features
    from hagekit.targets import expression_targets

    adata = read_section(section_path)
    meta = adata.uns["hagekit"]
    var_index = {g: i for i, g in enumerate(adata.var_names)}
    missing = [g for g in genes if g not in var_index]
    if missing:
        raise DataError(
            at(
                section_path,
                f"{len(missing)} panel genes absent from this section (e.g. {', '.join(missing[:5])}); "
                "build the panel from these sections with `hagekit genes select`",
            )
        )
    cols = np.array([var_index[g] for g in genes])
    counts = adata.X[:, cols]
    counts = np.asarray(counts.toarray() if hasattr(counts, "toarray") else counts, dtype=np.float32)
    barcodes = np.asarray(adata.obs_names, dtype=object)
    spatial = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    array_xy = None
    if "array_x" in adata.obs and "array_y" in adata.obs:
        array_xy = adata.obs[["array_x", "array_y"]].to_numpy(dtype=np.float64)
    if feature_path is None:
        features = np.zeros((len(barcodes), 0), dtype=np.float32)
    else:
        ff = read_features(feature_path)
        fsec = ff.attrs.get("section")
        if fsec not in (None, "") and str(fsec) != str(meta["section"]):
            raise ProvenanceError(
                at(feature_path, f"features are of section {fsec!r}, not {meta['section']!r}")
            )
        if ff.barcodes is None:
            raise ProvenanceError(at(feature_path, "feature file has no 'barcodes' to join to spots"))
        pos = {b: i for i, b in enumerate(ff.barcodes)}
        rows = np.array([pos.get(b, -1) for b in barcodes])
        if (rows < 0).any():
            n = int((rows < 0).sum())
            raise ProvenanceError(
                at(feature_path, f"{n} of {len(barcodes)} spots of {section_path.name} have no features; "
                   "re-extract with `hagekit extract --overwrite`")
            )
        features = ff.features[rows]
    return SectionData(
        section=str(meta["section"]),
        patient=str(meta["patient"]),
        barcodes=barcodes,
        features=features,
        counts=counts,
        targets=expression_targets(counts, kind=target),
        spatial=spatial,
        array_xy=array_xy,
        feature_path=feature_path,
        section_path=Path(section_path),
    )


def load_dataset(
    data_root: Path | str,
    dataset: str,
    features_dir: Path | str | None,
    genes: Sequence[str],
    *,
    sections: Sequence[str] | None = None,
    target: str = "log1p_norm",
    progress: Reporter | None = None,
) -> STDataset:
    """Load every chosen section of ``dataset`` with its features and targets over ``genes``.

    Without ``sections``, all sections that have a feature file in ``features_dir`` are
    used (sections without an image have no features). ``features_dir=None`` loads
    expression only (feature arrays of width 0).
    """
    from hagekit.data.section import dataset_sections
    from hagekit.io.h5 import check_same_encoder, read_feature_attrs
    from hagekit.workspace import canonical_dataset

    genes = list(genes)
    if not genes:
        raise DataError("gene panel is empty")
    files = {p.stem: p for p in dataset_sections(data_root, dataset)}
    fdir = Path(features_dir) if features_dir is not None else None
    if fdir is not None and not fdir.is_dir():
        raise DataError(at(fdir, "feature folder not found; run `hagekit extract` first"))
    if sections:
        unknown = [s for s in sections if s not in files]
        if unknown:
            raise DataError(
                at(Path(data_root) / canonical_dataset(dataset),
                   f"unknown sections {', '.join(unknown)} (have: {', '.join(files)})")
            )
        chosen = list(dict.fromkeys(sections))
    elif fdir is not None:
        chosen = [s for s in files if (fdir / f"{s}.h5").is_file()]
        if not chosen:
            raise DataError(at(fdir, f"no feature file matches a section of '{dataset}'"))
    else:
        chosen = list(files)
    attrs_by_file: dict[str, dict] = {}
    if fdir is not None:
        for s in chosen:
            fp = fdir / f"{s}.h5"
            if not fp.is_file():
                raise DataError(at(fp, f"no features for section {s}; run `hagekit extract`"))
            attrs_by_file[str(fp)] = read_feature_attrs(fp)
    shared = check_same_encoder(attrs_by_file) if attrs_by_file else {}
    loaded: dict[str, SectionData] = {}
    for s in track(chosen, "loading sections", progress=progress):
        loaded[s] = load_section_data(
            files[s], fdir / f"{s}.h5" if fdir is not None else None, genes, target=target
        )
    widths = {s: int(d.features.shape[1]) for s, d in loaded.items()}
    if len(set(widths.values())) > 1:
        common = max(set(widths.values()), key=list(widths.values()).count)
        odd = next(s for s, w in widths.items() if w != common)
        raise DataError(at(loaded[odd].feature_path or odd, f"features are {widths[odd]} wide, the other sections' "
                           f"{common}; extract every section with the same encoder (`hagekit extract --overwrite`)"))
    if fdir is not None and not sections:
        _warn_unfeatured(files, chosen, fdir)
    log.info("loaded %d sections, %d spots, %d genes", len(loaded),
             sum(d.n_spots for d in loaded.values()), len(genes))
    first_attrs = next(iter(attrs_by_file.values()), {})
    feature_attrs = {**{k: first_attrs[k] for k in first_attrs if k not in ("section", "dataset")}, **shared}
    return STDataset(canonical_dataset(dataset), genes, loaded, feature_attrs, target)


def _warn_unfeatured(files: dict[str, Path], chosen: Sequence[str], fdir: Path) -> None:
    """Name image sections left out for lack of a feature file (not silently dropped)."""
    from hagekit.data.section import section_info

    missing = []
    for name, path in files.items():
        if name in chosen:
            continue
        try:
            if section_info(path).has_image:
                missing.append(name)
        except DataError:
            continue
    if missing:
        log.warning("%s: no feature file for image section(s) %s; they are left out (run `hagekit extract`)",
                    fdir, ", ".join(missing))
