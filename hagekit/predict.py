"""Predict expression maps for a section from a trained run; optionally draw Figure 2.

The output is an AnnData scanpy can read: predicted targets in ``X`` (spots x panel genes),
the section's barcodes in ``obs_names``, its spot centres in ``obsm["spatial"]`` and its
``uns["spatial"]`` (images, scale factors) copied; with the section's counts at hand the
truth (same target transform as the run) goes to ``layers["truth"]``. Features from another
encoder or patch size than the run's, or a section lacking the run's panel, are refused.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.errors import ConfigError, ProvenanceError, at
from hagekit.hage.run_io import RunInfo, load_run
from hagekit.progress import Reporter, reporter_or_null

if TYPE_CHECKING:
    import anndata

__all__ = ["select_models", "predict_section", "ModelChoice", "PlotRequest", "PredictResult", "PROVENANCE_KEYS"]

log = logging.getLogger(__name__)

#: Feature attributes that must match between a run and the features it predicts from.
PROVENANCE_KEYS = ("encoder", "encoder_weights_sha256", "feature_dim", "patch_size_um")


def select_models(
    info: RunInfo,
    *,
    fold: str | None = None,
    trial: int | None = None,
    ensemble: bool = False,
    section: str | None = None,
) -> list[Path]:
    """Model folders to use: one (fold + trial), a fold's trials (fold), all (ensemble).

    With none given: the only model, or the trials of the fold that held out ``section``.
    """
    choices = ", ".join(f"{f}/trial{t}" for f, t in info.models)
    if ensemble:
        if fold is not None or trial is not None:
            raise ConfigError("--ensemble averages every fold and trial; drop --fold/--trial")
        return list(info.models.values())
    if fold is None and trial is not None:
        folds = info.folds
        if len(folds) != 1:
            raise ConfigError(f"--trial needs --fold (folds: {', '.join(folds)})")
        fold = folds[0]
    if fold is not None:
        picked = [p for (f, t), p in info.models.items() if f == fold and (trial is None or t == trial)]
        if not picked:
            raise ConfigError(f"--fold/--trial: no model {fold}/trial{trial if trial is not None else '*'} in {info.path} (have: {choices})")
        return picked
    if len(info.models) == 1:
        return list(info.models.values())
    if section is not None and section in info.folds:
        log.info("section %s was held out by fold %s: averaging its trials", section, section)
        return [p for (f, _), p in info.models.items() if f == section]
    raise ConfigError(f"{info.path}: several models; choose --fold F [--trial T] or --ensemble (have: {choices})")


def check_feature_provenance(info: RunInfo, attrs: dict[str, Any], features_path: Path) -> None:
    """Refuse features made by another encoder, weights, dimension or patch size than the run's."""
    for key in PROVENANCE_KEYS:
        if key in info.feature_attrs and key in attrs and str(info.feature_attrs[key]) != str(attrs[key]):
            raise ProvenanceError(
                at(features_path, f"{key}={attrs[key]!r} but the run {info.path} was trained on "
                   f"{key}={info.feature_attrs[key]!r}; extract features with the run's encoder")
            )


@dataclass(frozen=True)
class ModelChoice:
    """Which of a run's models predict: one (fold + trial), a fold's trials (fold), all (ensemble);
    none given: the only model, or the trials of the fold that held out the section."""

    fold: str | None = None
    trial: int | None = None
    ensemble: bool = False


@dataclass(frozen=True)
class PlotRequest:
    """Figure 2 for ``genes`` (one PNG each) into ``out_dir`` (default: beside the output .h5ad)."""

    genes: tuple[str, ...] = ()
    out_dir: Path | None = None


@dataclass
class PredictResult:
    """Prediction output: the AnnData written, models used, metrics against truth, figures."""

    adata: anndata.AnnData
    out: Path | None
    models: list[Path]
    metrics: dict[str, Any] | None = None
    per_gene_pcc: np.ndarray | None = None
    figures: list[Path] = field(default_factory=list)


@dataclass
class _Spots:
    """The spots to predict: features in spot order, names, positions, the section (or None)."""

    X: np.ndarray
    barcodes: list[str]
    spatial: np.ndarray
    positions: np.ndarray  # what the protocol gives a method: array coordinates when the section has them
    name: str
    sec: dict[str, Any] | None


