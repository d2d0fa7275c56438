"""timm encoders: ``uni`` (UNI v1), ``uni2-h`` (UNI2-h) and ``timm:<name>`` for any timm model.

Weights come from ``--weights`` (loaded strictly, see :mod:`hagekit.encoders.weights`), the
Hugging Face hub (UNI is gated: a token is needed), or ``--random-weights`` for speed tests.
With a weights file the model is built on the ``meta`` device first, so a 300M-parameter
ViT is not randomly initialised only to be overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hagekit.encoders.registry import EncoderBundle, register_encoder
from hagekit.encoders.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageTransform
from hagekit.encoders.weights import RANDOM_WEIGHTS_SHA, hub_download, load_weights
from hagekit.errors import EncoderError

__all__ = ["UNI_KWARGS", "UNI2H_KWARGS", "HubWeights", "build_timm_model", "timm_kwargs"]

log = logging.getLogger(__name__)

#: The official UNI / UNI2-h eval transform (MahmoodLab/UNI README, local-weights path):
#: ``Resize(224)`` (torchvision's default bilinear), ``CenterCrop(224)``, ImageNet mean/std.
UNI_INTERPOLATION = "bilinear"

#: UNI v1 (MahmoodLab/uni model card): ViT-L/16, LayerScale 1e-5, 1024-d CLS embedding.
UNI_KWARGS: dict[str, Any] = {
    "img_size": 224,
    "patch_size": 16,
    "init_values": 1e-5,
    "num_classes": 0,
    "dynamic_img_size": True,
}
#: UNI2-h (MahmoodLab/UNI2-h model card): ViT-H/14-style giant with SwiGLU, 8 register tokens.
UNI2H_KWARGS: dict[str, Any] = {
    "img_size": 224,
    "patch_size": 14,
    "depth": 24,
    "num_heads": 24,
    "init_values": 1e-5,
    "embed_dim": 1536,
    "mlp_ratio": 2.66667 * 2,
    "num_classes": 0,
    "no_embed_class": True,
    "mlp_layer": "SwiGLUPacked",
    "act_layer": "SiLU",
    "reg_tokens": 8,
    "dynamic_img_size": True,
}


def timm_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Turn the JSON-able layer names in a kwargs dict into timm/torch classes."""
    import timm.layers

    out = dict(kwargs)
    if out.get("mlp_layer") == "SwiGLUPacked":
        out["mlp_layer"] = timm.layers.SwiGLUPacked
    if out.get("act_layer") == "SiLU":
        out["act_layer"] = torch.nn.SiLU
    return out


def _create(model_name: str, kwargs: dict[str, Any], *, device: str | torch.device) -> torch.nn.Module:
    import timm

    try:
        if str(device) != "cpu":  # meta: no init at all; cuda: random init on the GPU (fast)
            with torch.device(device):
                return timm.create_model(model_name, pretrained=False, **timm_kwargs(kwargs))
        return timm.create_model(model_name, pretrained=False, **timm_kwargs(kwargs))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise EncoderError(f"--encoder: timm could not build {model_name!r} ({exc})") from None


def _head_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    heads = cfg.get("classifier") or "head"
    heads = [heads] if isinstance(heads, str) else list(heads)
    return tuple(f"{h}." for h in heads)


@dataclass(frozen=True)
class HubWeights:
    """Where the Hugging Face hub keeps a model's weights (used when no ``--weights`` file is given)."""

    repo: str | None
    files: Sequence[str] = ("model.safetensors", "pytorch_model.bin")
    gated: bool = False  #: a token is needed (MahmoodLab's UNI models)


def build_timm_model(
    model_name: str,
    kwargs: dict[str, Any],
    *,
    weights: Path | None,
    random_weights: bool,
    device: str,
    hub: HubWeights,
    what: str,
) -> tuple[torch.nn.Module, str, str]:
    """Build a timm model and load its weights (file, else ``hub``); return (model, sha256, weights source)."""
    if random_weights:
        dev = torch.device(device)
        with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
            torch.manual_seed(0)  # same random weights every time, global RNG untouched
            model = _create(model_name, kwargs, device=device)
        return model.to(device), RANDOM_WEIGHTS_SHA, "random"
    if weights is None:
        if hub.repo is None:
            raise EncoderError(f"{what}: no weights: pass --weights PATH (or --random-weights for speed tests)")
        weights = hub_download(hub.repo, hub.files, what=what, gated=hub.gated)
        source = f"hf-hub:{hub.repo}"
    else:
        source = str(weights)
    model = _create(model_name, kwargs, device="meta")
    sha = load_weights(model, weights, ignore_unexpected=_head_prefixes(model))
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        log.debug("%s: non-persistent buffers on meta; rebuilding on cpu", what)
        model = _create(model_name, kwargs, device="cpu")
        load_weights(model, weights, ignore_unexpected=_head_prefixes(model))
    return model.to(device), sha, source


