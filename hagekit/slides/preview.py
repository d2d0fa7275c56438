"""Preview PNG per slide: thumbnail, tissue mask tinted green, kept tiles outlined in blue."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hagekit.io.atomic import atomic_path
from hagekit.slides.tiling import TileGrid

__all__ = ["render_preview", "write_preview"]


def render_preview(thumb: np.ndarray, mask: np.ndarray | None, grid: TileGrid, scale: float) -> np.ndarray:
    """RGB uint8 preview: ``thumb`` (thumb px = level-0 px * ``scale``) with mask and tiles."""
    from PIL import Image, ImageDraw

    img = thumb[..., :3].astype(np.float32)
    if mask is not None:
        if mask.shape != img.shape[:2]:
            m = Image.fromarray(mask.astype(np.uint8) * 255).resize((img.shape[1], img.shape[0]), Image.Resampling.NEAREST)
            mask = np.asarray(m) > 0
        tint = np.array([60.0, 200.0, 60.0])
        img[mask] = 0.7 * img[mask] + 0.3 * tint
    out = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    side = grid.patch_size_level0 * scale
    for x, y in grid.coords:
        x0, y0 = x * scale, y * scale
        draw.rectangle([x0, y0, x0 + side - 1, y0 + side - 1], outline=(30, 60, 220))
    return np.asarray(out)


def write_preview(path: Path, thumb: np.ndarray, mask: np.ndarray | None, grid: TileGrid, scale: float) -> Path:
    """Write the preview PNG atomically."""
    from PIL import Image

    arr = render_preview(thumb, mask, grid, scale)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return Path(path)
