"""Encoder preprocessing: RGB uint8 patch -> normalised float tensor (3, S, S).

A plain class (not a torchvision Compose) so that it pickles into DataLoader workers and
does no work when the patch already has the encoder's input size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["ImageTransform", "IMAGENET_MEAN", "IMAGENET_STD", "INTERPOLATIONS", "to_rgb_array"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_rgb_array(image: Any) -> np.ndarray:
    """An H x W x 3 uint8 array from a PIL image or an array (grey and RGBA accepted)."""
    if hasattr(image, "convert") and hasattr(image, "mode"):
        if image.mode == "RGBA":
            from PIL import Image

            bg = Image.new("RGB", image.size, (255, 255, 255))
            bg.paste(image, mask=image.split()[3])
            image = bg
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {arr.shape}")
    if arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        arr = (arr[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).round()
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


#: PIL filters by name. ``bilinear`` is torchvision ``Resize``'s default, and so what the
#: official UNI / UNI2-h transform (``Resize(224), CenterCrop(224), ToTensor, Normalize``) uses.
INTERPOLATIONS = ("bicubic", "bilinear")


@dataclass(frozen=True)
class ImageTransform:
    """Resize (shorter side to ``size`` as torchvision's ``Resize(size)``, then centre crop)
    and normalise, on PIL images as torchvision does.

    ``mean``/``std`` apply to [0, 1] values; ``(0, 0, 0)``/``(1, 1, 1)`` keeps [0, 1].
    """

    size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation: {self.interpolation!r} is not one of {', '.join(INTERPOLATIONS)}")

    def resize(self, arr: np.ndarray) -> np.ndarray:
        """The uint8 patch at ``size`` x ``size`` (unchanged when it already is)."""
        h, w = arr.shape[:2]
        if h == self.size and w == self.size:
            return arr
        from PIL import Image

        # torchvision: the shorter side becomes size, the longer int(size * long / short)
        if w <= h:
            nw, nh = self.size, int(self.size * h / w)
        else:
            nw, nh = int(self.size * w / h), self.size
        filt = Image.Resampling.BILINEAR if self.interpolation == "bilinear" else Image.Resampling.BICUBIC
        im = Image.fromarray(arr).resize((nw, nh), filt)
        # torchvision CenterCrop: top = int(round((H - size) / 2))
        left, top = int(round((nw - self.size) / 2.0)), int(round((nh - self.size) / 2.0))
        return np.asarray(im.crop((left, top, left + self.size, top + self.size)))

    def __call__(self, image: Any) -> torch.Tensor:
        import torch

        arr = self.resize(to_rgb_array(image))
        # numpy, not torch: tiny per-patch ops stay single-threaded inside DataLoader workers
        x = arr.astype(np.float32).transpose(2, 0, 1) * np.float32(1.0 / 255.0)
        if self.mean != (0.0, 0.0, 0.0) or self.std != (1.0, 1.0, 1.0):
            mean = np.asarray(self.mean, dtype=np.float32).reshape(3, 1, 1)
            inv_std = (1.0 / np.asarray(self.std, dtype=np.float32)).reshape(3, 1, 1)
            x = (x - mean) * inv_std
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