def _bundle(
    name: str,
    model: torch.nn.Module,
    *,
    sha: str,
    source: str,
    random_weights: bool,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    config: dict[str, Any],
    interpolation: str = "bicubic",
) -> EncoderBundle:
    dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
    return EncoderBundle(
        name=name,
        model=model.eval(),
        transform=ImageTransform(input_size, mean=tuple(mean), std=tuple(std), interpolation=interpolation),  # type: ignore[arg-type]
        dim=dim,
        input_size=input_size,
        weights_sha256=sha,
        random_weights=random_weights,
        precision="bf16",
        config={**config, "weights_source": source},
    )


def _build_uni_family(
    name: str, timm_model: str, kwargs: dict, hub_repo: str, *, weights: Path | None, random_weights: bool, device: str
) -> EncoderBundle:
    """A MahmoodLab UNI model: timm architecture + model-card settings, gated hub weights."""
    model, sha, source = build_timm_model(
        timm_model, kwargs, weights=weights, random_weights=random_weights, device=device,
        hub=HubWeights(hub_repo, ("pytorch_model.bin",), gated=True), what=f"--encoder {name}",
    )
    return _bundle(
        name, model, sha=sha, source=source, random_weights=random_weights, input_size=224,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation=UNI_INTERPOLATION,
        config={"timm_model": timm_model, "timm_kwargs": kwargs, "interpolation": UNI_INTERPOLATION},
    )


@register_encoder("uni", dim=1024, input_size=224, weights="--weights pytorch_model.bin | hf-hub:MahmoodLab/uni (gated)",
                  description="UNI v1 (the paper's encoder): timm ViT-L/16, 1024-d")
def build_uni(arg: str | None, *, weights: Path | None, random_weights: bool, device: str) -> EncoderBundle:
    """UNI v1: timm ``vit_large_patch16_224`` as on the MahmoodLab/uni model card."""
    return _build_uni_family("uni", "vit_large_patch16_224", UNI_KWARGS, "MahmoodLab/uni",
                             weights=weights, random_weights=random_weights, device=device)


@register_encoder("uni2-h", dim=1536, input_size=224, weights="--weights pytorch_model.bin | hf-hub:MahmoodLab/UNI2-h (gated)",
                  description="UNI2-h: timm ViT-giant/14 with SwiGLU and 8 register tokens, 1536-d")
def build_uni2h(arg: str | None, *, weights: Path | None, random_weights: bool, device: str) -> EncoderBundle:
    """UNI2-h: timm ``vit_giant_patch14_224`` with the MahmoodLab/UNI2-h model card's settings."""
    return _build_uni_family("uni2-h", "vit_giant_patch14_224", UNI2H_KWARGS, "MahmoodLab/UNI2-h",
                             weights=weights, random_weights=random_weights, device=device)


@register_encoder(
    "timm:",
    dim=None,
    input_size=None,
    weights="--weights PATH | timm's hub weights",
    description="any timm model by name, pooled features (num_classes=0)",
    test_params={"arg": "resnet18", "random_weights": True},
)
def build_timm(arg: str | None, *, weights: Path | None, random_weights: bool, device: str) -> EncoderBundle:
    """Any timm model (``timm:vit_small_patch16_224``), pooled features, timm's own transform."""
    import timm
    from timm.data import resolve_model_data_config

    name = str(arg)
    if not timm.is_model(name):
        base = name.split(".")[0]
        close = timm.list_models(f"*{base.split('_')[0]}*")[:6]
        hint = f" (e.g. {', '.join(close)})" if close else ""
        raise EncoderError(f"--encoder timm:{name}: timm has no such model{hint}")
    hub_repo = None
    try:
        cfg = timm.models.get_pretrained_cfg(name)
        hub_repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    except Exception:  # timm raises on untagged names without a default config
        hub_repo = None
    kwargs: dict[str, Any] = {"num_classes": 0}
    model, sha, source = build_timm_model(
        name,
        kwargs,
        weights=weights,
        random_weights=random_weights,
        device=device,
        hub=HubWeights(hub_repo),
        what=f"--encoder timm:{name}",
    )
    data_cfg = resolve_model_data_config(model)
    size = int(data_cfg["input_size"][-1])
    return _bundle(
        f"timm:{name}", model, sha=sha, source=source, random_weights=random_weights, input_size=size,
        mean=data_cfg["mean"], std=data_cfg["std"],
        config={"timm_model": name, "timm_kwargs": kwargs},
    )
