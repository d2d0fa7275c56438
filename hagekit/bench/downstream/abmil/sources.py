"""Where AB-MIL's bags come from: feature folders given as ``[NAME=]DIR``, or slide files
tiled and encoded per encoder with ``hagekit extract`` (cached), with the policy for slides
whose extraction fails (refused unless missing slides are allowed)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hagekit.bench.downstream.abmil.bags import check_missing
from hagekit.bench.downstream.abmil.labels import SLIDE_SUFFIXES, SlideLabels
from hagekit.errors import ConfigError, DataError, at
from hagekit.io.atomic import visible_files
from hagekit.progress import Reporter
from hagekit.workspace import encoder_slug

if TYPE_CHECKING:
    from hagekit.workspace import Workspace

__all__ = [
    "SlideExtraction", "FeatureSources", "ResolvedSources", "find_slide_files", "extract_slide_features",
    "parse_named_paths", "resolve_sources",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlideExtraction:
    """How slides become tile features: the slides' µm/px when their metadata lacks it, the tile
    resolution (``magnification`` overrides ``target_mpp``) and size, random weights, device, workers."""

    mpp: float | None = None
    target_mpp: float | None = 0.5
    magnification: float | None = None
    tile_size: int = 256
    random_weights: bool = False
    device: str = "auto"
    num_workers: int | None = None

    def record(self) -> dict[str, Any]:
        """The tiling settings a run's ``config.json`` records."""
        d = asdict(self)
        return {k: d[k] for k in ("mpp", "target_mpp", "magnification", "tile_size")}


def find_slide_files(slides_dir: Path | str, slide_ids: Sequence[str], *, allow_missing: bool = False) -> dict[str, Path]:
    """Map slide ids to slide files in ``slides_dir`` (or one level below) named ``<id>.<ext>``."""
    root = Path(slides_dir)
    if root.is_file():
        root = root.parent
    if not root.is_dir():
        raise DataError(at(root, "slides folder not found"))
    by_stem: dict[str, Path] = {}
    wanted = set(slide_ids)
    # top level first, then subfolders (gdc-client writes <file uuid>/<slide>.svs)
    for p in [*visible_files(root, "*"), *visible_files(root, "*/*")]:
        if p.stem in wanted and p.suffix.lower() in SLIDE_SUFFIXES and p.is_file():
            by_stem.setdefault(p.stem, p)
    found = {s: by_stem[s] for s in slide_ids if s in by_stem}
    missing = [s for s in slide_ids if s not in found]
    check_missing(root, "slide file", missing, len(slide_ids), allow_missing=allow_missing)
    return found


def extract_slide_features(
    slides: Mapping[str, Path],
    encoder: str,
    *,
    features_dir: Path | str,
    weights: Path | None = None,
    extraction: SlideExtraction = SlideExtraction(),
    progress: Reporter | None = None,
) -> tuple[Path, dict[str, str]]:
    """Tile and encode ``slides`` with ``hagekit extract`` into ``features_dir``.

    Finished slides made by the same encoder and tiling are reused. Returns the features
    folder and ``{slide id: reason}`` for the slides that failed.
    """
    from hagekit.extract import EncoderSpec, ExtractionSpec, TilingSpec, extract_slides

    out = Path(features_dir)
    x = extraction
    summary = extract_slides(
        [slides[s] for s in sorted(slides)],
        encoder=EncoderSpec(encoder, weights=weights, random_weights=x.random_weights, device=x.device,
                            num_workers=x.num_workers),
        spec=ExtractionSpec(out_dir=out, overwrite=False, tiling=TilingSpec(
            mpp=x.mpp, target_mpp=x.target_mpp, magnification=x.magnification, tile_size=x.tile_size)),
        progress=progress,
    )
    if summary.skipped:
        logger.info("reused cached features of %d slide(s) in %s", len(summary.skipped), out)
    failed = {i.name: i.reason for i in summary.failed}
    if failed:
        logger.warning("feature extraction failed for %d slide(s): %s", len(failed), "; ".join(f"{k}: {v}" for k, v in failed.items()))
    return out, failed