def predict_section(
    run: Path | str,
    features: Path | str,
    *,
    section: Path | str | None = None,
    out: Path | str | None = None,
    models: ModelChoice | None = None,
    plot: PlotRequest | None = None,
    device: str = "cpu",
    progress: Reporter | None = None,
) -> PredictResult:
    """Predict a section's expression from its feature file with a run's model(s) (``models``).

    ``section`` (the ``.h5ad``) gives barcodes order, spatial metadata and ground truth;
    without it the feature file's barcodes and coords are used. Writes ``out`` atomically;
    ``plot`` draws Figure 2 for some of the run's genes.
    """
    from hagekit.io.h5 import read_features
    from hagekit.metrics import evaluate_section

    choice = models if models is not None else ModelChoice()
    info = load_run(run)
    features = Path(features)
    ff = read_features(features)
    check_feature_provenance(info, ff.attrs, features)
    if plot is not None and plot.genes:
        unknown = [g for g in plot.genes if g not in info.genes]
        if unknown:
            raise ConfigError(f"--plot: {', '.join(unknown)} not in the run's panel (e.g. {', '.join(info.genes[:5])})")
    spots = _spots(ff, features, section, info)
    used = select_models(info, fold=choice.fold, trial=choice.trial, ensemble=choice.ensemble, section=spots.name)
    raw_pred = _ensemble_mean(used, spots, info, device=device, progress=progress)
    adata = _prediction_adata(raw_pred, spots, info)
    metrics = per_gene = None
    if spots.sec is not None:
        m, per_gene = evaluate_section(spots.sec["truth"], raw_pred, return_per_gene=True)  # as train scores
        metrics = m.as_dict()
        adata.var["pcc"] = per_gene
    from hagekit.io.h5 import utf8_safe

    adata.uns["hagekit"] = {
        **describe_prediction(info.target, truth=spots.sec is not None, clipped=int((raw_pred < 0).sum())),
        "run": utf8_safe(str(info.path.resolve())),
        "models": [str(p.relative_to(info.path)) for p in used],
        "features": utf8_safe(str(features.resolve())),
        "encoder": str(ff.attrs.get("encoder", "")),
        "target": info.target,
        "section": spots.name,
        **({"metrics": metrics} if metrics else {}),
    }
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        from hagekit.io.atomic import atomic_path

        with atomic_path(out_path) as tmp:
            adata.write_h5ad(tmp)
    figures = []
    if plot is not None and plot.genes:
        pdir = Path(plot.out_dir) if plot.out_dir is not None else (out_path.parent if out_path else Path("."))
        figures = _plot(adata, spots.sec, plot.genes, per_gene, info.genes, pdir, spots.name)
    return PredictResult(adata, out_path, used, metrics, per_gene, figures)


def _spots(ff: Any, features: Path, section: Path | str | None, info: RunInfo) -> _Spots:
    """The feature rows in the section's spot order (the file's own order without a section)."""
    sec = _read_section_for(section, info) if section is not None else None
    if sec is not None:
        rows = _align(ff.barcodes, list(sec["adata"].obs_names), features, Path(section))
        X = ff.features[rows]
        barcodes = list(sec["adata"].obs_names)
        spatial = np.asarray(sec["adata"].obsm["spatial"], dtype=np.float64)
        name = str(sec["adata"].uns["hagekit"]["section"])
    else:
        X = ff.features
        barcodes = [str(b) for b in ff.barcodes] if ff.barcodes is not None else [f"spot{i}" for i in range(ff.n)]
        spatial = ff.spot_centres
        name = str(ff.attrs.get("section") or features.stem)
    fsec = ff.attrs.get("section")
    if sec is not None and fsec not in (None, "") and str(fsec) != name:
        raise ProvenanceError(at(features, f"features are of section {fsec!r}, not {name!r}"))
    obs = sec["adata"].obs if sec is not None else None
    has_array = obs is not None and "array_x" in obs and "array_y" in obs
    positions = obs[["array_x", "array_y"]].to_numpy(np.float64) if has_array else spatial
    return _Spots(X, barcodes, spatial, positions, name, sec)


def _ensemble_mean(models: list[Path], spots: _Spots, info: RunInfo, *, device: str, progress: Reporter | None) -> np.ndarray:
    """The mean prediction (float32, unclipped) of ``models`` over the spots."""
    from hagekit.hage.estimator import HAGERegressor

    task = reporter_or_null(progress).task(f"predict {spots.name}", total=len(models))
    preds = []
    for mdir in models:
        est = HAGERegressor.load(mdir, device=device)
        if est.genes is not None and list(est.genes) != info.genes:
            raise ProvenanceError(at(mdir, "model's gene panel differs from the run's genes.txt"))
        preds.append(est.predict(spots.X, spatial=spots.positions))  # used by context models only
        task.advance(1)
    task.close()
    return np.mean(preds, axis=0).astype(np.float32)


