"""``builtin``: a weights-free, deterministic tissue descriptor (203-d) as a torch module.

Stain colour (HED colour deconvolution exactly as ``skimage.color.rgb2hed``: optical density
times the inverse stain matrix), RGB/HSV statistics and multi-scale texture (a fixed Gabor
bank on grey, haematoxylin and eosin; gradient-magnitude and local-binary histograms;
Laplacian-of-Gaussian nuclei response) pooled over the patch. Runs on CPU or GPU and
composes with trainable heads like any other encoder.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hagekit.encoders.registry import EncoderBundle, register_encoder
from hagekit.encoders.transforms import ImageTransform
from hagekit.errors import EncoderError

__all__ = ["BuiltinDescriptor", "build_builtin", "BUILTIN_INPUT_SIZE", "RGB_FROM_HED"]

#: Patches are resampled to this side (px) before the descriptor; it is scale-free after.
BUILTIN_INPUT_SIZE = 128
#: Stain vectors of skimage's ``rgb_from_hed`` (Ruifrok & Johnston); rows H, E, DAB.
RGB_FROM_HED = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (0.27, 0.57, 0.78))
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_STAIN_THRESHOLDS = (0.02, 0.04, 0.06, 0.08, 0.12, 0.16)
_GABOR_SCALES = (2, 4, 8)
_GABOR_ORIENTATIONS = 4
_GABOR_WAVELENGTH = 4.0
_GRAD_EDGES = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)
_TEXTURE_SCALES = (1, 2, 4)
_TISSUE_OD = 0.15
_VERSION = "builtin-v1"


def _gabor_bank(size: int = 9) -> torch.Tensor:
    """Even/odd Gabor kernels (2 * orientations, 1, size, size), zero-mean, L1-normalised."""
    sigma = _GABOR_WAVELENGTH / 2.0
    half = size // 2
    ys, xs = torch.meshgrid(
        torch.arange(-half, half + 1, dtype=torch.float64),
        torch.arange(-half, half + 1, dtype=torch.float64),
        indexing="ij",
    )
    kernels = []
    for k in range(_GABOR_ORIENTATIONS):
        theta = math.pi * k / _GABOR_ORIENTATIONS
        xr = xs * math.cos(theta) + ys * math.sin(theta)
        envelope = torch.exp(-(xs**2 + ys**2) / (2 * sigma**2))
        for phase in (torch.cos, torch.sin):
            kern = envelope * phase(2 * math.pi * xr / _GABOR_WAVELENGTH)
            kern = kern - kern.mean()
            kernels.append(kern / kern.abs().sum())
    return torch.stack(kernels).unsqueeze(1).float()


def _log_kernel(sigma: float = 1.5, size: int = 9) -> torch.Tensor:
    """Negative Laplacian-of-Gaussian (bright blob -> positive), zero-mean, scale-normalised."""
    half = size // 2
    ys, xs = torch.meshgrid(
        torch.arange(-half, half + 1, dtype=torch.float64),
        torch.arange(-half, half + 1, dtype=torch.float64),
        indexing="ij",
    )
    r2 = (xs**2 + ys**2) / (2 * sigma**2)
    kern = (1 - r2) * torch.exp(-r2)
    kern = kern - kern.mean()
    kern = kern / kern.clamp(min=0).sum()
    return kern.unsqueeze(0).unsqueeze(0).float()


def _std(x: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """Population std over the last axis via E[x^2] - E[x]^2 (much faster than torch.std on CPU)."""
    mean = x.mean(-1, keepdim=keepdim)
    sq = x.pow(2).mean(-1, keepdim=keepdim)
    return (sq - mean.pow(2)).clamp(min=0.0).sqrt()


def _pool_flat(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, n): a 4x4 (or 2x2 for small inputs) averaged copy for quantiles."""
    k = 4 if min(x.shape[-2:]) >= 64 else 2 if min(x.shape[-2:]) >= 4 else 1
    return (F.avg_pool2d(x, k) if k > 1 else x).flatten(2)


def _histogram(bins: torch.Tensor, n_bins: int) -> torch.Tensor:
    """(B, N) integer bin indices -> (B, n_bins) fractions, one bincount for the batch."""
    b, n = bins.shape
    offset = torch.arange(b, device=bins.device).unsqueeze(1) * n_bins
    counts = torch.bincount((bins + offset).flatten(), minlength=b * n_bins)
    return counts.view(b, n_bins).float() / float(n)


