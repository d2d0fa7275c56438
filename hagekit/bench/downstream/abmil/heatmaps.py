"""Attention outputs: per-slide attention files (with coords and tile size) and heatmaps over thumbnails."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.errors import DataError, at
from hagekit.io.atomic import atomic_path, write_text
from hagekit.io.paths import child_path

if TYPE_CHECKING:
    from hagekit.bench.downstream.abmil.bags import BagStore
    from hagekit.bench.downstream.abmil.training import SlidePrediction

__all__ = ["read_attention", "draw_attention_heatmap", "write_predictions", "patch_size_level0"]


def patch_size_level0(attrs: Mapping[str, Any], coords: np.ndarray) -> float:
    """Tile side in level-0 px: TRIDENT/CLAM/hagekit attributes, else the coords grid step."""
    for key in ("coords.patch_size_level0", "patch_size_level0", "patch_size_level0_px"):
        if key in attrs and attrs[key] not in ("", None):
            return float(attrs[key])
    if "coords.patch_size" in attrs and attrs["coords.patch_size"] not in ("", None):
        ds = attrs.get("coords.downsample", 1.0)
        ds = float(np.asarray(ds, dtype=float).ravel()[0]) if np.size(ds) else 1.0
        return float(attrs["coords.patch_size"]) * ds
    c = np.asarray(coords, dtype=float)
    steps = []
    for j in range(2):
        u = np.unique(c[:, j])
        if u.size > 1:
            steps.append(float(np.diff(u).min()))
    if steps:
        return min(steps)
    if "patch_size_px" in attrs and attrs["patch_size_px"] not in ("", None):
        return float(attrs["patch_size_px"])
    return 256.0


def write_predictions(out: Path, preds: Sequence[SlidePrediction], class_names: Sequence[str], store: BagStore) -> None:
    import h5py

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["slide_id", "case_id", "fold", "label", "pred", *[f"prob_{c}" for c in class_names]])
    for p in sorted(preds, key=lambda r: r.slide_id):
        w.writerow([p.slide_id, p.case_id, p.fold, class_names[p.label], class_names[int(p.proba.argmax())], *[f"{v:.6f}" for v in p.proba]])
        attrs = store.attrs.get(p.slide_id, {})
        with atomic_path(child_path(out / "attention", f"{p.slide_id}.h5", what="slide_id")) as tmp:
            with h5py.File(tmp, "w") as h5:
                h5.create_dataset("attention", data=p.attention.astype(np.float32))
                h5.create_dataset("coords", data=p.coords)
                h5.attrs["slide_id"] = p.slide_id
                h5.attrs["fold"] = p.fold
                h5.attrs["label"] = class_names[p.label]
                h5.attrs["pred"] = class_names[int(p.proba.argmax())]
                h5.attrs["proba"] = p.proba
                h5.attrs["patch_size_level0"] = patch_size_level0(attrs, p.coords)
                h5.attrs["features_file"] = str(store.files[p.slide_id])
    write_text(out / "predictions.csv", buf.getvalue())


def read_attention(path: Path | str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(attention (N,), coords (N, 2), attrs)`` from a saved attention file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, "attention file not found"))
    with h5py.File(path, "r") as h5:
        return np.asarray(h5["attention"][:]), np.asarray(h5["coords"][:]), dict(h5.attrs.items())


def _slide_thumbnail(slide_path: Path, max_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """An RGB thumbnail (h, w, 3) and the level-0 size (W, H), read with :mod:`hagekit.slides`."""
    from hagekit.slides import open_slide

    with open_slide(slide_path) as slide:
        thumb, _ = slide.thumbnail(max_size)
        w0, h0 = slide.dimensions
    return np.asarray(thumb)[..., :3], (int(w0), int(h0))


def draw_attention_heatmap(
    slide_path: Path | str,
    attention_path: Path | str,
    out_path: Path | str,
    *,
    max_size: int = 1600,
    alpha: float = 0.5,
    cmap: str = "jet",
) -> Path:
    """Draw a slide's attention (percentile-ranked, one square per tile) over its thumbnail (PNG)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy.stats import rankdata

    slide_path = Path(slide_path)
    att, coords, attrs = read_attention(attention_path)
    thumb, (w0, h0) = _slide_thumbnail(slide_path, max_size)
    th, tw = thumb.shape[:2]
    sx, sy = tw / w0, th / h0
    size0 = float(attrs.get("patch_size_level0", 256.0))
    score = (rankdata(att) / max(1, att.size)) if att.size else att
    heat = np.zeros((th, tw), dtype=np.float32)
    mask = np.zeros((th, tw), dtype=bool)
    for (x, y), v in zip(np.asarray(coords, dtype=float), score, strict=True):
        x0, y0 = int(np.floor(x * sx)), int(np.floor(y * sy))
        x1, y1 = int(np.ceil((x + size0) * sx)), int(np.ceil((y + size0) * sy))
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(tw, max(x1, x0 + 1)), min(th, max(y1, y0 + 1))
        heat[y0:y1, x0:x1] = v
        mask[y0:y1, x0:x1] = True
    fig, ax = plt.subplots(figsize=(8, 8 * th / max(tw, 1)), dpi=150)
    ax.imshow(thumb)
    shown = np.ma.masked_where(~mask, heat)
    im = ax.imshow(shown, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0)
    ax.set_axis_off()
    label = attrs.get("label", "")
    pred = attrs.get("pred", "")
    ax.set_title(f"{slide_path.stem}: attention (label {label}, predicted {pred})", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="attention percentile")
    from hagekit.plots import save_png

    return save_png(fig, out_path)