def _prediction_adata(raw_pred: np.ndarray, spots: _Spots, info: RunInfo) -> anndata.AnnData:
    """Predictions clipped at 0 in ``X`` (raw in a layer), spots and, with a section, its truth."""
    import anndata as ad
    import pandas as pd

    pred = np.maximum(raw_pred, 0.0)  # expression is non-negative; scanpy's log1p would NaN below -1
    obs = pd.DataFrame(index=pd.Index(spots.barcodes, name="barcode"))
    sec = spots.sec
    if sec is not None:
        for col in ("patient", "section"):
            obs[col] = sec["adata"].obs[col].to_numpy()
    adata = ad.AnnData(X=pred, obs=obs, var=pd.DataFrame(index=pd.Index(info.genes, name="gene")))
    adata.obsm["spatial"] = spots.spatial
    adata.layers["raw_prediction"] = raw_pred
    if sec is not None:
        adata.layers["truth"] = sec["truth"]
        adata.uns["spatial"] = _plain(dict(sec["adata"].uns.get("spatial", {})))
    if info.target.startswith("log1p"):
        adata.uns["log1p"] = {"base": None}  # scanpy's marker: X is natural-log log1p data
    return adata


_TARGET_TEXT = {
    "log1p_norm": "log1p(counts / spot total over the panel * 1e4), natural log",
    "log1p": "log1p(counts), natural log",
    "raw": "counts",
}


def describe_prediction(target: str, *, truth: bool, clipped: int) -> dict[str, Any]:
    """What each matrix of a prediction AnnData holds (stored as ``uns["hagekit"]``)."""
    what = _TARGET_TEXT.get(target, target)
    layers = {"raw_prediction": f"the models' output ({what}), unclipped; {clipped} value(s) < 0"}
    if truth:
        layers["truth"] = f"measured {what} of the section's counts"
    return {
        "X": f"predicted {what}, clipped at 0 (ensemble mean of the run's models)",
        "layers": layers,
        "note": "X is already log-transformed (uns['log1p']); for scanpy skip normalize_total/log1p"
        if target.startswith("log1p") else "X is on the count scale",
    }


def _read_section_for(section: Path | str, info: RunInfo) -> dict[str, Any]:
    from hagekit.data.section import read_section
    from hagekit.targets import expression_targets

    path = Path(section)
    adata = read_section(path)
    index = {g: i for i, g in enumerate(adata.var_names)}
    missing = [g for g in info.genes if g not in index]
    if missing:
        raise ProvenanceError(
            at(path, f"lacks {len(missing)} of the run's {len(info.genes)} panel genes "
               f"(e.g. {', '.join(missing[:5])}); this run predicts another panel")
        )
    counts = adata.X[:, [index[g] for g in info.genes]]
    return {"adata": adata, "truth": expression_targets(counts, kind=info.target)}


def _align(feature_barcodes, section_barcodes: list[str], features: Path, section: Path) -> np.ndarray:
    if feature_barcodes is None:
        raise ProvenanceError(at(features, "feature file has no 'barcodes' to join to the section's spots"))
    pos = {str(b): i for i, b in enumerate(feature_barcodes)}
    rows = np.array([pos.get(b, -1) for b in section_barcodes])
    if (rows < 0).any():
        raise ProvenanceError(
            at(features, f"{int((rows < 0).sum())} of {len(rows)} spots of {section.name} have no features; "
               "are these the features of this section?")
        )
    return rows


def _plain(obj: Any) -> Any:
    """Copy nested dicts (anndata's uns may hold OrderedDict-like mappings)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    return obj


def _plot(adata, sec, genes, per_gene, panel, pdir: Path, name: str) -> list[Path]:
    from hagekit.plots import MapBackground, plot_expression_maps

    thumb, scale, spot_px = None, 1.0, None
    if sec is not None:
        lib = sec["adata"].uns.get("spatial", {}).get(name, {})
        images = lib.get("images", {}) if isinstance(lib, dict) else {}
        sf = lib.get("scalefactors", {}) if isinstance(lib, dict) else {}
        if "lowres" in images:
            thumb = np.asarray(images["lowres"])
            scale = float(sf.get("tissue_lowres_scalef", 1.0))
        d = sf.get("spot_diameter_fullres")
        spot_px = float(d) if d is not None and np.isfinite(d) else None
    out = []
    for gene in genes:
        j = panel.index(gene)
        truth = sec["truth"][:, j] if sec is not None else None
        pcc = float(per_gene[j]) if per_gene is not None else None
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", gene)
        out.append(
            plot_expression_maps(
                pdir / f"{name}_{safe}.png", adata.obsm["spatial"], np.asarray(adata.X[:, j]).ravel(),
                gene=gene, truth=truth, pcc=pcc, image=MapBackground(name, thumb, scale, spot_px),
            )
        )
    return out