def parse_named_paths(values: Sequence[str], option: str) -> dict[str, Path]:
    """``["uni=/a", "/b"]`` -> ``{"uni": /a, "b": /b}`` (name defaults to the folder name)."""
    out: dict[str, Path] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or re.search(r"[/\\]", name):
            name, path = Path(v).name or v, v
        if name in out:
            raise ConfigError(f"{option}: name {name!r} given twice")
        out[name] = Path(path)
    return out


@dataclass(frozen=True)
class FeatureSources:
    """``--features`` folders, or ``--slides`` to extract with each of ``--encoder`` (``weights``
    per encoder; features under ``features_root/<encoder>``, default the workspace's)."""

    slides: Path | None = None
    features: tuple[str, ...] = ()
    encoders: tuple[str, ...] = ()
    weights: Mapping[str, Path] = field(default_factory=dict)
    features_root: Path | None = None
    extraction: SlideExtraction = SlideExtraction()

    def check(self) -> None:
        """One line naming the options for a combination that cannot work."""
        if self.features and self.encoders:
            raise ConfigError("--features and --encoder: give feature folders or encoders to extract with, not both")
        if not self.features and not self.slides:
            raise ConfigError("give --slides DIR (with --encoder) or --features DIR")
        if self.slides and not self.features and not self.encoders:
            raise ConfigError("--encoder: give at least one encoder to extract --slides with")


@dataclass(frozen=True)
class ResolvedSources:
    """The feature folders per name, the slide files found (None without ``--slides``), and
    what the run records about extraction (empty when feature folders were given)."""

    features: dict[str, Path]
    slides: dict[str, Path] | None
    record: dict[str, Any]


def _extract_all(sources: FeatureSources, slide_files: dict[str, Path], features_dir: Any, allow_missing: bool,
                 progress: Reporter | None) -> ResolvedSources:
    """Extract every encoder's features; a failed slide is refused unless ``allow_missing``."""
    feat_dirs: dict[str, Path] = {}
    failed_all: dict[str, dict[str, str]] = {}
    for spec in sources.encoders:
        fdir = (sources.features_root / encoder_slug(spec)) if sources.features_root else features_dir(spec)
        fdir, failed = extract_slide_features(slide_files, spec, features_dir=fdir, weights=sources.weights.get(spec),
                                              extraction=sources.extraction, progress=progress)
        if failed and not allow_missing:
            first = next(iter(failed.items()))
            raise DataError(
                f"--slides: feature extraction failed for {len(failed)} slide(s) ({first[0]}: {first[1]}); "
                "fix them or pass --allow-missing"
            )
        failed_all[spec] = failed
        feat_dirs[spec] = fdir
    record = {"slides": str(sources.slides), **sources.extraction.record(), "failed": failed_all}
    return ResolvedSources(feat_dirs, slide_files, record)


def resolve_sources(
    sources: FeatureSources,
    labels: SlideLabels,
    workspace: Workspace,
    dataset: str,
    *,
    heatmaps: Sequence[str] = (),
    allow_missing: bool = False,
    progress: Reporter | None = None,
) -> ResolvedSources:
    """Find the slides (all labelled ones to extract, or only the ``heatmaps`` ones beside feature
    folders) and the feature folders, extracting them (into the ``workspace``'s features of
    ``dataset`` by default) when encoders are given."""
    sources.check()
    slide_files = None
    if sources.slides is not None:
        wanted = labels.slide_ids if not sources.features else list(heatmaps)
        slide_files = find_slide_files(sources.slides, wanted, allow_missing=allow_missing or bool(sources.features))
    if sources.features:
        return ResolvedSources(parse_named_paths(sources.features, "--features"), slide_files, {})
    assert slide_files is not None
    return _extract_all(sources, slide_files, lambda spec: workspace.features_dir(dataset, spec), allow_missing,
                        progress)
