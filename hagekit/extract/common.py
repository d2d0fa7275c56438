"""Shared pieces of spot and slide extraction: encoder set-up, skip checks, provenance."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hagekit.errors import DataError, HagekitError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hagekit.extract.engine import EncoderSetup
    from hagekit.extract.spec import EncoderSpec
    from hagekit.extract.summary import ExtractSummary
    from hagekit.progress import Reporter

log = logging.getLogger(__name__)

#: Input faults (unreadable, truncated, missing mpp, mismatched output): they fail one
#: section/slide and the run goes on. Anything else (MemoryError, TypeError, bugs) stops it.
INPUT_ERRORS: tuple[type[BaseException], ...] = (HagekitError, OSError)


def setup_encoder(encoder: EncoderSpec) -> EncoderSetup:
    """Build ``encoder`` on its device (auto/cpu/cuda) with its autocast precision."""
    from hagekit.encoders import create_encoder
    from hagekit.extract.engine import EncoderSetup, resolve_device, resolve_precision

    dev = resolve_device(encoder.device)
    prec = resolve_precision(encoder.precision, dev)
    bundle = create_encoder(encoder.key, weights=encoder.weights, random_weights=encoder.random_weights, device=str(dev))
    if dev.type == "cuda" and encoder.precision is None:
        prec = resolve_precision(None, dev, bundle.precision)
    return EncoderSetup(encoder.key, bundle, dev, prec)


def existing_output(path: Path, *, spec: str, settings: dict[str, Any]) -> str | None:
    """Why an existing output may be skipped (``None`` if it can), or raise on a mismatch.

    A finished file made with another encoder or patch settings is not silently reused.
    """
    from hagekit.io.h5 import read_feature_attrs

    attrs = read_feature_attrs(path)
    if str(attrs.get("encoder", "")) != spec:
        raise DataError(
            f"{path}: exists with encoder {attrs.get('encoder')!r}, not {spec!r}; use --overwrite or another --out"
        )
    for key, want in settings.items():
        have = attrs.get(key)
        if have is None:
            continue
        try:
            same = abs(float(have) - float(want)) <= 1e-6 * max(1.0, abs(float(want)))
        except (TypeError, ValueError):
            same = str(have) == str(want)
        if not same:
            raise DataError(f"{path}: exists with {key}={have}, not {want}; use --overwrite or another --out")
    return None


def provenance(setup: EncoderSetup, **extra: Any) -> dict[str, Any]:
    """Root attributes every feature file carries (provenance checked when features are paired)."""
    import json

    from hagekit import __version__

    b = setup.bundle
    return {
        "encoder": setup.spec,
        "encoder_weights_sha256": b.weights_sha256,
        "feature_dim": int(b.dim),
        "input_size": int(b.input_size),
        "random_weights": bool(b.random_weights),
        "precision": setup.precision,
        "hagekit_version": __version__,
        "encoder_config": json.dumps(b.config, sort_keys=True, default=str),
        **extra,
    }


def pending_inputs(
    files: Sequence[Path],
    out: Path,
    *,
    spec: str,
    settings: dict[str, Any],
    overwrite: bool,
    summary: ExtractSummary,
    reporter: Reporter,
) -> list[Path]:
    """Inputs still to extract; finished outputs are recorded as skipped (or failed on a mismatch)."""
    from hagekit.extract.summary import ItemResult

    todo: list[Path] = []
    for f in files:
        target = out / f"{f.stem}.h5"
        if target.exists() and not overwrite and not whole_feature_file(target):
            log.warning("%s: damaged feature file (unreadable or mis-shaped); extracting it again", target)
            reporter.message(f"redo {f.stem}: {target} is damaged")
            todo.append(f)
            continue
        if target.exists() and not overwrite:
            try:
                existing_output(target, spec=spec, settings=settings)
            except INPUT_ERRORS as exc:
                summary.items.append(ItemResult(f.stem, "failed", reason=str(exc), path=target))
                continue
            reporter.message(f"skip {f.stem}: {target} exists (use --overwrite to recompute)")
            summary.items.append(ItemResult(f.stem, "skipped", reason="exists", path=target))
            continue
        todo.append(f)
    return todo


def whole_feature_file(path: Path) -> bool:
    """Resume trusts a finished feature file only if it opens and ``features``/``coords`` agree in rows."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            feats, coords = h5["features"], h5["coords"]
            ok = feats.ndim == 2 and coords.ndim == 2 and feats.shape[0] == coords.shape[0]
            if ok and feats.shape[0]:
                feats[-1]  # the last row is readable: the data are all there
            return bool(ok)
    except (OSError, KeyError, ValueError, RuntimeError):
        return False


def setup_for(todo: Sequence[Path], encoder: EncoderSpec, summary: ExtractSummary) -> tuple[EncoderSetup | None, int]:
    """Build the encoder only if something is left to do; also resolve the reader workers."""
    from hagekit.extract.engine import default_num_workers

    if not todo:
        return None, encoder.num_workers or 0
    setup = setup_encoder(encoder)
    summary.device, summary.precision = str(setup.device), setup.precision
    workers = default_num_workers(setup.device) if encoder.num_workers is None else encoder.num_workers
    return setup, workers
