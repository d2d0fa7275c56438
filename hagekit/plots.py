"""Figures: the paper's Figure 2 (expression maps) with matplotlib's Agg backend.

Panels: the H&E thumbnail with the spots drawn over it, the ground truth, the prediction on
the ground truth's colour scale, and the prediction on its own scale; the title gives the
gene's PCC. Without ground truth only the thumbnail and the prediction are drawn.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hagekit.io.atomic import atomic_path

__all__ = ["plot_expression_maps", "plot_pcc_histogram", "MapBackground", "save_png", "DPI"]

log = logging.getLogger(__name__)

DPI = 200


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class MapBackground:
    """What is drawn under the spots: the section's name (title), its H&E thumbnail, thumbnail px
    per full-resolution px (scanpy's ``tissue_lowres_scalef``) and the spot diameter (full-res px)."""

    name: str = ""
    thumbnail: np.ndarray | None = None
    scale: float = 1.0
    spot_diameter_px: float | None = None


def plot_expression_maps(
    out: Path | str,
    spatial: np.ndarray,
    prediction: np.ndarray,
    *,
    gene: str,
    truth: np.ndarray | None = None,
    pcc: float | None = None,
    image: MapBackground | None = None,
    dpi: int = DPI,
) -> Path:
    """Write one gene's Figure-2 PNG; ``spatial`` (N, 2) full-resolution px, maps (N,) values."""
    image = image if image is not None else MapBackground()
    thumbnail, thumbnail_scale, section = image.thumbnail, image.scale, image.name
    plt = _pyplot()
    xy = np.asarray(spatial, dtype=np.float64) * (thumbnail_scale if thumbnail is not None else 1.0)
    pred = np.asarray(prediction, dtype=np.float64)
    panels: list[tuple[str, np.ndarray | None, tuple[float, float] | None]] = [("H&E", None, None)]
    if truth is not None:
        t = np.asarray(truth, dtype=np.float64)
        fixed = (float(np.min(t)), float(np.max(t)))
        panels += [("ground truth", t, fixed), ("prediction (truth's scale)", pred, fixed)]
    panels.append(("prediction (own scale)", pred, (float(np.min(pred)), float(np.max(pred)))))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.9), squeeze=False)
    pitch = _pitch(xy)
    for ax, (title, values, lims) in zip(axes[0], panels, strict=True):
        if thumbnail is not None:
            ax.imshow(thumbnail, alpha=1.0 if values is None else 0.35)
        if values is None:
            diam = (image.spot_diameter_px or pitch * 0.55) * (thumbnail_scale if thumbnail is not None else 1.0)
            ax.scatter(xy[:, 0], xy[:, 1], s=max(diam, 1.0) ** 2 * 0.25, facecolors="none",
                       edgecolors="black", linewidths=0.3)
        else:
            vmin, vmax = lims if lims and lims[1] > lims[0] else (None, None)
            sc = ax.scatter(xy[:, 0], xy[:, 1], c=values, s=_marker_size(ax, fig, xy, pitch),
                            cmap="viridis", vmin=vmin, vmax=vmax, linewidths=0)
            fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
        if thumbnail is None:
            ax.invert_yaxis()
        ax.set_xticks([])
        ax.set_yticks([])
    head = f"{gene}" + (f" - {section}" if section else "")
    if pcc is not None and np.isfinite(pcc):
        head += f"  (PCC = {pcc:.3f})"
    fig.suptitle(head, fontsize=11)
    return save_png(fig, out, dpi)


def save_png(fig, out: Path | str, dpi: int | None = None) -> Path:
    """Lay out, write ``out`` atomically as PNG and free the figure."""
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    _pyplot().close(fig)
    return out


def _pitch(xy: np.ndarray) -> float:
    """Median nearest-neighbour distance between spots (0 when fewer than 2)."""
    if len(xy) < 2:
        return 0.0
    from scipy.spatial import cKDTree

    d, _ = cKDTree(xy).query(xy, k=2)
    return float(np.median(d[:, 1]))


def _marker_size(ax, fig, xy: np.ndarray, pitch: float) -> float:
    """Scatter marker area (pt^2) so that spots roughly tile the panel."""
    span = float(np.ptp(xy[:, 0])) if len(xy) else 0.0
    if span <= 0 or pitch <= 0:
        return 20.0
    width_pt = ax.get_position().width * fig.get_figwidth() * 72.0
    per_spot_pt = width_pt * pitch / (span + pitch)
    return float(max(1.0, (0.9 * per_spot_pt) ** 2))


def plot_pcc_histogram(out: Path | str, pcc: np.ndarray, *, title: str = "", dpi: int = DPI) -> Path:
    """Histogram of per-gene PCC values (NaN dropped), with the mean marked."""
    plt = _pyplot()
    vals = np.asarray(pcc, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.hist(vals, bins=40, range=(-1, 1), color="#4477aa", edgecolor="white", linewidth=0.4)
    if len(vals):
        ax.axvline(vals.mean(), color="#cc3311", linestyle="--", linewidth=1.2, label=f"mean {vals.mean():.3f}")
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel("PCC per gene")
    ax.set_ylabel("genes")
    ax.set_title(title or f"{len(vals)} genes", fontsize=10)
    return save_png(fig, out, dpi)