class BuiltinDescriptor(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, 203) colour, stain and texture statistics."""

    def __init__(self) -> None:
        super().__init__()
        import numpy as np

        hed_from_rgb = np.linalg.inv(np.asarray(RGB_FROM_HED, dtype=np.float64))
        self.register_buffer("hed_from_rgb", torch.tensor(hed_from_rgb, dtype=torch.float32), persistent=False)
        self.register_buffer("gabor", _gabor_bank(), persistent=False)
        self.register_buffer("log_kernel", _log_kernel(), persistent=False)
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
        self.register_buffer("sobel", torch.stack([sobel, sobel.t()]).unsqueeze(1), persistent=False)
        self.register_buffer("grad_edges", torch.tensor(_GRAD_EDGES), persistent=False)
        self.register_buffer("stain_thresholds", torch.tensor(_STAIN_THRESHOLDS), persistent=False)
        self.dim = self._count_dims()

    @staticmethod
    def _count_dims() -> int:
        n_q = len(_QUANTILES) + 2
        colour = 3 * n_q + 3 * n_q + 2 * len(_STAIN_THRESHOLDS) + 2 * n_q + 2 + 4
        gabor = 3 * len(_GABOR_SCALES) * _GABOR_ORIENTATIONS * 2
        texture = len(_TEXTURE_SCALES) * ((len(_GRAD_EDGES) + 1) + 9 + 2)
        return colour + gabor + texture

    @staticmethod
    def feature_names() -> list[str]:
        """Names of the output dimensions, in order (for inspection and tests)."""
        stat = ["mean", "std", *(f"q{round(q * 100):02d}" for q in _QUANTILES)]
        names = [f"rgb_{c}_{s}" for c in "RGB" for s in stat]
        names += [f"hed_{c}_{s}" for c in "HED" for s in stat]
        names += [f"hed_{c}_frac_gt_{t}" for c in "HE" for t in _STAIN_THRESHOLDS]
        names += [f"hsv_{c}_{s}" for c in "SV" for s in stat]
        names += ["hue_cos", "hue_sin", "white_fraction", "tissue_fraction", "od_mean", "od_std"]
        for sc in _GABOR_SCALES:
            for ch in ("grey", "H", "E"):
                names += [f"gabor_s{sc}_{ch}_o{k}_{p}" for p in ("mean", "std") for k in range(_GABOR_ORIENTATIONS)]
        for sc in _TEXTURE_SCALES:
            names += [f"grad_s{sc}_bin{b}" for b in range(len(_GRAD_EDGES) + 1)]
            names += [f"lbp_s{sc}_{b}" for b in range(9)]
            names += [f"log_H_s{sc}_mean", f"log_H_s{sc}_std"]
        return names

    @staticmethod
    def _stats(x: torch.Tensor, sub: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, N) -> (B, C * 7): mean, std and the 5/25/50/75/95 % quantiles per channel.

        Quantiles come from ``sub`` (a pooled copy, cheaper to sort) when given.
        """
        sub = x if sub is None else sub
        n = sub.shape[-1]
        srt = sub.sort(dim=-1).values
        idx = torch.tensor([round(q * (n - 1)) for q in _QUANTILES], device=x.device)
        qs = srt.index_select(-1, idx)
        out = torch.cat([x.mean(-1, keepdim=True), _std(x, keepdim=True), qs], dim=-1)
        return out.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().clamp(0.0, 1.0)
        b = x.shape[0]
        rgb = x.flatten(2)  # (B, 3, N)
        # HED colour deconvolution, as skimage.color.rgb2hed
        od = torch.log(x.clamp(min=1e-6)) / math.log(1e-6)
        hed = torch.einsum("bchw,cd->bdhw", od, self.hed_from_rgb).clamp(min=0.0)
        hed_flat = hed.flatten(2)
        stain_frac = (hed_flat[:, :2, :, None] > self.stain_thresholds).float().mean(2).flatten(1)
        # HSV-like
        vmax = rgb.max(1).values
        vmin = rgb.min(1).values
        sat = (vmax - vmin) / vmax.clamp(min=1e-6)
        r, g, bl = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        hue = torch.atan2(math.sqrt(3.0) * (g - bl), 2 * r - g - bl)
        w = sat / sat.sum(-1, keepdim=True).clamp(min=1e-6)
        hue_vec = torch.stack([(w * torch.cos(hue)).sum(-1), (w * torch.sin(hue)).sum(-1)], dim=1)
        sv = torch.stack([sat, vmax], 1)
        od_sum = od.sum(1).flatten(1)
        white = ((vmax > 0.85) & (sat < 0.1)).float().mean(-1, keepdim=True)
        # tissue: some channel with optical density -ln(I) above 0.15 (Macenko's background cut)
        tissue = (od.amax(1).flatten(1) * -math.log(1e-6) > _TISSUE_OD).float().mean(-1, keepdim=True)
        colour = [
            self._stats(rgb, _pool_flat(x)),
            self._stats(hed_flat, _pool_flat(hed)),
            stain_frac,
            self._stats(sv, _pool_flat(sv.view(b, 2, *x.shape[-2:]))),
            hue_vec,
            white,
            tissue,
            od_sum.mean(-1, keepdim=True),
            _std(od_sum, keepdim=True),
        ]
        # texture channels: luminance darkness, haematoxylin, eosin (stain OD rescaled ~ [0, 1])
        grey = 1.0 - (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
        chans = torch.stack([grey, hed[:, 0] * 5.0, hed[:, 1] * 5.0], dim=1)
        gabor_feats = []
        for s in _GABOR_SCALES:
            c = F.avg_pool2d(chans, s) if s > 1 else chans
            if min(c.shape[-2:]) < self.gabor.shape[-1]:
                c = F.interpolate(c, size=self.gabor.shape[-1], mode="bilinear", align_corners=False)
            resp = F.conv2d(c, self.gabor.repeat(3, 1, 1, 1), groups=3)  # (B, 3 * 2K, h, w)
            resp = resp.reshape(b, 3, _GABOR_ORIENTATIONS, 2, *resp.shape[-2:])
            mag = torch.sqrt(resp.pow(2).sum(3) + 1e-12).flatten(3)  # (B, 3, K, n)
            gabor_feats.append(torch.cat([mag.mean(-1), _std(mag)], dim=-1).flatten(1))
        texture = []
        for s in _TEXTURE_SCALES:
            gr = F.avg_pool2d(grey[:, None], s) if s > 1 else grey[:, None]
            grad = F.conv2d(gr, self.sobel)
            gmag = torch.sqrt(grad.pow(2).sum(1) + 1e-12).flatten(1)
            texture.append(_histogram(torch.bucketize(gmag, self.grad_edges), len(_GRAD_EDGES) + 1))
            # local binary count: how many of the 8 neighbours are darker than the centre
            pad = F.pad(gr, (1, 1, 1, 1), mode="replicate")
            centre = pad[:, :, 1:-1, 1:-1]
            h, w_ = centre.shape[-2:]
            count = torch.zeros(centre.shape, dtype=torch.int64, device=centre.device)
            for dy in (0, 1, 2):
                for dx in (0, 1, 2):
                    if dy == 1 and dx == 1:
                        continue
                    count += pad[:, :, dy : dy + h, dx : dx + w_] > centre + 0.01
            texture.append(_histogram(count.flatten(1), 9))
            hc = F.avg_pool2d(chans[:, 1:2], s) if s > 1 else chans[:, 1:2]
            blob = F.conv2d(F.pad(hc, (4, 4, 4, 4), mode="replicate"), self.log_kernel).clamp(min=0).flatten(1)
            texture.append(torch.stack([blob.mean(-1), _std(blob)], dim=1))
        return torch.cat(colour + gabor_feats + texture, dim=1)


def _config() -> dict:
    return {
        "version": _VERSION,
        "input_size": BUILTIN_INPUT_SIZE,
        "rgb_from_hed": RGB_FROM_HED,
        "quantiles": _QUANTILES,
        "stain_thresholds": _STAIN_THRESHOLDS,
        "gabor": [_GABOR_SCALES, _GABOR_ORIENTATIONS, _GABOR_WAVELENGTH],
        "grad_edges": _GRAD_EDGES,
        "texture_scales": _TEXTURE_SCALES,
        "tissue_od": _TISSUE_OD,
    }


@register_encoder(
    "builtin",
    dim=BuiltinDescriptor._count_dims(),
    input_size=BUILTIN_INPUT_SIZE,
    weights="none (fixed filters)",
    description="weights-free HED stain colour + multi-scale texture descriptor (CPU-fast, default)",
    test_params={},
)
def build_builtin(
    arg: str | None, *, weights: Path | None = None, random_weights: bool = False, device: str = "cpu"
) -> EncoderBundle:
    """Weights-free HED stain colour + multi-scale texture descriptor."""
    if weights is not None:
        raise EncoderError("--encoder builtin: has no weights; drop --weights")
    if random_weights:
        raise EncoderError("--encoder builtin: has no weights to randomise; drop --random-weights")
    model = BuiltinDescriptor().to(device).eval()
    cfg = _config()
    sha = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()
    return EncoderBundle(
        name="builtin",
        model=model,
        transform=ImageTransform(BUILTIN_INPUT_SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        dim=model.dim,
        input_size=BUILTIN_INPUT_SIZE,
        weights_sha256=sha,
        random_weights=False,
        precision="fp32",
        config={"spec": "builtin", "descriptor": cfg},
    )
